/* Reference (plain NCHW) ops: forward and backward side by side, one file
 * per op.  They are the oracle the oneDNN fast path is tested against, and
 * the fallback path.  Conventions: outputs first, then inputs, then sizes;
 * backward passes ACCUMULATE into dx and into parameter gradients. */
#ifndef MC_NN_OPS_H
#define MC_NN_OPS_H

#include "modeconn.h"

/* conv2d: x (N,C,H,W), w (O,C,k,k), b (O) or NULL, y (N,O,OH,OW).
 * col: scratch of conv2d_col_floats() per thread. */
size_t conv2d_col_floats(int64_t C, int k, int64_t OH, int64_t OW);
void conv2d_forward(float *y, const float *x, const float *w, const float *b,
                    int64_t N, int64_t C, int64_t H, int64_t W, int64_t O,
                    int k, int s, int p, int64_t OH, int64_t OW, float *col);
/* dx may be NULL (no input gradient needed), dw and db too (no weight
 * gradient).  dwscratch: per-thread
 * (O*C*k*k) accumulators, nthreads of them. */
void conv2d_backward(float *dx, float *dw, float *db, const float *dy,
                     const float *x, const float *w, int64_t N, int64_t C,
                     int64_t H, int64_t W, int64_t O, int k, int s, int p,
                     int64_t OH, int64_t OW, float *col, float *dwscratch);

/* linear: x (N,I), w (O,I), b (O) or NULL, y (N,O). */
void linear_forward(float *y, const float *x, const float *w, const float *b,
                    int64_t N, int64_t In, int64_t O);
void linear_backward(float *dx, float *dw, float *db, const float *dy,
                     const float *x, const float *w, int64_t N, int64_t In,
                     int64_t O);

/* batchnorm over (N,C,S) with S = H*W (S = 1 for 1-d BN).
 * train: batch statistics; saves mean and invstd (C each) for backward and
 * updates rmean/rvar with momentum `mom` (unbiased variance, PyTorch). */
void batchnorm_forward_train(float *y, float *mean, float *invstd,
                             float *rmean, float *rvar, const float *x,
                             const float *gamma, const float *beta, int64_t N,
                             int64_t C, int64_t S, float eps, float mom);
void batchnorm_forward_eval(float *y, const float *x, const float *gamma,
                            const float *beta, const float *rmean,
                            const float *rvar, int64_t N, int64_t C, int64_t S,
                            float eps);
/* train = 1: gradient through the batch statistics; 0: through fixed stats
 * (mean/invstd then hold the running statistics' values). */
void batchnorm_backward(float *dx, float *dgamma, float *dbeta, const float *dy,
                        const float *x, const float *mean, const float *invstd,
                        const float *gamma, int64_t N, int64_t C, int64_t S,
                        int train);

void relu_forward(float *y, const float *x, int64_t n);
void relu_backward(float *dx, const float *dy, const float *y, int64_t n);

/* pooling over (N*C) planes of HxW to OHxOW. argmax (int32, per output)
 * records the winning input index within its plane. */
void maxpool_forward(float *y, int32_t *argmax, const float *x, int64_t NC,
                     int64_t H, int64_t W, int k, int s, int p, int64_t OH,
                     int64_t OW);
void maxpool_backward(float *dx, const float *dy, const int32_t *argmax,
                      int64_t NC, int64_t H, int64_t W, int64_t OH, int64_t OW);
/* count_include_pad = true, as PyTorch's default */
void avgpool_forward(float *y, const float *x, int64_t NC, int64_t H, int64_t W,
                     int k, int s, int p, int64_t OH, int64_t OW);
void avgpool_backward(float *dx, const float *dy, int64_t NC, int64_t H,
                      int64_t W, int k, int s, int p, int64_t OH, int64_t OW);
void gap_forward(float *y, const float *x, int64_t NC, int64_t S);
void gap_backward(float *dx, const float *dy, int64_t NC, int64_t S);

/* normalize: y = (x - mean[c]) / std[c] over (N,C,S) */
void normalize_forward(float *y, const float *x, const float *mean,
                       const float *std, int64_t N, int64_t C, int64_t S);
void normalize_backward(float *dx, const float *dy, const float *std,
                        int64_t N, int64_t C, int64_t S);

/* dropout: mask holds 0 or 1/(1-p) */
void dropout_forward(float *y, float *mask, const float *x, int64_t n, float p,
                     mc_rng *rng);
void dropout_backward(float *dx, const float *dy, const float *mask, int64_t n);

/* concat along channels: inputs i of (N, C_i, S) into (N, sum C_i, S) */
void concat_forward(float *y, const float *const *xs, const int64_t *cs,
                    int nin, int64_t N, int64_t S);
void concat_backward(float *const *dxs, const float *dy, const int64_t *cs,
                     int nin, int64_t N, int64_t S);

/* y = sum of inputs; backward dx_j += dy */
void add_forward(float *y, const float *const *xs, int nin, int64_t n);
/* y = relu(sum of xs) when relu, else the sum (add_forward), in one pass;
 * y may be one of the inputs (each element is read before it is written). */
void add_relu_forward(float *y, const float *const *xs, int nin, int64_t n, int relu);
void vec_accumulate(float *dx, const float *dy, int64_t n);

#endif
