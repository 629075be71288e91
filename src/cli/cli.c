/* Option parsing and help for the subcommands (see cli.h). */
#include "cli.h"

#include "data/data.h"
#include "io/results.h"
#include "io/safetensors.h"
#include "model/memory.h"

#include <errno.h>
#include <fcntl.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <unistd.h>
#include <math.h>
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

static int set_value(const cli_opt *o, const char *v, const char *cmd) {
  char *end;
  errno = 0;
  switch (o->type) {
  case OPT_STR: *(const char **)o->ptr = v; return 0;
  case OPT_INT: {
    long long x = strtoll(v, &end, 10);
    if (errno || *end || end == v)
      return cli_usage(cmd, "--%s %s: expected an integer", o->name, v);
    *(int64_t *)o->ptr = x;
    return 0;
  }
  case OPT_DOUBLE: {
    double x = strtod(v, &end);
    if (errno || *end || end == v || !isfinite(x))
      return cli_usage(cmd, "--%s %s: expected a number", o->name, v);
    *(double *)o->ptr = x;
    return 0;
  }
  case OPT_FLAG: *(int *)o->ptr = 1; return 0;
  }
  return 0;
}

int cli_parse(const cli_cmd *cmd, cli_opt *opts, int argc, char **argv) {
  for (cli_opt *o = opts; o->name; o++) {
    if (o->type == OPT_FLAG) *(int *)o->ptr = 0;
    else if (o->def) set_value(o, o->def, cmd->name);
    else if (o->type == OPT_STR) *(const char **)o->ptr = NULL;
  }
  for (int i = 1; i < argc; i++) {
    const char *a = argv[i];
    if (!strcmp(a, "-h") || !strcmp(a, "--help")) {
      cli_help(cmd, opts, stdout);
      return EXIT_OK;
    }
    if (strncmp(a, "--", 2))
      return cli_usage(cmd->name, "unexpected argument '%s'", a);
    const char *name = a + 2, *eq = strchr(name, '=');
    size_t len = eq ? (size_t)(eq - name) : strlen(name);
    cli_opt *o = opts;
    for (; o->name; o++)
      if (strlen(o->name) == len && !strncmp(o->name, name, len)) break;
    if (!o->name)
      return cli_usage(cmd->name, "unknown option '--%.*s'", (int)len, name);
    const char *v = NULL;
    if (o->type == OPT_FLAG) {
      if (eq) return cli_usage(cmd->name, "--%s takes no value", o->name);
    } else if (eq) {
      v = eq + 1;
    } else {
      if (i + 1 >= argc) return cli_usage(cmd->name, "--%s needs a value", o->name);
      v = argv[++i];
    }
    int r = set_value(o, v, cmd->name);
    if (r) return r;
  }
  /* the ranges every command shares: a batch sizes buffers (batch x
   * per-sample sizes), counts of images are never negative */
  for (cli_opt *o = opts; o->name; o++) {
    if (o->type != OPT_INT) continue;
    const int64_t x = *(int64_t *)o->ptr;
    const size_t l = strlen(o->name);
    if (!strcmp(o->name, "batch") && (x < 1 || x > CLI_MAX_BATCH))
      return cli_usage(cmd->name, "--batch %lld: expected 1..%lld", (long long)x, (long long)CLI_MAX_BATCH);
    if (((l >= 7 && !strcmp(o->name + l - 7, "samples")) || (l >= 6 && !strcmp(o->name + l - 6, "subset"))) && x < 0)
      return cli_usage(cmd->name, "--%s %lld: expected >= 0", o->name, (long long)x);
  }
  return -1;
}

void cli_help(const cli_cmd *cmd, const cli_opt *opts, FILE *f) {
  fprintf(f, "usage: modeconn %s %s\n\n%s\n\noptions:\n", cmd->name, cmd->usage, cmd->summary);
  for (const cli_opt *o = opts; o->name; o++) {
    char lhs[64];
    const char *meta = o->type == OPT_INT ? " N" : o->type == OPT_DOUBLE ? " X" : o->type == OPT_STR ? " S" : "";
    snprintf(lhs, sizeof lhs, "--%s%s", o->name, meta);
    fprintf(f, "  %-22s %s", lhs, o->help);
    if (o->def) fprintf(f, " (default: %s)", o->def);
    fprintf(f, "\n");
  }
  fprintf(f, "  %-22s %s\n", "-h, --help", "show this help");
}

int cli_fail(mc_status st) {
  fprintf(stderr, "modeconn: error: %s\n", mc_errmsg());
  return st == MC_EARG ? EXIT_USAGE : EXIT_RUNTIME;
}

int cli_usage(const char *cmd, const char *fmt, ...) {
  va_list ap;
  fprintf(stderr, "modeconn %s: ", cmd);
  va_start(ap, fmt);
  vfprintf(stderr, fmt, ap);
  va_end(ap);
  fprintf(stderr, "\n(see 'modeconn %s --help')\n", cmd);
  return EXIT_USAGE;
}

/* --widths: comma-separated positive integers, nothing else */
static mc_status check_widths(const char *w) {
  const char *q = w;
  for (;;) {
    char *end;
    errno = 0;
    long long x = strtoll(q, &end, 10);
    if (end == q || *q == '-' || *q == '+' || *q == ' ' || errno || x < 1 || x > (1 << 24) || (*end && *end != ','))
      return mc_error(MC_EARG, "--widths %s: expected comma-separated integers in 1..16777216, e.g. 512,512", w);
    if (!*end) return MC_OK;
    q = end + 1;
  }
}

mc_status cli_arch_params(const cli_model_opts *o, mc_arch_params *p) {
  mc_arch_params_default(p);
  long long c, h, w;
  char tail;
  if (!o->input || sscanf(o->input, "%lldx%lldx%lld%c", &c, &h, &w, &tail) != 3 || c < 1 || h < 1 || w < 1)
    return mc_error(MC_EARG, "--input %s: expected CxHxW, e.g. 1x28x28 or 3x32x32", o->input ? o->input : "");
  p->in_c = c; p->in_h = h; p->in_w = w;
  if (c > (1 << 24) || h > (1 << 24) || w > (1 << 24))
    return mc_error(MC_EARG, "--input %s: every size must be at most 16777216", o->input);
  if (o->classes < 2 || o->classes > (1 << 24))
    return mc_error(MC_EARG, "--classes %lld: expected 2..16777216", (long long)o->classes);
  p->classes = o->classes;
  if (!(o->width > 0 && o->width <= 1024)) return mc_error(MC_EARG, "--width %g: expected a number in (0, 1024]", o->width);
  mc_status st;
  if (o->widths && (st = check_widths(o->widths))) return st;
  p->width = o->width;
  p->widths = o->widths;
  p->bn = o->bn;
  return MC_OK;
}

static size_t g_max_memory; /* 0: not set yet (auto) */

/* MemAvailable from /proc/meminfo in bytes; SIZE_MAX when unknown. */
static size_t mem_available(void) {
  FILE *f = fopen("/proc/meminfo", "r");
  char line[256];
  unsigned long long kb = 0;
  int found = 0;
  while (f && fgets(line, sizeof line, f))
    if (sscanf(line, "MemAvailable: %llu kB", &kb) == 1) {
      found = 1;
      break;
    }
  if (f) fclose(f);
  return found && kb < SIZE_MAX / 1024 ? (size_t)kb * 1024 : SIZE_MAX;
}

static mc_status parse_bytes(const char *s, size_t *out) {
  if (!strcmp(s, "auto")) {
    *out = mem_available();
    return MC_OK;
  }
  char *end;
  errno = 0;
  unsigned long long v = strtoull(s, &end, 10);
  int shift = 0;
  if (*end && !end[1]) shift = *end == 'K' ? 10 : *end == 'M' ? 20 : *end == 'G' ? 30 : *end == 'T' ? 40 : -1;
  if (end == s || *s == '-' || errno || shift < 0 || (*end && end[1]) || v == 0 || v > (SIZE_MAX >> shift))
    return mc_error(MC_EARG, "--max-memory %s: expected a positive number of bytes with an optional K, M, G or T "
                    "suffix, or auto", s);
  *out = (size_t)v << shift;
  return MC_OK;
}

mc_status cli_runtime(const cli_model_opts *o, mc_backend *be) {
  if (o->threads < 0 || o->threads > 1024)
    return mc_error(MC_EARG, "--threads %lld: expected 0..1024", (long long)o->threads);
  mc_status st;
  if (o->max_memory && (st = parse_bytes(o->max_memory, &g_max_memory))) return st;
  if (o->threads > 0) mc_set_threads((int)o->threads);
  if (o->backend) return mc_backend_parse(o->backend, be);
  return mc_backend_from_env(be);
}

mc_status cli_check_memory(const mc_model *m, int64_t batch, int copies, const char *what) {
  if (!g_max_memory) g_max_memory = mem_available();
  mc_mem_estimate e;
  mc_status st = mc_model_memory(m, batch, &e);
  if (st) return st;
  size_t total = mc_mem_total(&e, copies);
  if (total <= g_max_memory) return MC_OK;
  return mc_error(MC_EARG, "%s: %s would need about %.4g GB (%zu parameters x %d copies, %.4g GB of activations for a "
                  "batch of %lld), more than the %.4g GB allowed (--max-memory; default: the available memory)",
                  m->arch, what, (double)total / 1e9, m->n_theta, copies, (double)e.act / 1e9, (long long)batch,
                  (double)g_max_memory / 1e9);
}

mc_status cli_load_data(const cli_data_opts *o, mc_data *d) {
  if (o->train_subset < 0 || o->test_subset < 0)
    return mc_error(MC_EARG, "--train-subset/--test-subset must be >= 0");
  mc_status st = mc_data_load(d, o->data);
  if (st) return st;
  mc_dataset_truncate(&d->train, o->train_subset);
  mc_dataset_truncate(&d->test, o->test_subset);
  return MC_OK;
}

mc_status cli_load_model(const char *path, const cli_model_opts *mo, mc_model **m,
                         float **theta, float **state) {
  mc_arch_params p;
  mc_status st = cli_arch_params(mo, &p);
  if (st) return st;
  if ((st = mc_ckpt_load(path, mo->arch, &p, m, theta, state))) return st;
  /* every command evaluates in batches of up to 500 */
  if ((st = cli_check_memory(*m, 500, 3, path))) {
    free(*theta);
    free(*state);
    mc_model_free(*m);
    *m = NULL;
    *theta = *state = NULL;
  }
  return st;
}

mc_status cli_load_pair(const char *pa, const char *pb, const cli_model_opts *mo, mc_model **m, float **ta,
                        float **sa, float **tb, float **sb) {
  mc_model *mb = NULL;
  mc_status st = cli_load_model(pa, mo, m, ta, sa);
  if (st) return st;
  if ((st = cli_load_model(pb, mo, &mb, tb, sb))) goto fail;
  const mc_model *a = *m;
  if (strcmp(a->spec, mb->spec) || a->in_c != mb->in_c || a->in_h != mb->in_h || a->in_w != mb->in_w ||
      a->classes != mb->classes) {
    st = mc_error(MC_ESHAPE, "%s is a %s for %lldx%lldx%lld inputs and %lld classes, but %s is a %s for "
                  "%lldx%lldx%lld and %lld: both models must have one architecture",
                  pa, a->arch, (long long)a->in_c, (long long)a->in_h, (long long)a->in_w, (long long)a->classes,
                  pb, mb->arch, (long long)mb->in_c, (long long)mb->in_h, (long long)mb->in_w, (long long)mb->classes);
    goto fail;
  }
  for (int64_t c = 0; c < a->in_c; c++)
    if (a->norm_mean[c] != mb->norm_mean[c] || a->norm_std[c] != mb->norm_std[c]) {
      st = mc_error(MC_ESHAPE, "%s and %s normalise their inputs differently (channel %lld: mean %g vs %g, std %g vs %g);"
                    " train both endpoints on the same data (same --data and --train-subset)",
                    pa, pb, (long long)c, a->norm_mean[c], mb->norm_mean[c], a->norm_std[c], mb->norm_std[c]);
      goto fail;
    }
  mc_model_free(mb);
  return MC_OK;
fail:
  free(*ta); free(*sa);
  if (mb) { free(*tb); free(*sb); }
  *ta = *sa = *tb = *sb = NULL;
  mc_model_free(mb);
  mc_model_free(*m);
  *m = NULL;
  return st;
}

mc_status cli_pair_load(const char *pa, const char *pb, const cli_model_opts *mo, const cli_data_opts *dopt,
                        cli_pair *p) {
  memset(p, 0, sizeof *p);
  mc_status st = cli_load_pair(pa, pb, mo, &p->m, &p->ta, &p->sa, &p->tb, &p->sb);
  if (st) return st;
  if ((st = cli_load_data(dopt, &p->d))) cli_pair_free(p); /* a failed load leaves d zeroed */
  return st;
}

void cli_pair_free(cli_pair *p) {
  free(p->ta); free(p->sa); free(p->tb); free(p->sb);
  mc_model_free(p->m);
  mc_data_free(&p->d);
  memset(p, 0, sizeof *p);
}

mc_status cli_write_json(const char *path, json_t *j) {
  mc_status st = path ? mc_json_write(path, j) : MC_OK;
  json_decref(j);
  if (!st && path) fprintf(stderr, "wrote %s\n", path);
  return st;
}

static void cli_progress(void *arg, const mc_progress_info *p) {
  (void)arg;
  if (isatty(2)) {
    const int w = 30, f = p->total > 0 ? (int)(w * p->done / p->total) : w;
    fprintf(stderr, "\r%s [", p->what);
    for (int i = 0; i < w; i++) fputc(i < f ? '#' : '.', stderr);
    fprintf(stderr, "] %lld/%lld %.0fs ", (long long)p->done, (long long)p->total, p->seconds);
    if (p->done >= p->total) fprintf(stderr, "\r%*s\r", w + 60, "");
    fflush(stderr);
  } else if (!strcmp(p->what, "path") && p->test) {
    fprintf(stderr, "  t = %.4f  test loss %.4f  acc %.2f%%  (%.0fs)\n", p->t, p->test->loss,
            100 * p->test->accuracy, p->seconds);
  }
}

static void cli_msg(void *arg, mc_msg_level level, const char *text) {
  (void)arg;
  FILE *f = level == MC_MSG_INFO ? stdout : stderr;
  fprintf(f, "%s\n", text);
  fflush(f);
}

const mc_sink cli_sink = {cli_msg, cli_progress, NULL};

mc_status cli_claim_out(const char *out) {
  struct stat sb;
  if (stat(out, &sb) == 0 && !S_ISREG(sb.st_mode))
    return mc_error(MC_EARG, "--out %s: exists and is not a regular file", out);
  size_t l = strlen(out);
  char *lp = mc_malloc_try(l + 8);
  if (!lp) return mc_oom(l + 8, "the name of --out %s's lock file", out);
  snprintf(lp, l + 8, "%s.lock", out);
  /* the descriptor stays open (and locked) until the process exits */
  int fd = open(lp, O_RDWR | O_CREAT | O_CLOEXEC, 0666);
  mc_status st = MC_OK;
  if (fd < 0)
    st = mc_error(MC_EIO, "--out %s: cannot create files there (%s: %s)", out, lp, strerror(errno));
  else if (flock(fd, LOCK_EX | LOCK_NB) != 0)
    st = mc_error(MC_EIO, "--out %s: another process is writing it (%s is locked)", out, lp);
  else if (access(out, F_OK) == 0 && access(out, W_OK) != 0)
    st = mc_error(MC_EIO, "--out %s: %s", out, strerror(errno));
  if (st && fd >= 0) close(fd);
  free(lp);
  if (st) return st;
  char *tp = mc_malloc_try(l + 8);
  if (!tp) return mc_oom(l + 8, "the name of --out %s's resume state", out);
  snprintf(tp, l + 8, "%s.train", out);
  mc_remove_stale_tmp(out);
  mc_remove_stale_tmp(tp);
  free(tp);
  return MC_OK;
}

mc_status cli_sgd_check(const cli_sgd_opts *o, int preset) {
  const int64_t e0 = preset ? 0 : 1;
  if (o->epochs < e0 || o->epochs > 1000000)
    return mc_error(MC_EARG, "--epochs %lld: expected %lld..1000000%s", (long long)o->epochs, (long long)e0,
                    preset ? " (0 = the preset's)" : "");
  if (o->batch < 2 || o->batch > CLI_MAX_BATCH)
    return mc_error(MC_EARG, "--batch %lld: expected 2..%lld", (long long)o->batch, (long long)CLI_MAX_BATCH);
  if (!(o->lr > 0 || (preset && o->lr == 0)))
    return mc_error(MC_EARG, "--lr %g: expected a number > 0%s", o->lr, preset ? " (0 = the preset's)" : "");
  if (!(o->momentum >= 0 && o->momentum < 1))
    return mc_error(MC_EARG, "--momentum %g: expected a number in [0, 1)", o->momentum);
  if (!(o->wd >= 0 && o->wd <= 1)) return mc_error(MC_EARG, "--wd %g: expected a number in [0, 1]", o->wd);
  if (o->crop < -1 || o->crop > 1024)
    return mc_error(MC_EARG, "--crop %lld: expected -1 (dataset default) or 0..1024", (long long)o->crop);
  if (o->eval_every < 0 || o->eval_every > 1000000)
    return mc_error(MC_EARG, "--eval-every %lld: expected 0..1000000", (long long)o->eval_every);
  if (o->seed < 0) return mc_error(MC_EARG, "--seed %lld: expected >= 0", (long long)o->seed);
  if (strcmp(o->flip, "on") && strcmp(o->flip, "off") && strcmp(o->flip, "auto"))
    return mc_error(MC_EARG, "--flip %s: expected on, off or auto", o->flip);
  return MC_OK;
}

mc_status cli_write_with_labels(const char *path, const char *name, const float *data, int ndim, const int64_t *shape,
                                const mc_dataset *ds, const char *const *mk, const char *const *mv, int nmeta) {
  const int64_t n = shape[0];
  size_t count = 1;
  for (int d = 0; d < ndim; d++) count *= (size_t)shape[d];
  int64_t *labels = mc_malloc_try(sizeof(int64_t) * (size_t)(n + 1));
  if (!labels) return mc_oom(sizeof(int64_t) * (size_t)(n + 1), "the %lld labels of %s", (long long)n, path);
  for (int64_t i = 0; i < n; i++) labels[i] = ds->labels[i];
  mc_st_tensor t[2] = {{.name = (char *)name, .dtype = MC_DT_F32, .dtype_name = "F32", .ndim = ndim,
                        .nbytes = sizeof(float) * count, .data = (void *)data},
                       {.name = "labels", .dtype = MC_DT_I64, .dtype_name = "I64", .ndim = 1, .shape = {n},
                        .nbytes = sizeof(int64_t) * (size_t)n, .data = labels}};
  for (int d = 0; d < ndim; d++) t[0].shape[d] = shape[d];
  mc_status st = mc_st_write(path, t, 2, mk, mv, nmeta);
  free(labels);
  return st;
}
