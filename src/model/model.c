/* Operations on a built model: forward FLOPs, PyTorch-style
 * initialisation, applying a permutation to theta and state, and the
 * `info` printout (graph, heads, parameters, groups), each reading the
 * node kinds' descriptors (optab.h).  Building the model from its spec is
 * graph.c. */
#include "modeconn.h"

#include "model/optab.h"

#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

void mc_model_live(const mc_model *m, char *live, int train) {
  memset(live, 0, (size_t)m->n_nodes);
  for (int k = 0; k < m->n_heads; k++)
    if (train || !m->heads[k].train_only) live[m->heads[k].node] = 1;
  for (int i = m->n_nodes - 1; i >= 0; i--)
    if (live[i])
      for (int j = 0; j < m->nodes[i].n_in; j++) live[m->nodes[i].in[j]] = 1;
}

/* FLOPs of the nodes live marks (NULL: all). */
static double flops_of(const mc_model *m, const char *live) {
  double f = 0;
  for (int i = 0; i < m->n_nodes; i++) {
    if (live && !live[i]) continue;
    const mc_op_desc *d = mc_op_desc_of(m->nodes[i].kind);
    if (d->flops) f += d->flops(m, &m->nodes[i]);
  }
  return f;
}

double mc_model_flops(const mc_model *m) { return flops_of(m, NULL); }

/* --------------------------------------------------------- initialisation */
void mc_model_init(const mc_model *m, float *theta, float *state,
                   uint64_t seed) {
  mc_rng r;
  mc_rng_seed(&r, seed);
  for (int i = 0; i < m->n_tensors; i++) {
    const mc_tensor *t = &m->tensors[i];
    const mc_node *nd = &m->nodes[t->node];
    float *dst = (t->in_state ? state : theta) + t->off;
    const mc_param_desc *pd = mc_op_param_of(mc_op_desc_of(nd->kind), t->role);
    MC_ASSERT(pd);
    if (pd->init != MC_INIT_FANIN) {
      const float v = pd->init == MC_INIT_ONE ? 1.f : 0.f;
      for (size_t j = 0; j < t->numel; j++) dst[j] = v;
      continue;
    }
    /* PyTorch's default: kaiming_uniform(a=sqrt(5)) => U(-1/sqrt(fan_in),
     * 1/sqrt(fan_in)) for weights, the same bound for biases. */
    const mc_tensor *w = &m->tensors[nd->t_weight];
    double fan_in = (double)(w->numel / (size_t)w->shape[0]);
    double bound = 1.0 / sqrt(fan_in);
    for (size_t j = 0; j < t->numel; j++)
      dst[j] = (float)((2.0 * mc_rng_uniform(&r) - 1.0) * bound);
  }
}

/* ------------------------------------------------------------ permutation */
/* Walks the indices of one axis in order, giving each destination index
 * its source index under the permutation (the identity without a layout).
 * Walking instead of building an index array keeps permuting free of
 * allocations, so it cannot fail. */
typedef struct {
  const mc_layout *l;
  int *const *perm;
  int s;              /* segment */
  int64_t c, j, off;  /* unit within it, index within the unit, segment start */
} axis_walk;

static int64_t walk_next(axis_walk *w, int64_t i) {
  if (!w->l) return i;
  while (w->c == w->l->seg[w->s].count) {
    w->off += w->l->seg[w->s].count * w->l->seg[w->s].repeat;
    w->s++;
    w->c = 0;
    MC_ASSERT(w->s < w->l->n);
  }
  const mc_segment *sg = &w->l->seg[w->s];
  const int64_t src = sg->group >= 0 ? w->perm[sg->group][w->c] : w->c;
  const int64_t r = w->off + src * sg->repeat + w->j;
  if (++w->j == sg->repeat) {
    w->j = 0;
    w->c++;
  }
  return r;
}

/* After the last index: the walk consumed every segment and len indices. */
static void walk_end(const axis_walk *w, int64_t len) {
  if (!w->l) return;
  const mc_segment *sg = &w->l->seg[w->s];
  MC_ASSERT(w->s == w->l->n - 1 && w->c == sg->count && w->j == 0 && w->off + sg->count * sg->repeat == len);
}

void mc_model_permute(const mc_model *m, int *const *perm, const float *theta,
                      const float *state, float *theta_out, float *state_out) {
  for (int i = 0; i < m->n_tensors; i++) {
    const mc_tensor *t = &m->tensors[i];
    const float *src = (t->in_state ? state : theta) + t->off;
    float *dst = (t->in_state ? state_out : theta_out) + t->off;
    int64_t d0 = t->shape[0];
    int64_t d1 = t->ndim > 1 ? t->shape[1] : 1;
    int64_t inner = (int64_t)t->numel / (d0 * d1);
    axis_walk w0 = {t->axis[0], perm, 0, 0, 0, 0};
    for (int64_t a = 0; a < d0; a++) {
      const int64_t sa = walk_next(&w0, a);
      axis_walk w1 = {t->ndim > 1 ? t->axis[1] : NULL, perm, 0, 0, 0, 0};
      for (int64_t b = 0; b < d1; b++)
        memcpy(dst + (a * d1 + b) * inner, src + (sa * d1 + walk_next(&w1, b)) * inner,
               sizeof(float) * (size_t)inner);
      walk_end(&w1, d1);
    }
    walk_end(&w0, d0);
  }
}

/* ----------------------------------------------------------------- print */
void mc_model_print(const mc_model *m, FILE *f) {
  fprintf(f, "architecture %s: input %lldx%lldx%lld, %lld classes", m->arch,
          (long long)m->in_c, (long long)m->in_h, (long long)m->in_w,
          (long long)m->classes);
  if (m->width != 1.0) fprintf(f, ", width x%g", m->width);
  fprintf(f, "\n\ngraph (%d nodes):\n", m->n_nodes);
  for (int i = 0; i < m->n_nodes; i++) {
    const mc_node *nd = &m->nodes[i];
    fprintf(f, "  %3d %-22s %-9s", i, nd->name, mc_node_kind_name(nd->kind));
    if (nd->flat) fprintf(f, " -> %lld", (long long)nd->C);
    else fprintf(f, " -> %lldx%lldx%lld", (long long)nd->C, (long long)nd->H, (long long)nd->W);
    if (nd->n_in) {
      fprintf(f, "  from ");
      for (int j = 0; j < nd->n_in; j++) fprintf(f, "%s%s", j ? "," : "", m->nodes[nd->in[j]].name);
    }
    fprintf(f, "  groups [");
    for (int s = 0; s < nd->layout.n; s++) {
      if (nd->layout.seg[s].group < 0) fprintf(f, "%sfixed", s ? " " : "");
      else fprintf(f, "%sG%d", s ? " " : "", nd->layout.seg[s].group);
    }
    fprintf(f, "]\n");
  }
  fprintf(f, "\noutput heads (training loss = sum of weight x cross-entropy):\n");
  for (int k = 0; k < m->n_heads; k++)
    fprintf(f, "  head %d: %-22s weight %g%s\n", k, m->nodes[m->heads[k].node].name, (double)m->heads[k].weight,
            k == 0 ? " (main: predictions)" : m->heads[k].train_only ? " (train-only)" : "");
  fprintf(f, "\nparameters (theta, %zu floats):\n", m->n_theta);
  for (int pass = 0; pass < 2; pass++) {
    if (pass == 1) fprintf(f, "\nBN running statistics (state, %zu floats):\n", m->n_state);
    for (int i = 0; i < m->n_tensors; i++) {
      const mc_tensor *t = &m->tensors[i];
      if (t->in_state != pass) continue;
      fprintf(f, "  %-36s [", t->name);
      for (int d = 0; d < t->ndim; d++) fprintf(f, "%s%lld", d ? ", " : "", (long long)t->shape[d]);
      fprintf(f, "]  offset %zu\n", t->off);
    }
  }
  fprintf(f, "\ntotal trainable parameters: %zu", m->n_theta);
  /* without memory for the live-node table the train-only split is left out */
  char *live = mc_malloc_try((size_t)m->n_nodes + 1);
  size_t n_eval = m->n_theta;
  if (live) {
    mc_model_live(m, live, 0);
    n_eval = 0;
    for (int i = 0; i < m->n_tensors; i++)
      if (!m->tensors[i].in_state && live[m->tensors[i].node]) n_eval += m->tensors[i].numel;
  }
  if (n_eval != m->n_theta) fprintf(f, " (%zu without the train-only heads)", n_eval);
  fprintf(f, "\nforward FLOPs per sample: %.4g", mc_model_flops(m));
  if (n_eval != m->n_theta) fprintf(f, " (%.4g without the train-only heads)", flops_of(m, live));
  fprintf(f, "\n");
  free(live);
  fprintf(f, "\npermutation groups (%d):\n", m->n_groups);
  for (int g = 0; g < m->n_groups; g++) {
    fprintf(f, "  G%-3d %-22s size %-5lld %s axes:", g, m->groups[g].name,
            (long long)m->groups[g].size,
            m->groups[g].n_members > 1 ? "stream of layers joined by add," : "");
    int first = 1;
    for (int i = 0; i < m->n_tensors; i++) {
      const mc_tensor *t = &m->tensors[i];
      for (int a = 0; a < 2; a++) {
        const mc_layout *l = t->axis[a];
        if (!l) continue;
        for (int s = 0; s < l->n; s++)
          if (l->seg[s].group == g) {
            fprintf(f, "%s%s[%d]", first ? " " : ", ", t->name, a);
            first = 0;
            break;
          }
      }
    }
    fprintf(f, "\n");
  }
}
