/* Hand-written CPU kernels and their registry.
 *
 * Each kernel has variants per instruction set (and per channel blocking
 * where it reads oneDNN's blocked layouts); the registry (kernels.c) picks,
 * once, the best variant the running CPU supports (cpuid through
 * __builtin_cpu_supports), so one binary runs on any x86-64 -- and builds
 * with scalar variants only elsewhere.  Variant files are compiled with
 * their own target flags (CMakeLists.txt: *_avx2.c get -mavx2 -mfma) and
 * are only ever called after the registry checked the CPU.
 * MC_KERNELS=scalar in the environment forces the scalar variants,
 * MC_KERNELS=avx2 caps them at AVX2 (tests run every variant the machine
 * has). */
#ifndef MC_NN_KERNELS_H
#define MC_NN_KERNELS_H

#include <stdint.h>
#include <stdio.h>

#include "nn/kernels/wino.h"

static inline int64_t kern_pad8(int64_t c) { return (c + 7) / 8 * 8; }

/* CPU features found at start-up. */
typedef struct {
  int avx2_fma, avx512f;
} mc_cpu_features;
/* The features the registry uses: mc_cpu() less what MC_KERNELS turns off. */
const mc_cpu_features *mc_cpu(void);

/* Winograd F(2x2|4x4, 3x3) on 8- or 16-channel blocks (wino.h): needs
 * AVX2+FMA; on 16-channel blocks the AVX-512F variant when the CPU has it. */
int mc_kern_wino_available(void);
typedef void (*mc_kern_wino_fn)(float *dst, const float *src, const float *u, const float *bias,
                                const wino_shape *s, float *scratch, int nthr, const wino_stats *stats);
mc_kern_wino_fn mc_kern_wino_forward(int block);
void mc_kern_wino_forward_avx2(float *dst, const float *src, const float *u, const float *bias,
                               const wino_shape *s, float *scratch, int nthr, const wino_stats *stats);
void mc_kern_wino_forward_avx512(float *dst, const float *src, const float *u, const float *bias,
                                 const wino_shape *s, float *scratch, int nthr, const wino_stats *stats);
/* The weight gradient's per-thread sums (wino_weight_grad); returns the
 * number of threads that ran. */
typedef int (*mc_kern_wgrad_fn)(const float *src, const float *dy, const wino_shape *s, float *scratch, int nthr,
                                int bias);
mc_kern_wgrad_fn mc_kern_wino_wgrad(int block);
int mc_kern_wino_wgrad_avx2(const float *src, const float *dy, const wino_shape *s, float *scratch, int nthr,
                            int bias);
int mc_kern_wino_wgrad_avx512(const float *src, const float *dy, const wino_shape *s, float *scratch, int nthr,
                              int bias);

/* BN batch-statistics sums of one channel block of a blocked tensor
 * ([N][C/B][S][B], images ld floats apart, S pixels): sum[c] and sq[c] of
 * x - shift[c] over N*S values, c < B, in double.  B = 8 or 16. */
typedef void (*mc_kern_bn_sums_fn)(double *sum, double *sq, const float *x, int64_t ld, int64_t N, int64_t S,
                                   const float *shift);
mc_kern_bn_sums_fn mc_kern_bn_sums(int block);

/* One channel block of a blocked tensor (S pixels of B = 8 or 16
 * channels): t = dy * scale[c], or 0 where y (when not NULL) is not > 0 --
 * the input gradient of an eval BN (and the ReLU after it) folded into
 * the convolution before it (src/nn/dnnl/). */
typedef void (*mc_kern_scale_mask_fn)(float *t, const float *dy, const float *y, const float *scale, int64_t S,
                                      int64_t B);
mc_kern_scale_mask_fn mc_kern_scale_mask(void);

/* Alignment moments over one image's gathered 8-unit blocks (corr.c):
 * s1[u] += sum, s2[u] += sum of squares of each unit over `per` samples;
 * sab (count x count) += A B^T. */
typedef void (*mc_kern_block_sums_fn)(const float *g, int64_t bs, int64_t per, int64_t count, double *s1,
                                      double *s2);
typedef void (*mc_kern_block_cross_fn)(const float *ga, int64_t bsa, const float *gb, int64_t bsb, int64_t per,
                                       int64_t count, double *sab);
mc_kern_block_sums_fn mc_kern_block_sums(void);
mc_kern_block_cross_fn mc_kern_block_cross(void);

/* The input gradient of a 3x3 stride-1 convolution with few input
 * channels (a stem: 1-4 channels, plain layout [N][c][h][w]) from its
 * blocked output gradient dy ([N][k/blk][oh][ow][blk], blk = 8 or 16,
 * k % blk == 0) and PyTorch-layout weights w [k][c][3][3]: images
 * [n0, n1) of dx = the transposed convolution (added to dx when acc).
 * oneDNN runs this one as a GEMM on a plain copy of dy; AVX2+FMA only
 * (mc_kern_dx3 is NULL without), c * 9 * k <= MC_DX3_MAX_W. */
typedef struct {
  int64_t c, k, h, w, oh, ow, pad, blk;
} mc_dx3_shape;
#define MC_DX3_MAX_W 6144
typedef void (*mc_kern_dx3_fn)(float *dx, const float *dy, const float *w, const mc_dx3_shape *s, int64_t n0,
                               int64_t n1, int acc);
mc_kern_dx3_fn mc_kern_dx3(void);
void mc_kern_dx3_avx2(float *dx, const float *dy, const float *w, const mc_dx3_shape *s, int64_t n0, int64_t n1,
                      int acc);

/* One line per kernel: the variant in use (for modeconn --version). */
void mc_kernels_info(FILE *f);

/* the variants (kernels_scalar.c, kernels_avx2.c) */
void mc_kern_bn_sums8_scalar(double *, double *, const float *, int64_t, int64_t, int64_t, const float *);
void mc_kern_bn_sums16_scalar(double *, double *, const float *, int64_t, int64_t, int64_t, const float *);
void mc_kern_bn_sums8_avx2(double *, double *, const float *, int64_t, int64_t, int64_t, const float *);
void mc_kern_bn_sums16_avx2(double *, double *, const float *, int64_t, int64_t, int64_t, const float *);
void mc_kern_scale_mask_scalar(float *, const float *, const float *, const float *, int64_t, int64_t);
void mc_kern_scale_mask_avx2(float *, const float *, const float *, const float *, int64_t, int64_t);
void mc_kern_block_sums_scalar(const float *, int64_t, int64_t, int64_t, double *, double *);
void mc_kern_block_sums_avx2(const float *, int64_t, int64_t, int64_t, double *, double *);
void mc_kern_block_cross_scalar(const float *, int64_t, const float *, int64_t, int64_t, int64_t, double *);
void mc_kern_block_cross_avx2(const float *, int64_t, const float *, int64_t, int64_t, int64_t, double *);

#endif
