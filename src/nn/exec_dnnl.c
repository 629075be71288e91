/* oneDNN fast path (placeholder until implemented): reports that the
 * backend is unavailable so callers fall back to --backend ref. */
#include "exec_internal.h"

mc_status dnnl_exec_init(mc_exec *e) {
  (void)e;
  return mc_error(MC_EARG, "the oneDNN backend is not built yet; use --backend ref");
}
void dnnl_exec_free(mc_exec *e) { (void)e; }
void dnnl_exec_forward(mc_exec *e, const float *theta, float *state,
                       const float *x, int64_t n, mc_mode mode) {
  (void)e; (void)theta; (void)state; (void)x; (void)n; (void)mode;
  MC_ASSERT(0);
}
void dnnl_exec_backward(mc_exec *e, const float *theta, const float *dlogits,
                        float *grad, float *dx) {
  (void)e; (void)theta; (void)dlogits; (void)grad; (void)dx;
  MC_ASSERT(0);
}
void dnnl_exec_read(mc_exec *e, int node, float *out) {
  (void)e; (void)node; (void)out;
  MC_ASSERT(0);
}
