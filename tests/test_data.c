/* Dataset tests: the real Fashion-MNIST (counts, labels, statistics),
 * synthetic IDX (gzip and raw) and CIFAR-10/100 files, every corruption
 * case the loaders must reject with a message naming the file, and the
 * batch conversion / augmentation (determinism, exact flips and crops). */
#include "testutil.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>
#include <zlib.h>

#include "data/data.h"

#define FASHION "/usr/share/datasets/fashion-mnist"

/* ------------------------------------------------------------ helpers */

static char *tmpdir(void) {
  char *d = mc_malloc(64);
  snprintf(d, 64, "/tmp/mc_test_data_XXXXXX");
  if (!mkdtemp(d)) fail_msg("mkdtemp failed");
  return d;
}

static void rmdir_r(char *d) {
  tu_sh("rm -rf '%s'", d);
  free(d);
}

static void write_bytes(const char *dir, const char *name, int gz,
                        const uint8_t *b, size_t n) {
  char p[512];
  snprintf(p, sizeof p, "%s/%s%s", dir, name, gz ? ".gz" : "");
  if (gz) {
    gzFile f = gzopen(p, "wb");
    assert_non_null(f);
    if (n) assert_int_equal(gzwrite(f, b, (unsigned)n), (int)n);
    assert_int_equal(gzclose(f), Z_OK);
  } else {
    FILE *f = fopen(p, "wb");
    assert_non_null(f);
    if (n) assert_int_equal(fwrite(b, 1, n, f), n);
    fclose(f);
  }
}

static void put32(uint8_t *p, uint32_t v) {
  p[0] = (uint8_t)(v >> 24);
  p[1] = (uint8_t)(v >> 16);
  p[2] = (uint8_t)(v >> 8);
  p[3] = (uint8_t)v;
}

static uint8_t pix(int64_t i, int64_t j) { return (uint8_t)((i * 37 + j * 11 + 3) & 0xff); }

typedef struct {
  uint32_t img_magic, lab_magic;
  int64_t img_trunc, lab_trunc; /* bytes cut off the end */
  int64_t img_extra, lab_extra; /* garbage bytes appended */
  int bad_label_at;             /* index to set to 10 (-1 none) */
  int64_t lab_n_delta;          /* labels count - images count */
  uint32_t rows;                /* 0: default 4 */
} idx_opts;

static idx_opts opts_ok(void) {
  idx_opts o = {0x803, 0x801, 0, 0, 0, 0, -1, 0, 0};
  return o;
}

/* Writes split (train/t10k) with n images of rows x 3. */
static void write_idx_split(const char *dir, const char *split, int gz,
                            int64_t n, const idx_opts *o) {
  uint32_t rows = o->rows ? o->rows : 4, cols = 3;
  int64_t hw = (int64_t)rows * cols;
  size_t isz = 16 + (size_t)(n * hw) + (size_t)o->img_extra;
  uint8_t *b = mc_calloc(isz, 1);
  put32(b, o->img_magic);
  put32(b + 4, (uint32_t)n);
  put32(b + 8, rows);
  put32(b + 12, cols);
  for (int64_t i = 0; i < n; i++)
    for (int64_t j = 0; j < hw; j++) b[16 + i * hw + j] = pix(i, j);
  for (int64_t j = 0; j < o->img_extra; j++) b[16 + n * hw + j] = 0xab;
  char name[64];
  snprintf(name, sizeof name, "%s-images-idx3-ubyte", split);
  write_bytes(dir, name, gz, b, isz - (size_t)o->img_trunc);
  free(b);

  int64_t ln = n + o->lab_n_delta;
  size_t lsz = 8 + (size_t)ln + (size_t)o->lab_extra;
  b = mc_calloc(lsz, 1);
  put32(b, o->lab_magic);
  put32(b + 4, (uint32_t)ln);
  for (int64_t i = 0; i < ln; i++) b[8 + i] = (uint8_t)((i * 7 + 1) % 10);
  if (o->bad_label_at >= 0) b[8 + o->bad_label_at] = 10;
  for (int64_t j = 0; j < o->lab_extra; j++) b[8 + ln + j] = 0xcd;
  snprintf(name, sizeof name, "%s-labels-idx1-ubyte", split);
  write_bytes(dir, name, gz, b, lsz - (size_t)o->lab_trunc);
  free(b);
}

static void write_idx_dir(const char *dir, int gz, const idx_opts *train,
                          const idx_opts *test) {
  write_idx_split(dir, "train", gz, 6, train);
  write_idx_split(dir, "t10k", gz, 3, test);
}

static mc_status load_dir(mc_data *d, const char *prefix, const char *dir) {
  char spec[600];
  snprintf(spec, sizeof spec, "%s:%s", prefix, dir);
  return mc_data_load(d, spec);
}

static void expect_err(mc_status got, mc_status want, const char *s1,
                       const char *s2) {
  if (got != want)
    fail_msg("status %s, expected %s; message: %s", mc_status_name(got),
             mc_status_name(want), mc_errmsg());
  if (s1 && !strstr(mc_errmsg(), s1))
    fail_msg("message lacks '%s': %s", s1, mc_errmsg());
  if (s2 && !strstr(mc_errmsg(), s2))
    fail_msg("message lacks '%s': %s", s2, mc_errmsg());
}

/* ---------------------------------------------------- real Fashion-MNIST */

static int read_gz_bytes(const char *path, long off, uint8_t *buf, unsigned n) {
  gzFile f = gzopen(path, "rb");
  if (!f) return -1;
  uint8_t skip[64];
  assert_true(off <= 64);
  if (off) assert_int_equal(gzread(f, skip, (unsigned)off), off);
  int k = gzread(f, buf, n);
  gzclose(f);
  return k;
}

static void test_fashion_real(void **s) {
  (void)s;
  struct stat sb;
  if (stat(FASHION "/train-images-idx3-ubyte.gz", &sb) != 0) {
    print_message("Fashion-MNIST not installed (dataset-fashion-mnist); skipping\n");
    skip();
  }
  mc_data d;
  mc_status st = mc_data_load(&d, "fashion-mnist");
  if (st) fail_msg("%s", mc_errmsg());
  assert_string_equal(d.name, "fashion-mnist");
  assert_string_equal(d.source, FASHION);
  assert_int_equal(d.train.n, 60000);
  assert_int_equal(d.test.n, 10000);
  assert_int_equal(d.train.c, 1);
  assert_int_equal(d.train.h, 28);
  assert_int_equal(d.train.w, 28);
  assert_int_equal(d.test.h, 28);
  assert_int_equal(d.train.classes, 10);
  assert_int_equal(d.default_flip, 0);
  assert_int_equal(d.default_crop_pad, 2);
  /* balanced classes: 6000 per class train, 1000 test */
  int64_t hist[10] = {0}, thist[10] = {0};
  for (int64_t i = 0; i < d.train.n; i++) {
    assert_true(d.train.labels[i] >= 0 && d.train.labels[i] < 10);
    hist[d.train.labels[i]]++;
  }
  for (int64_t i = 0; i < d.test.n; i++) {
    assert_true(d.test.labels[i] >= 0 && d.test.labels[i] < 10);
    thist[d.test.labels[i]]++;
  }
  for (int k = 0; k < 10; k++) {
    assert_int_equal(hist[k], 6000);
    assert_int_equal(thist[k], 1000);
  }
  /* first labels and first image, read independently with zlib */
  uint8_t lab[4], img[784];
  assert_int_equal(read_gz_bytes(FASHION "/train-labels-idx1-ubyte.gz", 8, lab, 4), 4);
  for (int i = 0; i < 4; i++) assert_int_equal(d.train.labels[i], lab[i]);
  assert_int_equal(d.train.labels[0], 9); /* the famous ankle boot */
  assert_int_equal(read_gz_bytes(FASHION "/t10k-labels-idx1-ubyte.gz", 8, lab, 4), 4);
  for (int i = 0; i < 4; i++) assert_int_equal(d.test.labels[i], lab[i]);
  assert_int_equal(read_gz_bytes(FASHION "/train-images-idx3-ubyte.gz", 16, img, 784), 784);
  assert_memory_equal(d.train.images, img, 784);

  float mean, std;
  mc_dataset_mean_std(&d.train, &mean, &std);
  assert_true(fabsf(mean - 0.2860f) < 5e-4f);
  assert_true(fabsf(std - 0.3530f) < 5e-4f);
  /* thread-independence: exact integer sums */
  int th = mc_get_threads();
  mc_set_threads(1);
  float m1, s1;
  mc_dataset_mean_std(&d.train, &m1, &s1);
  mc_set_threads(th);
  assert_true(m1 == mean && s1 == std);

  /* fashion-mnist:DIR and idx:DIR name the data too */
  mc_data_free(&d);
  assert_null(d.train.images);
  st = mc_data_load(&d, "idx:" FASHION);
  if (st) fail_msg("%s", mc_errmsg());
  assert_string_equal(d.name, "fashion-mnist");
  mc_data_free(&d);
}

/* ------------------------------------------------------- synthetic IDX */

static void check_synthetic_idx(const mc_data *d) {
  assert_int_equal(d->train.n, 6);
  assert_int_equal(d->test.n, 3);
  assert_int_equal(d->train.c, 1);
  assert_int_equal(d->train.h, 4);
  assert_int_equal(d->train.w, 3);
  assert_int_equal(d->train.classes, 10);
  for (int64_t i = 0; i < 6; i++) {
    assert_int_equal(d->train.labels[i], (i * 7 + 1) % 10);
    for (int64_t j = 0; j < 12; j++)
      assert_int_equal(d->train.images[i * 12 + j], pix(i, j));
  }
  for (int64_t i = 0; i < 3; i++) {
    assert_int_equal(d->test.labels[i], (i * 7 + 1) % 10);
    for (int64_t j = 0; j < 12; j++)
      assert_int_equal(d->test.images[i * 12 + j], pix(i, j));
  }
}

static void test_idx_synthetic(void **s) {
  (void)s;
  for (int gz = 0; gz < 2; gz++) {
    char *dir = tmpdir();
    idx_opts o = opts_ok();
    write_idx_dir(dir, gz, &o, &o);
    mc_data d;
    mc_status st = load_dir(&d, "mnist", dir);
    if (st) fail_msg("%s", mc_errmsg());
    assert_string_equal(d.name, "mnist");
    assert_string_equal(d.source, dir);
    check_synthetic_idx(&d);
    mc_data_free(&d);
    st = load_dir(&d, "fashion-mnist", dir);
    if (st) fail_msg("%s", mc_errmsg());
    assert_string_equal(d.name, "fashion-mnist");
    check_synthetic_idx(&d);
    mc_data_free(&d);
    st = load_dir(&d, "idx", dir);
    if (st) fail_msg("%s", mc_errmsg());
    assert_string_equal(d.name, "mnist");
    check_synthetic_idx(&d);
    mc_data_free(&d);
    rmdir_r(dir);
  }
}

/* a mix: gz images with raw labels */
static void test_idx_mixed(void **s) {
  (void)s;
  char *dir = tmpdir();
  idx_opts o = opts_ok();
  write_idx_dir(dir, 1, &o, &o);
  tu_sh("cd '%s' && gunzip train-labels-idx1-ubyte.gz t10k-images-idx3-ubyte.gz", dir);
  mc_data d;
  mc_status st = load_dir(&d, "mnist", dir);
  if (st) fail_msg("%s", mc_errmsg());
  check_synthetic_idx(&d);
  mc_data_free(&d);
  rmdir_r(dir);
}

/* One corruption of the train split (test split valid). */
static void idx_corrupt(int gz, idx_opts o, mc_status want, const char *file,
                        const char *s1, const char *s2) {
  char *dir = tmpdir();
  idx_opts ok = opts_ok();
  write_idx_dir(dir, gz, &o, &ok);
  mc_data d;
  mc_status st = load_dir(&d, "mnist", dir);
  char path[600];
  snprintf(path, sizeof path, "%s/%s%s", dir, file, gz ? ".gz" : "");
  expect_err(st, want, path, s1);
  if (s2) expect_err(st, want, s2, NULL);
  assert_null(d.train.images);
  assert_null(d.test.labels);
  rmdir_r(dir);
}

static void test_idx_corrupt(void **s) {
  (void)s;
  for (int gz = 0; gz < 2; gz++) {
    idx_opts o;
    /* truncated images: 5 bytes short; data ends at 16 + 72 - 5 = 83 */
    o = opts_ok(); o.img_trunc = 5;
    idx_corrupt(gz, o, MC_EFORMAT, "train-images-idx3-ubyte", "truncated", "83");
    /* truncated inside the header */
    o = opts_ok(); o.img_trunc = 16 + 72 - 10;
    idx_corrupt(gz, o, MC_EFORMAT, "train-images-idx3-ubyte", "truncated", "dimensions");
    /* truncated labels: 2 short; ends at 8 + 6 - 2 = 12 */
    o = opts_ok(); o.lab_trunc = 2;
    idx_corrupt(gz, o, MC_EFORMAT, "train-labels-idx1-ubyte", "truncated", "12");
    /* wrong magic on images and labels, swapped files */
    o = opts_ok(); o.img_magic = 0x12345678;
    idx_corrupt(gz, o, MC_EFORMAT, "train-images-idx3-ubyte", "magic", "0x00000803");
    o = opts_ok(); o.lab_magic = 0x803;
    idx_corrupt(gz, o, MC_EFORMAT, "train-labels-idx1-ubyte", "magic", "0x00000801");
    /* label out of range: index 3 at byte 11 */
    o = opts_ok(); o.bad_label_at = 3;
    idx_corrupt(gz, o, MC_EFORMAT, "train-labels-idx1-ubyte", "out of range", "11");
    /* count mismatch */
    o = opts_ok(); o.lab_n_delta = 1;
    idx_corrupt(gz, o, MC_EFORMAT, "train-images-idx3-ubyte", "7 labels", "6 images");
    /* trailing garbage */
    o = opts_ok(); o.img_extra = 3;
    idx_corrupt(gz, o, MC_EFORMAT, "train-images-idx3-ubyte", "trailing", "88");
    o = opts_ok(); o.lab_extra = 1;
    idx_corrupt(gz, o, MC_EFORMAT, "train-labels-idx1-ubyte", "trailing", "14");
    /* zero dimension */
    o = opts_ok(); o.rows = 0;
    {
      /* rows = 0 means default in opts; write one by hand instead */
      char *dir = tmpdir();
      idx_opts ok = opts_ok();
      write_idx_dir(dir, gz, &ok, &ok);
      uint8_t b[16];
      put32(b, 0x803); put32(b + 4, 6); put32(b + 8, 0); put32(b + 12, 3);
      write_bytes(dir, "train-images-idx3-ubyte", gz, b, 16);
      mc_data d;
      expect_err(load_dir(&d, "mnist", dir), MC_EFORMAT,
                 "train-images-idx3-ubyte", "byte 8");
      rmdir_r(dir);
    }
    /* a header claiming a huge count fails as truncated, without OOM */
    {
      char *dir = tmpdir();
      idx_opts ok = opts_ok();
      write_idx_dir(dir, gz, &ok, &ok);
      uint8_t b[16 + 12];
      memset(b, 0, sizeof b);
      put32(b, 0x803); put32(b + 4, 0x7fffffff); put32(b + 8, 28); put32(b + 12, 28);
      write_bytes(dir, "train-images-idx3-ubyte", gz, b, sizeof b);
      mc_data d;
      expect_err(load_dir(&d, "mnist", dir), MC_EFORMAT,
                 "train-images-idx3-ubyte", "truncated");
      /* and one whose size is beyond any sane image */
      put32(b + 8, 60000); put32(b + 12, 60000);
      write_bytes(dir, "train-images-idx3-ubyte", gz, b, sizeof b);
      expect_err(load_dir(&d, "mnist", dir), MC_EFORMAT,
                 "train-images-idx3-ubyte", "60000x60000");
      rmdir_r(dir);
    }
  }
  /* test split corruption is reported against the t10k file */
  {
    char *dir = tmpdir();
    idx_opts ok = opts_ok(), bad = opts_ok();
    bad.rows = 5;
    write_idx_dir(dir, 0, &ok, &bad);
    mc_data d;
    expect_err(load_dir(&d, "mnist", dir), MC_EFORMAT, "4x3", "5x3");
    rmdir_r(dir);
  }
  /* corrupt gzip stream (CRC mismatch) */
  {
    char *dir = tmpdir();
    idx_opts ok = opts_ok();
    write_idx_dir(dir, 1, &ok, &ok);
    char p[600];
    snprintf(p, sizeof p, "%s/train-images-idx3-ubyte.gz", dir);
    FILE *f = fopen(p, "r+b");
    assert_non_null(f);
    fseek(f, -8, SEEK_END); /* CRC32 field of the trailer */
    fputc(0x5a, f);
    fputc(0xa5, f);
    fclose(f);
    mc_data d;
    expect_err(load_dir(&d, "mnist", dir), MC_EFORMAT,
               "train-images-idx3-ubyte.gz", "gzip");
    rmdir_r(dir);
  }
  /* a truncated gzip stream */
  {
    char *dir = tmpdir();
    idx_opts ok = opts_ok();
    write_idx_dir(dir, 1, &ok, &ok);
    char p[600];
    snprintf(p, sizeof p, "%s/train-images-idx3-ubyte.gz", dir);
    struct stat sb;
    assert_int_equal(stat(p, &sb), 0);
    assert_int_equal(truncate(p, sb.st_size - 30), 0);
    mc_data d;
    mc_status st = load_dir(&d, "mnist", dir);
    assert_int_equal(st, MC_EFORMAT);
    assert_non_null(strstr(mc_errmsg(), "train-images-idx3-ubyte.gz"));
    rmdir_r(dir);
  }
}

static void test_spec_errors(void **s) {
  (void)s;
  mc_data d;
  expect_err(mc_data_load(&d, "imagenet:/tmp"), MC_EARG, "imagenet",
             "cifar100:DIR");
  expect_err(mc_data_load(&d, "nonsense"), MC_EARG, "fashion-mnist:DIR",
             "mnist:DIR");
  expect_err(mc_data_load(&d, "mnist"), MC_EARG, "mnist:DIR", NULL);
  expect_err(mc_data_load(&d, "cifar10"), MC_EARG, "cifar10:DIR", NULL);
  expect_err(mc_data_load(&d, "mnist:"), MC_EARG, "directory", NULL);
  expect_err(mc_data_load(&d, ""), MC_EARG, "idx:DIR", NULL);
  expect_err(mc_data_load(&d, "mnist:/nonexistent/mc_dir"), MC_EIO,
             "/nonexistent/mc_dir", "no such directory");
  expect_err(mc_data_load(&d, "fashion-mnist:/nonexistent/mc_dir"), MC_EIO,
             "/nonexistent/mc_dir", NULL);
  expect_err(mc_data_load(&d, "cifar10:/nonexistent/mc_dir"), MC_EIO,
             "/nonexistent/mc_dir", NULL);
  /* an existing directory without the files */
  char *dir = tmpdir();
  expect_err(load_dir(&d, "mnist", dir), MC_EIO, dir,
             "train-images-idx3-ubyte");
  idx_opts ok = opts_ok();
  write_idx_dir(dir, 1, &ok, &ok);
  char p[600];
  snprintf(p, sizeof p, "%s/t10k-labels-idx1-ubyte.gz", dir);
  unlink(p);
  expect_err(load_dir(&d, "mnist", dir), MC_EIO, "t10k-labels-idx1-ubyte",
             NULL);
  assert_null(d.train.images);
  rmdir_r(dir);
}

/* ------------------------------------------------------------- CIFAR */

static uint8_t cpix(int64_t rec, int64_t j) { return (uint8_t)((rec * 13 + j * 5 + 1) & 0xff); }

/* Writes a CIFAR file of n records; record r's label = lab(r); the global
 * record number offsets the pixel pattern. */
static void write_cifar(const char *dir, const char *name, int fine,
                        int64_t n, int64_t base, int classes, int64_t extra,
                        int bad_rec, int bad_val) {
  int rec = 3072 + 1 + fine;
  size_t sz = (size_t)(n * rec + extra);
  uint8_t *b = mc_calloc(sz, 1);
  for (int64_t r = 0; r < n; r++) {
    uint8_t *p = b + r * rec;
    if (fine) p[0] = (uint8_t)((base + r) % 20);
    p[fine] = (uint8_t)((base + r) % classes);
    if (r == bad_rec) p[fine] = (uint8_t)bad_val;
    for (int j = 0; j < 3072; j++) p[1 + fine + j] = cpix(base + r, j);
  }
  write_bytes(dir, name, 0, b, sz);
  free(b);
}

static void write_cifar10(const char *dir) {
  for (int k = 1; k <= 5; k++) {
    char name[32];
    snprintf(name, sizeof name, "data_batch_%d.bin", k);
    write_cifar(dir, name, 0, k, (k - 1) * k / 2, 10, 0, -1, 0);
  }
  write_cifar(dir, "test_batch.bin", 0, 4, 0, 10, 0, -1, 0);
}

static void check_cifar(const mc_dataset *ds, int64_t n, int classes) {
  assert_int_equal(ds->n, n);
  assert_int_equal(ds->c, 3);
  assert_int_equal(ds->h, 32);
  assert_int_equal(ds->w, 32);
  assert_int_equal(ds->classes, classes);
  for (int64_t r = 0; r < n; r++) {
    assert_int_equal(ds->labels[r], r % classes);
    for (int j = 0; j < 3072; j += 97)
      assert_int_equal(ds->images[r * 3072 + j], cpix(r, j));
  }
}

static void test_cifar10(void **s) {
  (void)s;
  char *dir = tmpdir();
  write_cifar10(dir);
  mc_data d;
  mc_status st = load_dir(&d, "cifar10", dir);
  if (st) fail_msg("%s", mc_errmsg());
  assert_string_equal(d.name, "cifar10");
  assert_int_equal(d.default_flip, 1);
  assert_int_equal(d.default_crop_pad, 4);
  check_cifar(&d.train, 15, 10); /* 1+2+3+4+5 records, in batch order */
  check_cifar(&d.test, 4, 10);
  mc_data_free(&d);

  /* the parent of cifar-10-batches-bin works too */
  char *top = tmpdir();
  tu_sh("mv '%s' '%s/cifar-10-batches-bin'", dir, top);
  st = load_dir(&d, "cifar10", top);
  if (st) fail_msg("%s", mc_errmsg());
  assert_non_null(strstr(d.source, "cifar-10-batches-bin"));
  check_cifar(&d.train, 15, 10);
  mc_data_free(&d);
  snprintf(dir, 64, "%s/cifar-10-batches-bin", top);

  /* size not a whole number of records */
  write_cifar(dir, "data_batch_3.bin", 0, 3, 3, 10, 100, -1, 0);
  expect_err(load_dir(&d, "cifar10", dir), MC_EFORMAT, "data_batch_3.bin",
             "3073");
  assert_non_null(strstr(mc_errmsg(), "9319")); /* the size */
  /* empty file */
  write_cifar(dir, "data_batch_3.bin", 0, 0, 3, 10, 0, -1, 0);
  expect_err(load_dir(&d, "cifar10", dir), MC_EFORMAT, "data_batch_3.bin",
             "3073");
  /* label 10 in record 2 of data_batch_3 (byte 6146) */
  write_cifar(dir, "data_batch_3.bin", 0, 3, 3, 10, 0, 2, 10);
  expect_err(load_dir(&d, "cifar10", dir), MC_EFORMAT, "data_batch_3.bin",
             "record 2");
  assert_non_null(strstr(mc_errmsg(), "6146"));
  assert_non_null(strstr(mc_errmsg(), "label 10"));
  assert_null(d.train.images);
  /* missing batch */
  write_cifar(dir, "data_batch_3.bin", 0, 3, 3, 10, 0, -1, 0);
  char p[600];
  snprintf(p, sizeof p, "%s/test_batch.bin", dir);
  unlink(p);
  expect_err(load_dir(&d, "cifar10", dir), MC_EIO, "test_batch.bin", NULL);
  free(dir);
  rmdir_r(top);
}

static void test_cifar100(void **s) {
  (void)s;
  char *dir = tmpdir();
  write_cifar(dir, "train.bin", 1, 130, 0, 100, 0, -1, 0);
  write_cifar(dir, "test.bin", 1, 7, 0, 100, 0, -1, 0);
  mc_data d;
  mc_status st = load_dir(&d, "cifar100", dir);
  if (st) fail_msg("%s", mc_errmsg());
  assert_string_equal(d.name, "cifar100");
  assert_int_equal(d.default_flip, 1);
  assert_int_equal(d.default_crop_pad, 4);
  check_cifar(&d.train, 130, 100); /* fine labels */
  check_cifar(&d.test, 7, 100);
  mc_data_free(&d);
  /* cifar10 reader on cifar100 files: wrong names */
  expect_err(load_dir(&d, "cifar10", dir), MC_EIO, "data_batch_1.bin", NULL);
  /* fine label 100 in record 5: byte 5*3074+1 = 15371 */
  write_cifar(dir, "test.bin", 1, 7, 0, 100, 0, 5, 100);
  expect_err(load_dir(&d, "cifar100", dir), MC_EFORMAT, "test.bin",
             "record 5");
  assert_non_null(strstr(mc_errmsg(), "15371"));
  /* record size 3074, not 3073 */
  write_cifar(dir, "test.bin", 1, 7, 0, 100, 1, -1, 0);
  expect_err(load_dir(&d, "cifar100", dir), MC_EFORMAT, "test.bin", "3074");
  /* a CIFAR-10 file given as CIFAR-100: 3073-byte records */
  write_cifar(dir, "test.bin", 0, 6, 0, 10, 0, -1, 0); /* 6*3073 */
  expect_err(load_dir(&d, "cifar100", dir), MC_EFORMAT, "test.bin", "3074");
  /* coarse label out of range */
  {
    uint8_t *b = mc_calloc(3074, 1);
    b[0] = 20;
    b[1] = 3;
    write_bytes(dir, "test.bin", 0, b, 3074);
    free(b);
    expect_err(load_dir(&d, "cifar100", dir), MC_EFORMAT, "test.bin",
               "coarse");
  }
  rmdir_r(dir);
}

/* ------------------------------------------------- statistics, batches */

/* A small dataset with an explicit image pattern. */
static mc_dataset synth(int64_t n, int64_t c, int64_t h, int64_t w) {
  mc_dataset d = {0};
  d.n = n; d.c = c; d.h = h; d.w = w; d.classes = 10;
  d.images = mc_malloc((size_t)(n * c * h * w));
  d.labels = mc_malloc(sizeof(int32_t) * (size_t)n);
  for (int64_t i = 0; i < n * c * h * w; i++) d.images[i] = (uint8_t)((i * 29 + 7) % 256);
  for (int64_t i = 0; i < n; i++) d.labels[i] = (int32_t)(i % 10);
  return d;
}

static void test_mean_std(void **s) {
  (void)s;
  mc_dataset d = synth(7, 3, 5, 6);
  float mean[3], std[3];
  mc_dataset_mean_std(&d, mean, std);
  int64_t hw = 30, chw = 90;
  for (int c = 0; c < 3; c++) {
    double sm = 0, sq = 0;
    for (int64_t i = 0; i < d.n; i++)
      for (int64_t j = 0; j < hw; j++) {
        double v = d.images[i * chw + c * hw + j] / 255.0;
        sm += v;
        sq += v * v;
      }
    double N = (double)(d.n * hw), m = sm / N;
    double sd = sqrt(sq / N - m * m);
    assert_true(fabs(mean[c] - m) < 1e-6);
    assert_true(fabs(std[c] - sd) < 1e-6);
  }
  /* constant images: std exactly 0, mean exact */
  memset(d.images, 51, (size_t)(d.n * chw));
  mc_dataset_mean_std(&d, mean, std);
  for (int c = 0; c < 3; c++) {
    assert_true(mean[c] == 0.2f);
    assert_true(std[c] == 0.0f);
  }
  /* truncate */
  mc_dataset_truncate(&d, 0);
  assert_int_equal(d.n, 7);
  mc_dataset_truncate(&d, 100);
  assert_int_equal(d.n, 7);
  mc_dataset_truncate(&d, 3);
  assert_int_equal(d.n, 3);
  free(d.images);
  free(d.labels);
}

static void test_batch_plain(void **s) {
  (void)s;
  mc_dataset d = synth(10, 3, 4, 5);
  int64_t idx[4] = {7, 0, 9, 7};
  float x[4 * 60];
  int32_t y[4];
  mc_dataset_batch(&d, idx, 4, NULL, NULL, x, y);
  for (int k = 0; k < 4; k++) {
    assert_int_equal(y[k], d.labels[idx[k]]);
    for (int j = 0; j < 60; j++)
      assert_true(x[k * 60 + j] == (float)d.images[idx[k] * 60 + j] / 255.0f);
  }
  /* an augment with nothing enabled is the identity and draws nothing */
  mc_augment none = {0, 0};
  float x2[4 * 60];
  mc_dataset_batch(&d, idx, 4, &none, NULL, x2, y);
  assert_memory_equal(x, x2, sizeof x);
  free(d.images);
  free(d.labels);
}

static void test_augment(void **s) {
  (void)s;
  const int64_t n = 64, C = 2, H = 6, W = 7, chw = C * H * W;
  mc_dataset d = synth(n, C, H, W);
  int64_t *idx = mc_malloc(sizeof(int64_t) * n);
  for (int64_t i = 0; i < n; i++) idx[i] = (i * 5) % n;
  float *plain = mc_malloc(sizeof(float) * (size_t)(n * chw));
  float *a = mc_malloc(sizeof(float) * (size_t)(n * chw));
  float *b = mc_malloc(sizeof(float) * (size_t)(n * chw));
  int32_t *y = mc_malloc(sizeof(int32_t) * n);
  mc_dataset_batch(&d, idx, n, NULL, NULL, plain, y);

  /* determinism for a seed, independent of thread count; the rng advances */
  mc_augment aug = {2, 1};
  mc_rng r1, r2;
  mc_rng_seed(&r1, 42);
  mc_rng_seed(&r2, 42);
  int th = mc_get_threads();
  mc_set_threads(1);
  mc_dataset_batch(&d, idx, n, &aug, &r1, a, y);
  mc_set_threads(4);
  mc_dataset_batch(&d, idx, n, &aug, &r2, b, y);
  mc_set_threads(th);
  assert_memory_equal(a, b, sizeof(float) * (size_t)(n * chw));
  assert_memory_equal(r1.s, r2.s, sizeof r1.s);
  mc_dataset_batch(&d, idx, n, &aug, &r1, b, y);
  assert_memory_not_equal(a, b, sizeof(float) * (size_t)(n * chw));
  for (int64_t k = 0; k < n; k++) assert_int_equal(y[k], d.labels[idx[k]]);

  /* pad 0 and no flip: identity */
  mc_augment id = {0, 0};
  mc_dataset_batch(&d, idx, n, &id, &r1, a, y);
  assert_memory_equal(a, plain, sizeof(float) * (size_t)(n * chw));

  /* flip only: each image is either unchanged or an exact mirror */
  mc_augment fl = {0, 1};
  mc_dataset_batch(&d, idx, n, &fl, &r1, a, y);
  int nflip = 0, nsame = 0;
  for (int64_t k = 0; k < n; k++) {
    const float *p = plain + k * chw, *q = a + k * chw;
    int same = !memcmp(p, q, sizeof(float) * (size_t)chw);
    int mirror = 1;
    for (int64_t c = 0; c < C; c++)
      for (int64_t i = 0; i < H; i++)
        for (int64_t j = 0; j < W; j++)
          if (q[(c * H + i) * W + j] != p[(c * H + i) * W + (W - 1 - j)]) mirror = 0;
    assert_true(same || mirror);
    nflip += mirror && !same;
    nsame += same;
  }
  assert_true(nflip > 10 && nsame > 10); /* p = 0.5 over 64 images */

  /* crop only: each output is the padded image shifted by some (dy, dx)
   * in [0, 2p]; recover it and check every pixel (zeros outside) */
  const int pad = 2;
  mc_augment cr = {pad, 0};
  mc_dataset_batch(&d, idx, n, &cr, &r1, a, y);
  int seen[5][5] = {{0}};
  for (int64_t k = 0; k < n; k++) {
    const uint8_t *src = d.images + idx[k] * chw;
    int found = 0;
    for (int dy = 0; dy <= 2 * pad && !found; dy++)
      for (int dx = 0; dx <= 2 * pad && !found; dx++) {
        int ok = 1;
        for (int64_t c = 0; c < C && ok; c++)
          for (int64_t i = 0; i < H && ok; i++)
            for (int64_t j = 0; j < W && ok; j++) {
              int64_t si = i + dy - pad, sj = j + dx - pad;
              float want = (si >= 0 && si < H && sj >= 0 && sj < W)
                               ? (float)src[(c * H + si) * W + sj] / 255.0f
                               : 0.0f;
              if (a[k * chw + (c * H + i) * W + j] != want) ok = 0;
            }
        if (ok) {
          found = 1;
          seen[dy][dx]++;
        }
      }
    assert_true(found);
  }
  int distinct = 0;
  for (int i = 0; i < 5; i++)
    for (int j = 0; j < 5; j++) distinct += seen[i][j] > 0;
  assert_true(distinct >= 10);

  free(idx);
  free(plain);
  free(a);
  free(b);
  free(y);
  free(d.images);
  free(d.labels);
}

/* A single bright pixel moves exactly by the drawn shift. */
static void test_crop_shift(void **s) {
  (void)s;
  const int64_t H = 8, W = 8;
  mc_dataset d = {0};
  d.n = 1; d.c = 1; d.h = H; d.w = W; d.classes = 10;
  d.images = mc_calloc(64, 1);
  d.labels = mc_calloc(1, sizeof(int32_t));
  d.images[3 * W + 4] = 255; /* (3, 4) */
  int64_t idx = 0;
  float x[64];
  int32_t y;
  mc_augment cr = {3, 1};
  mc_rng r, rr;
  mc_rng_seed(&r, 7);
  for (int t = 0; t < 200; t++) {
    /* replay the draws: dy, dx in [0, 6], then the flip coin */
    rr = r;
    int dy = (int)mc_rng_below(&rr, 7), dx = (int)mc_rng_below(&rr, 7);
    int f = mc_rng_uniform(&rr) < 0.5;
    mc_dataset_batch(&d, &idx, 1, &cr, &r, x, &y);
    assert_memory_equal(r.s, rr.s, sizeof r.s);
    /* out(i, j') = img(i + dy - 3, j + dx - 3) with j' = f ? W-1-j : j */
    int64_t oi = 3 - (dy - 3), oj = 4 - (dx - 3);
    if (f) oj = W - 1 - oj;
    for (int64_t i = 0; i < H; i++)
      for (int64_t j = 0; j < W; j++) {
        float want = (i == oi && j == oj) ? 1.0f : 0.0f;
        assert_true(x[i * W + j] == want);
      }
  }
  free(d.images);
  free(d.labels);
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_fashion_real),  cmocka_unit_test(test_idx_synthetic),
      cmocka_unit_test(test_idx_mixed),     cmocka_unit_test(test_idx_corrupt),
      cmocka_unit_test(test_spec_errors),   cmocka_unit_test(test_cifar10),
      cmocka_unit_test(test_cifar100),      cmocka_unit_test(test_mean_std),
      cmocka_unit_test(test_batch_plain),   cmocka_unit_test(test_augment),
      cmocka_unit_test(test_crop_shift),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
