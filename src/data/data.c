/* Datasets: IDX (MNIST / Fashion-MNIST, read by idx.c) and CIFAR-10/100
 * binary files, loaded into uint8 CHW images plus int32 labels, and turned
 * into float batches with optional crop/flip augmentation.
 *
 * Every byte that comes from a file is validated: a malformed or truncated
 * file returns MC_EFORMAT (MC_EIO when it cannot be opened or read) with a
 * message naming the file, the byte offset and what was expected.  Byte
 * offsets in gzip files count uncompressed bytes.  Buffers grow only as data
 * actually arrives, so a header that claims absurd sizes fails as
 * "truncated" instead of allocating terabytes. */
#include "data/data.h"

#include <errno.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/stat.h>
#include <unistd.h>

#define FASHION_DEFAULT_DIR "/usr/share/datasets/fashion-mnist"
#define FASHION_HINT "install the Debian package dataset-fashion-mnist"


#define CIFAR_PIXELS 3072 /* 3 x 32 x 32 */

/* ----------------------------------------------------------- file lookup */

static int is_file(const char *p) {
  struct stat sb;
  return stat(p, &sb) == 0 && S_ISREG(sb.st_mode);
}

static int is_dir(const char *p) {
  struct stat sb;
  return stat(p, &sb) == 0 && S_ISDIR(sb.st_mode);
}

/* Finds DIR/base(.gz), also the dotted variant some mirrors use
 * ("train-images.idx3-ubyte"). */
static mc_status find_idx(char *out, size_t cap, const char *dir,
                          const char *base, const char *hint) {
  char dotted[64];
  snprintf(dotted, sizeof dotted, "%s", base);
  char *dash = strstr(dotted, "-idx");
  if (dash) *dash = '.';
  const char *names[2] = {base, dotted};
  for (int k = 0; k < 2; k++) {
    for (int gz = 1; gz >= 0; gz--) {
      int len = snprintf(out, cap, "%s/%s%s", dir, names[k], gz ? ".gz" : "");
      if (len < 0 || (size_t)len >= cap)
        return mc_error(MC_EARG, "%s: path too long", dir);
      struct stat sb;
      if (stat(out, &sb) == 0) {
        if (S_ISREG(sb.st_mode)) return MC_OK;
        continue;
      }
      /* only "not there" moves on to the next name: a permission error
       * must not turn into "no such file in this directory" */
      if (errno != ENOENT && errno != ENOTDIR) return mc_error(MC_EIO, "%s: %s", out, strerror(errno));
    }
  }
  return mc_error(MC_EIO, "%s: no %s or %s.gz in this directory%s%s%s", dir,
                  base, base, hint ? " (" : "", hint ? hint : "",
                  hint ? ")" : "");
}

/* ------------------------------------------------------------- datasets */

static void dataset_free(mc_dataset *d) {
  free(d->images);
  free(d->labels);
  memset(d, 0, sizeof *d);
}

/* Room for ds->n CIFAR records of ds (from path). */
static mc_status cifar_alloc(mc_dataset *ds, const char *path) {
  ds->images = mc_malloc_try((size_t)ds->n * CIFAR_PIXELS);
  ds->labels = mc_malloc_try(sizeof(int32_t) * (size_t)ds->n);
  if (ds->images && ds->labels) return MC_OK;
  return mc_oom((size_t)ds->n * (CIFAR_PIXELS + sizeof(int32_t)), "%s: %lld images", path, (long long)ds->n);
}

static mc_status load_idx_split(mc_dataset *ds, const char *dir,
                                const char *split, const char *hint) {
  char ip[1024], lp[1024], base[64];
  snprintf(base, sizeof base, "%s-images-idx3-ubyte", split);
  mc_status st = find_idx(ip, sizeof ip, dir, base, hint);
  if (st) return st;
  snprintf(base, sizeof base, "%s-labels-idx1-ubyte", split);
  st = find_idx(lp, sizeof lp, dir, base, hint);
  if (st) return st;
  mc_dataset im = {0}, lb = {0};
  st = mc_idx_read_images(ip, &im);
  if (st) return st;
  st = mc_idx_read_labels(lp, &lb, 10);
  if (st) {
    dataset_free(&im);
    return st;
  }
  if (im.n != lb.n) {
    st = mc_error(MC_EFORMAT,
                  "%s: byte 4: %lld images, but %s (byte 4) has %lld labels; "
                  "expected equal counts",
                  ip, (long long)im.n, lp, (long long)lb.n);
    dataset_free(&im);
    dataset_free(&lb);
    return st;
  }
  *ds = im;
  ds->labels = lb.labels;
  ds->classes = 10;
  return MC_OK;
}

static mc_status load_idx(mc_data *d, const char *dir, const char *name,
                          const char *hint) {
  struct stat sb;
  int rc = stat(dir, &sb);
  if (rc == 0 && S_ISDIR(sb.st_mode) && access(dir, R_OK | X_OK) != 0)
    return mc_error(MC_EIO, "%s: cannot read the directory: %s", dir, strerror(errno));
  if (rc != 0 || !S_ISDIR(sb.st_mode))
    return mc_error(MC_EIO, "%s: %s%s%s%s", dir,
                    rc != 0 ? (errno == ENOENT ? "no such directory"
                                               : strerror(errno))
                            : "not a directory",
                    hint ? " (" : "", hint ? hint : "", hint ? ")" : "");
  snprintf(d->name, sizeof d->name, "%s", name);
  mc_status st = load_idx_split(&d->train, dir, "train", hint);
  if (st) return st;
  st = load_idx_split(&d->test, dir, "t10k", hint);
  if (st) return st;
  if (d->train.h != d->test.h || d->train.w != d->test.w)
    return mc_error(MC_EFORMAT,
                    "%s: train images are %lldx%lld but t10k images are "
                    "%lldx%lld; expected the same size",
                    dir, (long long)d->train.h, (long long)d->train.w,
                    (long long)d->test.h, (long long)d->test.w);
  d->default_flip = 0;
  d->default_crop_pad = 2;
  return MC_OK;
}

/* CIFAR: a file's size must be a whole, non-zero number of records. */
static mc_status cifar_size(const char *path, int rec, int64_t *records) {
  struct stat sb;
  if (stat(path, &sb) != 0)
    return mc_error(MC_EIO, "%s: cannot open: %s", path, strerror(errno));
  if (!S_ISREG(sb.st_mode))
    return mc_error(MC_EIO, "%s: not a regular file", path);
  int64_t size = sb.st_size;
  if (size == 0 || size % rec != 0)
    return mc_error(MC_EFORMAT,
                    "%s: size %lld bytes is not a whole number of records; "
                    "expected a non-zero multiple of %d (%d label byte%s + "
                    "%d pixel bytes per record)",
                    path, (long long)size, rec, rec - CIFAR_PIXELS,
                    rec - CIFAR_PIXELS > 1 ? "s" : "", CIFAR_PIXELS);
  *records = size / rec;
  return MC_OK;
}

/* Copies the records of one file into ds at record `at` (already sized). */
static mc_status cifar_read(const char *path, int64_t records, int fine,
                            int64_t classes, mc_dataset *ds, int64_t at) {
  const int rec = CIFAR_PIXELS + 1 + fine;
  FILE *f = fopen(path, "rb");
  if (!f) return mc_error(MC_EIO, "%s: cannot open: %s", path, strerror(errno));
  uint8_t buf[CIFAR_PIXELS + 2];
  mc_status st = MC_OK;
  for (int64_t i = 0; i < records; i++) {
    if (fread(buf, 1, (size_t)rec, f) != (size_t)rec) {
      st = mc_error(ferror(f) ? MC_EIO : MC_EFORMAT,
                    "%s: %s at byte %lld (record %lld): expected %d bytes",
                    path, ferror(f) ? "read error" : "file shrank while reading",
                    (long long)(i * rec), (long long)i, rec);
      break;
    }
    if (fine && buf[0] >= 20) {
      st = mc_error(MC_EFORMAT,
                    "%s: byte %lld (record %lld): coarse label %u out of "
                    "range, expected 0..19",
                    path, (long long)(i * rec), (long long)i, buf[0]);
      break;
    }
    unsigned lab = buf[fine];
    if (lab >= classes) {
      st = mc_error(MC_EFORMAT,
                    "%s: byte %lld (record %lld): %slabel %u out of range, "
                    "expected 0..%lld",
                    path, (long long)(i * rec + fine), (long long)i,
                    fine ? "fine " : "", lab, (long long)(classes - 1));
      break;
    }
    ds->labels[at + i] = (int32_t)lab;
    memcpy(ds->images + (size_t)(at + i) * CIFAR_PIXELS, buf + 1 + fine,
           CIFAR_PIXELS);
  }
  fclose(f);
  return st;
}

mc_status mc_cifar_read_file(const char *path, int fine, mc_dataset *ds) {
  memset(ds, 0, sizeof *ds);
  int64_t records;
  mc_status st = cifar_size(path, CIFAR_PIXELS + 1 + fine, &records);
  if (st) return st;
  ds->n = records;
  ds->c = 3;
  ds->h = ds->w = 32;
  ds->classes = fine ? 100 : 10;
  st = cifar_alloc(ds, path);
  if (!st) st = cifar_read(path, records, fine, ds->classes, ds, 0);
  if (st) dataset_free(ds);
  return st;
}

static mc_status load_cifar_split(mc_dataset *ds, const char *dir,
                                  const char *const *files, int nfiles,
                                  int fine, int64_t classes) {
  const int rec = CIFAR_PIXELS + 1 + fine;
  char paths[8][1024];
  int64_t counts[8], total = 0;
  MC_ASSERT(nfiles <= 8);
  for (int k = 0; k < nfiles; k++) {
    int len = snprintf(paths[k], sizeof paths[k], "%s/%s", dir, files[k]);
    if (len < 0 || (size_t)len >= sizeof paths[k])
      return mc_error(MC_EARG, "%s: path too long", dir);
    if (!is_file(paths[k]))
      return mc_error(MC_EIO, "%s: not found (a %s directory needs %s%s)",
                      paths[k], fine ? "CIFAR-100 binary" : "CIFAR-10 binary",
                      fine ? "train.bin and test.bin"
                           : "data_batch_1.bin .. data_batch_5.bin and "
                             "test_batch.bin",
                      "");
    mc_status st = cifar_size(paths[k], rec, &counts[k]);
    if (st) return st;
    total += counts[k];
  }
  ds->n = total;
  ds->c = 3;
  ds->h = 32;
  ds->w = 32;
  ds->classes = classes;
  mc_status st = cifar_alloc(ds, dir);
  if (st) return st;
  int64_t at = 0;
  for (int k = 0; k < nfiles; k++) {
    st = cifar_read(paths[k], counts[k], fine, classes, ds, at);
    if (st) return st;
    at += counts[k];
  }
  return MC_OK;
}

static mc_status load_cifar(mc_data *d, const char *dir_in, int hundred) {
  if (!is_dir(dir_in))
    return mc_error(MC_EIO, "%s: no such directory (expected the %s binary "
                    "version: %s)", dir_in, hundred ? "CIFAR-100" : "CIFAR-10",
                    hundred ? "train.bin, test.bin"
                            : "data_batch_1..5.bin, test_batch.bin");
  /* accept the parent of the directory the official tarball unpacks to */
  char dir[512];
  const char *probe = hundred ? "train.bin" : "data_batch_1.bin";
  const char *sub = hundred ? "cifar-100-binary" : "cifar-10-batches-bin";
  char tmp[1024];
  snprintf(tmp, sizeof tmp, "%s/%s", dir_in, probe);
  int len;
  if (!is_file(tmp)) {
    snprintf(tmp, sizeof tmp, "%s/%s/%s", dir_in, sub, probe);
    if (is_file(tmp))
      len = snprintf(dir, sizeof dir, "%s/%s", dir_in, sub);
    else
      len = snprintf(dir, sizeof dir, "%s", dir_in);
  } else {
    len = snprintf(dir, sizeof dir, "%s", dir_in);
  }
  if (len < 0 || (size_t)len >= sizeof dir)
    return mc_error(MC_EARG, "%s: path too long", dir_in);
  snprintf(d->source, sizeof d->source, "%s", dir);
  snprintf(d->name, sizeof d->name, "%s", hundred ? "cifar100" : "cifar10");
  mc_status st;
  if (hundred) {
    static const char *const tr[] = {"train.bin"};
    static const char *const te[] = {"test.bin"};
    st = load_cifar_split(&d->train, dir, tr, 1, 1, 100);
    if (!st) st = load_cifar_split(&d->test, dir, te, 1, 1, 100);
  } else {
    static const char *const tr[] = {"data_batch_1.bin", "data_batch_2.bin",
                                     "data_batch_3.bin", "data_batch_4.bin",
                                     "data_batch_5.bin"};
    static const char *const te[] = {"test_batch.bin"};
    st = load_cifar_split(&d->train, dir, tr, 5, 0, 10);
    if (!st) st = load_cifar_split(&d->test, dir, te, 1, 0, 10);
  }
  if (st) return st;
  d->default_flip = 1;
  d->default_crop_pad = 4;
  return MC_OK;
}

static const char *ACCEPTED =
    "fashion-mnist (the Debian package dataset-fashion-mnist), "
    "fashion-mnist:DIR, mnist:DIR, idx:DIR, cifar10:DIR, cifar100:DIR";

mc_status mc_data_load(mc_data *d, const char *spec) {
  memset(d, 0, sizeof *d);
  if (!spec || !*spec)
    return mc_error(MC_EARG, "empty dataset; expected one of: %s", ACCEPTED);
  const char *colon = strchr(spec, ':');
  size_t plen = colon ? (size_t)(colon - spec) : strlen(spec);
  const char *dir = colon ? colon + 1 : NULL;
  char prefix[32];
  if (plen >= sizeof prefix)
    return mc_error(MC_EARG, "unknown dataset '%s'; expected one of: %s",
                    spec, ACCEPTED);
  memcpy(prefix, spec, plen);
  prefix[plen] = 0;
  if (dir && !*dir)
    return mc_error(MC_EARG, "dataset '%s': empty directory after ':'", spec);
  if (dir && strlen(dir) >= sizeof d->source)
    return mc_error(MC_EARG, "dataset '%s': directory path too long", spec);

  mc_status st;
  int known = 1;
  if (!strcmp(prefix, "fashion-mnist")) {
    const char *dd = dir ? dir : FASHION_DEFAULT_DIR;
    snprintf(d->source, sizeof d->source, "%s", dd);
    st = load_idx(d, dd, "fashion-mnist", dir ? NULL : FASHION_HINT);
  } else if (!strcmp(prefix, "mnist") || !strcmp(prefix, "idx")) {
    if (!dir)
      return mc_error(MC_EARG,
                      "dataset '%s' needs a directory: %s:DIR (accepted: %s)",
                      spec, prefix, ACCEPTED);
    /* idx:DIR: same file format for both; the directory name decides */
    const char *name = "mnist";
    if (!strcmp(prefix, "idx") && strcasestr(dir, "fashion"))
      name = "fashion-mnist";
    snprintf(d->source, sizeof d->source, "%s", dir);
    st = load_idx(d, dir, name, NULL);
  } else if (!strcmp(prefix, "cifar10") || !strcmp(prefix, "cifar100")) {
    if (!dir)
      return mc_error(MC_EARG,
                      "dataset '%s' needs a directory: %s:DIR (accepted: %s)",
                      spec, prefix, ACCEPTED);
    st = load_cifar(d, dir, !strcmp(prefix, "cifar100"));
  } else {
    known = 0;
    st = MC_EARG;
  }
  if (!known)
    return mc_error(MC_EARG, "unknown dataset '%s'; expected one of: %s", spec,
                    ACCEPTED);
  if (st) mc_data_free(d);
  return st;
}

void mc_data_free(mc_data *d) {
  if (!d) return;
  dataset_free(&d->train);
  dataset_free(&d->test);
  memset(d, 0, sizeof *d);
}

void mc_dataset_truncate(mc_dataset *d, int64_t n) {
  if (n <= 0 || n >= d->n) return;
  d->n = n;
}

/* ------------------------------------------------------------ statistics */

void mc_dataset_mean_std(const mc_dataset *d, float *mean, float *std) {
  const int64_t hw = d->h * d->w, chw = d->c * hw;
  for (int64_t ch = 0; ch < d->c; ch++) {
    if (d->n <= 0 || hw <= 0) {
      mean[ch] = 0.0f;
      std[ch] = 1.0f;
      continue;
    }
    /* integer sums are exact, so the result is independent of threads */
    uint64_t s = 0, s2 = 0;
#pragma omp parallel for reduction(+ : s, s2) schedule(static)
    for (int64_t i = 0; i < d->n; i++) {
      const uint8_t *p = d->images + i * chw + ch * hw;
      uint64_t a = 0, b = 0;
      for (int64_t j = 0; j < hw; j++) {
        a += p[j];
        b += (uint64_t)p[j] * p[j];
      }
      s += a;
      s2 += b;
    }
    const __uint128_t N = (__uint128_t)((uint64_t)d->n * (uint64_t)hw);
    /* var * N^2 * 255^2 = N * s2 - s^2, exact in 128 bits */
    const __uint128_t num = N * s2 - (__uint128_t)s * s;
    const double nn = (double)N;
    mean[ch] = (float)((double)s / (nn * 255.0));
    std[ch] = (float)(sqrt((double)num) / (nn * 255.0));
  }
}

/* --------------------------------------------------------------- batches */

/* Augmented batches are made DRAW_CHUNK images at a time: the chunk's
 * offsets and flips are drawn serially in index order (the same draws for
 * any thread count and any chunking), then its images are filled in
 * parallel; the draws live on the stack, so a batch allocates nothing. */
enum { DRAW_CHUNK = 256 };

void mc_dataset_batch(const mc_dataset *d, const int64_t *idx, int64_t n,
                      const mc_augment *aug, mc_rng *rng, float *x,
                      int32_t *y) {
  const int64_t C = d->c, H = d->h, W = d->w, hw = H * W, chw = C * hw;
  const int pad = aug && aug->crop_pad > 0 ? aug->crop_pad : 0;
  const int flip = aug && aug->flip;
  for (int64_t k = 0; k < n; k++) {
    MC_ASSERT(idx[k] >= 0 && idx[k] < d->n);
    y[k] = d->labels[idx[k]];
  }
  /* v / 255.0f, correctly rounded, via a table */
  float s[256];
  for (int v = 0; v < 256; v++) s[v] = (float)v / 255.0f;
  if (!pad && !flip) {
#pragma omp parallel for schedule(static) if (n * chw > (1 << 15))
    for (int64_t k = 0; k < n; k++) {
      const uint8_t *src = d->images + idx[k] * chw;
      float *dst = x + k * chw;
      for (int64_t j = 0; j < chw; j++) dst[j] = s[src[j]];
    }
    return;
  }
  MC_ASSERT(rng != NULL);
  int dy[DRAW_CHUNK], dx[DRAW_CHUNK];
  uint8_t fl[DRAW_CHUNK];
  for (int64_t k0 = 0; k0 < n; k0 += DRAW_CHUNK) {
    const int64_t kn = n - k0 < DRAW_CHUNK ? n - k0 : DRAW_CHUNK;
    for (int64_t k = 0; k < kn; k++) {
      if (pad) {
        dy[k] = (int)mc_rng_below(rng, (uint64_t)(2 * pad + 1));
        dx[k] = (int)mc_rng_below(rng, (uint64_t)(2 * pad + 1));
      } else {
        dy[k] = dx[k] = 0;
      }
      fl[k] = flip ? mc_rng_uniform(rng) < 0.5 : 0;
    }
#pragma omp parallel for schedule(static) if (kn * chw > (1 << 15))
    for (int64_t k = 0; k < kn; k++) {
      const uint8_t *src = d->images + idx[k0 + k] * chw;
      float *dst = x + (k0 + k) * chw;
      /* out(i, j) = padded(i + dy, j' + dx), j' = flipped ? W-1-j : j;
       * padded(a, b) = img(a - pad, b - pad), zero outside */
      const int64_t oy = dy[k] - pad, ox = dx[k] - pad;
      const int f = fl[k];
      for (int64_t c = 0; c < C; c++) {
        const uint8_t *sp = src + c * hw;
        float *dp = dst + c * hw;
        for (int64_t i = 0; i < H; i++) {
          const int64_t si = i + oy;
          float *row = dp + i * W;
          if (si < 0 || si >= H) {
            for (int64_t j = 0; j < W; j++) row[j] = 0.0f;
            continue;
          }
          const uint8_t *srow = sp + si * W;
          for (int64_t j = 0; j < W; j++) {
            const int64_t sj = (f ? W - 1 - j : j) + ox;
            row[j] = (sj >= 0 && sj < W) ? s[srow[sj]] : 0.0f;
          }
        }
      }
    }
  }
}
