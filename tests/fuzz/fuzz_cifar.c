/* libFuzzer harness: the CIFAR-10/100 binary reader on arbitrary file
 * contents; the first byte picks CIFAR-100's record layout. */
#include "data/data.h"
#include "fuzz_util.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);
int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  if (size < 1) return 0;
  const char *p = fuzz_file(data + 1, size - 1, ".bin");
  mc_dataset ds = {0};
  if (!mc_cifar_read_file(p, data[0] & 1, &ds)) {
    volatile unsigned sum = 0;
    for (int64_t i = 0; i < ds.n; i++) sum += (unsigned)ds.labels[i] + ds.images[i * 3072 + 3071];
    (void)sum;
    free(ds.images);
    free(ds.labels);
  }
  return 0;
}
