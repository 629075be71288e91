/* safetensors and checkpoint tests: bitwise save -> load round trips for
 * every kind of architecture, curve files with prefixes, metadata, a zoo of
 * hostile files (each must fail with the right status and a message naming
 * the file, never crash -- the suite also runs under ASan/UBSan), atomic
 * writes that leave the previous file intact on failure, and interop with
 * PyTorch in both directions (tests/st_torch.py, /usr/bin/python3). */
#include "testutil.h"

#include <dirent.h>
#include <errno.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <unistd.h>

#include "io/safetensors.h"

static char g_dir[256];

static int setup_dir(void **s) {
  (void)s;
  snprintf(g_dir, sizeof g_dir, "/tmp/mc_st_test_XXXXXX");
  return mkdtemp(g_dir) ? 0 : -1;
}

static int teardown_dir(void **s) {
  (void)s;
  return tu_sh("rm -rf '%s'", g_dir);
}

static const char *tpath(const char *name) {
  static char buf[8][512];
  static int k;
  k = (k + 1) % 8;
  snprintf(buf[k], sizeof buf[k], "%s/%s", g_dir, name);
  return buf[k];
}

#define ASSERT_MSG(sub)                                                      \
  do {                                                                       \
    if (!strstr(mc_errmsg(), (sub)))                                         \
      fail_msg("message '%s' lacks '%s'", mc_errmsg(), (sub));               \
  } while (0)

/* number of temporary files left behind in the test directory */
static int count_tmp(void) {
  DIR *d = opendir(g_dir);
  assert_non_null(d);
  int n = 0;
  struct dirent *e;
  while ((e = readdir(d)))
    if (strstr(e->d_name, ".tmp.")) n++;
  closedir(d);
  return n;
}

static mc_model *make_model(const char *arch, int64_t c, int64_t hw, double width, const char *widths, int bn) {
  mc_arch_params p;
  mc_arch_params_default(&p);
  p.in_c = c;
  p.in_h = p.in_w = hw;
  p.width = width;
  if (widths) p.widths = widths;
  p.bn = bn;
  mc_model *m = NULL;
  if (mc_model_create(&m, arch, &p)) fail_msg("model %s: %s", arch, mc_errmsg());
  return m;
}

static void random_norm(mc_model *m, uint64_t seed) {
  mc_rng r;
  mc_rng_seed(&r, seed);
  for (int64_t i = 0; i < m->in_c; i++) {
    m->norm_mean[i] = (float)mc_rng_uniform(&r);
    m->norm_std[i] = 0.1f + (float)mc_rng_uniform(&r);
  }
}

/* ------------------------------------------------------------ round trip */

static void roundtrip(mc_model *m, const char *file) {
  float *theta, *state;
  tu_random_params(m, 42, &theta, &state);
  random_norm(m, 7);
  const char *path = tpath(file);
  mc_kv extra[] = {{"provenance", "test_safetensors"}, {"seed", "42"}};
  assert_int_equal(mc_ckpt_save(path, m, &(mc_ckpt_part){"", theta, state}, 1, extra, 2), MC_OK);
  mc_model *m2;
  float *th2, *st2;
  mc_status st = mc_ckpt_load(path, NULL, NULL, &m2, &th2, &st2);
  if (st) fail_msg("%s", mc_errmsg());
  assert_string_equal(m2->arch, m->arch);
  assert_int_equal(m2->n_theta, m->n_theta);
  assert_int_equal(m2->n_state, m->n_state);
  assert_int_equal(m2->n_tensors, m->n_tensors);
  assert_true(m2->width == m->width);
  assert_int_equal(m2->in_c, m->in_c);
  assert_int_equal(m2->in_h, m->in_h);
  assert_int_equal(m2->classes, m->classes);
  assert_memory_equal(th2, theta, m->n_theta * sizeof(float));
  if (m->n_state) assert_memory_equal(st2, state, m->n_state * sizeof(float));
  assert_memory_equal(m2->norm_mean, m->norm_mean, (size_t)m->in_c * sizeof(float));
  assert_memory_equal(m2->norm_std, m->norm_std, (size_t)m->in_c * sizeof(float));

  /* the raw file: metadata, one I64 scalar per BN, aligned layout */
  mc_st_file f;
  assert_int_equal(mc_st_read(path, &f), MC_OK);
  assert_string_equal(mc_st_meta(&f, "provenance"), "test_safetensors");
  assert_string_equal(mc_st_meta(&f, "seed"), "42");
  assert_string_equal(mc_st_meta(&f, "modeconn.arch"), m->arch);
  assert_non_null(mc_st_meta(&f, "modeconn.spec"));
  int n_bn = 0;
  for (int i = 0; i < m->n_nodes; i++) {
    if (m->nodes[i].kind != MC_NODE_BN) continue;
    n_bn++;
    char nm[256];
    snprintf(nm, sizeof nm, "%s.num_batches_tracked", m->nodes[i].name);
    const mc_st_tensor *t = mc_st_find(&f, nm);
    assert_non_null(t);
    assert_int_equal(t->dtype, MC_DT_I64);
    assert_int_equal(t->ndim, 0);
    assert_int_equal(t->nbytes, 8);
  }
  assert_int_equal(f.n, m->n_tensors + n_bn);
  uint64_t hlen;
  memcpy(&hlen, f.buf, 8);
  assert_int_equal(hlen % 8, 0);
  for (int i = 0; i < f.n; i++)
    assert_int_equal(((const char *)f.t[i].data - (const char *)f.buf) % (f.t[i].dtype == MC_DT_I64 ? 8 : 4), 0);
  mc_st_free(&f);

  mc_model_free(m2);
  free(th2);
  free(st2);
  free(theta);
  free(state);
}

static void test_roundtrip_tinyten(void **s) {
  (void)s;
  mc_model *m = make_model("tinyten", 1, 28, 1.0, NULL, 0);
  roundtrip(m, "tinyten.st");
  mc_model_free(m);
}

static void test_roundtrip_resnet20(void **s) {
  (void)s;
  mc_model *m = make_model("resnet20", 3, 32, 1.0, NULL, 0);
  roundtrip(m, "resnet20.st");
  mc_model_free(m);
  m = make_model("resnet20", 3, 32, 2.0, NULL, 0);
  roundtrip(m, "resnet20x2.st");
  mc_model_free(m);
}

static void test_roundtrip_mlp(void **s) {
  (void)s;
  mc_model *m = make_model("mlp", 1, 28, 1.0, "24,16", 1);
  roundtrip(m, "mlp.st");
  mc_model_free(m);
  m = make_model("mlp", 1, 28, 1.5, "24,16", 0);
  roundtrip(m, "mlp_w.st");
  mc_st_file f;
  assert_int_equal(mc_st_read(tpath("mlp_w.st"), &f), MC_OK);
  assert_string_equal(mc_st_meta(&f, "modeconn.widths"), "36,24"); /* built sizes */
  assert_string_equal(mc_st_meta(&f, "modeconn.width"), "1.5");
  assert_string_equal(mc_st_meta(&f, "modeconn.bn"), "0");
  mc_st_free(&f);
  mc_model_free(m);
}

static void test_roundtrip_branchnet(void **s) {
  (void)s;
  mc_model *m = make_model("branchnet", 3, 16, 1.0, NULL, 0);
  roundtrip(m, "branchnet.st");
  mc_model_free(m);
}

/* A file without modeconn.spec (as PyTorch would write) is rebuilt from
 * arch + widths + bn + width; the widths are not scaled a second time. */
static void test_rebuild_without_spec(void **s) {
  (void)s;
  mc_model *m = make_model("mlp", 1, 28, 1.5, "24,16", 1);
  float *theta, *state;
  tu_random_params(m, 3, &theta, &state);
  const char *path = tpath("mlp_spec.st");
  assert_int_equal(mc_ckpt_save(path, m, &(mc_ckpt_part){"", theta, state}, 1, NULL, 0), MC_OK);
  mc_st_file f;
  assert_int_equal(mc_st_read(path, &f), MC_OK);
  const char *k[16], *v[16];
  int n = 0;
  for (int i = 0; i < f.n_meta; i++)
    if (strcmp(f.meta_key[i], "modeconn.spec")) k[n] = f.meta_key[i], v[n++] = f.meta_val[i];
  const char *path2 = tpath("mlp_nospec.st");
  assert_int_equal(mc_st_write(path2, f.t, f.n, k, v, n), MC_OK);
  mc_st_free(&f);
  mc_model *m2;
  float *th2, *st2;
  if (mc_ckpt_load(path2, NULL, NULL, &m2, &th2, &st2)) fail_msg("%s", mc_errmsg());
  assert_int_equal(m2->n_theta, m->n_theta);
  assert_true(m2->width == 1.5);
  assert_memory_equal(th2, theta, m->n_theta * sizeof(float));
  assert_memory_equal(st2, state, m->n_state * sizeof(float));
  mc_model_free(m2);
  free(th2);
  free(st2);
  free(theta);
  free(state);
  mc_model_free(m);
}

/* ------------------------------------------------------------ curve file */

static void test_curve_file(void **s) {
  (void)s;
  mc_model *m = make_model("tinyten", 1, 28, 1.0, NULL, 0);
  float *ta, *sa, *tb, *sb, *tc, *sc;
  tu_random_params(m, 1, &ta, &sa);
  tu_random_params(m, 2, &tb, &sb);
  tu_random_params(m, 3, &tc, &sc);
  mc_ckpt_part parts[] = {{"a.", ta, sa}, {"b.", tb, sb}, {"bend1.", tc, NULL}};
  mc_kv extra[] = {{"modeconn.curve", "bezier"}};
  const char *path = tpath("curve.st");
  assert_int_equal(mc_ckpt_save(path, m, parts, 3, extra, 1), MC_OK);
  mc_st_file f;
  assert_int_equal(mc_st_read(path, &f), MC_OK);
  assert_string_equal(mc_st_meta(&f, "modeconn.curve"), "bezier");
  assert_non_null(mc_st_find(&f, "a.bn1.running_var"));
  assert_non_null(mc_st_find(&f, "b.bn8.num_batches_tracked"));
  assert_non_null(mc_st_find(&f, "bend1.conv1.weight"));
  assert_null(mc_st_find(&f, "bend1.bn1.running_mean"));
  assert_null(mc_st_find(&f, "bend1.bn1.num_batches_tracked"));
  mc_model *m2;
  assert_int_equal(mc_ckpt_model(&f, NULL, NULL, &m2), MC_OK);
  float *t2 = mc_calloc(m->n_theta, sizeof(float)), *s2 = mc_calloc(m->n_state, sizeof(float));
  assert_int_equal(mc_ckpt_get(&f, m2, "a.", t2, s2, 1), MC_OK);
  assert_memory_equal(t2, ta, m->n_theta * sizeof(float));
  assert_memory_equal(s2, sa, m->n_state * sizeof(float));
  assert_int_equal(mc_ckpt_get(&f, m2, "b.", t2, s2, 1), MC_OK);
  assert_memory_equal(t2, tb, m->n_theta * sizeof(float));
  assert_memory_equal(s2, sb, m->n_state * sizeof(float));
  assert_int_equal(mc_ckpt_get(&f, m2, "bend1.", t2, NULL, 1), MC_OK);
  assert_memory_equal(t2, tc, m->n_theta * sizeof(float));
  /* the bend has no statistics to give */
  assert_int_equal(mc_ckpt_get(&f, m2, "bend1.", t2, s2, 0), MC_ESHAPE);
  ASSERT_MSG("bend1.bn1.running_mean' missing");
  /* plain load of a curve file: a clear message pointing at the prefixes */
  assert_int_equal(mc_ckpt_get(&f, m2, "", t2, s2, 1), MC_ESHAPE);
  ASSERT_MSG(path);
  ASSERT_MSG("curve file");
  mc_st_free(&f);
  mc_model *m3;
  float *t3, *s3;
  assert_int_equal(mc_ckpt_load(path, NULL, NULL, &m3, &t3, &s3), MC_ESHAPE);
  assert_null(m3);
  free(t2);
  free(s2);
  mc_model_free(m2);
  mc_model_free(m);
  free(ta), free(sa), free(tb), free(sb), free(tc), free(sc);
}

/* ------------------------------------------------------------- metadata */

static void test_metadata_and_generic(void **s) {
  (void)s;
  const char *path = tpath("generic.st");
  uint16_t bf[6] = {1, 2, 3, 4, 5, 6};
  uint8_t u8[3] = {7, 8, 9};
  double f64 = 3.25;
  float f32[2] = {1.5f, -2.0f};
  mc_st_tensor t[5];
  memset(t, 0, sizeof t);
  t[0] = (mc_st_tensor){.name = "z.bf16", .dtype = MC_DT_OTHER, .dtype_name = "BF16", .ndim = 2,
                        .shape = {2, 3}, .nbytes = 12, .data = bf};
  t[1] = (mc_st_tensor){.name = "flags", .dtype = MC_DT_OTHER, .dtype_name = "U8", .ndim = 1,
                        .shape = {3}, .nbytes = 3, .data = u8};
  t[2] = (mc_st_tensor){.name = "scalar", .dtype = MC_DT_OTHER, .dtype_name = "F64", .ndim = 0,
                        .nbytes = 8, .data = &f64};
  t[3] = (mc_st_tensor){.name = "empty", .dtype = MC_DT_F32, .ndim = 2, .shape = {0, 4}, .nbytes = 0};
  t[4] = (mc_st_tensor){.name = "a", .dtype = MC_DT_F32, .ndim = 1, .shape = {2}, .nbytes = 8, .data = f32};
  const char *mk[] = {"note", "utf8", "empty"};
  const char *mv[] = {"a \"quoted\" value\nwith newline", "\xc3\xa9t\xc3\xa9 \xe2\x9c\x93", ""};
  assert_int_equal(mc_st_write(path, t, 5, mk, mv, 3), MC_OK);
  mc_st_file f;
  assert_int_equal(mc_st_read(path, &f), MC_OK);
  assert_int_equal(f.n, 5);
  assert_int_equal(f.n_meta, 3);
  for (int i = 0; i < 3; i++) assert_string_equal(mc_st_meta(&f, mk[i]), mv[i]);
  assert_null(mc_st_meta(&f, "absent"));
  const mc_st_tensor *x = mc_st_find(&f, "z.bf16");
  assert_non_null(x);
  assert_int_equal(x->dtype, MC_DT_OTHER);
  assert_string_equal(x->dtype_name, "BF16");
  assert_int_equal(x->ndim, 2);
  assert_int_equal(x->shape[1], 3);
  assert_memory_equal(x->data, bf, 12);
  x = mc_st_find(&f, "scalar");
  assert_int_equal(x->ndim, 0);
  assert_memory_equal(x->data, &f64, 8);
  x = mc_st_find(&f, "empty");
  assert_int_equal(x->nbytes, 0);
  assert_int_equal(x->shape[0], 0);
  x = mc_st_find(&f, "a");
  assert_int_equal(x->dtype, MC_DT_F32);
  assert_memory_equal(x->data, f32, 8);
  assert_memory_equal(mc_st_find(&f, "flags")->data, u8, 3);
  mc_st_free(&f);

  /* writer argument errors */
  t[1].nbytes = 4;
  assert_int_equal(mc_st_write(path, t, 5, mk, mv, 3), MC_EARG);
  ASSERT_MSG("flags");
  t[1].nbytes = 3;
  t[1].name = "a";
  assert_int_equal(mc_st_write(path, t, 5, mk, mv, 3), MC_EARG);
  ASSERT_MSG("twice");
  t[1].name = "flags";
  const char *mk2[] = {"k", "k"};
  assert_int_equal(mc_st_write(path, t, 5, mk2, mv, 2), MC_EARG);
  ASSERT_MSG("twice");
  assert_int_equal(count_tmp(), 0);
  /* a checkpoint's extra key may not shadow a modeconn key */
  mc_model *m = make_model("mlp", 1, 28, 1.0, "8", 0);
  float *th, *st;
  tu_random_params(m, 1, &th, &st);
  mc_kv dup[] = {{"modeconn.arch", "x"}};
  assert_int_equal(mc_ckpt_save(tpath("dup.st"), m, &(mc_ckpt_part){"", th, st}, 1, dup, 1), MC_EARG);
  free(th);
  free(st);
  mc_model_free(m);
}

/* --------------------------------------------------------- hostile files */

static void write_raw(const char *path, const char *json, uint64_t hlen, const void *data, size_t dlen) {
  FILE *fp = fopen(path, "wb");
  assert_non_null(fp);
  size_t jl = json ? strlen(json) : 0;
  if (hlen == UINT64_MAX) hlen = jl;
  unsigned char b[8];
  for (int i = 0; i < 8; i++) b[i] = (unsigned char)(hlen >> (8 * i));
  assert_int_equal(fwrite(b, 1, 8, fp), 8);
  if (jl) assert_int_equal(fwrite(json, 1, jl, fp), jl);
  if (dlen) assert_int_equal(fwrite(data, 1, dlen, fp), dlen);
  fclose(fp);
}

static void expect_bad(const char *name, const char *json, uint64_t hlen, size_t dlen, mc_status want,
                       const char *sub) {
  static unsigned char zeros[4096];
  const char *path = tpath(name);
  write_raw(path, json, hlen, zeros, dlen);
  mc_st_file f;
  memset(&f, 0xab, sizeof f);
  mc_status st = mc_st_read(path, &f);
  if (st != want) fail_msg("%s: status %d (%s), want %d", name, st, mc_errmsg(), want);
  ASSERT_MSG(path);
  ASSERT_MSG(sub);
  assert_null(f.buf);
  assert_int_equal(f.n, 0);
  mc_st_free(&f); /* harmless after a failed read */
}

#define T1 "\"w\":{\"dtype\":\"F32\",\"shape\":[2,2],\"data_offsets\":[0,16]}"

static void test_hostile_files(void **s) {
  (void)s;
  const uint64_t A = UINT64_MAX;
  /* sanity: the good file */
  write_raw(tpath("good.st"), "{" T1 "}", A, (float[4]){1, 2, 3, 4}, 16);
  mc_st_file f;
  assert_int_equal(mc_st_read(tpath("good.st"), &f), MC_OK);
  assert_int_equal(f.n, 1);
  mc_st_free(&f);

  /* truncated: shorter than the length field */
  FILE *fp = fopen(tpath("short.st"), "wb");
  fwrite("abc", 1, 3, fp);
  fclose(fp);
  assert_int_equal(mc_st_read(tpath("short.st"), &f), MC_EFORMAT);
  ASSERT_MSG(tpath("short.st"));
  ASSERT_MSG("shorter");
  fp = fopen(tpath("empty.st"), "wb");
  fclose(fp);
  assert_int_equal(mc_st_read(tpath("empty.st"), &f), MC_EFORMAT);

  expect_bad("huge.st", "{" T1 "}", (uint64_t)1 << 40, 16, MC_EFORMAT, "100 MB");
  expect_bad("huge2.st", "{" T1 "}", UINT64_MAX - 3, 16, MC_EFORMAT, "100 MB");
  expect_bad("past.st", "{" T1 "}", 200, 16, MC_EFORMAT, "exceeds");
  expect_bad("zero.st", "", 0, 0, MC_EFORMAT, "not a JSON object");
  expect_bad("json.st", "{\"w\": {\"dtype\": ", A, 0, MC_EFORMAT, "JSON");
  expect_bad("trail.st", "{" T1 "} x", A, 16, MC_EFORMAT, "JSON");
  expect_bad("array.st", "[1, 2, 3]", A, 0, MC_EFORMAT, "not a JSON object");
  expect_bad("dupkey.st", "{" T1 "," T1 "}", A, 16, MC_EFORMAT, "duplicate");
  expect_bad("entry.st", "{\"w\": 5}", A, 0, MC_EFORMAT, "'w'");
  expect_bad("nooffs.st", "{\"w\":{\"dtype\":\"F32\",\"shape\":[2,2]}}", A, 16, MC_EFORMAT, "data_offsets");
  expect_bad("nodtype.st", "{\"w\":{\"shape\":[2,2],\"data_offsets\":[0,16]}}", A, 16, MC_EFORMAT, "dtype");
  expect_bad("noshape.st", "{\"w\":{\"dtype\":\"F32\",\"data_offsets\":[0,16]}}", A, 16, MC_EFORMAT, "shape");
  expect_bad("dtnum.st", "{\"w\":{\"dtype\":3,\"shape\":[2,2],\"data_offsets\":[0,16]}}", A, 16, MC_EFORMAT,
             "dtype");
  expect_bad("dtunk.st", "{\"w\":{\"dtype\":\"Q7\",\"shape\":[2,2],\"data_offsets\":[0,16]}}", A, 16, MC_EFORMAT,
             "unknown dtype");
  expect_bad("range.st", "{\"w\":{\"dtype\":\"F32\",\"shape\":[2,2],\"data_offsets\":[0,16]}}", A, 8, MC_EFORMAT,
             "outside the data section");
  expect_bad("range2.st", "{\"w\":{\"dtype\":\"F32\",\"shape\":[2,2],\"data_offsets\":[16,0]}}", A, 16,
             MC_EFORMAT, "'w'");
  expect_bad("range3.st", "{\"w\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[0]}}", A, 4, MC_EFORMAT,
             "data_offsets");
  expect_bad("range4.st", "{\"w\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[-4,0]}}", A, 4, MC_EFORMAT,
             "data_offsets");
  expect_bad("range5.st",
             "{\"w\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[18446744073709551612,0]}}", A, 4,
             MC_EFORMAT, "JSON");
  expect_bad("overlap.st",
             "{\"a\":{\"dtype\":\"F32\",\"shape\":[4],\"data_offsets\":[0,16]},"
             "\"b\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[8,16]}}",
             A, 16, MC_EFORMAT, "overlaps");
  expect_bad("overlap2.st",
             "{\"a\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[0,8]},"
             "\"b\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[0,8]}}",
             A, 8, MC_EFORMAT, "overlaps");
  expect_bad("hole.st",
             "{\"a\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[0,8]},"
             "\"b\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[12,20]}}",
             A, 20, MC_EFORMAT, "belong to no tensor");
  expect_bad("tail.st", "{" T1 "}", A, 24, MC_EFORMAT, "belong to no tensor");
  expect_bad("nodata.st", "{}", A, 4, MC_EFORMAT, "belong to no tensor");
  expect_bad("bytes.st", "{\"w\":{\"dtype\":\"F32\",\"shape\":[2,3],\"data_offsets\":[0,16]}}", A, 16, MC_EFORMAT,
             "needs 24");
  expect_bad("bytes2.st", "{\"w\":{\"dtype\":\"BF16\",\"shape\":[4],\"data_offsets\":[0,16]}}", A, 16, MC_EFORMAT,
             "needs 8");
  expect_bad("negdim.st", "{\"w\":{\"dtype\":\"F32\",\"shape\":[-2,-2],\"data_offsets\":[0,16]}}", A, 16,
             MC_EFORMAT, "shape[0]");
  expect_bad("realdim.st", "{\"w\":{\"dtype\":\"F32\",\"shape\":[2,2.0],\"data_offsets\":[0,16]}}", A, 16,
             MC_EFORMAT, "shape[1]");
  expect_bad("strdim.st", "{\"w\":{\"dtype\":\"F32\",\"shape\":\"2x2\",\"data_offsets\":[0,16]}}", A, 16,
             MC_EFORMAT, "shape");
  expect_bad("ovf.st",
             "{\"w\":{\"dtype\":\"F32\",\"shape\":[4294967296,4294967296,16],\"data_offsets\":[0,0]}}", A, 0,
             MC_EFORMAT, "overflow");
  expect_bad("ovf2.st", "{\"w\":{\"dtype\":\"F64\",\"shape\":[4611686018427387904],\"data_offsets\":[0,0]}}", A,
             0, MC_EFORMAT, "overflow");
  expect_bad("ndim.st", "{\"w\":{\"dtype\":\"F32\",\"shape\":[1,1,1,1,1,1,1,1,1],\"data_offsets\":[0,4]}}", A, 4,
             MC_EFORMAT, "dims");
  expect_bad("meta.st", "{\"__metadata__\":{\"k\":1}," T1 "}", A, 16, MC_EFORMAT, "__metadata__");
  expect_bad("meta2.st", "{\"__metadata__\":[\"k\"]," T1 "}", A, 16, MC_EFORMAT, "__metadata__");

  /* not a file at all */
  assert_int_equal(mc_st_read(tpath("does-not-exist.st"), &f), MC_EIO);
  ASSERT_MSG("does-not-exist.st");
  assert_int_equal(mc_st_read(g_dir, &f), MC_EIO);
  ASSERT_MSG(g_dir);
}

/* Every truncation of a real checkpoint, and single-byte corruptions of
 * its header, fail cleanly (or, for a corrupted value that still parses,
 * succeed) -- never crash. */
static void test_truncation_and_corruption(void **s) {
  (void)s;
  mc_model *m = make_model("mlp", 1, 4, 1.0, "3", 1);
  float *th, *st;
  tu_random_params(m, 9, &th, &st);
  const char *path = tpath("small.st");
  assert_int_equal(mc_ckpt_save(path, m, &(mc_ckpt_part){"", th, st}, 1, NULL, 0), MC_OK);
  FILE *fp = fopen(path, "rb");
  fseek(fp, 0, SEEK_END);
  long n = ftell(fp);
  fseek(fp, 0, SEEK_SET);
  unsigned char *buf = mc_malloc((size_t)n);
  assert_int_equal(fread(buf, 1, (size_t)n, fp), (size_t)n);
  fclose(fp);
  const char *bad = tpath("cut.st");
  mc_st_file f;
  for (long len = 0; len < n; len++) {
    fp = fopen(bad, "wb");
    fwrite(buf, 1, (size_t)len, fp);
    fclose(fp);
    assert_int_equal(mc_st_read(bad, &f), MC_EFORMAT);
    ASSERT_MSG(bad);
  }
  uint64_t hlen;
  memcpy(&hlen, buf, 8);
  mc_rng r;
  mc_rng_seed(&r, 5);
  static const char junk[] = "{}[]\",:0123456789-.eE xA\\";
  for (int it = 0; it < 400; it++) {
    unsigned char *c = mc_malloc((size_t)n);
    memcpy(c, buf, (size_t)n);
    size_t pos = 8 + mc_rng_below(&r, hlen);
    c[pos] = (unsigned char)junk[mc_rng_below(&r, sizeof junk - 1)];
    fp = fopen(bad, "wb");
    fwrite(c, 1, (size_t)n, fp);
    fclose(fp);
    mc_status rs = mc_st_read(bad, &f);
    if (rs == MC_OK) {
      /* the corruption hit a value that still parses: the loader may still
       * object, but must not crash */
      mc_model *m2 = NULL;
      if (!mc_ckpt_model(&f, "mlp", NULL, &m2)) {
        float *t2 = mc_calloc(m2->n_theta + 1, 4), *s2 = mc_calloc(m2->n_state + 1, 4);
        (void)mc_ckpt_get(&f, m2, "", t2, s2, 1);
        free(t2);
        free(s2);
        mc_model_free(m2);
      }
      mc_st_free(&f);
    } else {
      assert_int_equal(rs, MC_EFORMAT);
      ASSERT_MSG(bad);
    }
    free(c);
  }
  free(buf);
  free(th);
  free(st);
  mc_model_free(m);
}

/* ------------------------------------------------- model-level mismatches */

/* Writes the model's tensors with one modification applied by `edit`. */
typedef void (*edit_fn)(mc_st_tensor *t, int *n);

static void write_edited(const char *path, const mc_model *m, const float *th, const float *st, edit_fn edit) {
  mc_st_tensor *t = mc_calloc((size_t)m->n_tensors + 4, sizeof *t);
  int n = 0;
  for (int i = 0; i < m->n_tensors; i++) {
    const mc_tensor *mt = &m->tensors[i];
    t[n] = (mc_st_tensor){.name = (char *)mt->name, .dtype = MC_DT_F32, .ndim = mt->ndim,
                          .nbytes = mt->numel * 4, .data = (mt->in_state ? st : th) + mt->off};
    for (int d = 0; d < mt->ndim; d++) t[n].shape[d] = mt->shape[d];
    n++;
  }
  edit(t, &n);
  const char *k[] = {"modeconn.arch", "modeconn.widths", "modeconn.bn"};
  const char *v[] = {"mlp", "24,16", "1"};
  assert_int_equal(mc_st_write(path, t, n, k, v, 3), MC_OK);
  free(t);
}

static mc_st_tensor *find_t(mc_st_tensor *t, int n, const char *name) {
  for (int i = 0; i < n; i++)
    if (!strcmp(t[i].name, name)) return &t[i];
  fail_msg("no %s", name);
  return NULL;
}

static void ed_bf16(mc_st_tensor *t, int *n) {
  mc_st_tensor *x = find_t(t, *n, "fc1.bias");
  x->dtype = MC_DT_OTHER;
  snprintf(x->dtype_name, sizeof x->dtype_name, "BF16");
  x->nbytes /= 2;
}
static void ed_missing(mc_st_tensor *t, int *n) {
  mc_st_tensor *x = find_t(t, *n, "bn1.weight");
  *x = t[--*n];
}
static void ed_shape(mc_st_tensor *t, int *n) {
  mc_st_tensor *x = find_t(t, *n, "fc1.weight");
  x->shape[0] = 784;
  x->shape[1] = 24; /* transposed: same bytes, wrong shape */
}
static const float g_extra[3] = {1, 2, 3};
static void ed_extra(mc_st_tensor *t, int *n) {
  t[(*n)++] = (mc_st_tensor){.name = "fc9.weight", .dtype = MC_DT_F32, .ndim = 1, .shape = {3}, .nbytes = 12,
                             .data = g_extra};
}
static const int64_t g_nbt[2] = {5, 5};
static void ed_nbt(mc_st_tensor *t, int *n) {
  t[(*n)++] = (mc_st_tensor){.name = "bn1.num_batches_tracked", .dtype = MC_DT_I64, .ndim = 0, .nbytes = 8,
                             .data = &g_nbt[0]};
  t[(*n)++] = (mc_st_tensor){.name = "bn2.num_batches_tracked", .dtype = MC_DT_I64, .ndim = 0, .nbytes = 8,
                             .data = &g_nbt[1]};
}
static void ed_nbt_stray(mc_st_tensor *t, int *n) {
  t[(*n)++] = (mc_st_tensor){.name = "fc1.num_batches_tracked", .dtype = MC_DT_I64, .ndim = 0, .nbytes = 8,
                             .data = &g_nbt[0]};
}

static void test_model_mismatch(void **s) {
  (void)s;
  mc_model *m = make_model("mlp", 1, 28, 1.0, "24,16", 1);
  float *th, *st;
  tu_random_params(m, 11, &th, &st);
  float *t2 = mc_calloc(m->n_theta, 4), *s2 = mc_calloc(m->n_state, 4);
  mc_st_file f;
  const char *p;

  p = tpath("bf16.st");
  write_edited(p, m, th, st, ed_bf16);
  assert_int_equal(mc_st_read(p, &f), MC_OK);
  assert_int_equal(mc_ckpt_get(&f, m, "", t2, s2, 0), MC_EFORMAT);
  ASSERT_MSG(p);
  ASSERT_MSG("tensor 'fc1.bias' is BF16, expected F32");
  mc_st_free(&f);

  p = tpath("missing.st");
  write_edited(p, m, th, st, ed_missing);
  assert_int_equal(mc_st_read(p, &f), MC_OK);
  assert_int_equal(mc_ckpt_get(&f, m, "", t2, s2, 0), MC_ESHAPE);
  ASSERT_MSG(p);
  ASSERT_MSG("tensor 'bn1.weight' missing (expected F32 [24])");
  mc_st_free(&f);
  mc_model *m2;
  float *a, *b;
  assert_int_equal(mc_ckpt_load(p, NULL, NULL, &m2, &a, &b), MC_ESHAPE);
  assert_null(m2);
  assert_null(a);

  p = tpath("shape.st");
  write_edited(p, m, th, st, ed_shape);
  assert_int_equal(mc_st_read(p, &f), MC_OK);
  assert_int_equal(mc_ckpt_get(&f, m, "", t2, s2, 0), MC_ESHAPE);
  ASSERT_MSG(p);
  ASSERT_MSG("tensor 'fc1.weight' has shape [784, 24], expected [24, 784]");
  mc_st_free(&f);

  p = tpath("extra.st");
  write_edited(p, m, th, st, ed_extra);
  assert_int_equal(mc_st_read(p, &f), MC_OK);
  assert_int_equal(mc_ckpt_get(&f, m, "", t2, s2, 0), MC_OK); /* lenient */
  assert_memory_equal(t2, th, m->n_theta * 4);
  assert_int_equal(mc_ckpt_get(&f, m, "", t2, s2, 1), MC_ESHAPE);
  ASSERT_MSG(p);
  ASSERT_MSG("unexpected tensor 'fc9.weight' (not in architecture mlp)");
  mc_st_free(&f);

  /* num_batches_tracked of a real BN is fine under strict; of a linear not */
  p = tpath("nbt.st");
  write_edited(p, m, th, st, ed_nbt);
  assert_int_equal(mc_st_read(p, &f), MC_OK);
  assert_int_equal(mc_ckpt_get(&f, m, "", t2, s2, 1), MC_OK);
  mc_st_free(&f);
  p = tpath("nbt2.st");
  write_edited(p, m, th, st, ed_nbt_stray);
  assert_int_equal(mc_st_read(p, &f), MC_OK);
  assert_int_equal(mc_ckpt_get(&f, m, "", t2, s2, 1), MC_ESHAPE);
  ASSERT_MSG("fc1.num_batches_tracked");
  mc_st_free(&f);

  free(t2);
  free(s2);
  free(th);
  free(st);
  mc_model_free(m);
}

static void test_wrong_architecture(void **s) {
  (void)s;
  mc_model *r = make_model("resnet20", 1, 28, 1.0, NULL, 0);
  mc_model *t = make_model("tinyten", 1, 28, 1.0, NULL, 0);
  float *th, *st;
  tu_random_params(r, 4, &th, &st);
  const char *p = tpath("resnet_as_tinyten.st");
  assert_int_equal(mc_ckpt_save(p, r, &(mc_ckpt_part){"", th, st}, 1, NULL, 0), MC_OK);
  mc_st_file f;
  assert_int_equal(mc_st_read(p, &f), MC_OK);
  float *t2 = mc_calloc(t->n_theta, 4), *s2 = mc_calloc(t->n_state, 4);
  assert_int_equal(mc_ckpt_get(&f, t, "", t2, s2, 1), MC_ESHAPE);
  ASSERT_MSG(p);
  ASSERT_MSG("resnet20");
  ASSERT_MSG("tinyten");
  /* the strict extra check names the architecture too */
  mc_model *r2;
  assert_int_equal(mc_ckpt_model(&f, "tinyten", NULL, &r2), MC_OK); /* metadata wins */
  assert_string_equal(r2->arch, "resnet20");
  mc_model_free(r2);
  mc_st_free(&f);
  free(t2);
  free(s2);
  free(th);
  free(st);
  mc_model_free(r);
  mc_model_free(t);
}

static void write_meta_file(const char *path, const char *k1, const char *v1, const char *k2, const char *v2) {
  const char *k[] = {k1, k2}, *v[] = {v1, v2};
  assert_int_equal(mc_st_write(path, NULL, 0, k, v, k2 ? 2 : (k1 ? 1 : 0)), MC_OK);
}

static void test_bad_metadata(void **s) {
  (void)s;
  mc_st_file f;
  mc_model *m;
  const char *p = tpath("meta_bad.st");
  struct {
    const char *k, *v, *sub;
  } cases[] = {
      {"modeconn.input", "3x32", "modeconn.input"},   {"modeconn.input", "0x1x1", "modeconn.input"},
      {"modeconn.classes", "ten", "modeconn.classes"}, {"modeconn.classes", "1", "modeconn.classes"},
      {"modeconn.width", "-1", "modeconn.width"},      {"modeconn.widths", "24,,16", "modeconn.widths"},
      {"modeconn.bn", "yes", "modeconn.bn"},           {"modeconn.mean", "0.1,0.2", "modeconn.mean"},
      {"modeconn.std", "0", "modeconn.std"},           {"modeconn.std", "nan", "modeconn.std"},
  };
  for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
    write_meta_file(p, "modeconn.arch", "mlp", cases[i].k, cases[i].v);
    assert_int_equal(mc_st_read(p, &f), MC_OK);
    assert_int_equal(mc_ckpt_model(&f, NULL, NULL, &m), MC_EFORMAT);
    assert_null(m);
    ASSERT_MSG(p);
    ASSERT_MSG(cases[i].sub);
    mc_st_free(&f);
  }
  /* no architecture at all */
  write_meta_file(p, NULL, NULL, NULL, NULL);
  assert_int_equal(mc_st_read(p, &f), MC_OK);
  assert_int_equal(mc_ckpt_model(&f, NULL, NULL, &m), MC_EFORMAT);
  ASSERT_MSG("modeconn.arch");
  assert_int_equal(mc_ckpt_model(&f, "tinyten", NULL, &m), MC_OK);
  assert_string_equal(m->arch, "tinyten");
  mc_model_free(m);
  mc_st_free(&f);
  /* unknown architecture */
  write_meta_file(p, "modeconn.arch", "resnet999", NULL, NULL);
  assert_int_equal(mc_st_read(p, &f), MC_OK);
  assert_int_not_equal(mc_ckpt_model(&f, NULL, NULL, &m), MC_OK);
  ASSERT_MSG(p);
  ASSERT_MSG("resnet999");
  mc_st_free(&f);
  /* a broken recorded spec */
  write_meta_file(p, "modeconn.arch", "mine", "modeconn.spec", "input\nbogus layer\n");
  assert_int_equal(mc_st_read(p, &f), MC_OK);
  assert_int_equal(mc_ckpt_model(&f, NULL, NULL, &m), MC_EFORMAT);
  ASSERT_MSG(p);
  mc_st_free(&f);
}

/* --------------------------------------------------------- atomic writes */

static void test_atomic_write(void **s) {
  (void)s;
  mc_model *m = make_model("tinyten", 1, 28, 1.0, NULL, 0);
  float *ta, *sa, *tb, *sb;
  tu_random_params(m, 1, &ta, &sa);
  tu_random_params(m, 2, &tb, &sb);

  /* a directory that does not exist: clean failure, nothing created */
  const char *nodir = tpath("no/such/dir/x.st");
  assert_int_equal(mc_ckpt_save(nodir, m, &(mc_ckpt_part){"", ta, sa}, 1, NULL, 0), MC_EIO);
  ASSERT_MSG(nodir);
  ASSERT_MSG(strerror(ENOENT));

  /* overwrite: the new content replaces the old, no temporaries left */
  const char *p = tpath("atomic.st");
  assert_int_equal(mc_ckpt_save(p, m, &(mc_ckpt_part){"", ta, sa}, 1, NULL, 0), MC_OK);
  assert_int_equal(mc_ckpt_save(p, m, &(mc_ckpt_part){"", tb, sb}, 1, NULL, 0), MC_OK);
  mc_model *m2;
  float *t2, *s2;
  assert_int_equal(mc_ckpt_load(p, NULL, NULL, &m2, &t2, &s2), MC_OK);
  assert_memory_equal(t2, tb, m->n_theta * 4);
  mc_model_free(m2);
  free(t2);
  free(s2);
  assert_int_equal(count_tmp(), 0);
  struct stat sbuf;
  assert_int_equal(stat(p, &sbuf), 0);
  assert_true(sbuf.st_mode & S_IRUSR);

  /* the rename fails (the target is a directory): temp removed, target kept */
  const char *dp = tpath("isdir.st");
  assert_int_equal(mkdir(dp, 0755), 0);
  assert_int_equal(mc_ckpt_save(dp, m, &(mc_ckpt_part){"", ta, sa}, 1, NULL, 0), MC_EIO);
  ASSERT_MSG(dp);
  assert_int_equal(count_tmp(), 0);
  assert_int_equal(stat(dp, &sbuf), 0);
  assert_true(S_ISDIR(sbuf.st_mode));

  /* the data write fails half way (file size limit -> EFBIG, as ENOSPC
   * would): the previous file is untouched, the temporary removed */
  FILE *fp = fopen(p, "rb");
  assert_non_null(fp);
  fseek(fp, 0, SEEK_END);
  long n = ftell(fp);
  fseek(fp, 0, SEEK_SET);
  unsigned char *before = mc_malloc((size_t)n);
  assert_int_equal(fread(before, 1, (size_t)n, fp), (size_t)n);
  fclose(fp);
  struct rlimit old, lim;
  assert_int_equal(getrlimit(RLIMIT_FSIZE, &old), 0);
  lim = old;
  lim.rlim_cur = 64 * 1024;
  void (*prev)(int) = signal(SIGXFSZ, SIG_IGN);
  assert_int_equal(setrlimit(RLIMIT_FSIZE, &lim), 0);
  mc_status st = mc_ckpt_save(p, m, &(mc_ckpt_part){"", ta, sa}, 1, NULL, 0);
  assert_int_equal(setrlimit(RLIMIT_FSIZE, &old), 0);
  signal(SIGXFSZ, prev);
  assert_int_equal(st, MC_EIO);
  ASSERT_MSG(p);
  ASSERT_MSG(strerror(EFBIG));
  assert_int_equal(count_tmp(), 0);
  fp = fopen(p, "rb");
  unsigned char *after = mc_malloc((size_t)n + 1);
  assert_int_equal(fread(after, 1, (size_t)n + 1, fp), (size_t)n);
  fclose(fp);
  assert_memory_equal(before, after, (size_t)n);
  free(before);
  free(after);

  free(ta), free(sa), free(tb), free(sb);
  mc_model_free(m);
}

/* ------------------------------------------------------ PyTorch interop */

/* Same formula as formula() in tests/st_torch.py: exact in float32. */
static float formula(const char *name, size_t i) {
  unsigned k = 0;
  for (const unsigned char *q = (const unsigned char *)name; *q; q++) k += *q;
  k %= 97;
  size_t l = strlen(name);
  if (l >= 11 && !strcmp(name + l - 11, "running_var")) return (float)(0.5 + (double)((i * 5 + k) % 37) / 32.0);
  return (float)(((double)((i * 7 + (size_t)k * 13) % 101) - 50.0) / 64.0);
}

static void check_formula(const mc_model *m, const float *th, const float *st) {
  for (int i = 0; i < m->n_tensors; i++) {
    const mc_tensor *t = &m->tensors[i];
    const float *d = (t->in_state ? st : th) + t->off;
    for (size_t j = 0; j < t->numel; j++)
      if (d[j] != formula(t->name, j)) fail_msg("%s[%zu] = %g, want %g", t->name, j, d[j], formula(t->name, j));
  }
}

static void fill_formula(const mc_model *m, float *th, float *st) {
  for (int i = 0; i < m->n_tensors; i++) {
    const mc_tensor *t = &m->tensors[i];
    float *d = (t->in_state ? st : th) + t->off;
    for (size_t j = 0; j < t->numel; j++) d[j] = formula(t->name, j);
  }
}

#define N_INPUT 4

/* Compares modeconn's eval logits with PyTorch's (float32 file). */
static void check_logits(const mc_model *m, const float *th, float *st, const char *file) {
  size_t nx = (size_t)N_INPUT * 28 * 28;
  float *x = mc_malloc(nx * sizeof(float));
  for (size_t j = 0; j < nx; j++) x[j] = (float)((j * 31) % 256) / 255.0f;
  float ref[N_INPUT * 10];
  FILE *fp = fopen(file, "rb");
  assert_non_null(fp);
  assert_int_equal(fread(ref, sizeof(float), N_INPUT * 10, fp), N_INPUT * 10);
  fclose(fp);
  mc_exec *e;
  assert_int_equal(mc_exec_create(&e, m, N_INPUT, MC_BACKEND_REF), MC_OK);
  const float *y = tu_forward(e, th, st, x, N_INPUT, MC_MODE_EVAL);
  double err = tu_max_rel(y, ref, N_INPUT * 10, 1.0);
  if (!(err < 1e-5)) fail_msg("logits differ from PyTorch: max rel %g (y0 %g vs %g)", err, y[0], ref[0]);
  mc_exec_free(e);
  free(x);
}

static int have_torch(void) {
  if (access("/usr/bin/python3", X_OK) != 0) return 0;
  return tu_sh("/usr/bin/python3 -c 'import torch, numpy' >/dev/null 2>&1") == 0;
}

static const char *script(void) {
  static char buf[1024];
  snprintf(buf, sizeof buf, "%s/tests/st_torch.py", tu_env("MC_SOURCE_DIR", "."));
  return buf;
}

/* (a) PyTorch writes, modeconn reads */
static void test_torch_to_modeconn(void **s) {
  (void)s;
  if (!have_torch()) skip();
  assert_int_equal(tu_sh("/usr/bin/python3 '%s' write '%s'", script(), g_dir), 0);
  mc_model *m;
  float *th, *st;
  if (mc_ckpt_load(tpath("torch.st"), NULL, NULL, &m, &th, &st)) fail_msg("%s", mc_errmsg());
  assert_string_equal(m->arch, "mlp");
  assert_int_equal(m->n_theta, 19490);
  assert_int_equal(m->n_state, 80);
  assert_true(m->norm_mean[0] == 0.25f && m->norm_std[0] == 0.5f);
  check_formula(m, th, st);
  check_logits(m, th, st, tpath("torch_logits.bin"));
  mc_model_free(m);
  free(th);
  free(st);

  /* no metadata: the architecture must come from the caller */
  assert_int_equal(mc_ckpt_load(tpath("torch_nometa.st"), NULL, NULL, &m, &th, &st), MC_EFORMAT);
  ASSERT_MSG("torch_nometa.st");
  ASSERT_MSG("modeconn.arch");
  mc_arch_params p;
  mc_arch_params_default(&p);
  p.widths = "24,16";
  assert_int_equal(mc_ckpt_load(tpath("torch_nometa.st"), "mlp", &p, &m, &th, &st), MC_ESHAPE); /* no --bn */
  ASSERT_MSG("unexpected tensor 'bn");
  p.bn = 1;
  if (mc_ckpt_load(tpath("torch_nometa.st"), "mlp", &p, &m, &th, &st)) fail_msg("%s", mc_errmsg());
  check_formula(m, th, st);
  mc_model_free(m);
  free(th);
  free(st);
}

/* (b) modeconn writes, PyTorch reads with load_state_dict(strict=True) */
static void test_modeconn_to_torch(void **s) {
  (void)s;
  if (!have_torch()) skip();
  mc_model *m = make_model("mlp", 1, 28, 1.0, "24,16", 1);
  float *th = mc_calloc(m->n_theta, 4), *st = mc_calloc(m->n_state, 4);
  fill_formula(m, th, st);
  m->norm_mean[0] = 0.25f;
  m->norm_std[0] = 0.5f;
  const char *p = tpath("for_torch.st");
  mc_kv extra[] = {{"provenance", "test"}};
  assert_int_equal(mc_ckpt_save(p, m, &(mc_ckpt_part){"", th, st}, 1, extra, 1), MC_OK);
  assert_int_equal(tu_sh("/usr/bin/python3 '%s' check '%s' '%s'", script(), p, tpath("mc_logits.bin")), 0);
  check_logits(m, th, st, tpath("mc_logits.bin"));
  free(th);
  free(st);
  mc_model_free(m);
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_roundtrip_tinyten),
      cmocka_unit_test(test_roundtrip_resnet20),
      cmocka_unit_test(test_roundtrip_mlp),
      cmocka_unit_test(test_roundtrip_branchnet),
      cmocka_unit_test(test_rebuild_without_spec),
      cmocka_unit_test(test_curve_file),
      cmocka_unit_test(test_metadata_and_generic),
      cmocka_unit_test(test_hostile_files),
      cmocka_unit_test(test_truncation_and_corruption),
      cmocka_unit_test(test_model_mismatch),
      cmocka_unit_test(test_wrong_architecture),
      cmocka_unit_test(test_bad_metadata),
      cmocka_unit_test(test_atomic_write),
      cmocka_unit_test(test_torch_to_modeconn),
      cmocka_unit_test(test_modeconn_to_torch),
  };
  return cmocka_run_group_tests(tests, setup_dir, teardown_dir);
}
