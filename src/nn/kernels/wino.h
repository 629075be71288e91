/* Winograd F(2x2, 3x3) and F(4x4, 3x3) forward convolution on 8- or
 * 16-channel blocked activations (oneDNN's nChw8c, "aBcd8b":
 * [N][C/8][H][W][8], its layout on AVX2 CPUs; nChw16c, "aBcd16b", on
 * AVX-512 CPUs).
 *
 * oneDNN has Winograd kernels only for AVX-512; on AVX2 it runs 3x3
 * convolutions as direct convolutions, which at 16-64 channels reach about
 * half the FMA peak (on AVX-512 the executor asks for direct convolutions
 * too, and these kernels took 0.8x their time on resnet20, README).  F(2x2, 3x3) (Lavin & Gray, 2016) computes each 2x2
 * output tile from a 4x4 input patch with 16 instead of 36 multiplies per
 * input-output channel pair, F(4x4, 3x3) each 4x4 tile from a 6x6 patch
 * with 36 instead of 144; the rest is additions.  The fast path of the
 * executor uses it for forward passes of 3x3, stride-1 convolutions whose
 * channel counts are multiples of the block (src/nn/dnnl/), and for their
 * input gradients (a convolution too, see wino_data_grad_shape) and
 * their weight gradients (wino_weight_grad).  The kernels need AVX2 + FMA; wino_available() says whether
 * the running CPU has them (chosen at run time, src/nn/kernels/). */
#ifndef MC_NN_WINO_H
#define MC_NN_WINO_H

#include <stddef.h>
#include <stdint.h>

/* Tiles per block, a multiple of the GEMM kernel's 6 rows. */
#define WINO_TB 30

typedef struct {
  int64_t n, c, k;    /* images, input channels, output channels (both % blk == 0) */
  int64_t h, w, pad;  /* input size, zero padding on every side */
  int64_t oh, ow;     /* output size: h + 2 pad - 2, w + 2 pad - 2 */
  int64_t m;          /* output tile: 2 for F(2x2, 3x3), 4 for F(4x4, 3x3) */
  int64_t blk;        /* channel block of src and dst: 8 or 16 */
  int relu;           /* 1: dst = max(0, conv + bias), a ReLU fused into the output */
  int acc;            /* 1: dst += conv (+ bias), accumulating into what dst holds */
  int64_t tstride;    /* floats from one thread's part of the scratch to the next (0: the
                         kernel's own size, wino_scratch_floats or wino_wgrad_scratch_floats) */
} wino_shape;

/* The tile for an output size and c input channels: 4 unless 4x4 tiles
 * would compute more than 35 % of outputs past the border (28x28, 14x14,
 * 7x7: 4; 5x5: 2) or c > 64.  Speed, on one core: F(4x4) takes 0.71x the
 * time of F(2x2) at 16 channels and 28x28, 0.8-0.9x at 32 channels and
 * 14x14, 1.08x at 64 channels and 5x5.  Accuracy: F(4x4)'s error grows
 * with c; its largest error relative to the largest output is about
 * 5e-6 at c = 16-32 and 1e-5 at c = 64 (F(2x2): 5e-7; oneDNN's direct
 * convolution: about 5e-7), and 1.3e-5 at c = 256 in a float32
 * simulation, hence the bound. */
int wino_tile(int64_t oh, int64_t ow, int64_t c);

/* 1 when the running CPU can run a Winograd kernel variant. */
int wino_available(void);

/* Floats of the transformed weights, and of the scratch one thread needs. */
size_t wino_weight_floats(const wino_shape *s);
size_t wino_scratch_floats(const wino_shape *s);
/* Where thread t's part of the scratch starts: t * this floats, own being
 * the kernel's size (s->tstride, when set, is at least that).  A caller
 * that runs several kernels on one scratch gives them all the same
 * stride, so each thread only ever touches its own part: with their own
 * sizes, thread 0's part of the weight gradient's scratch covered thread
 * 1's of the forward, and every step moved those lines between the cores'
 * caches (thread 1's input transforms took up to 40 % longer). */
size_t wino_thread_stride(const wino_shape *s, size_t own);

/* u = G w G^T for every (input, output) channel pair, from PyTorch-layout
 * weights w [k][c][3][3]; u is [(m+2)^2][c][k]. */
void wino_weights(float *u, const float *w, const wino_shape *s);

/* The input gradient of a stride-1 3x3 convolution is itself one: dx =
 * conv(dy, w'), w'[c][k] = w[k][c] rotated by 180 degrees, with padding
 * 2 - pad (pad <= 2).  wino_data_grad_shape gives its shape from the
 * forward's f (images, channels and sizes swapped, its own tile), and
 * wino_weights_data_grad its transformed weights from the forward's
 * PyTorch-layout w [f.k][f.c][3][3]; wino_forward(dx, dy, u, NULL, &s, ...)
 * then computes dx (overwriting it). */
wino_shape wino_data_grad_shape(const wino_shape *f);
void wino_weights_data_grad(float *u, const float *w, const wino_shape *s);

/* Per-output-channel sums of the outputs, for a batch-norm that follows:
 * sum[k] = sum of (y - shift[k]), sq[k] = sum of (y - shift[k])^2 over
 * every output of channel k (shifted by a nearby value, e.g. the running
 * mean, so that var = sq/n - (sum/n)^2 does not cancel).  Each tile's
 * sums are taken in float, then added in double. */
typedef struct {
  const float *shift; /* k values */
  double *sum, *sq;   /* k values each, overwritten */
} wino_stats;

/* dst = conv(src, w) + bias (bias may be NULL; dst + that if s->acc; then
 * max(0, .) if s->relu),
 * src and dst blocked; with
 * a non-NULL stats also its channel sums.  scratch: nthr *
 * wino_scratch_floats(s) floats; runs on nthr OpenMP threads (1: in the
 * caller's thread).  The result depends on nthr only through the order in
 * which the per-thread channel sums are added (in thread order). */
void wino_forward(float *dst, const float *src, const float *u, const float *bias,
                  const wino_shape *s, float *scratch, int nthr, const wino_stats *stats);

/* The weight gradient of the forward convolution of shape s (s->relu,
 * s->acc ignored): dw [k][c][3][3] (PyTorch layout) += the correlation of
 * dy (s->n x k x oh x ow, blocked like the forward's dst) with src (its
 * src), and when db is not NULL db[k] += the sum of dy over every output
 * of channel k.  Per position of the transformed tile, dU = V^T dM is summed
 * over tiles in float, WINO_TB tiles at a time, on nthr OpenMP threads
 * (one sum per thread, added in thread order in double: the result
 * depends on nthr, as oneDNN's does); dw then gets G^T dU G, in double.
 * wino_wgrad_fits: the per-thread sums dU take at most 640 KiB (64 x 64
 * channels with 4x4 tiles, 576 KiB: 1.6x faster than oneDNN's direct
 * weight gradient at 7 x 7, batch 128, one Zen 4 core; larger ones are
 * not measured, so the caller uses a direct convolution for them). */
int wino_wgrad_fits(const wino_shape *s);
size_t wino_wgrad_scratch_floats(const wino_shape *s);
void wino_weight_grad(float *dw, float *db, const float *src, const float *dy, const wino_shape *s, float *scratch,
                      int nthr);
/* For the kernels: one thread's dU (wino_weight_floats(s) floats) and
 * bias sums (k doubles) inside its scratch. */
float *wino_wgrad_du(const wino_shape *s, float *scratch);
double *wino_wgrad_db(const wino_shape *s, float *scratch);

#endif
