/* The Winograd F(2x2, 3x3) and F(4x4, 3x3) kernels (src/nn/kernels/) against the reference
 * convolution (src/nn/ops.h) on 8- and 16-channel blocked <-> plain copies of random data
 * (every ISA variant the machine runs: AVX2 on both blockings, AVX-512F on 16-channel blocks),
 * as the input gradient of a convolution against conv2d_backward's (also
 * accumulated into a gradient already there), and the weight gradient
 * against a double-precision correlation (test_weight_grad), and the
 * stem input gradient (mc_kern_dx3, test_stem_data_grad):
 * both paddings, even and odd output sizes (clipped edge tiles), a batch
 * whose tile count is not a multiple of the tile block or of the GEMM's 6
 * rows, K % 16 == 8 (the 8-column GEMM tail), no bias, and 1 and 2
 * threads, each with both tile sizes, with the channel sums a
 * following batch-norm reads and with the fused ReLU (against the reference output's, in double), (F(4x4) also on sizes it does not
 * divide, which the executor never asks of it).  Error: max |wino - ref| /
 * max |ref|; the transforms add a few float roundings per output, so the
 * bound is 1e-5. */
#include "testutil.h"
#include "nn/ops.h"
#include "nn/kernels/kernels.h"
#include "nn/kernels/wino.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* plain (N,C,H,W) <-> blocked (N,C/B,H,W,B) */
static int64_t blocked_at(int64_t i, int64_t ch, int64_t s, int64_t c, int64_t hw, int64_t B) {
  return ((i * (c / B) + ch / B) * hw + s) * B + ch % B;
}

static void to_blocked(float *b, const float *p, int64_t n, int64_t c, int64_t hw, int64_t B) {
  for (int64_t i = 0; i < n; i++)
    for (int64_t ch = 0; ch < c; ch++)
      for (int64_t s = 0; s < hw; s++) b[blocked_at(i, ch, s, c, hw, B)] = p[(i * c + ch) * hw + s];
}

static void from_blocked(float *p, const float *b, int64_t n, int64_t c, int64_t hw, int64_t B) {
  for (int64_t i = 0; i < n; i++)
    for (int64_t ch = 0; ch < c; ch++)
      for (int64_t s = 0; s < hw; s++) p[(i * c + ch) * hw + s] = b[blocked_at(i, ch, s, c, hw, B)];
}

/* The variants this machine can run for a channel block, and their names. */
typedef struct {
  mc_kern_wino_fn fn;
  const char *name;
} variant;

static int variants(int64_t blk, variant *v) {
  int n = 0;
  v[n++] = (variant){mc_kern_wino_forward_avx2, "avx2"};
  if (blk == 16 && mc_cpu()->avx512f) v[n++] = (variant){mc_kern_wino_forward_avx512, "avx512f"};
  return n;
}

static double check(int64_t n, int64_t c, int64_t k, int64_t h, int64_t w, int64_t pad, int bias,
                    int nthr, int64_t m, int64_t blk, const variant *var) {
  wino_shape s = {n, c, k, h, w, pad, h + 2 * pad - 2, w + 2 * pad - 2, m, blk, 0, 0, 0};
  const size_t xs = (size_t)(n * c * h * w), ys = (size_t)(n * k * s.oh * s.ow);
  float *x = malloc(sizeof(float) * xs), *xb = malloc(sizeof(float) * xs);
  float *wt = malloc(sizeof(float) * (size_t)(k * c * 9)), *b = malloc(sizeof(float) * (size_t)k);
  float *yr = malloc(sizeof(float) * ys), *yb = malloc(sizeof(float) * ys);
  float *yw = malloc(sizeof(float) * ys);
  float *u = malloc(sizeof(float) * wino_weight_floats(&s));
  float *scr = calloc((size_t)nthr * (wino_scratch_floats(&s) + 64), sizeof(float));
  float *col = malloc(sizeof(float) * conv2d_col_floats(c, 3, s.oh, s.ow) * 4);
  tu_random_input(x, xs, 1);
  tu_random_input(wt, (size_t)(k * c * 9), 2);
  tu_random_input(b, (size_t)k, 3);
  for (size_t i = 0; i < xs; i++) x[i] -= 0.5f; /* signed inputs, as after a BN */
  conv2d_forward(yr, x, wt, bias ? b : NULL, n, c, h, w, k, 3, 1, (int)pad, s.oh, s.ow, col);
  to_blocked(xb, x, n, c, h * w, blk);
  wino_weights(u, wt, &s);
  memset(yb, 0xff, sizeof(float) * ys); /* NaN: every output must be written */
  float *shift = malloc(sizeof(float) * (size_t)k);
  double *sum = malloc(sizeof(double) * (size_t)k), *sq = malloc(sizeof(double) * (size_t)k);
  tu_random_input(shift, (size_t)k, 4);
  wino_stats stats = {shift, sum, sq};
  var->fn(yb, xb, u, bias ? b : NULL, &s, scr, nthr, &stats);
  from_blocked(yw, yb, n, k, s.oh * s.ow, blk);
  double big = 0, err = 0;
  for (size_t i = 0; i < ys; i++) big = fmax(big, fabs(yr[i]));
  for (size_t i = 0; i < ys; i++) {
    const double d = fabs((double)yw[i] - yr[i]);
    err = isnan(yw[i]) ? INFINITY : fmax(err, d);
  }
  /* channel sums against the reference output's, in double */
  double serr = 0;
  for (int64_t ch = 0; ch < k; ch++) {
    double r1 = 0, r2 = 0, a1 = 0;
    for (int64_t i = 0; i < n; i++)
      for (int64_t q = 0; q < s.oh * s.ow; q++) {
        const double d = (double)yr[(i * k + ch) * s.oh * s.ow + q] - shift[ch];
        r1 += d, r2 += d * d, a1 += fabs(d);
      }
    serr = fmax(serr, fmax(fabs(sum[ch] - r1) / a1, fabs(sq[ch] - r2) / r2));
  }
  /* the fused ReLU (eval-BN folding): max(0, .) of the same outputs, with
   * the threads' scratch parts further apart than the kernel needs */
  s.relu = 1;
  s.tstride = (int64_t)wino_scratch_floats(&s) + 64;
  memset(yb, 0xff, sizeof(float) * ys);
  var->fn(yb, xb, u, bias ? b : NULL, &s, scr, nthr, NULL);
  from_blocked(yw, yb, n, k, s.oh * s.ow, blk);
  double rerr = 0;
  for (size_t i = 0; i < ys; i++) rerr = isnan(yw[i]) ? INFINITY : fmax(rerr, fabs((double)yw[i] - fmax(0., yr[i])));
  printf("  fused ReLU max err %.2e\n", rerr / big);
  err = fmax(fmax(err, rerr) / big, serr) * big;
  free(shift), free(sum), free(sq);
  printf("  sums rel err %.2e\n", serr);
  printf("  %s F(%lldx%lld,3x3) %lld-channel blocks n%lld c%lld k%lld %lldx%lld pad %lld bias %d threads %d: "
         "max err %.2e (of %.2f)\n",
         var->name, (long long)m, (long long)m, (long long)blk, (long long)n, (long long)c, (long long)k, (long long)h,
         (long long)w, (long long)pad, bias, nthr, err / big, big);
  free(x), free(xb), free(wt), free(b), free(yr), free(yb), free(yw), free(u), free(scr), free(col);
  return err / big;
}

/* The input gradient of the forward conv (n, c -> k, h x w, pad) as a
 * Winograd convolution (wino_data_grad_shape, wino_weights_data_grad)
 * against conv2d_backward's dx. */
static double check_data_grad(int64_t n, int64_t c, int64_t k, int64_t h, int64_t w, int64_t pad, int nthr,
                              int64_t blk, const variant *var) {
  const wino_shape f = {n, c, k, h, w, pad, h + 2 * pad - 2, w + 2 * pad - 2, 4, blk, 0, 0, 0};
  const wino_shape s = wino_data_grad_shape(&f);
  assert_int_equal(s.oh, h);
  assert_int_equal(s.ow, w);
  const size_t xs = (size_t)(n * c * h * w), ys = (size_t)(n * k * f.oh * f.ow);
  float *dy = malloc(sizeof(float) * ys), *dyb = malloc(sizeof(float) * ys), *x = calloc(xs, sizeof(float));
  float *wt = malloc(sizeof(float) * (size_t)(k * c * 9)), *dxr = calloc(xs, sizeof(float));
  float *dxb = malloc(sizeof(float) * xs), *dxw = malloc(sizeof(float) * xs);
  float *u = malloc(sizeof(float) * wino_weight_floats(&s));
  float *scr = calloc((size_t)nthr * wino_scratch_floats(&s), sizeof(float));
  float *col = malloc(sizeof(float) * conv2d_col_floats(c, 3, f.oh, f.ow) * 4);
  tu_random_input(dy, ys, 5);
  tu_random_input(wt, (size_t)(k * c * 9), 6);
  for (size_t i = 0; i < ys; i++) dy[i] -= 0.5f;
  conv2d_backward(dxr, NULL, NULL, dy, x, wt, n, c, h, w, k, 3, 1, (int)pad, f.oh, f.ow, col, NULL);
  to_blocked(dyb, dy, n, k, f.oh * f.ow, blk);
  wino_weights_data_grad(u, wt, &s);
  memset(dxb, 0xff, sizeof(float) * xs);
  var->fn(dxb, dyb, u, NULL, &s, scr, nthr, NULL);
  from_blocked(dxw, dxb, n, c, h * w, blk);
  double big = 0, err = 0;
  for (size_t i = 0; i < xs; i++) big = fmax(big, fabs(dxr[i]));
  for (size_t i = 0; i < xs; i++) err = isnan(dxw[i]) ? INFINITY : fmax(err, fabs((double)dxw[i] - dxr[i]));
  /* accumulating (a second consumer's gradient): dx + dx = 2 dx */
  wino_shape sa = s;
  sa.acc = 1;
  var->fn(dxb, dyb, u, NULL, &sa, scr, nthr, NULL);
  from_blocked(dxw, dxb, n, c, h * w, blk);
  for (size_t i = 0; i < xs; i++)
    err = isnan(dxw[i]) ? INFINITY : fmax(err, fabs((double)dxw[i] - 2.0 * dxr[i]) / 2);
  printf("  %s input gradient, F(%lldx%lld,3x3) %lld-channel blocks n%lld c%lld k%lld %lldx%lld pad %lld threads %d: "
         "max err %.2e (of %.2f)\n",
         var->name, (long long)s.m, (long long)s.m, (long long)blk, (long long)n, (long long)c, (long long)k, (long long)h,
         (long long)w, (long long)pad, nthr, err / big, big);
  free(dy), free(dyb), free(x), free(wt), free(dxr), free(dxb), free(dxw), free(u), free(scr), free(col);
  return err / big;
}

static void test_data_grad(void **st) {
  (void)st;
  if (!wino_available()) skip();
  const int64_t cases[][7] = {
      /* n, c, k, h, w, pad, threads */
      {3, 16, 16, 28, 28, 1, 1}, {5, 32, 16, 14, 14, 1, 2}, {4, 16, 64, 7, 7, 1, 2},
      {2, 16, 32, 9, 11, 0, 1},  {3, 32, 32, 8, 8, 2, 2},
  };
  for (int64_t blk = 8; blk <= 16; blk += 8) {
    variant v[2];
    const int nv = variants(blk, v);
    for (int j = 0; j < nv; j++)
      for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        const int64_t *q = cases[i];
        assert_true(check_data_grad(q[0], q[1], q[2], q[3], q[4], q[5], (int)q[6], blk, &v[j]) < 3e-5);
      }
  }
}

/* The stem input gradient (mc_kern_dx3: plain dx of 1-4 channels from a
 * blocked dy) against conv2d_backward's dx, overwritten and then added to
 * itself, on sizes whose rows are not a whole number of its 8-pixel runs. */
static void test_stem_data_grad(void **st) {
  (void)st;
  const mc_kern_dx3_fn f = mc_kern_dx3();
  if (!f) skip();
  const int64_t cases[][6] = {/* n, c, k, h, w, pad */
                              {3, 1, 16, 28, 28, 1}, {2, 3, 16, 13, 11, 0}, {2, 3, 32, 9, 21, 2}, {2, 4, 64, 7, 7, 1}};
  for (int64_t blk = 8; blk <= 16; blk += 8)
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
      const int64_t n = cases[i][0], c = cases[i][1], k = cases[i][2], h = cases[i][3], w = cases[i][4];
      const int64_t pad = cases[i][5], oh = h + 2 * pad - 2, ow = w + 2 * pad - 2;
      const size_t xs = (size_t)(n * c * h * w), ys = (size_t)(n * k * oh * ow);
      float *dy = malloc(sizeof(float) * ys), *dyb = malloc(sizeof(float) * ys), *x = calloc(xs, sizeof(float));
      float *wt = malloc(sizeof(float) * (size_t)(k * c * 9)), *dxr = calloc(xs, sizeof(float));
      float *dx = malloc(sizeof(float) * xs), *col = malloc(sizeof(float) * conv2d_col_floats(c, 3, oh, ow) * 4);
      tu_random_input(dy, ys, 7);
      tu_random_input(wt, (size_t)(k * c * 9), 8);
      for (size_t j = 0; j < ys; j++) dy[j] -= 0.5f;
      conv2d_backward(dxr, NULL, NULL, dy, x, wt, n, c, h, w, k, 3, 1, (int)pad, oh, ow, col, NULL);
      to_blocked(dyb, dy, n, k, oh * ow, blk);
      const mc_dx3_shape s = {c, k, h, w, oh, ow, pad, blk};
      memset(dx, 0xff, sizeof(float) * xs);
      f(dx, dyb, wt, &s, 0, 1, 0);
      f(dx, dyb, wt, &s, 1, n, 0);
      double big = 0, err = 0;
      for (size_t j = 0; j < xs; j++) big = fmax(big, fabs(dxr[j]));
      for (size_t j = 0; j < xs; j++) err = isnan(dx[j]) ? INFINITY : fmax(err, fabs((double)dx[j] - dxr[j]));
      f(dx, dyb, wt, &s, 0, n, 1);
      for (size_t j = 0; j < xs; j++)
        err = isnan(dx[j]) ? INFINITY : fmax(err, fabs((double)dx[j] - 2.0 * dxr[j]) / 2);
      printf("  stem input gradient, %lld-channel blocks n%lld c%lld k%lld %lldx%lld pad %lld: max err %.2e (of %.2f)\n",
             (long long)blk, (long long)n, (long long)c, (long long)k, (long long)h, (long long)w, (long long)pad,
             err / big, big);
      assert_true(err / big < 1e-6);
      free(dy), free(dyb), free(x), free(wt), free(dxr), free(dx), free(col);
    }
}

/* The weight gradient (wino_weight_grad) against a double-precision
 * correlation of dy with x, accumulated into dw and db already holding
 * values: error max |wino - ref| / max |ref| over dw and over db. */
static double check_weight_grad(int64_t n, int64_t c, int64_t k, int64_t h, int64_t w, int64_t pad, int nthr,
                                int64_t m, int64_t blk, int bias, int relu_x) {
  const wino_shape s = {n, c, k, h, w, pad, h + 2 * pad - 2, w + 2 * pad - 2, m, blk, 0, 0, 0};
  const size_t xs = (size_t)(n * c * h * w), ys = (size_t)(n * k * s.oh * s.ow), ws = (size_t)(k * c * 9);
  float *x = malloc(sizeof(float) * xs), *xb = malloc(sizeof(float) * xs);
  float *dy = malloc(sizeof(float) * ys), *dyb = malloc(sizeof(float) * ys);
  float *dw = malloc(sizeof(float) * ws), *db = malloc(sizeof(float) * (size_t)k);
  float *dw0 = malloc(sizeof(float) * ws), *db0 = malloc(sizeof(float) * (size_t)k);
  double *rw = calloc(ws, sizeof(double)), *rb = calloc((size_t)k, sizeof(double));
  float *scr = malloc(sizeof(float) * wino_wgrad_scratch_floats(&s) * (size_t)nthr);
  tu_random_input(x, xs, 7);
  tu_random_input(dy, ys, 8);
  tu_random_input(dw0, ws, 9);
  tu_random_input(db0, (size_t)k, 10);
  for (size_t i = 0; i < xs; i++) x[i] = relu_x ? fmaxf(0.f, x[i] - 0.3f) : x[i] - 0.5f;
  for (size_t i = 0; i < ys; i++) dy[i] = (dy[i] - 0.5f) * 1e-3f;
  for (size_t i = 0; i < ws; i++) dw0[i] = (dw0[i] - 0.5f) * 1e-3f; /* about the gradient's size */
  for (int64_t i = 0; i < k; i++) db0[i] = (db0[i] - 0.5f) * 1e-3f;
  for (int64_t i = 0; i < n; i++)
    for (int64_t o = 0; o < k; o++)
      for (int64_t y = 0; y < s.oh; y++)
        for (int64_t xx = 0; xx < s.ow; xx++) {
          const double g = dy[((i * k + o) * s.oh + y) * s.ow + xx];
          rb[o] += g;
          for (int64_t ch = 0; ch < c; ch++)
            for (int a = 0; a < 3; a++)
              for (int b = 0; b < 3; b++) {
                const int64_t iy = y + a - pad, ix = xx + b - pad;
                if (iy >= 0 && iy < h && ix >= 0 && ix < w)
                  rw[(o * c + ch) * 9 + a * 3 + b] += g * x[((i * c + ch) * h + iy) * w + ix];
              }
        }
  to_blocked(xb, x, n, c, h * w, blk);
  to_blocked(dyb, dy, n, k, s.oh * s.ow, blk);
  memcpy(dw, dw0, sizeof(float) * ws);
  memcpy(db, db0, sizeof(float) * (size_t)k);
  wino_weight_grad(dw, bias ? db : NULL, xb, dyb, &s, scr, nthr);
  double big = 0, err = 0, bbig = 0, berr = 0;
  for (size_t i = 0; i < ws; i++) big = fmax(big, fabs(rw[i]));
  for (size_t i = 0; i < ws; i++) err = isnan(dw[i]) ? INFINITY : fmax(err, fabs((double)dw[i] - dw0[i] - rw[i]));
  for (int64_t i = 0; i < k; i++) bbig = fmax(bbig, fabs(rb[i]));
  for (int64_t i = 0; bias && i < k; i++) berr = fmax(berr, fabs((double)db[i] - db0[i] - rb[i]));
  for (int64_t i = 0; !bias && i < k; i++) berr = fmax(berr, db[i] == db0[i] ? 0 : INFINITY);
  printf("  weight gradient F(%lldx%lld,3x3) %lld-channel blocks n%lld c%lld k%lld %lldx%lld pad %lld threads %d "
         "bias %d x %s: max err %.2e (of %.2e), bias %.2e\n",
         (long long)m, (long long)m, (long long)blk, (long long)n, (long long)c, (long long)k, (long long)h,
         (long long)w, (long long)pad, nthr, bias, relu_x ? ">= 0" : "signed", err / big, big, berr / bbig);
  free(x), free(xb), free(dy), free(dyb), free(dw), free(db), free(dw0), free(db0), free(rw), free(rb), free(scr);
  return fmax(err / big, berr / bbig);
}

/* Both tiles, both blockings (each with the variant the registry picks
 * for it, kernels.c: AVX-512 on 16-channel blocks where the CPU has it;
 * the AVX2 halves on 16-channel blocks run inside whole-model gradients in
 * test_dnnl_kernels_avx2), the edge
 * cases of the forward's shapes, a batch of 128 images at tinyten's
 * sizes (the sums run over 6,272 tiles). */
static void test_weight_grad(void **st) {
  (void)st;
  if (!wino_available()) skip();
  const int64_t cases[][9] = {
      /* n, c, k, h, w, pad, threads, bias, x >= 0 */
      {3, 16, 16, 28, 28, 1, 1, 1, 0}, {5, 32, 32, 14, 14, 1, 2, 0, 1}, {4, 64, 64, 7, 7, 0, 2, 1, 1},
      {7, 8, 24, 9, 6, 1, 1, 1, 0},    {2, 24, 8, 5, 5, 0, 2, 0, 0},    {13, 16, 48, 11, 13, 1, 2, 1, 0},
      {3, 32, 16, 8, 8, 2, 1, 1, 1},   {128, 16, 16, 28, 28, 1, 2, 0, 1}, {128, 32, 32, 14, 14, 1, 2, 1, 1},
  };
  for (int64_t blk = 8; blk <= 16; blk += 8)
    for (int64_t m = 2; m <= 4; m += 2)
      for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        const int64_t *q = cases[i];
        if (q[1] % blk || q[2] % blk || (q[0] > 16 && blk == 8)) continue;
        assert_true(check_weight_grad(q[0], q[1], q[2], q[3], q[4], q[5], (int)q[6], m, blk, (int)q[7], (int)q[8]) <
                    (m == 2 ? 1e-5 : 3e-5));
      }
}

static void test_shapes(void **st) {
  (void)st;
  if (!wino_available()) skip();
  const int64_t cases[][8] = {
      /* n, c, k, h, w, pad, bias, threads */
      {3, 16, 16, 28, 28, 1, 1, 1},  {5, 32, 32, 14, 14, 1, 1, 2}, {4, 64, 64, 7, 7, 0, 1, 2},
      {7, 8, 24, 9, 6, 1, 0, 1},     {2, 24, 8, 5, 5, 0, 1, 2},    {1, 16, 40, 4, 4, 0, 1, 1},
      {13, 16, 16, 11, 13, 1, 1, 2}, {3, 48, 16, 9, 7, 1, 0, 2},
  };
  /* 16-channel blocks (nChw16c, oneDNN's layout on AVX-512): the cases
   * whose channel counts allow them */
  for (int64_t blk = 8; blk <= 16; blk += 8) {
    variant v[2];
    const int nv = variants(blk, v);
    for (int j = 0; j < nv; j++)
      for (int64_t m = 2; m <= 4; m += 2)
        for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
          const int64_t *q = cases[i];
          if (q[1] % blk || q[2] % blk) continue;
          assert_true(check(q[0], q[1], q[2], q[3], q[4], q[5], (int)q[6], (int)q[7], m, blk, &v[j]) <
                      (m == 2 ? 1e-5 : 3e-5));
        }
  }
  assert_int_equal(wino_tile(28, 28, 16), 4);
  assert_int_equal(wino_tile(14, 14, 32), 4);
  assert_int_equal(wino_tile(7, 7, 64), 4);
  assert_int_equal(wino_tile(5, 5, 64), 2);
  assert_int_equal(wino_tile(8, 8, 128), 2);
}

int main(void) {
  const struct CMUnitTest tests[] = {cmocka_unit_test(test_shapes), cmocka_unit_test(test_data_grad),
                                     cmocka_unit_test(test_stem_data_grad),
                                     cmocka_unit_test(test_weight_grad)};
  return cmocka_run_group_tests(tests, NULL, NULL);
}
