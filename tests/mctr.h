/* The MCTR tensor file the tests exchange with their PyTorch references
 * (tests/torch_ref.py: read_tensors / write_tensors).  Little endian:
 * b"MCTR", u32 version 1, u32 count, then per tensor: u32 name length,
 * name bytes, u32 dtype (0 f32, 1 f64, 2 i32, 3 i64, 4 u8), u32 ndim,
 * i64 dims[ndim], raw data.  Write errors fail the test. */
#ifndef MC_TEST_MCTR_H
#define MC_TEST_MCTR_H
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

enum { DT_F32 = 0, DT_F64 = 1, DT_I32 = 2, DT_I64 = 3, DT_U8 = 4 };

typedef struct {
  char *name;
  int dtype, ndim;
  int64_t dims[8];
  size_t n;
  double *v;   /* values as double */
  char *raw;   /* u8 payload as text (NUL terminated) */
} rec;

typedef struct {
  rec *r;
  int n;
} recset;

typedef struct {
  FILE *f;
  uint32_t count;
} writer;

void w_open(writer *w, const char *path);
void w_put(writer *w, const char *name, int dtype, int ndim, const int64_t *dims, const void *data);
void w_close(writer *w);
/* 0 on success, -1 on a missing or malformed file */
int r_load(recset *rs, const char *path);
void r_free(recset *rs);
const rec *r_get(const recset *rs, const char *name); /* NULL: absent */
/* max |c - t| / max(max |t|, floor) over t's n values (a NaN gives NaN,
 * which fails every <= test); fails the test when t is NULL or not n long */
double rec_rel_err(const float *c, const rec *t, size_t n, double floor);
/* Runs the reference script tests/NAME (MC_SOURCE_DIR, else next to this
 * file) under $MC_TORCH_PYTHON (default /usr/bin/python3) with the
 * arguments `args` (already quoted); returns its exit status. */
int mctr_run_script(const char *name, const char *args);
#endif
