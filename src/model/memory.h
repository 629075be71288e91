/* Memory a model needs, estimated from its graph alone before anything is
 * allocated, so that a checkpoint's metadata, a spec or a flag cannot make
 * a command grow until the machine runs out (the CLI refuses, with the
 * number, what exceeds its limit). */
#ifndef MC_MODEL_MEMORY_H
#define MC_MODEL_MEMORY_H

#include "modeconn.h"

typedef struct {
  size_t theta;  /* bytes of one parameter vector */
  size_t state;  /* bytes of the BN running statistics */
  size_t act;    /* bytes of every node's output and its gradient for the batch */
} mc_mem_estimate;

/* Pure and overflow-checked: MC_EARG when batch < 1 or a product does not
 * fit in size_t. */
mc_status mc_model_memory(const mc_model *m, int64_t batch, mc_mem_estimate *out);

/* total = copies * theta + 2 * state + act, overflow-checked (SIZE_MAX
 * when it does not fit). */
size_t mc_mem_total(const mc_mem_estimate *e, int copies);

#endif
