/* libFuzzer harness: the IDX image and label readers (raw or gzip) on
 * arbitrary file contents; the first byte picks the reader. */
#include "data/data.h"
#include "fuzz_util.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);
int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  if (size < 1) return 0;
  const char *p = fuzz_file(data + 1, size - 1, ".idx");
  mc_dataset ds = {0};
  mc_status st = data[0] & 1 ? mc_idx_read_labels(p, &ds, 10) : mc_idx_read_images(p, &ds);
  if (!st) {
    /* touch every byte the reader claims to have */
    volatile unsigned sum = 0;
    if (data[0] & 1) for (int64_t i = 0; i < ds.n; i++) sum += (unsigned)ds.labels[i];
    else for (int64_t i = 0; i < ds.n * ds.h * ds.w; i++) sum += ds.images[i];
    (void)sum;
  }
  free(ds.images);
  free(ds.labels);
  return 0;
}
