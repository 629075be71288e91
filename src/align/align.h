/* Neuron alignment: activation-correlation matching and weight matching
 * over the permutation groups derived from the graph, and applying the
 * result to a model with a functional-equivalence check. */
#ifndef MC_ALIGN_H
#define MC_ALIGN_H

#include "data/data.h"
#include "eval/attack.h"
#include "modeconn.h"

typedef enum { MC_ALIGN_CORR = 0, MC_ALIGN_WEIGHTS } mc_align_method;

typedef struct {
  int n_groups;
  int **perm;          /* perm[g][i] = index in B of the unit that becomes unit i */
  double *corr_before; /* mean matched correlation per group (identity); NaN if not measured */
  double *corr_after;  /* ... after alignment */
  int *n_taps;         /* activation points summed into the group's statistic */
  int iterations;      /* weight matching: coordinate-descent passes */
} mc_alignment;

/* The identity alignment of m (MC_ENOMEM: al is left empty, freeable). */
mc_status mc_alignment_init_identity(mc_alignment *al, const mc_model *m);
void mc_alignment_free(mc_alignment *al);

/* Correlation statistics of A and B (BN eval mode) over the first n
 * examples of ds (no augmentation), summed per group over every
 * post-ReLU point, then one exact LAP per group. */
mc_status mc_align_corr(const mc_model *m, const float *ta, float *sa,
                        const float *tb, float *sb, const mc_dataset *ds,
                        int64_t n, int64_t batch, mc_backend be,
                        mc_alignment *out);

/* Git Re-Basin weight matching: coordinate descent over groups in random
 * order, each step one LAP on the summed similarity of every parameter
 * axis in the group, until a whole pass changes nothing. If ds is non-NULL
 * the correlation diagnostics are filled too. */
mc_status mc_align_weights(const mc_model *m, const float *ta, const float *tb,
                           uint64_t seed, mc_alignment *out);

/* Mean matched correlation before/after for an alignment (fills
 * corr_before/corr_after/n_taps) without changing perm. */
/* The same statistics on PGD examples (attack.h): each model on its own
 * PGD examples of the images, BN in eval mode (the official code's
 * adversarial alignment); pgd = NULL: mc_align_corr. */
mc_status mc_align_corr_pgd(const mc_model *m, const float *ta, float *sa, const float *tb, float *sb,
                            const mc_dataset *ds, int64_t n, int64_t batch, mc_backend be, const mc_pgd *pgd,
                            mc_alignment *out);
mc_status mc_align_diagnostics(const mc_model *m, const float *ta, float *sa,
                               const float *tb, float *sb,
                               const mc_dataset *ds, int64_t n, int64_t batch,
                               mc_backend be, mc_alignment *al);

/* Permutes B (theta and state) and checks on x (n images) that the logits
 * are unchanged (relative 1e-5); on failure names the offending group and
 * leaves tb_out unspecified. */
mc_status mc_align_apply(const mc_model *m, const mc_alignment *al,
                         const float *tb, const float *sb, float *tb_out,
                         float *sb_out, const float *x, int64_t n,
                         mc_backend be);


#include <jansson.h>
/* {"groups": [{"name", "size", "permutation": [...], "mean_corr_before",
 * "mean_corr_after", "taps"}...], "method": ...} */
json_t *mc_alignment_json(const mc_model *m, const mc_alignment *al, const char *method);
/* Compact per-group permutation list, for curve-file metadata: a fresh
 * string in *out, or MC_ENOMEM (*out = NULL). */
mc_status mc_alignment_perm_string(const mc_alignment *al, const mc_model *m, char **out);
mc_status mc_align_method_parse(const char *s, mc_align_method *out, int *none);
/* One-line-per-group summary on f. */
void mc_alignment_print(FILE *f, const mc_model *m, const mc_alignment *al);

/* Runs the chosen method (weights: also the correlation diagnostics when
 * ds is non-NULL), then permutes B into tb_out/sb_out with the check.
 * pgd: corr statistics on PGD inputs (mc_align_corr_pgd; NULL: clean). */
mc_status mc_align_run(const mc_model *m, mc_align_method method, const float *ta, float *sa, const float *tb,
                       float *sb, const mc_dataset *ds, int64_t samples, int64_t batch, uint64_t seed,
                       mc_backend be, const mc_pgd *pgd, mc_alignment *al, float *tb_out, float *sb_out);

#endif
