/* libFuzzer harness: the curve-file loader (safetensors + curve metadata
 * + the architecture it records + every part's tensors). */
#include "curve/curve.h"
#include "fuzz_util.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);
int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  const char *p = fuzz_file(data, size, ".safetensors");
  mc_curve_file cf;
  if (!mc_curve_load(p, &cf)) {
    float *pt = mc_aligned_alloc(sizeof(float) * (cf.c.n + 1));
    mc_curve_point(&cf.c, 0.37, pt);
    free(pt);
    mc_curve_file_free(&cf);
  }
  return 0;
}
