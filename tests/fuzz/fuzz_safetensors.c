/* libFuzzer harness: the safetensors reader on arbitrary bytes, then the
 * checkpoint layer on whatever parses (architecture from the metadata,
 * every tensor checked and, for models of bounded size, copied). */
#include "io/safetensors.h"

#include <stdlib.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);
int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  mc_st_file f;
  if (mc_st_read_mem("fuzz.safetensors", data, size, &f)) return 0;
  mc_model *m = NULL;
  if (!mc_ckpt_model(&f, NULL, NULL, &m)) {
    if (!mc_ckpt_check(&f, m, "", 1, 1) && m->n_theta + m->n_state < (1u << 22)) {
      float *t = calloc(m->n_theta + 1, sizeof(float)), *s = calloc(m->n_state + 1, sizeof(float));
      if (mc_ckpt_get(&f, m, "", t, s, 1)) abort(); /* check passed: the copy must too */
      free(t);
      free(s);
    }
    mc_model_free(m);
  }
  mc_st_free(&f);
  return 0;
}
