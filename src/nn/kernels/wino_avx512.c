/* Winograd kernels, AVX-512F variant (16 lanes) for 16-channel blocks
 * (nChw16c, oneDNN's layout on AVX-512 CPUs): this file is compiled with
 * -mavx512f -mfma (CMakeLists.txt) and only called when the running CPU
 * has AVX-512F (kernels.c).  The algorithm and the code: wino_simd.h. */
#include "nn/kernels/wino.h"
#include "nn/kernels/kernels.h"

#include "modeconn.h"

#if defined(__AVX512F__)
#include <immintrin.h>

typedef __m512 vf;
#define VL 16
#define VLD _mm512_loadu_ps
#define VST _mm512_storeu_ps
#define VSTA _mm512_store_ps
#define VADD _mm512_add_ps
#define VSUB _mm512_sub_ps
#define VMUL _mm512_mul_ps
#define VMAX _mm512_max_ps
#define VSET1 _mm512_set1_ps
#define VZERO _mm512_setzero_ps
#define VBCAST(p) _mm512_set1_ps(*(p))
#define VFMA _mm512_fmadd_ps
#define VFNMA _mm512_fnmadd_ps
/* the two 8-float halves of v, widened to double */
#define VADD_TO_DOUBLE(q, v)                                                                                   \
  do {                                                                                                         \
    double *q_ = (q);                                                                                          \
    const __m512d lo_ = _mm512_cvtps_pd(_mm512_castps512_ps256(v));                                            \
    const __m512d hi_ = _mm512_cvtps_pd(_mm256_castpd_ps(_mm512_extractf64x4_pd(_mm512_castps_pd(v), 1)));    \
    _mm512_storeu_pd(q_, _mm512_add_pd(_mm512_loadu_pd(q_), lo_));                                             \
    _mm512_storeu_pd(q_ + 8, _mm512_add_pd(_mm512_loadu_pd(q_ + 8), hi_));                                     \
  } while (0)
#define WINO_FORWARD mc_kern_wino_forward_avx512
#include "nn/kernels/wino_simd.h"
#define WINO_WGRAD mc_kern_wino_wgrad_avx512
#include "nn/kernels/wino_wgrad_simd.h"

#else /* no AVX-512F: the registry never calls this */

void mc_kern_wino_forward_avx512(float *dst, const float *src, const float *u, const float *bias,
                                 const wino_shape *s, float *scratch, int nthr, const wino_stats *stats) {
  (void)dst, (void)src, (void)u, (void)bias, (void)s, (void)scratch, (void)nthr, (void)stats;
  MC_ASSERT(0);
}

int mc_kern_wino_wgrad_avx512(const float *src, const float *dy, const wino_shape *s, float *scratch, int nthr, int bias) {
  (void)src, (void)dy, (void)s, (void)scratch, (void)nthr, (void)bias;
  MC_ASSERT(0);
  return 0;
}

#endif
