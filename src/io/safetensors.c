/* safetensors reader and writer (the format of Hugging Face's `safetensors`
 * library): u64 little-endian header length N, N bytes of JSON, then the
 * data section.  The reader trusts nothing in the file: every length, dim
 * and offset is checked before use, and the tensors must tile the data
 * section exactly (no overlaps, no holes), as the format's own spec
 * requires.  The writer is atomic: a temporary file next to the target,
 * fsync, rename -- a failed write never damages the previous file. */
#include "io/safetensors.h"

#include "core/file.h"
#include "io/json.h"

#include <errno.h>
#include <fcntl.h>
#include <jansson.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#if defined(__BYTE_ORDER__) && __BYTE_ORDER__ != __ORDER_LITTLE_ENDIAN__
#error "safetensors data is little-endian; this code assumes a little-endian host"
#endif

#define ST_MAX_HEADER ((uint64_t)100 * 1000 * 1000)
#define ST_MAX_NDIM 8

/* Element sizes of every dtype the format defines. */
static const struct {
  const char *name;
  size_t size;
} st_dtypes[] = {{"F64", 8},  {"I64", 8},  {"U64", 8},     {"F32", 4},
                 {"I32", 4},  {"U32", 4},  {"F16", 2},     {"BF16", 2},
                 {"I16", 2},  {"U16", 2},  {"U8", 1},      {"I8", 1},
                 {"BOOL", 1}, {"F8_E4M3", 1}, {"F8_E5M2", 1}};

static size_t dtype_size(const char *name) {
  for (size_t i = 0; i < sizeof st_dtypes / sizeof st_dtypes[0]; i++)
    if (!strcmp(st_dtypes[i].name, name)) return st_dtypes[i].size;
  return 0;
}

static mc_dtype dtype_code(const char *name) {
  if (!strcmp(name, "F32")) return MC_DT_F32;
  if (!strcmp(name, "I64")) return MC_DT_I64;
  return MC_DT_OTHER;
}

static const char *dtype_str(const mc_st_tensor *t) {
  if (t->dtype == MC_DT_F32) return "F32";
  if (t->dtype == MC_DT_I64) return "I64";
  return t->dtype_name;
}

/* ---------------------------------------------------------------- reader */

void mc_st_free(mc_st_file *f) {
  if (!f) return;
  for (int i = 0; i < f->n; i++) free(f->t[i].name);
  free(f->t);
  for (int i = 0; i < f->n_meta; i++) {
    free(f->meta_key[i]);
    free(f->meta_val[i]);
  }
  free(f->meta_key);
  free(f->meta_val);
  free(f->buf);
  memset(f, 0, sizeof *f);
}

const char *mc_st_meta(const mc_st_file *f, const char *key) {
  for (int i = 0; i < f->n_meta; i++)
    if (!strcmp(f->meta_key[i], key)) return f->meta_val[i];
  return NULL;
}

const mc_st_tensor *mc_st_find(const mc_st_file *f, const char *name) {
  for (int i = 0; i < f->n; i++)
    if (!strcmp(f->t[i].name, name)) return &f->t[i];
  return NULL;
}

typedef struct {
  uint64_t begin, end;
  int idx;
} st_range;

static int range_cmp(const void *a, const void *b) {
  const st_range *x = a, *y = b;
  if (x->begin != y->begin) return x->begin < y->begin ? -1 : 1;
  if (x->end != y->end) return x->end < y->end ? -1 : 1;
  return x->idx - y->idx;
}

/* Reads one non-negative JSON integer; 0 on success. */
static int json_uint(const json_t *v, uint64_t *out) {
  if (!json_is_integer(v)) return -1;
  json_int_t x = json_integer_value(v);
  if (x < 0) return -1;
  *out = (uint64_t)x;
  return 0;
}

/* Validates and records one tensor entry.  `dsize` is the data section's
 * length; on success f->t[f->n++] is filled (data set later). */
static mc_status parse_entry(const char *path, const char *name,
                             const json_t *v, uint64_t dsize, mc_st_file *f,
                             st_range *r) {
#define BAD(...)                                                              \
  do {                                                                        \
    char m_[512];                                                             \
    snprintf(m_, sizeof m_, __VA_ARGS__);                                     \
    return mc_error(MC_EFORMAT, "%s: tensor '%.200s': %s", path, name, m_);   \
  } while (0)
  if (!json_is_object(v)) BAD("entry is not a JSON object");
  const json_t *jd = json_object_get(v, "dtype");
  const json_t *js = json_object_get(v, "shape");
  const json_t *jo = json_object_get(v, "data_offsets");
  if (!jd) BAD("missing field 'dtype'");
  if (!js) BAD("missing field 'shape'");
  if (!jo) BAD("missing field 'data_offsets'");
  if (!json_is_string(jd)) BAD("field 'dtype' is not a string");
  const char *dt = json_string_value(jd);
  size_t esize = dtype_size(dt);
  if (!esize)
    BAD("unknown dtype '%.32s' (known: F64 F32 F16 BF16 I64 I32 I16 I8 U64 U32 U16 U8 BOOL F8_E4M3 F8_E5M2)", dt);
  if (!json_is_array(js)) BAD("field 'shape' is not an array");
  size_t nd = json_array_size(js);
  if (nd > ST_MAX_NDIM) BAD("shape has %zu dims (at most %d supported)", nd, ST_MAX_NDIM);
  mc_st_tensor t;
  memset(&t, 0, sizeof t);
  t.ndim = (int)nd;
  size_t numel = 1;
  for (size_t i = 0; i < nd; i++) {
    const json_t *d = json_array_get(js, i);
    uint64_t x;
    if (json_uint(d, &x) != 0 || x > (uint64_t)INT64_MAX)
      BAD("shape[%zu] is not a non-negative integer", i);
    t.shape[i] = (int64_t)x;
    if (x > SIZE_MAX || __builtin_mul_overflow(numel, (size_t)x, &numel))
      BAD("shape product overflows");
  }
  size_t nbytes;
  if (__builtin_mul_overflow(numel, esize, &nbytes)) BAD("byte size overflows");
  if (!json_is_array(jo) || json_array_size(jo) != 2)
    BAD("field 'data_offsets' is not an array [begin, end]");
  uint64_t b, e;
  if (json_uint(json_array_get(jo, 0), &b) || json_uint(json_array_get(jo, 1), &e))
    BAD("data_offsets are not non-negative integers");
  if (b > e) BAD("data_offsets [%llu, %llu] end before they begin", (unsigned long long)b, (unsigned long long)e);
  if (e > dsize)
    BAD("data_offsets [%llu, %llu] outside the data section (%llu bytes)",
        (unsigned long long)b, (unsigned long long)e, (unsigned long long)dsize);
  if (e - b != (uint64_t)nbytes)
    BAD("data_offsets [%llu, %llu] span %llu bytes but %s with %zu elements needs %zu",
        (unsigned long long)b, (unsigned long long)e, (unsigned long long)(e - b), dt, numel, nbytes);
#undef BAD
  t.dtype = dtype_code(dt);
  snprintf(t.dtype_name, sizeof t.dtype_name, "%s", dt);
  t.nbytes = nbytes;
  if (!(t.name = mc_strdup_try(name)))
    return mc_oom(strlen(name) + 1, "%s: the name of tensor '%.200s'", path, name);
  r->begin = b;
  r->end = e;
  r->idx = f->n;
  f->t[f->n++] = t;
  return MC_OK;
}

static mc_status parse_meta(const char *path, const json_t *v, mc_st_file *f) {
  if (json_is_null(v)) return MC_OK;
  if (!json_is_object(v))
    return mc_error(MC_EFORMAT, "%s: __metadata__ is not a JSON object", path);
  size_t n = json_object_size(v);
  f->meta_key = mc_calloc_try(n + 1, sizeof(char *));
  f->meta_val = mc_calloc_try(n + 1, sizeof(char *));
  if (!f->meta_key || !f->meta_val)
    return mc_oom(2 * (n + 1) * sizeof(char *), "%s: the list of %zu metadata entries", path, n);
  const char *k;
  json_t *x;
  json_object_foreach((json_t *)v, k, x) {
    if (!json_is_string(x))
      return mc_error(MC_EFORMAT, "%s: __metadata__ value of '%.200s' is not a string", path, k);
    const char *val = json_string_value(x);
    const int i = f->n_meta++; /* counted first: mc_st_free frees what was made */
    f->meta_key[i] = mc_strdup_try(k);
    f->meta_val[i] = mc_strdup_try(val);
    if (!f->meta_key[i] || !f->meta_val[i])
      return mc_oom(strlen(k) + strlen(val) + 2, "%s: __metadata__ entry '%.200s'", path, k);
  }
  return MC_OK;
}

static mc_status st_parse(const char *path, mc_st_file *f, size_t size) {
  const unsigned char *p = f->buf;
  if (size < 8)
    return mc_error(MC_EFORMAT, "%s: file is %zu bytes, shorter than the 8-byte safetensors header length", path, size);
  uint64_t hlen = 0;
  for (int i = 7; i >= 0; i--) hlen = (hlen << 8) | p[i];
  if (hlen > ST_MAX_HEADER)
    return mc_error(MC_EFORMAT, "%s: header length %llu exceeds the 100 MB limit (not a safetensors file?)", path,
                    (unsigned long long)hlen);
  if (hlen > (uint64_t)(size - 8))
    return mc_error(MC_EFORMAT, "%s: header length %llu exceeds the %zu bytes after the length field (truncated file?)",
                    path, (unsigned long long)hlen, size - 8);
  if (hlen == 0 || p[8] != '{')
    return mc_error(MC_EFORMAT, "%s: header is not a JSON object (does not start with '{')", path);
  json_error_t err;
  int oom;
  json_t *root = mc_json_loadb((const char *)p + 8, (size_t)hlen, JSON_REJECT_DUPLICATES, &err, &oom);
  if (oom)
    return mc_error(MC_ENOMEM, "%s: out of memory parsing the %llu-byte header", path, (unsigned long long)hlen);
  if (!root)
    return mc_error(MC_EFORMAT, "%s: header JSON invalid at byte %d: %s", path, err.position, err.text);
  mc_status st = MC_OK;
  st_range *rg = NULL;
  if (!json_is_object(root)) {
    st = mc_error(MC_EFORMAT, "%s: header is not a JSON object", path);
    goto out;
  }
  size_t n = json_object_size(root);
  uint64_t dsize = (uint64_t)(size - 8) - hlen;
  const unsigned char *data = p + 8 + hlen;
  f->t = mc_calloc_try(n + 1, sizeof(mc_st_tensor));
  rg = mc_calloc_try(n + 1, sizeof(st_range));
  if (!f->t || !rg) {
    st = mc_oom((n + 1) * (sizeof(mc_st_tensor) + sizeof(st_range)), "%s: the list of %zu tensors", path, n);
    goto out;
  }
  const char *key;
  json_t *v;
  json_object_foreach(root, key, v) {
    if (!strcmp(key, "__metadata__")) st = parse_meta(path, v, f);
    else st = parse_entry(path, key, v, dsize, f, &rg[f->n]);
    if (st) goto out;
  }
  /* The tensors must tile [0, dsize): sorted by begin, each starts where
   * the previous one ended. */
  qsort(rg, (size_t)f->n, sizeof *rg, range_cmp);
  uint64_t cur = 0;
  for (int i = 0; i < f->n; i++) {
    if (rg[i].begin < cur) {
      st = mc_error(MC_EFORMAT, "%s: tensor '%.200s' [%llu, %llu] overlaps tensor '%.200s' [%llu, %llu]", path,
                    f->t[rg[i].idx].name, (unsigned long long)rg[i].begin, (unsigned long long)rg[i].end,
                    f->t[rg[i - 1].idx].name, (unsigned long long)rg[i - 1].begin,
                    (unsigned long long)rg[i - 1].end);
      goto out;
    }
    if (rg[i].begin > cur) {
      st = mc_error(MC_EFORMAT, "%s: bytes [%llu, %llu) of the data section belong to no tensor (hole before '%.200s')",
                    path, (unsigned long long)cur, (unsigned long long)rg[i].begin, f->t[rg[i].idx].name);
      goto out;
    }
    cur = rg[i].end;
    f->t[rg[i].idx].data = data + rg[i].begin;
  }
  if (cur != dsize) {
    st = mc_error(MC_EFORMAT, "%s: bytes [%llu, %llu) at the end of the data section belong to no tensor", path,
                  (unsigned long long)cur, (unsigned long long)dsize);
    goto out;
  }
out:
  free(rg);
  json_decref(root);
  return st;
}

mc_status mc_st_read(const char *path, mc_st_file *f) {
  memset(f, 0, sizeof *f);
  snprintf(f->path, sizeof f->path, "%s", path);
  size_t size;
  unsigned char *buf;
  mc_status st = mc_read_file(path, "safetensors file", SIZE_MAX / 2, &buf, &size);
  if (st) return st;
  f->buf = buf;
  st = st_parse(path, f, size);
  if (st) mc_st_free(f);
  return st;
}

mc_status mc_st_read_mem(const char *name, const void *data, size_t size, mc_st_file *f) {
  memset(f, 0, sizeof *f);
  snprintf(f->path, sizeof f->path, "%s", name);
  if (!(f->buf = mc_malloc_try(size + 1))) return mc_oom(size + 1, "a copy of %s", name);
  memcpy(f->buf, data, size);
  mc_status st = st_parse(name, f, size);
  if (st) mc_st_free(f);
  return st;
}

/* ---------------------------------------------------------------- writer */

typedef struct {
  const mc_st_tensor *t;
  size_t esize;
  uint64_t begin;
} wt;

static int wt_name_cmp(const void *a, const void *b) {
  const wt *x = *(const wt *const *)a, *y = *(const wt *const *)b;
  return strcmp(x->t->name, y->t->name);
}

/* Data order: larger elements first, then by name (as the Rust library
 * does), so every tensor is naturally aligned in the file. */
static int wt_data_cmp(const void *a, const void *b) {
  const wt *x = *(const wt *const *)a, *y = *(const wt *const *)b;
  if (x->esize != y->esize) return x->esize > y->esize ? -1 : 1;
  return strcmp(x->t->name, y->t->name);
}

/* jansson refuses a string that is not UTF-8 and one it has no memory for
 * alike: which one (src/io/json.c). */
static mc_status utf8_or_oom(const char *path, const char *what, const char *name) {
  if (mc_json_alloc_failed())
    return mc_error(MC_ENOMEM, "%s: out of memory building the header (%s '%s')", path, what, name);
  return mc_error(MC_EARG, "%s: %s '%s' is not valid UTF-8", path, what, name);
}

/* Builds the padded header text (without the length prefix). */
static mc_status build_header(const char *path, const mc_st_tensor *t, int n,
                              const char *const *mk, const char *const *mv,
                              int n_meta, wt *w, char **out, size_t *outlen) {
  mc_status st = MC_OK;
  (void)mc_json_alloc_failed(); /* from here on, a failed jansson allocation is this header's */
  wt **byname = mc_calloc_try((size_t)n + 1, sizeof(wt *));
  wt **bydata = mc_calloc_try((size_t)n + 1, sizeof(wt *));
  json_t *root = json_object();
  *out = NULL;
  if (!byname || !bydata || !root) {
    st = mc_oom(2 * ((size_t)n + 1) * sizeof(wt *), "%s: the header of %d tensors", path, n);
    goto out;
  }
  for (int i = 0; i < n; i++) {
    const mc_st_tensor *x = &t[i];
    const char *dt = dtype_str(x);
    size_t es = dtype_size(dt);
    if (!x->name || !*x->name || !strcmp(x->name, "__metadata__")) {
      st = mc_error(MC_EARG, "%s: tensor %d has an invalid name", path, i);
      goto out;
    }
    if (!es) {
      st = mc_error(MC_EARG, "%s: tensor '%s' has unknown dtype '%s'", path, x->name, dt);
      goto out;
    }
    if (x->ndim < 0 || x->ndim > ST_MAX_NDIM) {
      st = mc_error(MC_EARG, "%s: tensor '%s' has %d dims", path, x->name, x->ndim);
      goto out;
    }
    size_t numel = 1;
    for (int d = 0; d < x->ndim; d++) {
      if (x->shape[d] < 0 || __builtin_mul_overflow(numel, (size_t)x->shape[d], &numel)) {
        st = mc_error(MC_EARG, "%s: tensor '%s' has an invalid shape", path, x->name);
        goto out;
      }
    }
    size_t nb;
    if (__builtin_mul_overflow(numel, es, &nb) || nb != x->nbytes || (nb && !x->data)) {
      st = mc_error(MC_EARG, "%s: tensor '%s': %zu bytes given, shape and dtype %s need %zu", path, x->name,
                    x->nbytes, dt, nb);
      goto out;
    }
    w[i].t = x;
    w[i].esize = es;
    byname[i] = bydata[i] = &w[i];
  }
  qsort(byname, (size_t)n, sizeof(wt *), wt_name_cmp);
  for (int i = 1; i < n; i++)
    if (!strcmp(byname[i]->t->name, byname[i - 1]->t->name)) {
      st = mc_error(MC_EARG, "%s: tensor name '%s' given twice", path, byname[i]->t->name);
      goto out;
    }
  qsort(bydata, (size_t)n, sizeof(wt *), wt_data_cmp);
  uint64_t off = 0;
  for (int i = 0; i < n; i++) {
    bydata[i]->begin = off;
    off += bydata[i]->t->nbytes;
  }
  if (n_meta > 0) {
    json_t *meta = json_object();
    if (!meta || json_object_set_new(root, "__metadata__", meta)) {
      st = mc_error(MC_ENOMEM, "%s: out of memory building the header's __metadata__", path);
      goto out;
    }
    for (int i = 0; i < n_meta; i++) {
      if (!mk[i] || !mv[i]) {
        st = mc_error(MC_EARG, "%s: metadata entry %d is NULL", path, i);
        goto out;
      }
      if (json_object_get(meta, mk[i])) {
        st = mc_error(MC_EARG, "%s: metadata key '%s' given twice", path, mk[i]);
        goto out;
      }
      json_t *s = json_string(mv[i]);
      if (!s) {
        st = utf8_or_oom(path, "metadata value of", mk[i]);
        goto out;
      }
      if (json_object_set_new(meta, mk[i], s)) {
        st = utf8_or_oom(path, "metadata key", mk[i]);
        goto out;
      }
    }
  }
  for (int i = 0; i < n; i++) {
    const wt *x = byname[i];
    json_t *shape = json_array();
    for (int d = 0; d < x->t->ndim; d++) json_array_append_new(shape, json_integer(x->t->shape[d]));
    json_t *offs = json_array();
    json_array_append_new(offs, json_integer((json_int_t)x->begin));
    json_array_append_new(offs, json_integer((json_int_t)(x->begin + x->t->nbytes)));
    json_t *e = json_pack("{s:s, s:o, s:o}", "dtype", dtype_str(x->t), "shape", shape, "data_offsets", offs);
    if (!e) { /* the dtype is one of ours: only memory can fail here */
      st = mc_error(MC_ENOMEM, "%s: out of memory building the header entry of tensor '%s'", path, x->t->name);
      goto out;
    }
    if (json_object_set_new(root, x->t->name, e)) {
      st = utf8_or_oom(path, "tensor name", x->t->name);
      goto out;
    }
  }
  char *s = json_dumps(root, JSON_COMPACT);
  if (mc_json_alloc_failed() || !s) { /* while the header was built or serialised: a member may be missing */
    free(s);
    st = mc_error(MC_ENOMEM, "%s: out of memory building the header of %d tensors", path, n);
    goto out;
  }
  size_t len = strlen(s), padded = (len + 7) & ~(size_t)7;
  char *h = mc_malloc_try(padded + 1);
  if (!h) {
    free(s);
    st = mc_oom(padded + 1, "%s: the header text", path);
    goto out;
  }
  memcpy(h, s, len);
  memset(h + len, ' ', padded - len);
  h[padded] = 0;
  free(s);
  *out = h;
  *outlen = padded;
out:
  json_decref(root);
  free(byname);
  free(bydata);
  return st;
}

static mc_status write_fail(const char *path, const char *tmp, FILE *fp,
                            int fd, const char *what, int e) {
  if (fp) fclose(fp);
  else if (fd >= 0) close(fd);
  if (tmp) unlink(tmp);
  return mc_error(MC_EIO, "%s: %s: %s", path, what, strerror(e));
}

mc_status mc_st_write(const char *path, const mc_st_tensor *t, int n,
                      const char *const *meta_key, const char *const *meta_val,
                      int n_meta) {
  if (!path || !*path) return mc_error(MC_EARG, "safetensors: empty output path");
  if (n < 0 || n_meta < 0 || (n && !t) || (n_meta && (!meta_key || !meta_val)))
    return mc_error(MC_EARG, "%s: invalid tensor or metadata list", path);
  wt *w = mc_calloc_try((size_t)n + 1, sizeof(wt));
  wt **order = mc_calloc_try((size_t)n + 1, sizeof(wt *));
  size_t plen = strlen(path);
  char *hdr = NULL, *tmp = mc_malloc_try(plen + 16);
  size_t hlen = 0;
  mc_status st = !w || !order || !tmp
                     ? mc_oom(((size_t)n + 1) * (sizeof(wt) + sizeof(wt *)) + plen + 16, "%s: the list of %d tensors",
                              path, n)
                     : build_header(path, t, n, meta_key, meta_val, n_meta, w, &hdr, &hlen);
  if (st) {
    free(w);
    free(order);
    free(tmp);
    return st;
  }
  memcpy(tmp, path, plen);
  memcpy(tmp + plen, ".tmp.XXXXXX", 12);
  int fd = mkstemp(tmp);
  if (fd < 0) {
    int e = errno;
    free(w);
    free(order);
    free(hdr);
    free(tmp);
    return write_fail(path, NULL, NULL, -1, "cannot create temporary file", e);
  }
  /* mkstemp makes the file 0600; give it the mode a plain fopen would. */
  mode_t um = umask(0);
  umask(um);
  (void)fchmod(fd, 0666 & ~um);
  FILE *fp = fdopen(fd, "wb");
  if (!fp) {
    st = write_fail(path, tmp, NULL, fd, "cannot open temporary file", errno);
    goto done;
  }
  unsigned char len8[8];
  for (int i = 0; i < 8; i++) len8[i] = (unsigned char)((uint64_t)hlen >> (8 * i));
  if (fwrite(len8, 1, 8, fp) != 8 || fwrite(hdr, 1, hlen, fp) != hlen) {
    st = write_fail(path, tmp, fp, -1, "write failed", errno);
    goto done;
  }
  /* data in the order the offsets were assigned */
  for (int i = 0; i < n; i++) order[i] = &w[i];
  qsort(order, (size_t)n, sizeof(wt *), wt_data_cmp);
  for (int i = 0; i < n; i++) {
    const mc_st_tensor *x = order[i]->t;
    if (x->nbytes && fwrite(x->data, 1, x->nbytes, fp) != x->nbytes) {
      st = write_fail(path, tmp, fp, -1, "write failed", errno);
      goto done;
    }
  }
  if (fflush(fp) != 0) {
    st = write_fail(path, tmp, fp, -1, "write failed", errno);
    goto done;
  }
  if (fsync(fileno(fp)) != 0) {
    st = write_fail(path, tmp, fp, -1, "fsync failed", errno);
    goto done;
  }
  if (fclose(fp) != 0) {
    st = write_fail(path, tmp, NULL, -1, "close failed", errno);
    goto done;
  }
  if (rename(tmp, path) != 0) {
    st = write_fail(path, tmp, NULL, -1, "cannot rename the temporary file into place", errno);
    goto done;
  }
  /* make the rename itself durable; failure here (even to allocate the
   * directory's name) loses nothing already visible, so it is not reported */
  char *dir;
  if (mc_parent_dir(path, &dir) == MC_OK) {
    int dfd = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (dfd >= 0) {
      (void)fsync(dfd);
      close(dfd);
    }
    free(dir);
  }
done:
  free(w);
  free(order);
  free(hdr);
  free(tmp);
  return st;
}
