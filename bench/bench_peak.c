/* Measures this machine's FP32 FMA peak (GFLOP/s) with independent AVX2
 * FMA chains on every thread, so benchmark figures can be stated as a
 * fraction of a measured peak rather than a datasheet number.
 *   cc -O3 -mavx2 -mfma -fopenmp bench/bench_peak.c -o bench_peak */
#include <immintrin.h>
#include <omp.h>
#include <stdio.h>

int main(void) {
  const long iters = 200000000L / 8;
  double best = 0;
  for (int rep = 0; rep < 3; rep++) {
    double t0 = omp_get_wtime();
    float sink = 0;
#pragma omp parallel reduction(+ : sink)
    {
      __m256 a[10], b = _mm256_set1_ps(0.999999f), c = _mm256_set1_ps(1e-7f);
      for (int i = 0; i < 10; i++) a[i] = _mm256_set1_ps((float)i);
      for (long k = 0; k < iters; k++)
#pragma GCC unroll 10
        for (int i = 0; i < 10; i++) a[i] = _mm256_fmadd_ps(a[i], b, c);
      for (int i = 0; i < 10; i++) {
        float v[8];
        _mm256_storeu_ps(v, a[i]);
        sink += v[0];
      }
    }
    double secs = omp_get_wtime() - t0;
    double gf = (double)omp_get_max_threads() * (double)iters * 10 * 8 * 2 / secs / 1e9;
    if (gf > best) best = gf;
    if (sink == 12345.f) printf(" ");
  }
  printf("FP32 FMA peak: %.1f GFLOP/s on %d threads (best of 3)\n", best, omp_get_max_threads());
  return 0;
}
