/* The op table (src/model/optab.h): every node kind has a complete
 * descriptor, the parser takes exactly the keys a kind's descriptor lists
 * (with its defaults), and docs/ARCH_FORMAT.md documents those keys. */
#include "testutil.h"

#include "model/optab.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static void test_complete(void **s) {
  (void)s;
  for (int k = 0; k < MC_NODE_KIND_COUNT; k++) {
    const mc_op_desc *d = mc_op_desc_of((mc_node_kind)k);
    assert_int_equal(d->kind, k);
    assert_non_null(d->name);
    assert_int_equal(mc_op_kind_by_name(d->name), k);
    assert_string_equal(mc_node_kind_name((mc_node_kind)k), d->name);
    assert_non_null(d->shape);
    assert_non_null(d->ref_forward);
    /* only the source node has no backward (no gradient flows past it) */
    assert_true(d->ref_backward != NULL || d->max_in == 0);
    assert_true(d->min_in >= 0 && d->min_in <= d->max_in && d->max_in <= MC_MAX_INPUTS);
    assert_true(d->n_params == 0 || d->param_shape != NULL);
    for (int j = 0; j < d->n_params; j++) {
      assert_true(d->params[j].ndim >= 1 && d->params[j].ndim <= 4);
      assert_ptr_equal(mc_op_param_of(d, d->params[j].role), &d->params[j]);
    }
    for (int j = 0; j < d->n_keys; j++) assert_true(d->keys[j].key >= 0 && d->keys[j].key < MC_KEY_COUNT);
  }
  assert_int_equal(mc_op_kind_by_name("output"), -1); /* a head marker, not a node */
  assert_int_equal(mc_op_kind_by_name("conv2d"), -1);
}

/* A small spec around node "x" of kind d with `keys`: input, normalize,
 * an 8x8 map (a conv) for the kinds that read one, the node, then
 * whatever makes the last node a vector of classes. */
static mc_status one_node(const mc_op_desc *d, const char *keys, mc_model **out) {
  const char *pre = "input\nnormalize\nconv out=2 k=1\n", *post = "flatten\nlinear out=classes\n", *from = "";
  if (d->kind == MC_NODE_INPUT) pre = "";
  if (d->kind == MC_NODE_NORMALIZE) pre = "input\n";
  if (d->kind == MC_NODE_LINEAR) {
    pre = "input\nnormalize\nflatten\n";
    post = "relu\nlinear out=classes\n";
  }
  if (d->kind == MC_NODE_ADD || d->kind == MC_NODE_CONCAT) {
    pre = "input\nnormalize\na: conv out=2 k=1\nb: conv out=2 k=1 from=normalize@1\n";
    from = " from=a,b";
  }
  char spec[512];
  snprintf(spec, sizeof spec, "%sx: %s%s %s\n%s", pre, d->name, from, keys, post);
  mc_arch_params p;
  mc_arch_params_default(&p);
  p.in_h = p.in_w = 8;
  *out = NULL;
  return mc_model_from_spec(out, "optab.arch", spec, &p);
}

static const mc_node *node_x(const mc_model *m) {
  for (int i = 0; i < m->n_nodes; i++)
    if (!strcmp(m->nodes[i].name, "x")) return &m->nodes[i];
  fail_msg("no node x");
  return NULL;
}

/* Each key a kind lists is accepted (required ones given) and lands in its
 * field; the defaults are the descriptor's; a key of another kind is
 * refused, naming the keys the kind takes. */
static void test_keys(void **s) {
  (void)s;
  const char *sample[MC_KEY_COUNT] = {
      [MC_KEY_OUT] = "out=3", [MC_KEY_K] = "k=2", [MC_KEY_S] = "s=2", [MC_KEY_P] = "p=1",
      [MC_KEY_BIAS] = "bias=0", [MC_KEY_EPS] = "eps=0.001", [MC_KEY_MOMENTUM] = "momentum=0.25",
      [MC_KEY_RATE] = "rate=0.25", [MC_KEY_CEIL] = "ceil=1"};
  const double sample_v[MC_KEY_COUNT] = {3, 2, 2, 1, 0, 0.001f, 0.25, 0.25, 1};
  for (int k = 0; k < MC_NODE_KIND_COUNT; k++) {
    const mc_op_desc *d = mc_op_desc_of((mc_node_kind)k);
    char req[128] = "";
    for (int j = 0; j < d->n_keys; j++)
      if (d->keys[j].required) {
        size_t l = strlen(req);
        snprintf(req + l, sizeof req - l, " %s", sample[d->keys[j].key]);
      }
    mc_model *m;
    /* defaults */
    assert_int_equal(one_node(d, req, &m), MC_OK);
    const mc_node *nd = node_x(m);
    for (int j = 0; j < d->n_keys; j++)
      if (!d->keys[j].required && !(k == MC_NODE_MAXPOOL || k == MC_NODE_AVGPOOL))
        assert_true(mc_key_load(nd, d->keys[j].key) == (double)(float)d->keys[j].dflt);
    mc_model_free(m);
    /* each key written */
    for (int j = 0; j < d->n_keys; j++) {
      const mc_key key = d->keys[j].key;
      if (d->keys[j].required) continue;
      char keys[160];
      snprintf(keys, sizeof keys, "%s %s", req, sample[key]);
      mc_status st = one_node(d, keys, &m);
      assert_int_equal(st, MC_OK);
      nd = node_x(m);
      assert_true(mc_key_load(nd, key) == (double)(float)sample_v[key]);
      mc_model_free(m);
    }
    /* keys of other kinds */
    for (int key = 0; key < MC_KEY_COUNT; key++) {
      int takes = 0;
      for (int j = 0; j < d->n_keys; j++) takes |= (int)d->keys[j].key == key;
      if (takes) continue;
      char keys[160];
      snprintf(keys, sizeof keys, "%s %s", req, sample[key]);
      assert_int_equal(one_node(d, keys, &m), MC_EFORMAT);
      char want[64];
      snprintf(want, sizeof want, "(%s takes ", d->name);
      assert_non_null(strstr(mc_errmsg(), want));
      assert_non_null(strstr(mc_errmsg(), mc_key_info_of((mc_key)key)->name));
    }
  }
  /* the bare flag only where the key is taken */
  mc_model *m;
  assert_int_equal(one_node(mc_op_desc_of(MC_NODE_CONV), "out=2 k=1 bias", &m), MC_OK);
  assert_int_equal(node_x(m)->bias, 1);
  mc_model_free(m);
  assert_int_equal(one_node(mc_op_desc_of(MC_NODE_RELU), "bias", &m), MC_EFORMAT);
  assert_non_null(strstr(mc_errmsg(), "relu takes no keys"));
  /* pooling's stride defaults to its window */
  assert_int_equal(one_node(mc_op_desc_of(MC_NODE_MAXPOOL), "k=2", &m), MC_OK);
  assert_int_equal(node_x(m)->stride, 2);
  mc_model_free(m);
}

/* docs/ARCH_FORMAT.md's table row of each kind names every key the kind
 * takes, with the descriptor's default where it has one. */
static void test_documented(void **s) {
  (void)s;
  char path[1024];
  snprintf(path, sizeof path, "%s/docs/ARCH_FORMAT.md", tu_env("MC_SOURCE_DIR", "."));
  FILE *f = fopen(path, "r");
  assert_non_null(f);
  static char doc[1 << 16];
  size_t n = fread(doc, 1, sizeof doc - 1, f);
  doc[n] = 0;
  fclose(f);
  for (int k = 0; k < MC_NODE_KIND_COUNT; k++) {
    const mc_op_desc *d = mc_op_desc_of((mc_node_kind)k);
    char tag[64];
    snprintf(tag, sizeof tag, "`%s`", d->name);
    const char *row = NULL;
    for (const char *l = doc; l && *l; l = strchr(l, '\n') ? strchr(l, '\n') + 1 : NULL) {
      const char *e = strchr(l, '\n');
      size_t len = e ? (size_t)(e - l) : strlen(l);
      char line[512];
      snprintf(line, sizeof line, "%.*s", (int)(len < 511 ? len : 511), l);
      if (line[0] == '|' && strstr(line, tag) && strstr(line, tag) < strchr(line + 1, '|')) {
        row = l;
        break;
      }
    }
    if (!row) fail_msg("docs/ARCH_FORMAT.md has no table row for kind %s", d->name);
    const char *e = strchr(row, '\n');
    char line[512];
    snprintf(line, sizeof line, "%.*s", (int)(e ? e - row : (long)strlen(row)), row);
    for (int j = 0; j < d->n_keys; j++) {
      char key[64];
      snprintf(key, sizeof key, "`%s`", mc_key_info_of(d->keys[j].key)->name);
      const char *at = strstr(line, key);
      if (!at) fail_msg("docs/ARCH_FORMAT.md: the %s row does not name key %s", d->name, key);
      if (d->keys[j].required || !strncmp(at + strlen(key), " (=", 3)) continue;
      const char *num = at + strlen(key);
      char *end;
      double v = strncmp(num, " (", 2) ? -1 : strtod(num + 2, &end);
      if ((float)v != (float)d->keys[j].dflt)
        fail_msg("docs/ARCH_FORMAT.md: the %s row should give %s (%g)", d->name, key, d->keys[j].dflt);
    }
  }
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_complete),
      cmocka_unit_test(test_keys),
      cmocka_unit_test(test_documented),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
