/* libFuzzer harness: the report's readers of plane and path JSON
 * (mc_plane_from_json, mc_json_doubles) on arbitrary text. */
#include "io/results.h"

#include <stdint.h>
#include <stdlib.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);
int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  json_error_t err;
  json_t *j = json_loadb((const char *)data, size, 0, &err);
  if (!j) return 0;
  mc_plane_result pr;
  double *ca, *cb;
  int nc;
  if (!mc_plane_from_json(j, "fuzz.json", &pr, &ca, &cb, &nc)) {
    volatile double sum = 0;
    for (int i = 0; i < pr.G; i++) sum += pr.a[i] + pr.b[i];
    for (int i = 0; i < pr.G * pr.G; i++) sum += pr.loss[i] + pr.acc[i];
    for (int i = 0; i < nc; i++) sum += ca[i] + cb[i];
    (void)sum;
    free(pr.a); free(pr.b); free(pr.loss); free(pr.acc);
    free(ca);
    free(cb);
  }
  double *t;
  size_t n;
  if (!mc_json_doubles(j, "fuzz.json", "t", SIZE_MAX, 0, &t, &n)) {
    double *y;
    size_t ny;
    if (!mc_json_doubles(j, "fuzz.json", "test_accuracy", n, 0, &y, &ny)) free(y);
    free(t);
  }
  json_decref(j);
  return 0;
}
