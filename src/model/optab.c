/* The op table (optab.h): one descriptor per node kind, and the kinds'
 * own rules -- checks of their keys, shape rules, parameter shapes, FLOPs.
 * The reference functions they name are the reference backend's lowering
 * (nn/ref/ref_ops.c). */
#include "model/optab.h"

#include "core/checked.h"
#include "nn/ref/ref_ops.h"

#include <stddef.h>
#include <string.h>

/* ------------------------------------------------------------------ keys */
static const mc_key_info key_info[MC_KEY_COUNT] = {
    [MC_KEY_OUT] = {"out", MC_KEYT_COUNT, offsetof(mc_node, out), 0},
    [MC_KEY_K] = {"k", MC_KEYT_SMALL, offsetof(mc_node, k), 0},
    [MC_KEY_S] = {"s", MC_KEYT_SMALL, offsetof(mc_node, stride), 1},
    [MC_KEY_P] = {"p", MC_KEYT_SMALL, offsetof(mc_node, pad), 0},
    [MC_KEY_BIAS] = {"bias", MC_KEYT_FLAG, offsetof(mc_node, bias), 0},
    [MC_KEY_EPS] = {"eps", MC_KEYT_FLOAT, offsetof(mc_node, eps), 1e-5},
    [MC_KEY_MOMENTUM] = {"momentum", MC_KEYT_FLOAT, offsetof(mc_node, momentum), 0.1},
    [MC_KEY_RATE] = {"rate", MC_KEYT_FLOAT, offsetof(mc_node, p), 0.5},
    [MC_KEY_CEIL] = {"ceil", MC_KEYT_SMALL, offsetof(mc_node, ceil), 0},
};

const mc_key_info *mc_key_info_of(mc_key k) { return &key_info[k]; }

void mc_key_store(mc_node *nd, mc_key k, double v) {
  char *f = (char *)nd + key_info[k].field;
  switch (key_info[k].type) {
  case MC_KEYT_COUNT: *(int64_t *)f = (int64_t)v; break;
  case MC_KEYT_SMALL: *(int *)f = (int)v; break;
  case MC_KEYT_FLAG: *(int *)f = v != 0; break;
  case MC_KEYT_FLOAT: *(float *)f = (float)v; break;
  }
}

/* ------------------------------------------------------------ key checks */
static const char *check_bn(mc_node *nd, const int *given) {
  (void)given;
  /* PyTorch's ranges: eps > 0 (1 is already absurd), momentum in [0, 1] */
  if (!(nd->eps > 0 && nd->eps <= 1)) return "bn eps must be in (0, 1]";
  if (!(nd->momentum >= 0 && nd->momentum <= 1)) return "bn momentum must be in [0, 1]";
  return NULL;
}

static const char *check_dropout(mc_node *nd, const int *given) {
  (void)given;
  return nd->p < 0 || nd->p >= 1 ? "dropout rate must be in [0,1)" : NULL;
}

static const char *check_conv(mc_node *nd, const int *given) {
  (void)given;
  return nd->stride < 1 ? "stride must be >= 1" : NULL;
}

static const char *check_pool(mc_node *nd, const int *given) {
  if (!given[MC_KEY_S]) nd->stride = nd->k;
  if (nd->stride < 1) return "stride must be >= 1";
  /* as PyTorch: a pooling window must overlap the unpadded input */
  if (nd->pad > nd->k / 2) return "pool padding p must be at most k/2";
  return NULL;
}

/* ----------------------------------------------------------- shape rules */
static const mc_node *in0_of(const mc_model *m, const mc_node *nd) { return &m->nodes[nd->in[0]]; }

static void same_shape(mc_node *nd, const mc_node *in0) {
  nd->C = in0->C;
  nd->H = in0->H;
  nd->W = in0->W;
  nd->flat = in0->flat;
}

static mc_status shape_input(const mc_model *m, mc_node *nd, const char *file) {
  (void)file;
  nd->C = m->in_c;
  nd->H = m->in_h;
  nd->W = m->in_w;
  return MC_OK;
}

static mc_status shape_normalize(const mc_model *m, mc_node *nd, const char *file) {
  const mc_node *in0 = in0_of(m, nd);
  if (in0->kind != MC_NODE_INPUT)
    return mc_error(MC_EFORMAT, "%s: node '%s': normalize must follow input", file, nd->name);
  same_shape(nd, in0);
  return MC_OK;
}

static mc_status shape_same(const mc_model *m, mc_node *nd, const char *file) {
  (void)file;
  same_shape(nd, in0_of(m, nd));
  return MC_OK;
}

static mc_status shape_conv(const mc_model *m, mc_node *nd, const char *file) {
  const mc_node *in0 = in0_of(m, nd);
  if (in0->flat) return mc_error(MC_EFORMAT, "%s: conv '%s' cannot follow a flattened vector", file, nd->name);
  /* H, W <= MC_MAX_NUMEL and pad, k <= 2^20: no overflow here */
  if (in0->H + 2 * (int64_t)nd->pad < nd->k || in0->W + 2 * (int64_t)nd->pad < nd->k)
    return mc_error(MC_ESHAPE, "%s: conv '%s': kernel %d larger than its padded %lldx%lld input", file, nd->name,
                    nd->k, (long long)in0->H, (long long)in0->W);
  nd->C = nd->out;
  nd->H = (in0->H + 2 * (int64_t)nd->pad - nd->k) / nd->stride + 1;
  nd->W = (in0->W + 2 * (int64_t)nd->pad - nd->k) / nd->stride + 1;
  return MC_OK;
}

static mc_status shape_linear(const mc_model *m, mc_node *nd, const char *file) {
  const mc_node *in0 = in0_of(m, nd);
  if (!in0->flat && (in0->H != 1 || in0->W != 1))
    return mc_error(MC_EFORMAT, "%s: linear '%s' needs a vector input: add 'flatten' or 'gap' before it", file,
                    nd->name);
  nd->C = nd->out;
  nd->H = nd->W = 1;
  nd->flat = 1;
  return MC_OK;
}

/* Pooled size along an axis of n, as PyTorch: floor, or with ceil=1 the
 * ceiling, dropping a last window that would start in the right padding. */
static int64_t pool_out(int64_t n, const mc_node *nd) {
  const int64_t span = n + 2 * (int64_t)nd->pad - nd->k, s = nd->stride;
  int64_t o = (nd->ceil ? (span + s - 1) / s : span / s) + 1;
  if (nd->ceil && (o - 1) * s >= n + nd->pad) o--;
  return o;
}

static mc_status shape_pool(const mc_model *m, mc_node *nd, const char *file) {
  const mc_node *in0 = in0_of(m, nd);
  if (in0->flat || in0->H + 2 * (int64_t)nd->pad < nd->k || in0->W + 2 * (int64_t)nd->pad < nd->k)
    return mc_error(MC_ESHAPE, "%s: pool '%s': input %lldx%lld too small for k=%d", file, nd->name,
                    (long long)in0->H, (long long)in0->W, nd->k);
  nd->C = in0->C;
  nd->H = pool_out(in0->H, nd);
  nd->W = pool_out(in0->W, nd);
  return MC_OK;
}

static mc_status shape_gap(const mc_model *m, mc_node *nd, const char *file) {
  (void)file;
  nd->C = in0_of(m, nd)->C;
  nd->H = nd->W = 1;
  nd->flat = 1;
  return MC_OK;
}

static mc_status shape_flatten(const mc_model *m, mc_node *nd, const char *file) {
  (void)file;
  const mc_node *in0 = in0_of(m, nd);
  nd->C = in0->C * in0->H * in0->W; /* checked when in0 was built */
  nd->H = nd->W = 1;
  nd->flat = 1;
  return MC_OK;
}

/* Every addend has the first one's shape and channel structure (segment
 * counts and repeats): the space rule then merges their spaces. */
static mc_status shape_add(const mc_model *m, mc_node *nd, const char *file) {
  const mc_node *in0 = in0_of(m, nd);
  for (int j = 1; j < nd->n_in; j++) {
    const mc_node *o = &m->nodes[nd->in[j]];
    int same = o->C == in0->C && o->H == in0->H && o->W == in0->W && o->layout.n == in0->layout.n;
    for (int s = 0; same && s < o->layout.n; s++)
      same = o->layout.seg[s].count == in0->layout.seg[s].count &&
             o->layout.seg[s].repeat == in0->layout.seg[s].repeat;
    if (!same)
      return mc_error(MC_ESHAPE, "%s: add '%s': inputs '%s' and '%s' differ in shape or channel structure", file,
                      nd->name, in0->name, o->name);
  }
  same_shape(nd, in0);
  return MC_OK;
}

static mc_status shape_concat(const mc_model *m, mc_node *nd, const char *file) {
  const mc_node *in0 = in0_of(m, nd);
  int64_t ctot = 0;
  int nseg = 0;
  for (int j = 0; j < nd->n_in; j++) {
    const mc_node *o = &m->nodes[nd->in[j]];
    if (o->H != in0->H || o->W != in0->W || o->flat != in0->flat)
      return mc_error(MC_ESHAPE, "%s: concat '%s': '%s' is %lldx%lld, '%s' is %lldx%lld", file, nd->name, in0->name,
                      (long long)in0->H, (long long)in0->W, o->name, (long long)o->H, (long long)o->W);
    if (!mc_add_ok(&ctot, ctot, o->C) || o->layout.n > MC_MAX_SEGMENTS - nseg)
      return mc_error(MC_ESHAPE, "%s: concat '%s': more than %lld channels or %d channel segments", file, nd->name,
                      (long long)MC_MAX_NUMEL, MC_MAX_SEGMENTS);
    nseg += o->layout.n;
  }
  same_shape(nd, in0);
  nd->C = ctot;
  return MC_OK;
}

/* ------------------------------------------------------------ parameters */
static const mc_param_desc params_conv[] = {
    {"weight", MC_ROLE_WEIGHT, 4, 0, MC_INIT_FANIN},
    {"bias", MC_ROLE_BIAS, 1, 1, MC_INIT_FANIN},
};
static const mc_param_desc params_linear[] = {
    {"weight", MC_ROLE_WEIGHT, 2, 0, MC_INIT_FANIN},
    {"bias", MC_ROLE_BIAS, 1, 1, MC_INIT_FANIN},
};
static const mc_param_desc params_bn[] = {
    {"weight", MC_ROLE_WEIGHT, 1, 0, MC_INIT_ONE},
    {"bias", MC_ROLE_BIAS, 1, 0, MC_INIT_ZERO},
    {"running_mean", MC_ROLE_RMEAN, 1, 0, MC_INIT_ZERO},
    {"running_var", MC_ROLE_RVAR, 1, 0, MC_INIT_ONE},
};

/* conv weight [out, in, k, k], linear weight [out, in features], biases [out] */
static void pshape_conv(const mc_model *m, const mc_node *nd, int j, int64_t *sh) {
  const mc_node *in0 = in0_of(m, nd);
  sh[0] = nd->out;
  if (j == 0) {
    sh[1] = in0->C;
    sh[2] = sh[3] = nd->k;
  }
}

static void pshape_linear(const mc_model *m, const mc_node *nd, int j, int64_t *sh) {
  const mc_node *in0 = in0_of(m, nd);
  sh[0] = nd->out;
  if (j == 0) sh[1] = in0->C * in0->H * in0->W; /* checked when in0 was built */
}

static void pshape_channels(const mc_model *m, const mc_node *nd, int j, int64_t *sh) {
  (void)m;
  (void)j;
  sh[0] = nd->C;
}

/* ----------------------------------------------------------------- FLOPs */
static double flops_conv(const mc_model *m, const mc_node *nd) {
  const mc_node *in0 = in0_of(m, nd);
  return 2.0 * (double)nd->C * (double)in0->C * nd->k * nd->k * (double)(nd->H * nd->W);
}

static double flops_linear(const mc_model *m, const mc_node *nd) {
  const mc_node *in0 = in0_of(m, nd);
  return 2.0 * (double)nd->C * (double)(in0->C * in0->H * in0->W);
}

/* ------------------------------------------------------------ the table */
#define KEYS(a) .keys = a, .n_keys = (int)(sizeof a / sizeof a[0])
#define PARAMS(a) .params = a, .n_params = (int)(sizeof a / sizeof a[0])
#define ONE_INPUT .min_in = 1, .max_in = 1
#define SEVERAL_INPUTS .min_in = 2, .max_in = MC_MAX_INPUTS

static const mc_op_key keys_conv[] = {
    {MC_KEY_OUT, 0, 1}, {MC_KEY_K, 0, 1}, {MC_KEY_S, 1, 0}, {MC_KEY_P, 0, 0}, {MC_KEY_BIAS, 0, 0}};
static const mc_op_key keys_linear[] = {{MC_KEY_OUT, 0, 1}, {MC_KEY_BIAS, 1, 0}};
static const mc_op_key keys_bn[] = {{MC_KEY_EPS, 1e-5, 0}, {MC_KEY_MOMENTUM, 0.1, 0}};
/* s defaults to k (check_pool) */
static const mc_op_key keys_pool[] = {{MC_KEY_K, 0, 1}, {MC_KEY_S, 0, 0}, {MC_KEY_P, 0, 0}};
static const mc_op_key keys_maxpool[] = {{MC_KEY_K, 0, 1}, {MC_KEY_S, 0, 0}, {MC_KEY_P, 0, 0}, {MC_KEY_CEIL, 0, 0}};
static const mc_op_key keys_dropout[] = {{MC_KEY_RATE, 0.5, 0}};

static const mc_op_desc table[MC_NODE_KIND_COUNT] = {
    [MC_NODE_INPUT] = {.kind = MC_NODE_INPUT, .name = "input", .min_in = 0, .max_in = 0, .shape = shape_input,
                       .space = MC_SPACE_FIXED, .ref_forward = ref_input_fwd},
    [MC_NODE_NORMALIZE] = {.kind = MC_NODE_NORMALIZE, .name = "normalize", ONE_INPUT, .shape = shape_normalize,
                           .space = MC_SPACE_KEEP, .ref_forward = ref_normalize_fwd,
                           .ref_backward = ref_normalize_bwd},
    [MC_NODE_CONV] = {.kind = MC_NODE_CONV, .name = "conv", KEYS(keys_conv), ONE_INPUT, .check = check_conv,
                      .shape = shape_conv, .space = MC_SPACE_OPEN, PARAMS(params_conv), .param_shape = pshape_conv,
                      .flops = flops_conv, .ref_prepare = ref_conv_prepare, .ref_forward = ref_conv_fwd,
                      .ref_backward = ref_conv_bwd},
    [MC_NODE_LINEAR] = {.kind = MC_NODE_LINEAR, .name = "linear", KEYS(keys_linear), ONE_INPUT,
                        .shape = shape_linear, .space = MC_SPACE_OPEN, PARAMS(params_linear),
                        .param_shape = pshape_linear, .flops = flops_linear, .ref_forward = ref_linear_fwd,
                        .ref_backward = ref_linear_bwd},
    [MC_NODE_BN] = {.kind = MC_NODE_BN, .name = "bn", KEYS(keys_bn), ONE_INPUT, .check = check_bn,
                    .shape = shape_same, .space = MC_SPACE_KEEP, PARAMS(params_bn), .param_shape = pshape_channels,
                    .ref_prepare = ref_bn_prepare, .ref_forward = ref_bn_fwd, .ref_backward = ref_bn_bwd},
    [MC_NODE_RELU] = {.kind = MC_NODE_RELU, .name = "relu", ONE_INPUT, .shape = shape_same, .space = MC_SPACE_KEEP,
                      .ref_forward = ref_relu_fwd, .ref_backward = ref_relu_bwd},
    [MC_NODE_MAXPOOL] = {.kind = MC_NODE_MAXPOOL, .name = "maxpool", KEYS(keys_maxpool), ONE_INPUT,
                         .check = check_pool, .shape = shape_pool, .space = MC_SPACE_KEEP,
                         .ref_prepare = ref_maxpool_prepare, .ref_forward = ref_maxpool_fwd,
                         .ref_backward = ref_maxpool_bwd},
    [MC_NODE_AVGPOOL] = {.kind = MC_NODE_AVGPOOL, .name = "avgpool", KEYS(keys_pool), ONE_INPUT,
                         .check = check_pool, .shape = shape_pool, .space = MC_SPACE_KEEP,
                         .ref_forward = ref_avgpool_fwd, .ref_backward = ref_avgpool_bwd},
    [MC_NODE_GAP] = {.kind = MC_NODE_GAP, .name = "gap", ONE_INPUT, .shape = shape_gap, .space = MC_SPACE_KEEP,
                     .ref_forward = ref_gap_fwd, .ref_backward = ref_gap_bwd},
    [MC_NODE_FLATTEN] = {.kind = MC_NODE_FLATTEN, .name = "flatten", ONE_INPUT, .shape = shape_flatten,
                         .space = MC_SPACE_EXPAND, .ref_forward = ref_copy_fwd, .ref_backward = ref_copy_bwd},
    [MC_NODE_ADD] = {.kind = MC_NODE_ADD, .name = "add", SEVERAL_INPUTS, .shape = shape_add,
                     .space = MC_SPACE_MERGE, .ref_forward = ref_add_fwd, .ref_backward = ref_add_bwd},
    [MC_NODE_CONCAT] = {.kind = MC_NODE_CONCAT, .name = "concat", SEVERAL_INPUTS, .shape = shape_concat,
                        .space = MC_SPACE_CONCAT, .ref_forward = ref_concat_fwd, .ref_backward = ref_concat_bwd},
    [MC_NODE_DROPOUT] = {.kind = MC_NODE_DROPOUT, .name = "dropout", KEYS(keys_dropout), ONE_INPUT,
                         .check = check_dropout, .shape = shape_same, .space = MC_SPACE_KEEP,
                         .ref_prepare = ref_dropout_prepare, .ref_forward = ref_dropout_fwd,
                         .ref_backward = ref_dropout_bwd},
};

const mc_op_desc *mc_op_desc_of(mc_node_kind k) {
  MC_ASSERT(k >= 0 && k < MC_NODE_KIND_COUNT && table[k].name);
  return &table[k];
}

int mc_op_kind_by_name(const char *name) {
  for (int k = 0; k < MC_NODE_KIND_COUNT; k++)
    if (!strcmp(name, table[k].name)) return k;
  return -1;
}

const mc_param_desc *mc_op_param_of(const mc_op_desc *d, mc_role role) {
  for (int j = 0; j < d->n_params; j++)
    if (d->params[j].role == role) return &d->params[j];
  return NULL;
}

double mc_key_load(const mc_node *nd, mc_key k) {
  const char *f = (const char *)nd + key_info[k].field;
  switch (key_info[k].type) {
  case MC_KEYT_COUNT: return (double)*(const int64_t *)f;
  case MC_KEYT_FLOAT: return *(const float *)f;
  default: return *(const int *)f;
  }
}

const char *mc_node_kind_name(mc_node_kind k) {
  return (k >= 0 && k < MC_NODE_KIND_COUNT) ? table[k].name : "?";
}
