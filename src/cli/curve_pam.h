/* `modeconn curve train --method pam`: the PAM branch of cmd_curve.c,
 * kept in its own file (cmd_curve_pam.c). */
#ifndef MC_CLI_CURVE_PAM_H
#define MC_CLI_CURVE_PAM_H

#include "align/align.h"
#include "curve/curve.h"

typedef struct {
  int64_t p_epochs, phi_epochs, proj_iters, bvn_terms, samples_rounding, outer, select_samples;
  double p_lr;
  const char *nu; /* "inf" or a positive number */
} cli_pam_opts;

/* Checks the PAM flags (usage errors as MC_EARG with the flag named). */
mc_status cli_pam_check(const cli_pam_opts *po, double *nu);

/* Runs PAM from the B in cf->b (raw or aligned by al; tb/sb: B as loaded)
 * with the curve settings in cfg, and fills cf (B permuted, the bend,
 * perm_json of the composed permutation); perm_out (may be NULL) gets the
 * permutation JSON. */
mc_status cli_curve_pam(const cli_pam_opts *po, double nu, const mc_curve_train_cfg *cfg, mc_curve_file *cf,
                        const mc_alignment *al, const char *align_s, const float *tb, float *sb,
                        const mc_data *d, int64_t samples, mc_backend be, const char *perm_out);

#endif
