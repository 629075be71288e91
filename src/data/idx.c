/* The IDX reader (MNIST / Fashion-MNIST images and labels, gzip or raw):
 * every header field and byte count is validated, the gzip trailer is
 * checked and nothing may follow it, and buffers grow only as data arrives
 * (a header claiming absurd sizes fails as "truncated").  Offsets in gzip
 * files count uncompressed bytes.  Loading whole datasets is data.c. */
#include "data/data.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <zlib.h>

#define IDX_MAGIC_IMAGES 0x00000803u
#define IDX_MAGIC_LABELS 0x00000801u
#define IDX_MAX_DIM 65536u    /* rows, cols */
#define IDX_MAX_N 0x7fffffffu /* examples (labels are int32, ids int64) */
#define READ_CHUNK ((int64_t)1 << 24) /* buffer growth step */
#define GZ_CALL ((int64_t)1 << 20)    /* bytes per gzread call */

/* ------------------------------------------------------------ IDX reader */

typedef struct {
  gzFile f;
  const char *path;
  int64_t off; /* uncompressed bytes consumed so far */
  int gz;      /* 1 when the file is gzip-compressed */
  int cut;     /* zlib saw the compressed stream end early */
  uLong crc;   /* CRC-32 of the uncompressed bytes so far */
  mc_status st; /* status of the last failed read */
} idx_reader;

static const char *off_word(const idx_reader *r) {
  return r->gz ? "uncompressed byte" : "byte";
}

static mc_status rd_open(idx_reader *r, const char *path) {
  memset(r, 0, sizeof *r);
  r->path = path;
  errno = 0;
  r->f = gzopen(path, "rb");
  if (!r->f)
    return mc_error(MC_EIO, "%s: cannot open: %s", path,
                    errno ? strerror(errno) : "out of memory");
  gzbuffer(r->f, 1 << 17);
  r->gz = !gzdirect(r->f);
  r->crc = crc32(0L, Z_NULL, 0);
  return MC_OK;
}

static void rd_close(idx_reader *r) {
  if (r->f) gzclose_r(r->f);
  r->f = NULL;
}

/* Reads up to n bytes; returns the count read (< n only at end of data) or
 * -1 with the error set when zlib reports corrupt data or a read error. */
static int64_t rd_some(idx_reader *r, uint8_t *buf, int64_t n) {
  int64_t got = 0;
  while (got < n) {
    int64_t want = n - got;
    if (want > GZ_CALL) want = GZ_CALL;
    int k = gzread(r->f, buf + got, (unsigned)want);
    if (k < 0) {
      int zerr = 0;
      const char *msg = gzerror(r->f, &zerr);
      if (zerr == Z_BUF_ERROR) { /* gzip stream cut short: truncated */
        r->cut = 1;
        break;
      }
      /* zlib prefixes its message with the path: drop it */
      size_t pl = strlen(r->path);
      if (!strncmp(msg, r->path, pl) && !strncmp(msg + pl, ": ", 2))
        msg += pl + 2;
      if (zerr == Z_ERRNO) msg = strerror(errno);
      r->st = mc_error(zerr == Z_ERRNO ? MC_EIO : MC_EFORMAT,
                       "%s: %s (%s) while reading %ss %lld..%lld", r->path,
                       zerr == Z_ERRNO ? "read error" : "corrupt gzip data",
                       msg, off_word(r), (long long)(r->off + got),
                       (long long)(r->off + got + want - 1));
      return -1;
    }
    if (k == 0) break;
    r->crc = crc32(r->crc, buf + got, (uInt)k);
    got += k;
  }
  r->off += got;
  return got;
}

/* Reads exactly n bytes; `what` describes them for the truncation error. */
static mc_status rd_exact(idx_reader *r, uint8_t *buf, int64_t n,
                          const char *what) {
  int64_t at = r->off;
  int64_t got = rd_some(r, buf, n);
  if (got < 0) return r->st;
  if (got < n)
    return mc_error(MC_EFORMAT,
                    "%s: truncated: data ends at %s %lld, expected %lld bytes "
                    "of %s starting at byte %lld",
                    r->path, off_word(r), (long long)r->off, (long long)n,
                    what, (long long)at);
  return MC_OK;
}

static uint32_t be32(const uint8_t *p) {
  return (uint32_t)p[0] << 24 | (uint32_t)p[1] << 16 | (uint32_t)p[2] << 8 |
         (uint32_t)p[3];
}

/* Header: magic + dims.  Returns dims in dim[0..ndim). */
static mc_status idx_header(idx_reader *r, uint32_t magic, int ndim,
                            uint32_t *dim) {
  uint8_t h[16];
  mc_status st = rd_exact(r, h, 4, "IDX magic number");
  if (st) return st;
  uint32_t m = be32(h);
  if (m != magic) {
    const char *kind = magic == IDX_MAGIC_IMAGES ? "images" : "labels";
    const char *hint = "";
    if (m == IDX_MAGIC_IMAGES) hint = " (this is an IDX image file)";
    else if (m == IDX_MAGIC_LABELS) hint = " (this is an IDX label file)";
    else if ((m >> 8) == 0x08) hint = " (IDX uint8 data with the wrong rank)";
    else if ((m >> 8) != 0) hint = " (not an IDX file)";
    return mc_error(MC_EFORMAT,
                    "%s: byte 0: bad magic number 0x%08x, expected 0x%08x "
                    "(IDX %s: uint8, %d dimension%s)%s",
                    r->path, m, magic, kind, ndim, ndim > 1 ? "s" : "", hint);
  }
  st = rd_exact(r, h + 4, 4 * (int64_t)ndim, "IDX dimensions");
  if (st) return st;
  for (int i = 0; i < ndim; i++) {
    dim[i] = be32(h + 4 + 4 * i);
    uint32_t mx = i == 0 ? IDX_MAX_N : IDX_MAX_DIM;
    if (dim[i] == 0 || dim[i] > mx)
      return mc_error(MC_EFORMAT,
                      "%s: byte %d: dimension %d is %u, expected 1..%u",
                      r->path, 4 + 4 * i, i, dim[i], mx);
  }
  return MC_OK;
}

/* At the end of a gzip file's data: zlib ignores a missing CRC/size
 * trailer (it reports a cut stream only as a short read) and junk after the
 * member, so check both here: the last 8 bytes of the file must be the
 * trailer of exactly the data read (RFC 1952: CRC-32, then ISIZE, both
 * little-endian).  Multi-member files are rejected by this too. */
static mc_status rd_gz_trailer(idx_reader *r) {
  if (r->cut)
    return mc_error(MC_EFORMAT, "%s: gzip stream truncated after uncompressed byte %lld (missing CRC/size trailer)",
                    r->path, (long long)r->off);
  uint8_t t[8] = {0};
  FILE *f = fopen(r->path, "rb");
  int ok = f && fseek(f, -8, SEEK_END) == 0 && fread(t, 1, 8, f) == 8;
  if (f) fclose(f);
  uint32_t crc = (uint32_t)t[0] | (uint32_t)t[1] << 8 | (uint32_t)t[2] << 16 | (uint32_t)t[3] << 24;
  uint32_t isize = (uint32_t)t[4] | (uint32_t)t[5] << 8 | (uint32_t)t[6] << 16 | (uint32_t)t[7] << 24;
  if (!ok || crc != (uint32_t)r->crc || isize != (uint32_t)r->off)
    return mc_error(MC_EFORMAT, "%s: the file does not end with the gzip trailer of its %lld uncompressed bytes "
                    "(junk after the gzip data, or several gzip members)", r->path, (long long)r->off);
  return MC_OK;
}

/* After all the data: the file must end here. */
static mc_status rd_expect_eof(idx_reader *r, const char *what) {
  uint8_t tmp[4096];
  int64_t at = r->off;
  int64_t got = rd_some(r, tmp, 1);
  if (got < 0) return r->st;
  if (got == 0) return r->gz ? rd_gz_trailer(r) : MC_OK;
  int64_t extra = 1;
  for (;;) {
    int64_t k = rd_some(r, tmp, (int64_t)sizeof tmp);
    if (k <= 0) break;
    extra += k;
  }
  return mc_error(MC_EFORMAT,
                  "%s: %lld trailing byte%s at %s %lld: expected end of file "
                  "after %s",
                  r->path, (long long)extra, extra == 1 ? "" : "s",
                  off_word(r), (long long)at, what);
}

/* Reads up to `total` bytes into *buf, grown as the data arrive, so that a
 * header claiming a huge size costs memory only as far as the file really
 * goes.  *have < total on return means the data ended early. */
static mc_status rd_growing(idx_reader *r, const char *path, int64_t total,
                            uint8_t **buf, int64_t *have) {
  int64_t cap = 0;
  *have = 0;
  while (*have < total) {
    int64_t ncap = cap ? 2 * cap : READ_CHUNK;
    if (ncap > total) ncap = total;
    uint8_t *nb = mc_realloc_try(*buf, (size_t)ncap);
    if (!nb)
      return mc_error(MC_ENOMEM,
                      "%s: out of memory growing the read buffer to %lld bytes "
                      "(the header claims %lld bytes of data)",
                      path, (long long)ncap, (long long)total);
    *buf = nb;
    cap = ncap;
    int64_t got = rd_some(r, *buf + *have, cap - *have);
    if (got < 0) return r->st;
    *have += got;
    if (*have < cap) break;
  }
  return MC_OK;
}

/* Reads an IDX image file into a fresh buffer. */
mc_status mc_idx_read_images(const char *path, mc_dataset *ds) {
  idx_reader r;
  mc_status st = rd_open(&r, path);
  if (st) return st;
  uint32_t dim[3];
  uint8_t *buf = NULL;
  st = idx_header(&r, IDX_MAGIC_IMAGES, 3, dim);
  if (st) goto done;
  int64_t n = dim[0], h = dim[1], w = dim[2];
  if (h * w > ((int64_t)1 << 26) || n * h * w > ((int64_t)1 << 42)) {
    st = mc_error(MC_EFORMAT,
                  "%s: bytes 4..15: header claims %lld images of %lldx%lld, "
                  "expected at most 2^26 pixels per image and 2^42 in all",
                  path, (long long)n, (long long)h, (long long)w);
    goto done;
  }
  int64_t total = n * h * w, have = 0;
  st = rd_growing(&r, path, total, &buf, &have);
  if (!st && have < total)
    st = mc_error(MC_EFORMAT,
                  "%s: truncated: data ends at %s %lld inside image %lld; "
                  "the header (%lld images of %lldx%lld) needs %lld bytes "
                  "of pixels, i.e. the %s should end at byte %lld",
                  path, off_word(&r), (long long)r.off,
                  (long long)(have / (h * w)), (long long)n, (long long)h,
                  (long long)w, (long long)total,
                  r.gz ? "uncompressed data" : "file",
                  (long long)(16 + total));
  if (st) goto done;
  char what[96];
  snprintf(what, sizeof what, "%lld images of %lldx%lld", (long long)n,
           (long long)h, (long long)w);
  st = rd_expect_eof(&r, what);
  if (st) goto done;
  ds->n = n;
  ds->c = 1;
  ds->h = h;
  ds->w = w;
  ds->images = buf;
  buf = NULL;
done:
  free(buf);
  rd_close(&r);
  return st;
}

mc_status mc_idx_read_labels(const char *path, mc_dataset *ds, int64_t classes) {
  idx_reader r;
  mc_status st = rd_open(&r, path);
  if (st) return st;
  uint32_t n = 0;
  uint8_t *buf = NULL;
  int32_t *lab = NULL;
  st = idx_header(&r, IDX_MAGIC_LABELS, 1, &n);
  if (st) goto done;
  int64_t have = 0;
  st = rd_growing(&r, path, n, &buf, &have);
  if (!st && have < (int64_t)n)
    st = mc_error(MC_EFORMAT,
                  "%s: truncated: data ends at %s %lld after %lld labels; "
                  "the header claims %u labels, i.e. the %s should end "
                  "at byte %lld",
                  path, off_word(&r), (long long)r.off, (long long)have, n,
                  r.gz ? "uncompressed data" : "file",
                  (long long)(8 + (int64_t)n));
  if (st) goto done;
  char what[64];
  snprintf(what, sizeof what, "%u labels", n);
  st = rd_expect_eof(&r, what);
  if (st) goto done;
  if (!(lab = mc_malloc_try(sizeof(int32_t) * n))) {
    st = mc_oom(sizeof(int32_t) * n, "%s: %u labels", path, n);
    goto done;
  }
  for (uint32_t i = 0; i < n; i++) {
    if (buf[i] >= classes) {
      st = mc_error(MC_EFORMAT,
                    "%s: %s %lld (label %u): value %u out of range, expected "
                    "0..%lld",
                    path, off_word(&r), (long long)(8 + (int64_t)i), i,
                    buf[i], (long long)(classes - 1));
      goto done;
    }
    lab[i] = buf[i];
  }
  ds->labels = lab;
  lab = NULL;
  ds->n = n;
done:
  free(buf);
  free(lab);
  rd_close(&r);
  return st;
}

