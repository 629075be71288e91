/* The reference backend's state (ref_exec.c): plain NCHW buffers for every
 * node, the saved statistics and masks of the last forward.  Tests read it
 * (ref_of) to compare the fast path op by op at the same forward point. */
#ifndef MC_NN_REF_H
#define MC_NN_REF_H

#include "nn/backend.h"

typedef struct {
  float **act, **dact;
  float **bn_mean, **bn_invstd; /* saved statistics, C floats per BN node */
  int32_t **argmax;             /* maxpool */
  float **mask;                 /* dropout */
  float *col, *dwscratch;       /* conv scratch, per thread */
  size_t col_floats, dw_floats;
  int scratch_threads;          /* threads the conv scratch is sized for */
  float *scratch;               /* unwanted concat input gradients */
  size_t scratch_floats;
} ref_state;

/* The reference state of an executor made with MC_BACKEND_REF. */
static inline ref_state *ref_of(mc_exec *e) {
  MC_ASSERT(e->be == MC_BACKEND_REF);
  return (ref_state *)e->impl;
}

extern const mc_backend_ops mc_backend_ref;

#endif
