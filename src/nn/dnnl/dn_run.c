/* oneDNN backend: the step interpreter, and the steps that are ours
 * rather than oneDNN primitives -- input copy, normalisation, dropout, BN
 * running statistics, gradient adds, Winograd convolutions, and the batch
 * statistics of BN-recompute passes (summed in double). */
#include "nn/dnnl/dn.h"
#include "nn/kernels/kernels.h"
#include "nn/ops.h"
#include "nn/kernels/wino.h"


#include <math.h>
#include <omp.h>
#include <stdio.h>
#include <stdlib.h>

static mc_status exec_fail(const dstate *st, const step *s, dnnl_status_t r) {
  return mc_error(r == dnnl_out_of_memory ? MC_ENOMEM : MC_EINTERNAL,
                  "oneDNN: executing a primitive of node '%s' failed (status %d)", st->e->m->nodes[s->node].name,
                  (int)r);
}

int dn_bn_sums_layout(const dnnl_memory_desc_t *md, const mc_node *nd) {
  if (md->ndims == 4 && nd->C % 8 == 0 && dn_md_is(md, dnnl_aBcd8b)) return 1;
  if (md->ndims == 4 && nd->C % 16 == 0 && dn_md_is(md, dnnl_aBcd16b)) return 2;
  return dn_md_is(md, dn_plain_tag(md->ndims)) ? 0 : -1;
}

/* Channel sums of one channel of a plain tensor (images `ld` floats apart). */
static void sums_plain(double *sum, double *sq, const float *x, int64_t ld, int64_t N, int64_t S,
                       float shift) {
  double a1 = 0, a2 = 0;
  for (int64_t i = 0; i < N; i++)
    for (int64_t p = 0; p < S; p++) {
      const double d = (double)(x[i * ld + p] - shift);
      a1 += d;
      a2 += d * d;
    }
  *sum = a1;
  *sq = a2;
}

/* Batch mean and (biased) variance of BN node s->node's input s->a into the
 * plan's mean/var, from channel sums of x - shift (shift: the running mean,
 * near the batch mean after the first batch, so the variance does not
 * cancel), summed in double.  The sums come from the Winograd convolution
 * (s->flag) or are taken here, one channel (block) per thread: the result
 * does not depend on the thread count. */
static void bn_batch_stats(dstate *st, const step *s) {
  const mc_model *m = st->e->m;
  const mc_node *nd = &m->nodes[s->node];
  const int64_t C = nd->C, N = st->e->n, S = nd->H * nd->W;
  const float *shift = st->state + m->tensors[nd->t_rmean].off;
  double *sum = st->cur->bnsums[s->node], *sq = sum + C;
  if (!s->flag) {
    const float *x = dn_mem_ptr(s->a);
    const int lay = dn_bn_sums_layout(dn_mem_md(s->a), nd);
    const int64_t B = lay == 1 ? 8 : lay == 2 ? 16 : 1, units = C / B;
    const mc_kern_bn_sums_fn sums = B > 1 ? mc_kern_bn_sums((int)B) : NULL;
#pragma omp parallel for schedule(static) if (N * C * S > (1 << 16))
    for (int64_t u = 0; u < units; u++) {
      if (sums) {
        sums(sum + u * B, sq + u * B, x + u * S * B, (C / B) * S * B, N, S, shift + u * B);
      } else {
        sums_plain(sum + u, sq + u, x + u * S, C * S, N, S, shift[u]);
      }
    }
  }
  float *mean = dn_mem_ptr(st->cur->mean[s->node]), *var = dn_mem_ptr(st->cur->var[s->node]);
  const double cnt = (double)s->count;
  for (int64_t c = 0; c < C; c++) {
    const double mu = sum[c] / cnt, v = sq[c] / cnt - mu * mu;
    mean[c] = (float)(shift[c] + mu);
    var[c] = (float)(v > 0 ? v : 0);
  }
}


/* One stride between the threads' parts of the Winograd scratch for every
 * kernel of plan p (wino_thread_stride): the scratch over its threads. */
static int64_t wscr_stride(const dstate *st, const plan *p) {
  return (int64_t)(st->wscrsz / sizeof(float) / (size_t)p->nthr) / 16 * 16;
}

/* Conv node i's Winograd weights for shape ws (dgrad: of its input
 * gradient), transformed again only when the weights changed since the
 * last call (eval passes run the step once per slice). */
static const float *wino_u_cached(dstate *st, int i, const float *w, const wino_shape *ws, int dgrad) {
  plan *p = st->cur;
  const size_t wb = sizeof(float) * (size_t)(ws->k * ws->c * 9);
  float *u = dgrad ? p->wino_du[i] : p->wino_u[i], *wc = dgrad ? p->wino_dw[i] : p->wino_w[i];
  char *ok = dgrad ? &p->wino_dok[i] : &p->wino_ok[i];
  if (!*ok || memcmp(wc, w, wb)) {
    if (dgrad) wino_weights_data_grad(u, w, ws);
    else wino_weights(u, w, ws);
    memcpy(wc, w, wb);
    *ok = 1;
  }
  return u;
}

/* The folded weights and bias of conv node i (lower_conv.c) from its
 * weights w, bias b (or NULL) and the eval BN after it, saving what they
 * came from; *same = 1 when those are what the last fold saw (eval passes
 * run the step once per slice: then nothing is recomputed). */
static dn_fold_parts fold_weights(dstate *st, int i, const float *w, const float *b, int *same) {
  const mc_model *m = st->e->m;
  plan *p = st->cur;
  const int j = p->fold[i] - 1;
  const mc_node *bn = &m->nodes[j];
  const dn_fold_parts f = dn_fold_buf(st, p, i);
  const int64_t K = bn->C, CK = m->nodes[m->nodes[i].in[0]].C * m->nodes[i].k * m->nodes[i].k;
  const size_t kb = sizeof(float) * (size_t)K;
  const float *g = st->theta + m->tensors[bn->t_weight].off, *be = st->theta + m->tensors[bn->t_bias].off;
  const float *mu = dn_mem_ptr(p->mean[j]), *var = dn_mem_ptr(p->var[j]);
  /* what the fold is made from, and where it saved them */
  const struct {
    float *saved;
    const float *now;
    size_t bytes;
  } in[] = {{f.w0, w, sizeof(float) * (size_t)(K * CK)}, {f.bn0, g, kb},          {f.bn0 + K, be, kb},
            {f.bn0 + 2 * K, mu, kb},                     {f.bn0 + 3 * K, var, kb}, {f.b0, b, b ? kb : 0}};
  const int nin = (int)(sizeof in / sizeof in[0]);
  *same = p->fold_ok[i];
  for (int q = 0; q < nin && *same; q++) *same = !in[q].bytes || !memcmp(in[q].saved, in[q].now, in[q].bytes);
  if (*same) return f;
  for (int q = 0; q < nin; q++)
    if (in[q].bytes) memcpy(in[q].saved, in[q].now, in[q].bytes);
  p->fold_ok[i] = 1;
  for (int64_t k = 0; k < K; k++) {
    const float sc = (float)(g[k] / sqrt((double)var[k] + bn->eps));
    f.scale[k] = sc;
    f.b[k] = be[k] + sc * ((b ? b[k] : 0.f) - mu[k]);
    for (int64_t q = 0; q < CK; q++) f.w[k * CK + q] = w[k * CK + q] * sc;
  }
  return f;
}

/* S_BN_FOLD_DX: the input gradient of folded BN node s->node (eval
 * statistics) -- its output diff s->a times its scale, and where its ReLU
 * is fused, masked by that ReLU's output (> 0) -- into s->b; blocked (8 or
 * 16 channels) like the Winograd step that computed it. */
static void bn_fold_dx(dstate *st, const step *s) {
  const mc_model *m = st->e->m;
  plan *p = st->cur;
  const mc_node *nd = &m->nodes[s->node];
  const int r = st->relu_of[s->node];
  const float *dy = dn_mem_ptr(s->a), *y = r >= 0 ? dn_mem_ptr(p->mem[r]) : NULL;
  const float *sc = dn_fold_buf(st, p, -p->fold[s->node] - 1).scale;
  float *t = dn_mem_ptr(s->b);
  const int64_t B = dn_fold_block(st, p, -p->fold[s->node] - 1), CB = nd->C / B, S = nd->H * nd->W;
  const int64_t rows = st->e->n * CB;
  const mc_kern_scale_mask_fn f = mc_kern_scale_mask();
#pragma omp parallel for schedule(static) num_threads(p->nthr) if (rows * S * B > (1 << 15))
  for (int64_t u = 0; u < rows; u++)
    f(t + u * S * B, dy + u * S * B, y ? y + u * S * B : NULL, sc + u % CB * B, S, B);
}

/* S_BN_FOLD_DGB: dgamma += sum dy * mask * xhat, dbeta += sum dy * mask
 * over every output of each channel (in double), xhat = (c - mean) /
 * sqrt(var + eps) from the conv's output c (s->b), mask from the fused
 * ReLU's output as in bn_fold_dx. */
static void bn_fold_dgb(dstate *st, const step *s) {
  const mc_model *m = st->e->m;
  plan *p = st->cur;
  const mc_node *nd = &m->nodes[s->node];
  const int r = st->relu_of[s->node], conv = -p->fold[s->node] - 1;
  const float *dy = dn_mem_ptr(s->a), *y = r >= 0 ? dn_mem_ptr(p->mem[r]) : NULL, *c = dn_mem_ptr(s->b);
  const float *mu = dn_mem_ptr(p->mean[s->node]), *var = dn_mem_ptr(p->var[s->node]);
  float *dg = st->grad + m->tensors[nd->t_weight].off, *db = st->grad + m->tensors[nd->t_bias].off;
  const int64_t B = dn_fold_block(st, p, conv), C = nd->C, S = nd->H * nd->W, N = st->e->n;
#pragma omp parallel for schedule(static) num_threads(p->nthr) if (N * C * S > (1 << 15))
  for (int64_t ch = 0; ch < C; ch++) {
    double sg = 0, sb = 0;
    for (int64_t n = 0; n < N; n++) {
      const int64_t o = (n * (C / B) + ch / B) * S * B + ch % B;
      for (int64_t q = 0; q < S; q++) {
        const int64_t e = o + q * B;
        if (y && !(y[e] > 0.f)) continue;
        sb += dy[e];
        sg += (double)dy[e] * ((double)c[e] - mu[ch]);
      }
    }
    dg[ch] += (float)(sg / sqrt((double)var[ch] + nd->eps));
    db[ch] += (float)sb;
  }
}

mc_status dn_run(dstate *st, const steplist *L) {
  mc_exec *e = st->e;
  const mc_model *m = e->m;
  const int64_t N = e->n;
  const int active = (st->dx ? DN_DX : 0) | (st->grad ? DN_GRAD : 0);
  for (int k = 0; k < L->n; k++) {
    const step *s = &L->v[k];
    if (s->need && !(s->need & active)) continue;
    if (s->kind == S_PRIM) {
      const dnnl_status_t r = dnnl_primitive_execute(s->prim, st->strm, s->nargs, s->args);
      if (r != dnnl_success) return exec_fail(st, s, r);
      continue;
    }
    CK(dnnl_stream_wait(st->strm));
    const mc_node *nd = &m->nodes[s->node];
    switch (s->kind) {
    case S_INPUT:
      memcpy(dn_mem_ptr(s->b), st->x, sizeof(float) * (size_t)s->count);
      break;
    case S_NORM_F:
      normalize_forward(dn_mem_ptr(s->b), dn_mem_ptr(s->a), m->norm_mean, m->norm_std, N, nd->C,
                        nd->H * nd->W);
      break;
    case S_NORM_B: {
      float *t = dn_mem_ptr(s->b);
      if (s->flag) memset(t, 0, sizeof(float) * (size_t)(N * dn_numel(nd)));
      normalize_backward(t, dn_mem_ptr(s->a), m->norm_std, N, nd->C, nd->H * nd->W);
      break;
    }
    case S_DROP_F: {
      float *y = dn_mem_ptr(s->b);
      const float *x = dn_mem_ptr(s->a);
      if (e->mode == MC_MODE_EVAL || nd->p == 0.f) {
        memcpy(y, x, sizeof(float) * (size_t)s->count);
        st->mask_id[s->node] = 1;
      } else {
        dropout_forward(y, st->mask[s->node], x, s->count, nd->p, &e->rng);
        st->mask_id[s->node] = 0;
      }
      break;
    }
    case S_DROP_B: {
      float *t = dn_mem_ptr(s->b);
      const float *dy = dn_mem_ptr(s->a), *mk = st->mask[s->node];
      if (st->mask_id[s->node]) {
        memcpy(t, dy, sizeof(float) * (size_t)s->count);
      } else {
        const int64_t cnt = s->count;
#pragma omp parallel for schedule(static)
        for (int64_t j = 0; j < cnt; j++) t[j] = dy[j] * mk[j];
      }
      break;
    }
    case S_BN_EVAL: {
      const float *rm = st->state + m->tensors[nd->t_rmean].off;
      const float *rv = st->state + m->tensors[nd->t_rvar].off;
      memcpy(dn_mem_ptr(s->a), rm, sizeof(float) * (size_t)nd->C);
      memcpy(dn_mem_ptr(s->b), rv, sizeof(float) * (size_t)nd->C);
      break;
    }
    case S_BN_STATS: {
      float *rm = st->state + m->tensors[nd->t_rmean].off;
      float *rv = st->state + m->tensors[nd->t_rvar].off;
      const float *mu = dn_mem_ptr(s->a), *var = dn_mem_ptr(s->b);
      const double mom = exec_bn_momentum(e, nd, e->mode), cnt = (double)s->count;
      for (int64_t c = 0; c < nd->C; c++) {
        double v = var[c], unb = cnt > 1 ? v * cnt / (cnt - 1) : v;
        rm[c] = (float)((1.0 - mom) * rm[c] + mom * mu[c]);
        rv[c] = (float)((1.0 - mom) * rv[c] + mom * unb);
      }
      break;
    }
    case S_ADDVEC: {
      float *g = st->grad + s->off;
      const float *src = dn_mem_ptr(s->a);
      for (int64_t j = 0; j < s->count; j++) g[j] += src[j];
      break;
    }
    case S_SAVE:
      memcpy(dn_mem_ptr(s->b), st->theta + s->off, sizeof(float) * (size_t)s->count);
      break;
    case S_WINO: {
      plan *p = st->cur;
      wino_shape ws = dn_wino_shape(st, p, s->node, N);
      ws.tstride = wscr_stride(st, p);
      const float *w = st->theta + m->tensors[nd->t_weight].off;
      const float *bias = nd->bias ? st->theta + m->tensors[nd->t_bias].off : NULL;
      int same = 0;
      if (s->flag == WINO_FOLDED) {
        const dn_fold_parts f = fold_weights(st, s->node, w, bias, &same);
        w = f.w;
        bias = f.b;
        ws.relu = st->relu_of[p->fold[s->node] - 1] >= 0;
      } else if (s->flag == WINO_SAVED) {
        const dn_fold_parts f = dn_fold_buf(st, p, s->node);
        w = f.w0;
        bias = nd->bias ? f.b0 : NULL;
      }
      /* an unchanged fold whose transform is still there (wino_ok 2): no check */
      const float *u = same && p->wino_ok[s->node] == 2 ? p->wino_u[s->node] : wino_u_cached(st, s->node, w, &ws, 0);
      if (s->flag == WINO_FOLDED) p->wino_ok[s->node] = 2;
      wino_stats sums, *sp = NULL;
      if (s->count > 0) {
        const mc_node *bn = &m->nodes[s->count - 1];
        sums = (wino_stats){st->state + m->tensors[bn->t_rmean].off, p->bnsums[s->count - 1],
                            p->bnsums[s->count - 1] + bn->C};
        sp = &sums;
      }
      wino_forward(dn_mem_ptr(s->b), dn_mem_ptr(s->a), u, bias, &ws, st->wscr, p->nthr, sp);
      break;
    }
    case S_WINO_DX: {
      const wino_shape fs = dn_wino_shape(st, st->cur, s->node, N);
      wino_shape ws = wino_data_grad_shape(&fs);
      ws.acc = s->flag;
      ws.tstride = wscr_stride(st, st->cur);
      const float *w = st->theta + m->tensors[nd->t_weight].off;
      wino_forward(dn_mem_ptr(s->b), dn_mem_ptr(s->a), wino_u_cached(st, s->node, w, &ws, 1), NULL, &ws, st->wscr,
                   st->cur->nthr, NULL);
      break;
    }
    case S_DX3: {
      const mc_node *x = &m->nodes[nd->in[0]];
      const mc_dx3_shape ds = {x->C, nd->C, x->H, x->W, nd->H, nd->W, nd->pad, dn_dx3_block(st, st->cur, s->node)};
      const mc_kern_dx3_fn f = mc_kern_dx3();
      const float *w = st->theta + m->tensors[nd->t_weight].off, *dy = dn_mem_ptr(s->a);
      float *dx = dn_mem_ptr(s->b);
      const int nthr = st->cur->nthr, acc = s->flag;
#pragma omp parallel num_threads(nthr) if (nthr > 1)
      { /* whole images per thread: the bytes do not depend on the split */
        const int64_t T = omp_get_num_threads(), r = omp_get_thread_num();
        f(dx, dy, w, &ds, N * r / T, N * (r + 1) / T, acc);
      }
      break;
    }
    case S_WINO_DW: {
      wino_shape fs = dn_wino_shape(st, st->cur, s->node, N);
      fs.tstride = wscr_stride(st, st->cur);
      wino_weight_grad(st->grad + m->tensors[nd->t_weight].off, nd->bias ? st->grad + m->tensors[nd->t_bias].off : NULL,
                       dn_mem_ptr(s->b), dn_mem_ptr(s->a), &fs, st->wscr, st->cur->nthr);
      break;
    }
    case S_FOLD_ST: { /* the folded weights of a direct conv (lower_conv.c) */
      int same;
      fold_weights(st, s->node, st->theta + m->tensors[nd->t_weight].off,
                   nd->bias ? st->theta + m->tensors[nd->t_bias].off : NULL, &same);
      break;
    }
    case S_BN_FOLD_DX:
      bn_fold_dx(st, s);
      break;
    case S_BN_FOLD_DGB:
      bn_fold_dgb(st, s);
      break;
    case S_ADD: {
      const float *xs[MC_MAX_INPUTS];
      for (int j = 0; j < nd->n_in; j++) xs[j] = dn_mem_ptr(st->cur->mem[nd->in[j]]);
      add_relu_forward(dn_mem_ptr(s->b), xs, nd->n_in, s->count, s->flag);
      break;
    }
    case S_BN_BATCH:
      bn_batch_stats(st, s);
      break;
    default: MC_ASSERT(0);
    }
  }
  CK(dnnl_stream_wait(st->strm));
  return MC_OK;
}
