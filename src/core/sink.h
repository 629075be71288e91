/* Where library code sends what it has to say: library code prints
 * nothing.  Every layer that talks while it works (training, curve
 * training, PAM, path and plane evaluation, resume) takes a `const mc_sink *`
 * in its configuration; NULL (or a NULL member) is silence.  The CLI
 * supplies one (cli_sink, src/cli/cli.c) that prints report lines on
 * stdout, notices on stderr and a progress bar on stderr when it is a
 * terminal. */
#ifndef MC_SINK_H
#define MC_SINK_H

#include <stdint.h>

typedef enum {
  MC_MSG_INFO = 0, /* the run's report lines (an epoch's figures, PAM's diagnostics) */
  MC_MSG_NOTE      /* notices about the run (resuming, a recovered checkpoint) */
} mc_msg_level;

struct mc_metrics; /* eval/eval.h */

/* Progress of a loop: called after a step with done of total and the
 * seconds since the loop started.  what names the loop: "train", "curve",
 * "pam P-step" (minibatches of an epoch; t, a, b NAN, test NULL), "path"
 * (t and the point's test metrics) or "plane" (a, b and test). */
typedef struct {
  const char *what;
  int64_t done, total;
  double t, a, b;
  const struct mc_metrics *test;
  double seconds;
} mc_progress_info;
typedef void (*mc_progress_fn)(void *arg, const mc_progress_info *p);

typedef struct {
  /* one line of text, without its newline */
  void (*msg)(void *arg, mc_msg_level level, const char *text);
  mc_progress_fn progress;
  void *arg; /* handed to both */
} mc_sink;

/* Formats one line and hands it to s->msg (nothing when s or s->msg is NULL). */
void mc_msg(const mc_sink *s, mc_msg_level level, const char *fmt, ...) __attribute__((format(printf, 3, 4)));
static inline void mc_sink_progress(const mc_sink *s, const mc_progress_info *p) {
  if (s && s->progress) s->progress(s->arg, p);
}

#endif
