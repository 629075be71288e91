/* MCTR tensor files (see mctr.h). */
#include "mctr.h"

#include "testutil.h"

#include <errno.h>
#include <stdio.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

static const size_t dt_size[] = {4, 8, 4, 8, 1};

void w_open(writer *w, const char *path) {
  w->f = fopen(path, "wb");
  if (!w->f) fail_msg("%s: %s", path, strerror(errno));
  w->count = 0;
  uint32_t hdr[2] = {1, 0};
  fwrite("MCTR", 1, 4, w->f);
  fwrite(hdr, 4, 2, w->f);
}

void w_put(writer *w, const char *name, int dtype, int ndim, const int64_t *dims,
             const void *data) {
  uint32_t nl = (uint32_t)strlen(name), dt = (uint32_t)dtype, nd = (uint32_t)ndim;
  size_t n = 1;
  for (int i = 0; i < ndim; i++) n *= (size_t)dims[i];
  fwrite(&nl, 4, 1, w->f);
  fwrite(name, 1, nl, w->f);
  fwrite(&dt, 4, 1, w->f);
  fwrite(&nd, 4, 1, w->f);
  fwrite(dims, 8, (size_t)ndim, w->f);
  fwrite(data, dt_size[dtype], n, w->f);
  w->count++;
}

void w_close(writer *w) {
  fseek(w->f, 8, SEEK_SET);
  fwrite(&w->count, 4, 1, w->f);
  if (fclose(w->f) != 0) fail_msg("write failed: %s", strerror(errno));
}

int r_load(recset *rs, const char *path) {
  memset(rs, 0, sizeof *rs);
  FILE *f = fopen(path, "rb");
  if (!f) return -1;
  char magic[4];
  uint32_t hdr[2];
  if (fread(magic, 1, 4, f) != 4 || memcmp(magic, "MCTR", 4) || fread(hdr, 4, 2, f) != 2 ||
      hdr[0] != 1) {
    fclose(f);
    return -1;
  }
  rs->r = mc_calloc(hdr[1] + 1, sizeof(rec));
  for (uint32_t k = 0; k < hdr[1]; k++) {
    rec *r = &rs->r[rs->n];
    uint32_t nl, dt, nd;
    if (fread(&nl, 4, 1, f) != 1 || nl > 4096) goto bad;
    r->name = mc_calloc(nl + 1, 1);
    if (fread(r->name, 1, nl, f) != nl || fread(&dt, 4, 1, f) != 1 || fread(&nd, 4, 1, f) != 1 ||
        dt > DT_U8 || nd > 8)
      goto bad;
    rs->n++;
    r->dtype = (int)dt;
    r->ndim = (int)nd;
    if (fread(r->dims, 8, nd, f) != nd) goto bad;
    r->n = 1;
    for (uint32_t i = 0; i < nd; i++) r->n *= (size_t)r->dims[i];
    char *buf = mc_malloc(r->n * dt_size[dt] + 1);
    if (fread(buf, dt_size[dt], r->n, f) != r->n) {
      free(buf);
      goto bad;
    }
    r->v = mc_malloc(sizeof(double) * (r->n + 1));
    for (size_t i = 0; i < r->n; i++) {
      switch (dt) {
      case DT_F32: { float x; memcpy(&x, buf + 4 * i, 4); r->v[i] = x; break; }
      case DT_F64: memcpy(&r->v[i], buf + 8 * i, 8); break;
      case DT_I32: { int32_t x; memcpy(&x, buf + 4 * i, 4); r->v[i] = x; break; }
      case DT_I64: { int64_t x; memcpy(&x, buf + 8 * i, 8); r->v[i] = (double)x; break; }
      default: r->v[i] = (unsigned char)buf[i];
      }
    }
    if (dt == DT_U8) {
      buf[r->n] = 0;
      r->raw = buf;
    } else {
      free(buf);
    }
  }
  fclose(f);
  return 0;
bad:
  fclose(f);
  return -1;
}

void r_free(recset *rs) {
  for (int i = 0; i < rs->n; i++) {
    free(rs->r[i].name);
    free(rs->r[i].v);
    free(rs->r[i].raw);
  }
  free(rs->r);
  memset(rs, 0, sizeof *rs);
}

const rec *r_get(const recset *rs, const char *name) {
  for (int i = 0; i < rs->n; i++)
    if (!strcmp(rs->r[i].name, name)) return &rs->r[i];
  return NULL;
}

/* max |c - t| / max(max |t|, floor) */
double rec_rel_err(const float *c, const rec *t, size_t n, double floor) {
  assert_non_null(t);
  assert_int_equal(t->n, n);
  double scale = floor, mx = 0;
  for (size_t i = 0; i < n; i++) scale = fmax(scale, fabs(t->v[i]));
  for (size_t i = 0; i < n; i++) {
    double d = fabs((double)c[i] - t->v[i]) / scale;
    if (!(d <= mx)) mx = d; /* NaN fails */
  }
  return mx;
}

int mctr_run_script(const char *name, const char *args) {
  char script[1024];
  const char *src = getenv("MC_SOURCE_DIR");
  if (src) {
    snprintf(script, sizeof script, "%s/tests/%s", src, name);
  } else {
    snprintf(script, sizeof script, "%s", __FILE__);
    char *slash = strrchr(script, '/');
    if (slash) snprintf(slash + 1, sizeof script - (size_t)(slash + 1 - script), "%s", name);
    else snprintf(script, sizeof script, "%s", name);
  }
  const char *py = tu_env("MC_TORCH_PYTHON", "/usr/bin/python3");
  printf("running %s %s\n", py, script);
  fflush(stdout);
  const int status = tu_sh("'%s' '%s' %s", py, script, args);
  if (status) printf("%s failed: exit status %d\n", name, status);
  return status;
}
