/* libFuzzer harness: the architecture-spec parser with shape inference,
 * the theta/state layout and permutation groups (mc_model_from_spec),
 * then, for models of bounded size, initialisation, FLOPs, printing and a
 * permutation of every group (exercises every tensor's axis layouts).
 * The first 4 bytes choose the input shape and class count. */
#include "modeconn.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);
int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  if (size < 4) return 0;
  mc_arch_params p;
  mc_arch_params_default(&p);
  p.in_c = 1 + data[0] % 4;
  p.in_h = 1 + data[1] % 40;
  p.in_w = 1 + data[2] % 40;
  p.classes = 2 + data[3] % 20;
  char *spec = malloc(size - 4 + 1);
  memcpy(spec, data + 4, size - 4);
  spec[size - 4] = 0;
  mc_model *m = NULL;
  if (!mc_model_from_spec(&m, "fuzz.arch", spec, &p)) {
    if (m->n_theta + m->n_state < (1u << 20)) {
      float *t = mc_aligned_alloc(sizeof(float) * (m->n_theta + 1));
      float *s = mc_aligned_alloc(sizeof(float) * (m->n_state + 1));
      float *t2 = mc_aligned_alloc(sizeof(float) * (m->n_theta + 1));
      float *s2 = mc_aligned_alloc(sizeof(float) * (m->n_state + 1));
      mc_model_init(m, t, s, 1);
      (void)mc_model_flops(m);
      static FILE *null;
      if (!null) null = fopen("/dev/null", "w");
      mc_model_print(m, null);
      int **perm = calloc((size_t)m->n_groups + 1, sizeof(int *));
      for (int g = 0; g < m->n_groups; g++) {
        perm[g] = malloc(sizeof(int) * (size_t)m->groups[g].size);
        for (int64_t i = 0; i < m->groups[g].size; i++) perm[g][i] = (int)(m->groups[g].size - 1 - i);
      }
      mc_model_permute(m, perm, t, s, t2, s2);
      for (int g = 0; g < m->n_groups; g++) free(perm[g]);
      free(perm);
      free(t); free(s); free(t2); free(s2);
    }
    mc_model_free(m);
  }
  free(spec);
  return 0;
}
