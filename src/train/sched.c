/* Learning-rate schedules (per epoch) and the SGD update. */
#include "train/train.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

static const char *names[] = {"const", "step", "cosine", "paper", "garipov", "robust"};

const char *mc_schedule_name(mc_sched_kind k) { return names[k]; }

mc_status mc_schedule_parse(const char *s, mc_schedule *out) {
  out->step = 30;
  out->gamma = 0.1;
  for (int k = 0; k < (int)(sizeof names / sizeof *names); k++) {
    size_t l = strlen(names[k]);
    if (strncmp(s, names[k], l) || (s[l] && s[l] != ':')) continue;
    out->kind = (mc_sched_kind)k;
    if (s[l] == ':') {
      if (k != MC_SCHED_STEP) return mc_error(MC_EARG, "--schedule %s: only 'step' takes parameters", s);
      char *end;
      long st = strtol(s + l + 1, &end, 10);
      if (st < 1 || (*end && *end != ':')) return mc_error(MC_EARG, "--schedule %s: expected step:EPOCHS[:GAMMA]", s);
      out->step = st;
      if (*end == ':') {
        char *e2;
        out->gamma = strtod(end + 1, &e2);
        if (*e2 || !(out->gamma > 0)) return mc_error(MC_EARG, "--schedule %s: GAMMA must be a positive number", s);
      }
    }
    return MC_OK;
  }
  return mc_error(MC_EARG, "--schedule %s: expected const, step[:EPOCHS[:GAMMA]], cosine, paper, garipov or robust", s);
}

double mc_schedule_lr(const mc_schedule *s, int64_t e) {
  double E = (double)(s->epochs > 0 ? s->epochs : 1);
  switch (s->kind) {
  case MC_SCHED_CONST: return s->lr;
  case MC_SCHED_STEP: return s->lr * pow(s->gamma, (double)(e / s->step));
  case MC_SCHED_COSINE: return s->lr * 0.5 * (1.0 + cos(M_PI * (double)e / E));
  case MC_SCHED_PAPER: return s->lr * pow(0.5, (double)(e / 20)) * pow(0.9996, (double)e);
  case MC_SCHED_GARIPOV:
  case MC_SCHED_ROBUST: {
    double t = (double)e / E;
    double f = t <= 0.5 ? 1.0 : t <= 0.9 ? 1.0 - (t - 0.5) / 0.4 * 0.99 : 0.01;
    return s->lr * f;
  }
  }
  return s->lr;
}

void mc_sgd_step(float *p, float *buf, const float *g, size_t n, double lr,
                 double mom, double wd, int nesterov) {
  const float flr = (float)lr, fm = (float)mom, fwd = (float)wd;
#pragma omp parallel for schedule(static)
  for (size_t i = 0; i < n; i++) {
    float d = g[i] + fwd * p[i];
    float b = fm * buf[i] + d;
    buf[i] = b;
    p[i] -= flr * (nesterov ? d + fm * b : b);
  }
}
