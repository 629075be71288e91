/* Memory estimate of a model for a batch size (see memory.h). */
#include "model/memory.h"

#include "core/checked.h"

mc_status mc_model_memory(const mc_model *m, int64_t batch, mc_mem_estimate *out) {
  if (batch < 1) return mc_error(MC_EARG, "batch size %lld: expected >= 1", (long long)batch);
  size_t per = (size_t)(m->in_c * m->in_h * m->in_w); /* bounded by mc_model_from_spec */
  for (int i = 0; i < m->n_nodes; i++) {
    const mc_node *nd = &m->nodes[i];
    /* each node's C*H*W <= MC_MAX_NUMEL (checked when the graph was built) */
    if (!mc_size_add_ok(&per, per, (size_t)(nd->C * nd->H * nd->W))) per = SIZE_MAX;
  }
  size_t act;
  if (per == SIZE_MAX || !mc_size_mul_ok(&act, per, (size_t)batch) || !mc_size_mul_ok(&act, act, 2 * sizeof(float)))
    return mc_error(MC_EARG, "%s: the activations of a batch of %lld do not fit in memory", m->arch, (long long)batch);
  out->theta = m->n_theta * sizeof(float); /* n_theta <= MC_MAX_NUMEL */
  out->state = m->n_state * sizeof(float);
  out->act = act;
  return MC_OK;
}

size_t mc_mem_total(const mc_mem_estimate *e, int copies) {
  size_t t, s;
  if (!mc_size_mul_ok(&t, e->theta, (size_t)copies) || !mc_size_mul_ok(&s, e->state, 2) ||
      !mc_size_add_ok(&t, t, s) || !mc_size_add_ok(&t, t, e->act))
    return SIZE_MAX;
  return t;
}
