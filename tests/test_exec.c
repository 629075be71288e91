/* The executor interface: optional gradients (a dx-only and a grad-only
 * backward give the same numbers as a full one, on both backends), several
 * output heads (train-only heads skipped in eval passes, the weighted
 * multi-head loss, its gradient against finite differences and oneDNN
 * against the reference), graphs whose first layer reads the input
 * directly, errors instead of aborts, and the hand-written kernels'
 * variants against each other and a double brute force. */
#include "testutil.h"
#include "nn/kernels/kernels.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define N 6

static size_t in_numel(const mc_model *m) { return (size_t)(m->in_c * m->in_h * m->in_w); }

static mc_model *spec_model(const char *spec, int64_t c, int64_t h, int64_t w) {
  mc_arch_params p;
  mc_arch_params_default(&p);
  p.in_c = c, p.in_h = h, p.in_w = w, p.classes = 10;
  mc_model *m = NULL;
  if (mc_model_from_spec(&m, "test", spec, &p)) fail_msg("spec: %s", mc_errmsg());
  return m;
}

/* grad and dx of one backward: want 1 = grad only, 2 = dx only, 3 = both */
static void backward_parts(mc_exec *e, const mc_model *m, const float *theta, float *state, const float *x,
                           const int32_t *y, mc_mode mode, int want, float *grad, float *dx) {
  memset(grad, 0, sizeof(float) * (m->n_theta + 1));
  memset(dx, 0, sizeof(float) * in_numel(m) * N);
  float *st = mc_malloc(sizeof(float) * (m->n_state + 1));
  memcpy(st, state, sizeof(float) * m->n_state);
  mc_exec_set_seed(e, 3);
  assert_int_equal(mc_exec_forward(e, theta, st, x, N, mode), MC_OK);
  assert_int_equal(mc_exec_loss(e, y, 1.f, NULL, NULL), MC_OK);
  assert_int_equal(mc_exec_backward(e, theta, NULL, want & 1 ? grad : NULL, want & 2 ? dx : NULL), MC_OK);
  free(st);
}

static void optional_grads(mc_model *m, mc_backend be, mc_mode mode) {
  float *theta, *state;
  tu_random_params(m, 11, &theta, &state);
  const size_t nx = in_numel(m) * N;
  float *x = mc_malloc(sizeof(float) * nx);
  tu_random_input(x, nx, 12);
  int32_t y[N];
  for (int i = 0; i < N; i++) y[i] = (int32_t)(i * 7 % 10);
  mc_exec *e;
  assert_int_equal(mc_exec_create(&e, m, N, be), MC_OK);
  float *g3 = mc_malloc(sizeof(float) * (m->n_theta + 1)), *d3 = mc_malloc(sizeof(float) * nx);
  float *g1 = mc_malloc(sizeof(float) * (m->n_theta + 1)), *d2 = mc_malloc(sizeof(float) * nx);
  float *scratch = mc_malloc(sizeof(float) * (m->n_theta + 1)), *dscr = mc_malloc(sizeof(float) * nx);
  backward_parts(e, m, theta, state, x, y, mode, 3, g3, d3);
  backward_parts(e, m, theta, state, x, y, mode, 1, g1, dscr);
  backward_parts(e, m, theta, state, x, y, mode, 2, scratch, d2);
  const double eg = tu_max_rel(g1, g3, m->n_theta, 1e-6), ed = tu_max_rel(d2, d3, nx, 1e-6);
  double zg = 0, zd = 0; /* what was not asked for stays untouched */
  for (size_t i = 0; i < m->n_theta; i++) zg = fmax(zg, fabs(scratch[i]));
  for (size_t i = 0; i < nx; i++) zd = fmax(zd, fabs(dscr[i]));
  printf("  %-9s %-4s %-5s grad-only vs full %.1e, dx-only vs full %.1e\n", m->arch, mc_backend_name(be),
         mode == MC_MODE_TRAIN ? "train" : "eval", eg, ed);
  assert_true(eg <= 1e-6 && ed <= 1e-6);
  assert_true(zg == 0 && zd == 0);
  double dxmax = 0;
  for (size_t i = 0; i < nx; i++) dxmax = fmax(dxmax, fabs(d3[i]));
  assert_true(dxmax > 0); /* the input gradient was computed at all */
  mc_exec_free(e);
  free(theta), free(state), free(x), free(g3), free(d3), free(g1), free(d2), free(scratch), free(dscr);
}

static void test_optional_grads(void **s) {
  (void)s;
  const char *archs[] = {"tinyten", "resnet20", "branchnet", "mlp"};
  for (int a = 0; a < 4; a++) {
    mc_model *m = tu_model(archs[a], 1, 28, 28, 10);
    for (int be = 0; be < 2; be++) {
      optional_grads(m, (mc_backend)be, MC_MODE_TRAIN);
      optional_grads(m, (mc_backend)be, MC_MODE_EVAL);
    }
    mc_model_free(m);
  }
}

/* A small net with an auxiliary head on an intermediate map. */
static const char *AUX_SPEC = "input\nnormalize\n"
                              "c1: conv out=8 k=3 p=1 bias=1\nb1: bn\nr1: relu\n"
                              "aux.pool: avgpool k=2\naux.flat: flatten\naux.fc: linear out=classes\n"
                              "output from=aux.fc weight=0.3 train-only\n"
                              "c2: conv out=16 k=3 s=2 p=1 from=r1\nb2: bn\nr2: relu\ngap\nfc: linear out=classes\n";

static double aux_loss(mc_exec *e, const mc_model *m, const float *theta, float *state, const float *x,
                       const int32_t *y) {
  float *st = mc_malloc(sizeof(float) * (m->n_state + 1));
  memcpy(st, state, sizeof(float) * m->n_state);
  double l = 0;
  assert_int_equal(mc_exec_forward(e, theta, st, x, N, MC_MODE_TRAIN), MC_OK);
  assert_int_equal(mc_exec_loss(e, y, 1.f, &l, NULL), MC_OK);
  free(st);
  return l;
}

static void test_heads(void **s) {
  (void)s;
  mc_model *m = spec_model(AUX_SPEC, 1, 12, 12);
  assert_int_equal(m->n_heads, 2);
  assert_true(m->heads[1].train_only && fabsf(m->heads[1].weight - 0.3f) < 1e-7f);
  /* the aux logits are a fixed space: no group opened by aux.fc */
  for (int g = 0; g < m->n_groups; g++) assert_string_not_equal(m->groups[g].name, "aux.fc");
  float *theta, *state;
  tu_random_params(m, 5, &theta, &state);
  const size_t nx = in_numel(m) * N;
  float *x = mc_malloc(sizeof(float) * nx);
  tu_random_input(x, nx, 6);
  int32_t y[N];
  for (int i = 0; i < N; i++) y[i] = (int32_t)(i * 3 % 10);
  float *g[2], *dx[2], *lg[2][2];
  for (int be = 0; be < 2; be++) {
    mc_exec *e;
    assert_int_equal(mc_exec_create(&e, m, N, (mc_backend)be), MC_OK);
    /* eval: the main head only; the aux nodes are not computed */
    assert_int_equal(mc_exec_forward(e, theta, state, x, N, MC_MODE_EVAL), MC_OK);
    assert_non_null(mc_exec_output(e, 0));
    assert_null(mc_exec_output(e, 1));
    float *buf = mc_malloc(sizeof(float) * N * 1000);
    const int aux_fc = m->heads[1].node;
    assert_int_equal(mc_exec_read(e, aux_fc, buf), MC_EARG); /* an error, not a crash */
    free(buf);
    /* train: both heads; loss = CE0 + 0.3 CE1 */
    float *st = mc_malloc(sizeof(float) * (m->n_state + 1));
    memcpy(st, state, sizeof(float) * m->n_state);
    assert_int_equal(mc_exec_forward(e, theta, st, x, N, MC_MODE_TRAIN), MC_OK);
    for (int k = 0; k < 2; k++) {
      assert_non_null(mc_exec_output(e, k));
      lg[be][k] = mc_malloc(sizeof(float) * N * 10);
      memcpy(lg[be][k], mc_exec_output(e, k), sizeof(float) * N * 10);
    }
    double l = 0;
    assert_int_equal(mc_exec_loss(e, y, 1.f, &l, NULL), MC_OK);
    const double want = mc_softmax_xent(lg[be][0], y, N, 10, NULL, 1.f, NULL) +
                        (double)0.3f * mc_softmax_xent(lg[be][1], y, N, 10, NULL, 1.f, NULL);
    assert_true(fabs(l - want) < 1e-6 * fabs(want));
    g[be] = mc_calloc(m->n_theta + 1, sizeof(float));
    dx[be] = mc_calloc(nx, sizeof(float));
    assert_int_equal(mc_exec_backward(e, theta, NULL, g[be], dx[be]), MC_OK);
    /* the aux head's weights got a gradient */
    const mc_tensor *t = &m->tensors[mc_model_find_tensor(m, "aux.fc.weight")];
    double mx = 0;
    for (size_t i = 0; i < t->numel; i++) mx = fmax(mx, fabs(g[be][t->off + i]));
    assert_true(mx > 0);
    if (be == MC_BACKEND_REF) {
      /* finite differences of the weighted loss on both heads' own layers
       * (no ReLU or BN after them: no kinks for a float difference; the
       * shared trunk is covered by the two-backward sum below and by
       * test_gradcheck's per-op checks) */
      const char *names[] = {"aux.fc.weight", "aux.fc.bias", "fc.weight", "fc.bias"};
      double worst = 0;
      for (int q = 0; q < 4; q++) {
        const mc_tensor *u = &m->tensors[mc_model_find_tensor(m, names[q])];
        for (size_t j = 0; j < u->numel; j += u->numel / 5 + 1) {
          float *th = &theta[u->off + j];
          const float keep = *th, h = 2e-3f;
          *th = keep + h;
          const double lp = aux_loss(e, m, theta, state, x, y);
          *th = keep - h;
          const double lm = aux_loss(e, m, theta, state, x, y);
          *th = keep;
          const double fd = (lp - lm) / (2.0 * h), an = g[be][u->off + j];
          const double err = fabs(fd - an) / fmax(fabs(fd) + fabs(an), 1e-2);
          if (err > 2e-2) printf("    %s[%zu]: fd %.6g backward %.6g\n", names[q], j, fd, an);
          worst = fmax(worst, err);
        }
      }
      printf("  two heads: finite differences vs backward, max rel err %.2e\n", worst);
      assert_true(worst < 1e-3);
    }
    { /* seeding: the gradient of both heads is the sum of each head's alone */
      float *gs = mc_calloc(m->n_theta + 1, sizeof(float));
      memcpy(st, state, sizeof(float) * m->n_state);
      assert_int_equal(mc_exec_forward(e, theta, st, x, N, MC_MODE_TRAIN), MC_OK);
      float *d0 = mc_malloc(sizeof(float) * N * 10), *d1 = mc_malloc(sizeof(float) * N * 10);
      mc_softmax_xent(mc_exec_output(e, 0), y, N, 10, d0, 1.f, NULL);
      mc_softmax_xent(mc_exec_output(e, 1), y, N, 10, d1, 0.3f, NULL);
      const float *only0[2] = {d0, NULL}, *only1[2] = {NULL, d1};
      assert_int_equal(mc_exec_backward(e, theta, only0, gs, NULL), MC_OK);
      assert_int_equal(mc_exec_backward(e, theta, only1, gs, NULL), MC_OK);
      const double es = tu_max_rel(gs, g[be], m->n_theta, 1e-3);
      printf("  two heads, %s: one backward vs the sum of two one-head backwards %.1e\n",
             mc_backend_name((mc_backend)be), es);
      assert_true(es < 1e-5);
      free(gs), free(d0), free(d1);
    }
    free(st);
    mc_exec_free(e);
  }
  const double el = fmax(tu_max_rel(lg[1][0], lg[0][0], N * 10, 1e-3), tu_max_rel(lg[1][1], lg[0][1], N * 10, 1e-3));
  const double eg = tu_max_rel(g[1], g[0], m->n_theta, 1e-3), ed = tu_max_rel(dx[1], dx[0], nx, 1e-3);
  printf("  two heads: dnnl vs ref logits %.1e, grad %.1e, dx %.1e\n", el, eg, ed);
  assert_true(el < 1e-5 && eg < 1e-4 && ed < 1e-4);
  for (int be = 0; be < 2; be++) free(g[be]), free(dx[be]), free(lg[be][0]), free(lg[be][1]);
  free(theta), free(state), free(x);
  mc_model_free(m);
}

static void test_bad_output_lines(void **s) {
  (void)s;
  mc_arch_params p;
  mc_arch_params_default(&p);
  mc_model *m = NULL;
  const char *bad[] = {
      "input\nc: conv out=4 k=3\ngap\nfc: linear out=classes\noutput from=c\n",      /* not logits */
      "input\nflatten\nfc: linear out=classes\noutput from=fc\n",                     /* the main head */
      "input\nflatten\nfc: linear out=classes\noutput from=nothere\n",                /* unknown */
      "input\nflatten\na: linear out=classes\noutput from=a weight=-1\nfc: linear out=classes from=flatten@1\n",
  };
  for (int i = 0; i < 4; i++) {
    assert_int_not_equal(mc_model_from_spec(&m, "bad", bad[i], &p), MC_OK);
    printf("  bad output line %d: %s\n", i, mc_errmsg());
    assert_null(m);
  }
}

/* Graphs whose first layer reads the input directly (no normalize). */
static void test_input_direct(void **s) {
  (void)s;
  const char *specs[] = {"input\nbn\ngap\nfc: linear out=classes\n",
                         "input\nc: conv out=8 k=3 p=1 bias=1\nrelu\ngap\nfc: linear out=classes\n",
                         "input\nmaxpool k=2\nflatten\nfc: linear out=classes\n"};
  for (int q = 0; q < 3; q++) {
    mc_model *m = spec_model(specs[q], 3, 8, 8);
    float *theta, *state;
    tu_random_params(m, 9, &theta, &state);
    const size_t nx = in_numel(m) * N;
    float *x = mc_malloc(sizeof(float) * nx);
    tu_random_input(x, nx, 10);
    int32_t y[N] = {1, 2, 3, 4, 5, 6};
    float *g[2], *dx[2];
    for (int be = 0; be < 2; be++) {
      mc_exec *e;
      assert_int_equal(mc_exec_create(&e, m, N, (mc_backend)be), MC_OK);
      g[be] = mc_calloc(m->n_theta + 1, sizeof(float));
      dx[be] = mc_calloc(nx, sizeof(float));
      float *st = mc_malloc(sizeof(float) * (m->n_state + 1));
      memcpy(st, state, sizeof(float) * m->n_state);
      assert_int_equal(mc_exec_forward(e, theta, st, x, N, MC_MODE_TRAIN), MC_OK);
      assert_int_equal(mc_exec_loss(e, y, 1.f, NULL, NULL), MC_OK);
      assert_int_equal(mc_exec_backward(e, theta, NULL, g[be], dx[be]), MC_OK);
      assert_int_equal(mc_exec_backward(e, theta, NULL, g[be], NULL), MC_OK); /* grad only, no dx */
      free(st);
      mc_exec_free(e);
    }
    const double eg = tu_max_rel(g[1], g[0], m->n_theta, 1e-3), ed = tu_max_rel(dx[1], dx[0], nx, 1e-3);
    printf("  input-direct spec %d: dnnl vs ref grad %.1e, dx %.1e\n", q, eg, ed);
    assert_true(eg < 1e-4 && ed < 1e-4);
    for (int be = 0; be < 2; be++) free(g[be]), free(dx[be]);
    free(theta), free(state), free(x);
    mc_model_free(m);
  }
}

static void test_errors(void **s) {
  (void)s;
  mc_model *m = tu_model("mlp", 1, 28, 28, 10);
  mc_exec *e = NULL;
  assert_int_equal(mc_exec_create(&e, m, 0, MC_BACKEND_REF), MC_EARG);
  assert_int_equal(mc_exec_create(&e, m, 4, MC_BACKEND_REF), MC_OK);
  float *theta, *state;
  tu_random_params(m, 1, &theta, &state);
  float x[5 * 784] = {0};
  assert_int_equal(mc_exec_forward(e, theta, state, x, 5, MC_MODE_EVAL), MC_EARG); /* more rows than batch */
  assert_int_equal(mc_exec_backward(e, theta, NULL, theta, NULL), MC_EARG);        /* no forward yet */
  mc_backend be;
  assert_int_equal(mc_backend_parse("gpu", &be), MC_EARG);
  printf("  %s\n", mc_errmsg());
  assert_int_equal(mc_backend_parse("onednn", &be), MC_OK);
  assert_int_equal(be, MC_BACKEND_DNNL);
  mc_exec_free(e);
  free(theta), free(state);
  mc_model_free(m);
}

/* Every BN-sums variant this CPU runs, 8- and 16-channel blocks, against
 * a double brute force. */
static void test_kernel_variants(void **s) {
  (void)s;
  const int64_t Nn = 3, S = 37;
  for (int B = 8; B <= 16; B += 8) {
    const int64_t C = 2 * B, ld = C * S;
    float *x = mc_malloc(sizeof(float) * (size_t)(Nn * ld)), shift[16];
    tu_random_input(x, (size_t)(Nn * ld), 7);
    for (int c = 0; c < 16; c++) shift[c] = 0.3f + 0.01f * (float)c;
    mc_kern_bn_sums_fn fns[2] = {B == 8 ? mc_kern_bn_sums8_scalar : mc_kern_bn_sums16_scalar, NULL};
#if defined(__x86_64__)
    if (mc_cpu()->avx2_fma) fns[1] = B == 8 ? mc_kern_bn_sums8_avx2 : mc_kern_bn_sums16_avx2;
#endif
    for (int v = 0; v < 2; v++) {
      if (!fns[v]) {
        printf("  bn sums %d-block: avx2 variant not runnable here\n", B);
        continue;
      }
      double worst = 0;
      for (int64_t u = 0; u < C / B; u++) {
        double sum[16], sq[16];
        fns[v](sum, sq, x + u * S * B, ld, Nn, S, shift);
        for (int c = 0; c < B; c++) {
          double a = 0, b = 0;
          for (int64_t i = 0; i < Nn; i++)
            for (int64_t p = 0; p < S; p++) {
              const double d = (double)x[i * ld + u * S * B + p * B + c] - (double)shift[c];
              a += d, b += d * d;
            }
          worst = fmax(worst, fmax(fabs(sum[c] - a), fabs(sq[c] - b)) / fmax(fabs(b), 1.0));
        }
      }
      printf("  bn sums %d-block %s: max err vs double %.1e\n", B, v ? "avx2" : "scalar", worst);
      assert_true(worst < 1e-6);
    }
    free(x);
  }
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_optional_grads), cmocka_unit_test(test_heads),
      cmocka_unit_test(test_bad_output_lines), cmocka_unit_test(test_input_direct),
      cmocka_unit_test(test_errors),           cmocka_unit_test(test_kernel_variants),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
