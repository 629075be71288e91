/* The table of executor backends (backend.h).  A new backend is a new
 * directory under src/nn/ with its mc_backend_ops, and one line here. */
#include "nn/backend.h"

extern const mc_backend_ops mc_backend_ref, mc_backend_dnnl;

const mc_backend_ops *const mc_backend_table[] = {
    &mc_backend_ref,  /* MC_BACKEND_REF */
    &mc_backend_dnnl, /* MC_BACKEND_DNNL */
    NULL,
};
