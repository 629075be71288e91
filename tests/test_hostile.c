/* Hostile input (issue 13): every case must end in a status with a message
 * naming the file/field/value (the CLI: exit 1 or 2), never a memory
 * error, an abort or a hang.  Library cases call the functions directly;
 * CLI cases drive the binary on small real Fashion-MNIST subsets.  The
 * sanitizer suite runs the same file under ASan/UBSan. */
#include "testutil.h"

#include "curve/curve.h"
#include "data/data.h"
#include "io/results.h"
#include "io/safetensors.h"
#include "model/memory.h"

#include <jansson.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>
#include <zlib.h>

static char dir[256];
static const char *bin;
#define SMALL "--train-subset 300 --test-subset 100 --batch 50"

static int setup(void **s) {
  (void)s;
  bin = tu_env("MC_BIN", "./modeconn");
  snprintf(dir, sizeof dir, "/tmp/mc_hostile_XXXXXX");
  return mkdtemp(dir) ? 0 : -1;
}

static int teardown(void **s) {
  (void)s;
  tu_sh("rm -rf '%s'", dir);
  return 0;
}

static mc_status spec_status(const char *spec) {
  mc_arch_params p;
  mc_arch_params_default(&p);
  mc_model *m = NULL;
  mc_status st = mc_model_from_spec(&m, "hostile.arch", spec, &p);
  mc_model_free(m);
  return st;
}

/* item 1/8: sizes whose products wrap or exceed every bound are errors,
 * not a small theta written past its end */
static void test_spec_overflow(void **s) {
  (void)s;
  assert_int_equal(spec_status("input\nnormalize\nconv out=16777216 k=1\ngap\nlinear out=1099511627776\n"
                               "linear out=classes\n"), MC_ESHAPE);
  assert_non_null(strstr(mc_errmsg(), "larger than"));
  /* a huge flattened map: C*H*W of the flatten */
  assert_int_equal(spec_status("input\nnormalize\nconv out=1099511627776 k=1 p=1048576\nflatten\nlinear out=classes\n"),
                   MC_ESHAPE);
  /* 40 nested doubling concats: channel segments explode */
  char spec[8192] = "input\nnormalize\nc0: conv out=1 k=1\n";
  for (int i = 1; i <= 40; i++) {
    char line[96];
    snprintf(line, sizeof line, "c%d: concat from=c%d,c%d\n", i, i - 1, i - 1);
    strcat(spec, line);
  }
  strcat(spec, "gap\nlinear out=classes\n");
  assert_int_equal(spec_status(spec), MC_ESHAPE);
  assert_non_null(strstr(mc_errmsg(), "concat"));
  /* input sizes and classes beyond the bounds */
  mc_arch_params p;
  mc_arch_params_default(&p);
  p.classes = (int64_t)1 << 40;
  mc_model *m = NULL;
  assert_int_equal(mc_model_from_spec(&m, "x", "input\nflatten\nlinear out=classes\n", &p), MC_EARG);
  p.classes = 10;
  p.width = 1e300;
  assert_int_equal(mc_model_create(&m, "tinyten", &p), MC_EARG);
}

/* item 11: value ranges of the spec */
static void test_spec_ranges(void **s) {
  (void)s;
  const char *bad[] = {"bn eps=0", "bn eps=1e39", "bn momentum=1e30", "bn momentum=-1"};
  for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
    char spec[256];
    snprintf(spec, sizeof spec, "input\nnormalize\nconv out=4 k=3\n%s\ngap\nlinear out=classes\n", bad[i]);
    assert_int_equal(spec_status(spec), MC_EFORMAT);
    assert_non_null(strstr(mc_errmsg(), "hostile.arch:4"));
  }
  assert_int_equal(spec_status("input\nnormalize\nconv out=4 k=3\nmaxpool k=2 p=5\ngap\nlinear out=classes\n"),
                   MC_EFORMAT);
  assert_non_null(strstr(mc_errmsg(), "k/2"));
  assert_int_equal(spec_status("input\nnormalize\nconv out=4 k=3\nmaxpool k=2 p=1\ngap\nlinear out=classes\n"), MC_OK);
}

/* item 9: a message built from the previous message keeps it */
static void test_error_prefix(void **s) {
  (void)s;
  mc_error(MC_EIO, "first %d", 42);
  mc_error(MC_EIO, "%s (then more)", mc_errmsg());
  assert_string_equal(mc_errmsg(), "first 42 (then more)");
}

/* item 2: bad curve metadata is reported after the file is freed */
static void test_curve_bad_bends(void **s) {
  (void)s;
  mc_model *m = tu_model("mlp", 1, 4, 4, 3);
  float *t, *st;
  tu_random_params(m, 1, &t, &st);
  mc_curve_file cf = {0};
  cf.m = m;
  cf.a = cf.b = t;
  cf.sa = cf.sb = st;
  float *bend = t;
  cf.c = (mc_curve){MC_CURVE_BEZIER, 1, m->n_theta, t, t, &bend};
  snprintf(cf.align, sizeof cf.align, "none");
  char p1[512], p2[512];
  snprintf(p1, sizeof p1, "%s/curve.st", dir);
  snprintf(p2, sizeof p2, "%s/curve_bad.st", dir);
  assert_int_equal(mc_curve_save(p1, &cf, NULL, 0), MC_OK);
  mc_st_file f;
  assert_int_equal(mc_st_read(p1, &f), MC_OK);
  const char **mk = calloc((size_t)f.n_meta, sizeof *mk), **mv = calloc((size_t)f.n_meta, sizeof *mv);
  for (int i = 0; i < f.n_meta; i++) {
    mk[i] = f.meta_key[i];
    mv[i] = strcmp(f.meta_key[i], "modeconn.curve.bends") ? f.meta_val[i] : "A";
  }
  assert_int_equal(mc_st_write(p2, f.t, f.n, mk, mv, f.n_meta), MC_OK);
  mc_curve_file back;
  assert_int_equal(mc_curve_load(p2, &back), MC_EFORMAT);
  assert_non_null(strstr(mc_errmsg(), "modeconn.curve.bends = 'A'"));
  assert_int_equal(mc_curve_load(p1, &back), MC_OK);
  mc_curve_file_free(&back);
  free(mk);
  free(mv);
  mc_st_free(&f);
  free(t);
  free(st);
  mc_model_free(m);
}

/* item 3: every array of a plane JSON is checked against grid */
static void test_plane_json(void **s) {
  (void)s;
  const char *cases[] = {
      "{\"grid\": 2, \"a\": [0, 1], \"b\": [0, 1], \"test_loss\": [1, 2, 3, 4], \"test_accuracy\": [1, 2, 3, 4], "
      "\"curve_a\": [0, 1, 2], \"curve_b\": [0]}",
      "{\"grid\": 2, \"a\": [0], \"b\": [0, 1], \"test_loss\": [1, 2, 3, 4], \"test_accuracy\": [1, 2, 3, 4]}",
      "{\"grid\": 2, \"a\": [0, 1], \"b\": [0, 1], \"test_loss\": [1], \"test_accuracy\": [1, 2, 3, 4]}",
      "{\"grid\": 65536, \"a\": [0, 1], \"b\": [0, 1], \"test_loss\": [1], \"test_accuracy\": [1]}",
      "{\"grid\": 2, \"a\": [0, \"x\"], \"b\": [0, 1], \"test_loss\": [1, 2, 3, 4], \"test_accuracy\": [1, 2, 3, 4]}",
  };
  for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
    json_error_t err;
    json_t *j = json_loads(cases[i], 0, &err);
    assert_non_null(j);
    mc_plane_result pr;
    double *ca, *cb;
    int nc;
    assert_int_equal(mc_plane_from_json(j, "p.json", &pr, &ca, &cb, &nc), MC_EFORMAT);
    assert_non_null(strstr(mc_errmsg(), "p.json"));
    json_decref(j);
  }
  json_t *j = json_loads("{\"grid\": 2, \"a\": [0, 1], \"b\": [0, 1], \"test_loss\": [1, null, 3, 4], "
                         "\"test_accuracy\": [1, 2, 3, 4], \"curve_a\": [0, 1], \"curve_b\": [1, 0]}", 0, NULL);
  mc_plane_result pr;
  double *ca, *cb;
  int nc;
  assert_int_equal(mc_plane_from_json(j, "p.json", &pr, &ca, &cb, &nc), MC_OK);
  assert_int_equal(nc, 2);
  assert_true(isnan(pr.loss[1]) && pr.acc[3] == 4);
  free(pr.a); free(pr.b); free(pr.loss); free(pr.acc); free(ca); free(cb);
  json_decref(j);
}

/* item 4: mkdir -p with mkdir(2), a quote in the name is just a name */
static void test_mkdir_p(void **s) {
  (void)s;
  char p[1200];
  snprintf(p, sizeof p, "%s/x'; touch %s/pwned; '/y/z", dir, dir);
  assert_int_equal(mc_mkdir_p(p), MC_OK);
  struct stat sb;
  assert_int_equal(stat(p, &sb), 0);
  assert_true(S_ISDIR(sb.st_mode));
  snprintf(p, sizeof p, "%s/pwned", dir);
  assert_int_not_equal(access(p, F_OK), 0);
  /* a file in the way */
  snprintf(p, sizeof p, "%s/afile", dir);
  FILE *f = fopen(p, "w");
  fclose(f);
  strcat(p, "/sub");
  assert_int_equal(mc_mkdir_p(p), MC_EIO);
  /* and no system()/popen() left in the sources */
  const char *src = tu_env("MC_SOURCE_DIR", "..");
  assert_int_equal(tu_sh("grep -rnE '\\b(system|popen)\\(' '%s/src' > /dev/null", src), 1);
}

/* item 11: gzip files without their trailer or with junk appended */
static void write_gz_idx(const char *path, int cut, int junk) {
  uint8_t raw[16 + 2 * 3 * 3] = {0, 0, 8, 3, 0, 0, 0, 2, 0, 0, 0, 3, 0, 0, 0, 3};
  for (int i = 16; i < (int)sizeof raw; i++) raw[i] = (uint8_t)i;
  uLongf n = compressBound(sizeof raw) + 32;
  uint8_t *z = malloc(n);
  z_stream zs = {0};
  assert_int_equal(deflateInit2(&zs, 6, Z_DEFLATED, 15 + 16, 8, Z_DEFAULT_STRATEGY), Z_OK);
  zs.next_in = raw;
  zs.avail_in = sizeof raw;
  zs.next_out = z;
  zs.avail_out = (uInt)n;
  assert_int_equal(deflate(&zs, Z_FINISH), Z_STREAM_END);
  size_t len = zs.total_out;
  deflateEnd(&zs);
  FILE *f = fopen(path, "wb");
  fwrite(z, 1, len - (size_t)cut, f);
  if (junk) fwrite("JUNKJUNK", 1, 8, f);
  fclose(f);
  free(z);
}

static void test_gzip_trailer(void **s) {
  (void)s;
  char p[512];
  snprintf(p, sizeof p, "%s/img.gz", dir);
  mc_dataset ds = {0};
  write_gz_idx(p, 0, 0);
  assert_int_equal(mc_idx_read_images(p, &ds), MC_OK);
  assert_int_equal(ds.n, 2);
  free(ds.images);
  write_gz_idx(p, 8, 0);
  assert_int_equal(mc_idx_read_images(p, &ds), MC_EFORMAT);
  assert_non_null(strstr(mc_errmsg(), "trailer"));
  write_gz_idx(p, 4, 0);
  assert_int_equal(mc_idx_read_images(p, &ds), MC_EFORMAT);
  write_gz_idx(p, 0, 1);
  assert_int_equal(mc_idx_read_images(p, &ds), MC_EFORMAT);
  assert_non_null(strstr(mc_errmsg(), "junk"));
}

/* item 7: a memory estimate that is a pure, checked function of the graph */
static void test_memory_estimate(void **s) {
  (void)s;
  mc_model *m = tu_model("tinyten", 1, 28, 28, 10);
  mc_mem_estimate a, b;
  assert_int_equal(mc_model_memory(m, 10, &a), MC_OK);
  assert_int_equal(mc_model_memory(m, 20, &b), MC_OK);
  assert_int_equal(a.theta, m->n_theta * sizeof(float));
  assert_int_equal(b.act, 2 * a.act);
  assert_true(a.act > 10 * 16 * 28 * 28 * sizeof(float));
  assert_int_equal(mc_model_memory(m, INT64_MAX, &a), MC_EARG);
  assert_int_equal(mc_model_memory(m, 0, &a), MC_EARG);
  mc_model_free(m);
}

/* items 7 and 11 through the CLI: usage errors (exit 2) with the value */
static void test_cli_flags(void **s) {
  (void)s;
  struct {
    const char *args, *msg;
  } cases[] = {
      {"train --arch mlp --widths 5,,5", "--widths"},
      {"train --arch mlp --widths -5", "--widths"},
      {"train --arch mlp --widths abc", "--widths"},
      {"train --width 1e300", "--width"},
      {"train --classes 1000000000000", "--classes"},
      {"train --batch 100000000000", "--batch"},
      {"train --batch 9223372036854775807", "--batch"},
      {"train --threads 4294967297", "--threads"},
      {"train --max-memory 12Q", "--max-memory"},
      {"curve train --a x --b y --out z --batch 1", "--batch"},
      {"curve train --a x --b y --out z --lr -5", "--lr"},
      {"curve train --a x --b y --out z --epochs -5", "--epochs"},
      {"curve train --a x --b y --out z --crop 3000000000", "--crop"},
      {"curve train --a x --b y --out z --wd -100", "--wd"},
      {"plane --curve x --grid 65536", "--grid"},
  };
  for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
    int rc = tu_sh("%s %s > /dev/null 2> %s/flag.txt", bin, cases[i].args, dir);
    printf("  %-50s rc %d\n", cases[i].args, rc);
    assert_int_equal(rc, 2);
    assert_int_equal(tu_sh("grep -q -- '%s' %s/flag.txt", cases[i].msg, dir), 0);
  }
  assert_int_equal(tu_sh("MODECONN_BACKEND=gpu %s train --epochs 1 > /dev/null 2> %s/flag.txt", bin, dir), 2);
  assert_int_equal(tu_sh("grep -q 'MODECONN_BACKEND=gpu' %s/flag.txt", dir), 0);
}

/* FIFO as --model, memory bomb by metadata, --max-memory, unwritable --out,
 * a locked --out, a .train file of another run, a log not truncated early */
static void test_cli_files(void **s) {
  (void)s;
  assert_int_equal(tu_sh("mkfifo %s/fifo.st", dir), 0);
  assert_int_equal(tu_sh("timeout 20 %s eval --model %s/fifo.st " SMALL " 2> %s/e.txt", bin, dir, dir), 1);
  assert_int_equal(tu_sh("grep -q 'FIFO' %s/e.txt", dir), 0);
  /* a convolutional model whose weights do not depend on the input size */
  assert_int_equal(tu_sh("printf 'input\\nnormalize\\nconv out=4 k=3 p=1\\nrelu\\ngap\\nfc: linear out=classes\\n' "
                         "> %s/small.arch", dir), 0);
  assert_int_equal(tu_sh("%s train --arch %s/small.arch " SMALL " --epochs 1 --out %s/c.st > /dev/null 2>&1", bin, dir,
                         dir), 0);
  assert_int_equal(tu_sh("python3 - %s/c.st %s/big.st <<'EOF'\n"
                         "import json, struct, sys\n"
                         "b = open(sys.argv[1], 'rb').read(); n = struct.unpack('<Q', b[:8])[0]\n"
                         "h = json.loads(b[8:8 + n]); h['__metadata__']['modeconn.input'] = '1x4096x4096'\n"
                         "t = json.dumps(h).encode(); t += b' ' * (-len(t) %% 8)\n"
                         "open(sys.argv[2], 'wb').write(struct.pack('<Q', len(t)) + t + b[8 + n:])\nEOF", dir, dir), 0);
  assert_int_equal(tu_sh("%s eval --model %s/big.st " SMALL " 2> %s/e.txt", bin, dir, dir), 2);
  assert_int_equal(tu_sh("grep -q 'would need about' %s/e.txt && grep -q 'max-memory' %s/e.txt", dir, dir), 0);
  assert_int_equal(tu_sh("%s eval --model %s/c.st " SMALL " --max-memory 1K 2> %s/e.txt", bin, dir, dir), 2);
  assert_int_equal(tu_sh("%s eval --model %s/c.st " SMALL " --max-memory 1G > /dev/null 2>&1", bin, dir), 0);
  /* unwritable --out: noticed before any epoch */
  assert_int_equal(tu_sh("%s train --arch mlp --widths 8 " SMALL " --epochs 1 --out /nonexistent/x.st > %s/o.txt 2> %s/e.txt",
                         bin, dir, dir), 1);
  assert_int_equal(tu_sh("grep -q '/nonexistent/x.st' %s/e.txt && ! grep -q epoch %s/o.txt", dir, dir), 0);
  /* a second writer of the same --out */
  assert_int_equal(tu_sh("touch %s/c.st.lock && flock %s/c.st.lock sleep 10 & sleep 1; %s train --arch %s/small.arch " SMALL
                         " --epochs 1 --out %s/c.st > /dev/null 2> %s/e.txt; rc=$?; wait; exit $rc", dir, dir, bin, dir, dir, dir), 1);
  assert_int_equal(tu_sh("grep -q 'another process' %s/e.txt", dir), 0);
  /* a .train file of another run (another seed) */
  assert_int_equal(tu_sh("%s train --arch %s/small.arch " SMALL " --epochs 1 --seed 9 --out %s/d.st > /dev/null 2>&1", bin,
                         dir, dir), 0);
  assert_int_equal(tu_sh("cp %s/d.st.train %s/c.st.train", dir, dir), 0);
  assert_int_equal(tu_sh("%s train --arch %s/small.arch " SMALL " --epochs 2 --resume %s/c.st --out %s/c2.st 2> %s/e.txt",
                         bin, dir, dir, dir, dir), 1);
  assert_int_equal(tu_sh("grep -q 'run' %s/e.txt", dir), 0);
  /* resuming with another seed than the run's */
  assert_int_equal(tu_sh("%s train --arch %s/small.arch " SMALL " --epochs 2 --seed 3 --resume %s/d.st --out %s/d2.st 2> %s/e.txt",
                         bin, dir, dir, dir, dir), 2);
  /* a run that fails before its first record leaves an existing log alone */
  assert_int_equal(tu_sh("echo keep > %s/n.st.log.jsonl && %s train --arch mlp --widths 8 " SMALL " --epochs 1 --lr 1e30 "
                         "--out %s/n.st > /dev/null 2>&1", dir, bin, dir), 1);
  assert_int_equal(tu_sh("grep -q keep %s/n.st.log.jsonl", dir), 0);
}

/* items 3 and 4 through `report`: a plane JSON inconsistent with its grid
 * is an error naming the file; an --out with a quote is just a name */
static void test_report(void **s) {
  (void)s;
  assert_int_equal(tu_sh("mkdir -p %s/run && cd %s/run && python3 - <<'EOF'\n"
                         "import json\n"
                         "w = lambda n, o: open(n, 'w').write(json.dumps(o))\n"
                         "for n in ['a_eval', 'b_eval']: w(n + '.json', {'loss': 0.3, 'accuracy': 0.9})\n"
                         "w('align.json', {'method': 'corr', 'groups': []})\n"
                         "w('info.json', {'arch': 'mlp', 'data': 'fashion-mnist', 'settings': 'test'})\n"
                         "for n in ['interp_unaligned', 'interp_aligned', 'curve_unaligned', 'curve_aligned']:\n"
                         "    w(n + '.json', {'t': [0, 0.5, 1], 'test_accuracy': [0.9, 0.5, 0.9], 'test_loss': [0.3, 1, 0.3]})\n"
                         "p = {'grid': 2, 'a': [0, 1], 'b': [0, 1], 'test_loss': [1, 2, 3, 4], 'test_accuracy': [.1, .2, .3, .4],\n"
                         "     'x_norm': 1, 'y_perp_norm': 1, 'theta2_a': 0.5, 'curve_a': [0, 0.5, 1], 'curve_b': [0, 1]}\n"
                         "w('plane_aligned.json', p)\n"
                         "p['curve_b'] = [0, 1, 0]; w('plane_ok.json', p)\n"
                         "EOF", dir, dir), 0);
  assert_int_equal(tu_sh("%s report --run %s/run --out \"%s/rep'; touch %s/pwned2; '\" 2> %s/r.txt", bin, dir, dir, dir,
                         dir), 1);
  assert_int_equal(tu_sh("grep -q \"plane_aligned.json: 'curve_b' has 2 values, expected 3\" %s/r.txt", dir), 0);
  assert_int_equal(tu_sh("test ! -e %s/pwned2 && test -d \"%s/rep'; touch %s/pwned2; '\"", dir, dir, dir), 0);
  assert_int_equal(tu_sh("cd %s/run && mv plane_ok.json plane_aligned.json && %s report --run . --out ../rep2 > /dev/null "
                         "2>&1 && test -s ../rep2/report.md", dir, bin), 0);
}

/* item 11: a dataset directory without read permission says so (needs
 * root to drop to another user; skipped otherwise) */
static void test_permission_denied(void **s) {
  (void)s;
  if (getuid() != 0 || tu_sh("command -v setpriv > /dev/null") != 0) {
    printf("  skipped: needs root and setpriv to test as an unprivileged user\n");
    return;
  }
  assert_int_equal(tu_sh("mkdir -p %s/pd/data && chmod 711 %s %s/pd && cp /usr/share/datasets/fashion-mnist/* %s/pd/data/ "
                         "&& chmod 000 %s/pd/data", dir, dir, dir, dir, dir), 0);
  int r2 = tu_sh("cd / && setpriv --reuid=65534 --regid=65534 --clear-groups %s train --arch mlp --widths 8 --epochs 1 "
                 "--data idx:%s/pd/data > /dev/null 2> %s/pd.txt", bin, dir, dir);
  assert_int_equal(r2, 1);
  assert_int_equal(tu_sh("cat %s/pd.txt; grep -q 'ermission denied' %s/pd.txt", dir, dir), 0);
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_spec_overflow),  cmocka_unit_test(test_spec_ranges),
      cmocka_unit_test(test_error_prefix),   cmocka_unit_test(test_curve_bad_bends),
      cmocka_unit_test(test_plane_json),     cmocka_unit_test(test_mkdir_p),
      cmocka_unit_test(test_gzip_trailer),   cmocka_unit_test(test_memory_estimate),
      cmocka_unit_test(test_cli_flags),      cmocka_unit_test(test_cli_files),
      cmocka_unit_test(test_report),         cmocka_unit_test(test_permission_denied),
  };
  return cmocka_run_group_tests(tests, setup, teardown);
}
