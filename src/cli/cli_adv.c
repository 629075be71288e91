/* The PGD flags shared by train, curve train, interp, curve eval, plane,
 * align and attack. */
#include "cli.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

/* "0.1", "8/255" */
static mc_status parse_fraction(const char *flag, const char *s, double *out) {
  char *end;
  double v = strtod(s, &end);
  if (end != s && *end == '/') {
    const char *q = end + 1;
    double d = strtod(q, &end);
    if (end == q || !(d > 0)) end = (char *)q - 1; /* force the error below */
    else v /= d;
  }
  if (end == s || *end || !isfinite(v))
    return mc_error(MC_EARG, "--%s %s: expected a number or a fraction such as 8/255", flag, s);
  *out = v;
  return MC_OK;
}

mc_status cli_yes_no(const char *flag, const char *s, int *out) {
  if (!strcmp(s, "yes")) *out = 1;
  else if (!strcmp(s, "no")) *out = 0;
  else return mc_error(MC_EARG, "--%s %s: expected yes or no", flag, s);
  return MC_OK;
}

mc_status cli_adv_setup(const cli_adv_opts *o, int64_t channels, mc_pgd *p, int *on) {
  mc_pgd_default(p, channels);
  mc_status st;
  if (!strcmp(o->adv, "none")) *on = 0;
  else if (!strcmp(o->adv, "pgd")) *on = 1;
  else return mc_error(MC_EARG, "--adv %s: expected none or pgd", o->adv);
  if (strcmp(o->eps, "auto") && (st = parse_fraction("eps", o->eps, &p->eps))) return st;
  if (strcmp(o->alpha, "auto") && (st = parse_fraction("alpha", o->alpha, &p->alpha))) return st;
  if ((st = cli_yes_no("random-start", o->random_start, &p->random_start))) return st;
  if (o->seed < 0) return mc_error(MC_EARG, "--attack-seed %lld: expected >= 0", (long long)o->seed);
  if (o->steps < 0 || o->steps > 10000)
    return mc_error(MC_EARG, "--steps %lld: expected 0..10000", (long long)o->steps);
  p->steps = (int)o->steps;
  p->seed = (uint64_t)o->seed;
  return mc_pgd_check(p);
}

void cli_adv_describe(const mc_pgd *p, char *buf, size_t n) {
  snprintf(buf, n, "PGD L-inf eps %.6g, alpha %.6g, %d steps, %s start, attack seed %llu", p->eps, p->alpha,
           p->steps, p->random_start ? "random" : "zero", (unsigned long long)p->seed);
}

json_t *cli_adv_json(const mc_pgd *p) {
  return json_pack("{s:s, s:f, s:f, s:i, s:b, s:I}", "attack", "pgd-linf", "eps", p->eps, "alpha", p->alpha, "steps",
                   p->steps, "random_start", p->random_start, "attack_seed", (json_int_t)p->seed);
}

mc_status cli_path_adv(const cli_adv_opts *o, int64_t channels, mc_pgd *p, mc_path_opts *po, json_t *extra) {
  int on = 0, bn_adv = 1;
  mc_status st = cli_adv_setup(o, channels, p, &on);
  if (!st && o->bn_adv) st = cli_yes_no("bn-adv", o->bn_adv, &bn_adv);
  if (st) return st;
  po->adv = on ? p : NULL;
  po->bn_adv = bn_adv;
  if (on) {
    char desc[256];
    cli_adv_describe(p, desc, sizeof desc);
    fprintf(stderr, "robust evaluation: %s; BN recomputed on %s training images\n", desc,
            bn_adv ? "PGD examples of the" : "the clean");
    if (extra) {
      json_t *a = cli_adv_json(p);
      json_object_set_new(a, "bn_adv", json_boolean(bn_adv));
      json_object_set_new(extra, "adversarial", a);
    }
  }
  return MC_OK;
}
