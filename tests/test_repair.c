/* REPAIR (src/eval/repair.c) on real Fashion-MNIST images: the corrected
 * network's per-channel statistics equal the interpolated targets; at t = 0
 * and t = 1 it is the endpoints' function; the folded plain model computes
 * what the unfolded network with the affine corrections applied computes;
 * the layer rules (BN-fed and logits layers skipped, no bias refused); and
 * the CLI flags (--repair, --save-point) end to end. */
#include "testutil.h"

#include "eval/eval.h"
#include "eval/repair.h"

#include <jansson.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static mc_data D;
static int have_data;

static int setup(void **s) {
  (void)s;
  if (mc_data_load(&D, "fashion-mnist")) {
    print_message("Fashion-MNIST not found (%s)\n", mc_errmsg());
    return -1;
  }
  mc_dataset_truncate(&D.train, 600);
  mc_dataset_truncate(&D.test, 300);
  have_data = 1;
  return 0;
}

static int teardown(void **s) {
  (void)s;
  if (have_data) mc_data_free(&D);
  return 0;
}

/* A small VGG-style net without BN, every conv with a bias. */
static const char *CONV_SPEC = "input\nnormalize\n"
                               "c1: conv out=8 k=3 p=1 bias=1\nrelu\nmaxpool k=2\n"
                               "c2: conv out=16 k=3 p=1 bias=1\nrelu\nmaxpool k=2\n"
                               "c3: conv out=16 k=3 bias=1\nrelu\nflatten\n"
                               "fc1: linear out=24\nrelu\nfc: linear out=classes\n";

static mc_model *make_model(const char *which) {
  mc_arch_params p;
  mc_arch_params_default(&p);
  mc_model *m = NULL;
  mc_status st;
  if (!strcmp(which, "mlp")) {
    p.widths = "48,32,32";
    st = mc_model_create(&m, "mlp", &p);
  } else {
    st = mc_model_from_spec(&m, which, CONV_SPEC, &p);
  }
  if (st) fail_msg("model %s: %s", which, mc_errmsg());
  m->norm_mean[0] = 0.29f;
  m->norm_std[0] = 0.35f;
  return m;
}

/* Endpoints: two initialisations of different seeds, with biases and
 * weights scaled apart so their statistics differ clearly. */
static void endpoints(const mc_model *m, float **ta, float **tb, float **st) {
  float *sa;
  tu_random_params(m, 11, ta, &sa);
  tu_random_params(m, 12, tb, st);
  free(sa);
  mc_rng r;
  mc_rng_seed(&r, 7);
  for (size_t i = 0; i < m->n_theta; i++) {
    (*ta)[i] = (float)((*ta)[i] * 1.3 + 0.02 * mc_rng_normal(&r));
    (*tb)[i] = (float)((*tb)[i] * 0.9 + 0.03 * mc_rng_normal(&r));
  }
}

/* Statistics from a plain copy of the node's output, two-pass, in double:
 * independent of mc_channel_stats' single pass over the executor's view. */
static void plain_stats(mc_exec *e, const float *theta, float *state, const mc_model *m, int node, double *mean,
                        double *sd) {
  const mc_node *nd = &m->nodes[node];
  const int64_t C = nd->C, S = nd->H * nd->W, n = D.train.n;
  const int64_t B = mc_exec_batch(e);
  double *s1 = mc_calloc((size_t)C, sizeof(double)), *s2 = mc_calloc((size_t)C, sizeof(double));
  float *buf = mc_malloc(sizeof(float) * (size_t)(B * C * S));
  for (int pass = 0; pass < 2; pass++) {
    mc_batches b;
    assert_int_equal(mc_batches_init(&b, &D.train, n, B), MC_OK);
    for (int64_t k; (k = mc_batches_next(&b)) > 0;) {
      tu_forward(e, theta, state, b.x, k, MC_MODE_EVAL);
      tu_read(e, node, buf);
      for (int64_t i = 0; i < k; i++)
        for (int64_t c = 0; c < C; c++)
          for (int64_t q = 0; q < S; q++) {
            double x = buf[(i * C + c) * S + q];
            if (pass == 0) s1[c] += x;
            else s2[c] += (x - s1[c]) * (x - s1[c]);
          }
    }
    mc_batches_free(&b);
    if (pass == 0)
      for (int64_t c = 0; c < C; c++) s1[c] /= (double)(n * S);
  }
  for (int64_t c = 0; c < C; c++) {
    mean[c] = s1[c];
    sd[c] = sqrt(s2[c] / (double)(n * S));
  }
  free(s1); free(s2); free(buf);
}

static void lerp(float *out, const float *a, const float *b, size_t n, double t) {
  for (size_t i = 0; i < n; i++) out[i] = (float)((1 - t) * a[i] + t * b[i]);
}

/* Largest relative deviation of layer `node`'s channel statistics at th
 * from (1-t) stat(A) + t stat(B), all measured by plain_stats; with
 * tol > 0, fails on any channel off by more than tol. */
static double layer_dev(mc_exec *e, const float *ta, const float *tb, const float *th, float *state,
                        const mc_model *m, int node, double t, double tol) {
  const int64_t C = m->nodes[node].C;
  double *ma = mc_calloc((size_t)C * 6, sizeof(double)), *sa = ma + C, *mb = sa + C, *sb = mb + C;
  double *mt = sb + C, *st = mt + C, worst = 0;
  plain_stats(e, ta, state, m, node, ma, sa);
  plain_stats(e, tb, state, m, node, mb, sb);
  plain_stats(e, th, state, m, node, mt, st);
  for (int64_t c = 0; c < C; c++) {
    const double tm = (1 - t) * ma[c] + t * mb[c], tsd = (1 - t) * sa[c] + t * sb[c];
    const double em = fabs(mt[c] - tm) / fmax(1, fabs(tm)), es = fabs(st[c] - tsd) / fmax(1, tsd);
    worst = fmax(worst, fmax(em, es));
    if (tol > 0 && (em > tol || es > tol))
      fail_msg("t=%g layer %s channel %lld: mean %.7g vs target %.7g, std %.7g vs target %.7g", t,
               m->nodes[node].name, (long long)c, mt[c], tm, st[c], tsd);
  }
  free(ma);
  return worst;
}

/* A model, its two endpoints, an executor and the REPAIR reference of the
 * endpoints on the training images. */
typedef struct {
  mc_model *m;
  float *ta, *tb, *state;
  mc_exec *e;
  mc_repair r;
} fixture;

static void fixture_open(fixture *f, const char *which, mc_backend be) {
  f->m = make_model(which);
  endpoints(f->m, &f->ta, &f->tb, &f->state);
  assert_int_equal(mc_exec_create(&f->e, f->m, 100, be), MC_OK);
  const float *refs[2] = {f->ta, f->tb};
  assert_int_equal(mc_repair_init(&f->r, f->e, 2, refs, NULL, &D.train, 0), MC_OK);
}

static void fixture_close(fixture *f) {
  mc_repair_free(&f->r);
  mc_exec_free(f->e);
  free(f->ta); free(f->tb); free(f->state);
  mc_model_free(f->m);
}

static void check_stats(const char *which, mc_backend be) {
  fixture f;
  fixture_open(&f, which, be);
  mc_model *m = f.m;
  mc_exec *e = f.e;
  mc_repair *r = &f.r;
  float *ta = f.ta, *tb = f.tb, *state = f.state;
  assert_int_equal(r->n_layers, !strcmp(which, "mlp") ? 3 : 4); /* the logits layer is not REPAIRed */
  float *th = mc_aligned_alloc(sizeof(float) * m->n_theta);
  const double ts[2] = {0.5, 0.3};
  for (int it = 0; it < 2; it++) {
    const double t = ts[it];
    lerp(th, ta, tb, m->n_theta, t);
    mc_repair_set_t(r, t);
    double before = 0, after = 0;
    for (int l = 0; l < r->n_layers; l++) /* uncorrected (earlier layers not folded either) */
      before = fmax(before, layer_dev(e, ta, tb, th, state, m, r->nodes[l], t, 0));
    assert_int_equal(mc_repair_apply(r, e, th, state, &D.train), MC_OK);
    for (int l = 0; l < r->n_layers; l++) after = fmax(after, layer_dev(e, ta, tb, th, state, m, r->nodes[l], t, 1e-4));
    print_message("%s (%s) t=%.1f: statistics off target by %.3g before REPAIR, %.3g after\n", which,
                  mc_backend_name(mc_exec_backend(e)), t, before, after);
    assert_true(before > 1e-2); /* there was something to correct */
  }
  free(th);
  fixture_close(&f);
}

static void test_stats_mlp(void **s) { (void)s; check_stats("mlp", MC_BACKEND_REF); }
static void test_stats_conv_ref(void **s) { (void)s; check_stats("conv", MC_BACKEND_REF); }
static void test_stats_conv_dnnl(void **s) { (void)s; check_stats("conv", MC_BACKEND_DNNL); }

/* REPAIR at t = 0 and t = 1 is the endpoints' function. */
static void test_endpoints_kept(void **s) {
  (void)s;
  const char *which[2] = {"mlp", "conv"};
  for (int w = 0; w < 2; w++) {
    fixture f;
    fixture_open(&f, which[w], MC_BACKEND_AUTO);
    mc_model *m = f.m;
    mc_exec *e = f.e;
    mc_repair *r = &f.r;
    float *ta = f.ta, *tb = f.tb, *state = f.state;
    const size_t nl = (size_t)(D.test.n * m->classes);
    float *l0 = mc_malloc(sizeof(float) * nl), *l1 = mc_malloc(sizeof(float) * nl);
    float *th = mc_aligned_alloc(sizeof(float) * m->n_theta);
    for (int k = 0; k < 2; k++) {
      const float *end = k ? tb : ta;
      mc_metrics me, mr;
      assert_int_equal(mc_evaluate_logits(e, end, state, &D.test, 0, &me, l0), MC_OK);
      lerp(th, ta, tb, m->n_theta, k); /* theta(0) = A, theta(1) = B exactly */
      mc_repair_set_t(r, k);
      assert_int_equal(mc_repair_apply(r, e, th, state, &D.train), MC_OK);
      assert_int_equal(mc_evaluate_logits(e, th, state, &D.test, 0, &mr, l1), MC_OK);
      double maxdev = 0;
      for (int64_t c = 0; c < r->off[r->n_layers]; c++)
        maxdev = fmax(maxdev, fabs(r->scale[c] - 1) + fabs(r->shift[c]));
      const double rel = tu_max_rel(l1, l0, nl, 1e-2);
      print_message("%s t=%d: max |scale-1|+|shift| %.2g, logits max rel diff %.2g, loss %.6f vs %.6f\n", which[w], k,
                    maxdev, rel, mr.loss, me.loss);
      assert_true(rel < 1e-4);
      assert_true(fabs(mr.loss - me.loss) < 1e-5 * me.loss);
    }
    free(l0); free(l1); free(th);
    fixture_close(&f);
  }
}

/* y = W x + b over rows of W [out, in] */
static void affine_rows(double *y, const float *W, const float *b, const double *x, int64_t out, int64_t in) {
  for (int64_t o = 0; o < out; o++) {
    double s = b[o];
    for (int64_t i = 0; i < in; i++) s += (double)W[o * in + i] * x[i];
    y[o] = s;
  }
}

/* The folded plain model's logits equal the unfolded network's with each
 * layer's affine correction applied to its output (an MLP written out). */
static void test_fold_preserves_logits(void **s) {
  (void)s;
  fixture f;
  fixture_open(&f, "mlp", MC_BACKEND_REF);
  mc_model *m = f.m;
  mc_exec *e = f.e;
  mc_repair *r = &f.r;
  float *ta = f.ta, *tb = f.tb, *state = f.state;
  float *th = mc_aligned_alloc(sizeof(float) * m->n_theta), *raw = mc_aligned_alloc(sizeof(float) * m->n_theta);
  lerp(raw, ta, tb, m->n_theta, 0.5);
  memcpy(th, raw, sizeof(float) * m->n_theta);
  mc_repair_set_t(r, 0.5);
  assert_int_equal(mc_repair_apply(r, e, th, state, &D.train), MC_OK);
  const int64_t n = 100, in = m->in_c * m->in_h * m->in_w;
  float *x = mc_aligned_alloc(sizeof(float) * (size_t)(n * in));
  int32_t *y = mc_malloc(sizeof(int32_t) * (size_t)n);
  int64_t *idx = mc_malloc(sizeof(int64_t) * (size_t)n);
  for (int64_t i = 0; i < n; i++) idx[i] = i;
  mc_dataset_batch(&D.test, idx, n, NULL, NULL, x, y);
  const float *folded = tu_forward(e, th, state, x, n, MC_MODE_EVAL);
  double *h = mc_calloc(2048, sizeof(double)), *g = mc_calloc(2048, sizeof(double));
  double worst = 0, changed = 0;
  for (int64_t i = 0; i < n; i++) {
    int64_t width = in;
    for (int64_t q = 0; q < in; q++) h[q] = ((double)x[i * in + q] - m->norm_mean[0]) / m->norm_std[0];
    int l = 0;
    for (int k = 0; k < m->n_nodes; k++) {
      const mc_node *nd = &m->nodes[k];
      if (nd->kind != MC_NODE_LINEAR) continue;
      affine_rows(g, raw + m->tensors[nd->t_weight].off, raw + m->tensors[nd->t_bias].off, h, nd->C, width);
      const int repaired = l < r->n_layers && r->nodes[l] == k;
      for (int64_t c = 0; c < nd->C; c++) {
        double v = repaired ? r->scale[r->off[l] + c] * g[c] + r->shift[r->off[l] + c] : g[c];
        changed = fmax(changed, fabs(v - g[c]));
        h[c] = k == m->n_nodes - 1 ? v : fmax(v, 0); /* relu after every hidden layer */
      }
      l += repaired;
      width = nd->C;
    }
    for (int64_t c = 0; c < m->classes; c++)
      worst = fmax(worst, fabs(h[c] - folded[i * m->classes + c]) / fmax(1, fabs(h[c])));
  }
  print_message("fold: corrections move pre-activations by up to %.3g; folded vs unfolded logits %.3g\n", changed,
                worst);
  assert_true(changed > 1e-2);
  assert_true(worst < 1e-4);
  free(h); free(g); free(x); free(y); free(idx); free(th); free(raw);
  fixture_close(&f);
}

/* BN-fed layers and the logits are not REPAIR layers; a BN-free layer
 * without a bias is an error naming it. */
static void test_layer_rules(void **s) {
  (void)s;
  mc_arch_params p;
  mc_arch_params_default(&p);
  mc_model *m = NULL;
  int n = -1;
  assert_int_equal(mc_model_create(&m, "tinyten", &p), MC_OK);
  assert_int_equal(mc_repair_layers(m, NULL, &n), MC_OK);
  assert_int_equal(n, 0);
  assert_int_equal(mc_repair_default(m), MC_REPAIR_RESET);
  mc_model_free(m);
  const char *nobias = "input\nnormalize\nc1: conv out=4 k=3 bias=1\nrelu\nmid: conv out=4 k=3\nrelu\n"
                       "bn1: bn\nlast: conv out=4 k=3\nrelu\ngap\nfc: linear out=classes\n";
  assert_int_equal(mc_model_from_spec(&m, "nobias", nobias, &p), MC_OK);
  assert_int_equal(mc_repair_layers(m, NULL, &n), MC_ESHAPE); /* mid (relu before the BN) */
  assert_non_null(strstr(mc_errmsg(), "'mid'"));
  mc_model_free(m);
  const char *bnfed = "input\nnormalize\nc1: conv out=4 k=3 bias=1\nrelu\nmid: conv out=4 k=3\nbn1: bn\nrelu\n"
                      "gap\nfc: linear out=classes\n";
  assert_int_equal(mc_model_from_spec(&m, "bnfed", bnfed, &p), MC_OK);
  int nodes[4];
  assert_int_equal(mc_repair_layers(m, nodes, &n), MC_OK);
  assert_int_equal(n, 1);
  assert_string_equal(m->nodes[nodes[0]].name, "c1");
  mc_repair_mode mode;
  assert_int_equal(mc_repair_parse("repair", &mode), MC_OK);
  assert_int_equal(mode, MC_REPAIR_REPAIR);
  assert_int_equal(mc_repair_parse("REPAIR", &mode), MC_EARG);
  mc_model_free(m);
}

/* In a model whose every conv/linear but the logits feeds a BN, REPAIR is
 * the BN reset: the same running statistics, theta unchanged. */
static void test_bn_model_is_reset(void **s) {
  (void)s;
  mc_arch_params p;
  mc_arch_params_default(&p);
  p.widths = "32,16";
  p.bn = 1;
  mc_model *m = NULL;
  assert_int_equal(mc_model_create(&m, "mlp", &p), MC_OK);
  float *ta, *tb, *sa, *sb;
  tu_random_params(m, 3, &ta, &sa);
  tu_random_params(m, 4, &tb, &sb);
  mc_exec *e;
  assert_int_equal(mc_exec_create(&e, m, 100, MC_BACKEND_REF), MC_OK);
  mc_repair r;
  const float *refs[2] = {ta, tb}, *states[2] = {sa, sb};
  assert_int_equal(mc_repair_init(&r, e, 2, refs, states, &D.train, 0), MC_OK);
  assert_int_equal(r.n_layers, 0);
  float *th = mc_aligned_alloc(sizeof(float) * m->n_theta), *th0 = mc_aligned_alloc(sizeof(float) * m->n_theta);
  float *s1 = mc_aligned_alloc(sizeof(float) * m->n_state), *s2 = mc_aligned_alloc(sizeof(float) * m->n_state);
  lerp(th, ta, tb, m->n_theta, 0.5);
  memcpy(th0, th, sizeof(float) * m->n_theta);
  mc_repair_set_t(&r, 0.5);
  assert_int_equal(mc_repair_apply(&r, e, th, s1, &D.train), MC_OK);
  assert_int_equal(mc_bn_recompute(e, th0, s2, &D.train, 0), MC_OK);
  assert_memory_equal(th, th0, sizeof(float) * m->n_theta);
  assert_memory_equal(s1, s2, sizeof(float) * m->n_state);
  free(th); free(th0); free(s1); free(s2);
  mc_repair_free(&r);
  mc_exec_free(e);
  free(ta); free(tb); free(sa); free(sb);
  mc_model_free(m);
}

/* ---- the command line ---- */
static char dir[256];
static const char *bin;
#define SMALL "--arch mlp --widths 64,32 --train-subset 2000 --test-subset 500"

static double json_num(const char *file, const char *k1, const char *k2) {
  char p[512];
  snprintf(p, sizeof p, "%s/%s", dir, file);
  json_error_t err;
  json_t *j = json_load_file(p, 0, &err);
  if (!j) fail_msg("%s: %s", p, err.text);
  json_t *v = json_object_get(j, k1);
  if (k2) v = json_object_get(v, k2);
  double r = json_is_string(v) ? (double)strlen(json_string_value(v)) : json_number_value(v);
  json_decref(j);
  return r;
}

static void test_cli(void **s) {
  (void)s;
  bin = tu_env("MC_BIN", "./modeconn");
  snprintf(dir, sizeof dir, "/tmp/mc_repair_XXXXXX");
  assert_non_null(mkdtemp(dir));
  for (int seed = 1; seed <= 2; seed++)
    assert_int_equal(tu_sh("%s train " SMALL " --epochs 1 --seed %d --batch 100 --out %s/m%d.st > /dev/null 2>&1",
                           bin, seed, dir, seed), 0);
  /* defaults: none for a model without BN */
  assert_int_equal(tu_sh("%s interp --a %s/m1.st --b %s/m2.st --points 3 " SMALL " --json %s/def.json > /dev/null 2>&1",
                         bin, dir, dir, dir), 0);
  assert_int_equal(tu_sh("grep -q '\"repair\": \"none\"' %s/def.json", dir), 0);
  /* REPAIR with the midpoint saved: eval of the saved plain model gives the midpoint's numbers */
  assert_int_equal(tu_sh("%s interp --a %s/m1.st --b %s/m2.st --points 3 " SMALL " --repair repair --bn-samples 1000 "
                         "--save-point 0.5 --save-out %s/mid.st --json %s/rep.json > /dev/null 2>&1",
                         bin, dir, dir, dir, dir), 0);
  assert_int_equal(tu_sh("grep -q '\"repair\": \"repair\"' %s/rep.json", dir), 0);
  assert_int_equal(tu_sh("%s eval --model %s/mid.st --test-subset 500 --json %s/mid.json > /dev/null 2>&1", bin, dir,
                         dir), 0);
  const double mid_rep = json_num("rep.json", "metrics", "midpoint_test_loss");
  const double mid_none = json_num("def.json", "metrics", "midpoint_test_loss");
  const double mid_eval = json_num("mid.json", "loss", NULL);
  print_message("cli: midpoint test loss none %.6f, repair %.6f, eval of --save-point %.6f\n", mid_none, mid_rep,
                mid_eval);
  assert_true(fabs(mid_rep - mid_eval) <= 1e-6 * mid_eval);
  assert_true(fabs(mid_rep - mid_none) > 1e-4);
  /* the saved point with --repair none is theta(1/2) itself */
  assert_int_equal(tu_sh("%s interp --a %s/m1.st --b %s/m2.st --points 2 " SMALL " --repair none --save-point 0.5 "
                         "--save-out %s/mid0.st > /dev/null 2>&1", bin, dir, dir, dir), 0);
  assert_int_equal(tu_sh("%s eval --model %s/mid0.st --test-subset 500 --json %s/mid0.json > /dev/null 2>&1", bin,
                         dir, dir), 0);
  assert_true(fabs(json_num("mid0.json", "loss", NULL) - mid_none) <= 1e-6 * mid_none);
  /* curve eval and plane take it too */
  assert_int_equal(tu_sh("%s curve train --a %s/m1.st --b %s/m2.st --align none --kind bezier --epochs 1 " SMALL
                         " --batch 100 --out %s/c.st > /dev/null 2>&1", bin, dir, dir, dir), 0);
  assert_int_equal(tu_sh("%s curve eval --curve %s/c.st --points 3 --train-subset 2000 --test-subset 500 --repair "
                         "repair --bn-samples 500 --save-point 0.25 --save-out %s/c25.st --json %s/ce.json > /dev/null 2>&1",
                         bin, dir, dir, dir), 0);
  assert_int_equal(tu_sh("grep -q '\"repair\": \"repair\"' %s/ce.json && test -s %s/c25.st", dir, dir), 0);
  assert_int_equal(tu_sh("%s plane --models %s/m1.st,%s/m2.st,%s/mid.st --grid 2 " SMALL " --repair repair "
                         "--bn-samples 500 --json %s/pl.json > /dev/null 2>&1", bin, dir, dir, dir, dir), 0);
  assert_int_equal(tu_sh("grep -q '\"repair\": \"repair\"' %s/pl.json", dir), 0);
  /* usage errors exit 2 */
  assert_int_equal(tu_sh("%s interp --a %s/m1.st --b %s/m2.st " SMALL " --repair fix > /dev/null 2>&1", bin, dir, dir), 2);
  assert_int_equal(tu_sh("%s interp --a %s/m1.st --b %s/m2.st " SMALL " --save-point 1.5 --save-out %s/x.st > /dev/null "
                         "2>&1", bin, dir, dir, dir), 2);
  assert_int_equal(tu_sh("%s interp --a %s/m1.st --b %s/m2.st " SMALL " --save-point 0.5 > /dev/null 2>&1", bin, dir,
                         dir), 2);
  assert_int_equal(tu_sh("%s interp --a %s/m1.st --b %s/m2.st " SMALL " --no-bn-recompute --repair repair > /dev/null "
                         "2>&1", bin, dir, dir), 2);
  assert_int_equal(tu_sh("%s interp --help | grep -q -- '--repair' && %s plane --help | grep -q -- '--repair' && "
                         "%s curve eval --help | grep -q -- '--save-point'", bin, bin, bin), 0);
  tu_sh("rm -rf '%s'", dir);
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_stats_mlp),       cmocka_unit_test(test_stats_conv_ref),
      cmocka_unit_test(test_stats_conv_dnnl), cmocka_unit_test(test_endpoints_kept),
      cmocka_unit_test(test_fold_preserves_logits), cmocka_unit_test(test_layer_rules),
      cmocka_unit_test(test_bn_model_is_reset),
      cmocka_unit_test(test_cli),
  };
  return cmocka_run_group_tests(tests, setup, teardown);
}
