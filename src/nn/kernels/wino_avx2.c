/* Winograd kernels, AVX2 + FMA variant (8 lanes) for 8- and 16-channel
 * blocks: this file is compiled with -mavx2 -mfma (CMakeLists.txt) and
 * only called when the running CPU has both (kernels.c).  The algorithm
 * and the code: wino_simd.h. */
#include "nn/kernels/wino.h"
#include "nn/kernels/kernels.h"

#include "modeconn.h"

#if defined(__AVX2__) && defined(__FMA__)
#include <immintrin.h>

typedef __m256 vf;
#define VL 8
#define VLD _mm256_loadu_ps
#define VST _mm256_storeu_ps
#define VSTA _mm256_store_ps
#define VADD _mm256_add_ps
#define VSUB _mm256_sub_ps
#define VMUL _mm256_mul_ps
#define VMAX _mm256_max_ps
#define VSET1 _mm256_set1_ps
#define VZERO _mm256_setzero_ps
#define VBCAST _mm256_broadcast_ss
#define VFMA _mm256_fmadd_ps
#define VFNMA _mm256_fnmadd_ps
#define VADD_TO_DOUBLE(q, v)                                                                                     \
  do {                                                                                                           \
    double *q_ = (q);                                                                                            \
    _mm256_storeu_pd(q_, _mm256_add_pd(_mm256_loadu_pd(q_), _mm256_cvtps_pd(_mm256_castps256_ps128(v))));       \
    _mm256_storeu_pd(q_ + 4, _mm256_add_pd(_mm256_loadu_pd(q_ + 4), _mm256_cvtps_pd(_mm256_extractf128_ps(v, 1)))); \
  } while (0)
#define WINO_FORWARD mc_kern_wino_forward_avx2
#include "nn/kernels/wino_simd.h"
#define WINO_WGRAD mc_kern_wino_wgrad_avx2
#include "nn/kernels/wino_wgrad_simd.h"

#else /* no AVX2 + FMA: the registry never calls this */

void mc_kern_wino_forward_avx2(float *dst, const float *src, const float *u, const float *bias,
                               const wino_shape *s, float *scratch, int nthr, const wino_stats *stats) {
  (void)dst, (void)src, (void)u, (void)bias, (void)s, (void)scratch, (void)nthr, (void)stats;
  MC_ASSERT(0);
}

int mc_kern_wino_wgrad_avx2(const float *src, const float *dy, const wino_shape *s, float *scratch, int nthr, int bias) {
  (void)src, (void)dy, (void)s, (void)scratch, (void)nthr, (void)bias;
  MC_ASSERT(0);
  return 0;
}

#endif
