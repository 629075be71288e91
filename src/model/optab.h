/* The op table: one descriptor per node kind, holding everything about the
 * kind that is not a backend's business -- its spec keyword and keys (with
 * defaults), how many inputs it takes, its shape rule, its channel-space
 * rule, the parameter tensors it owns (role, shape, initialisation), its
 * FLOPs, and its reference forward and backward.  The parser and the
 * graph builder (graph.c), `info`, FLOPs and initialisation (model.c) and
 * the reference backend (nn/ref) read the descriptor instead of switching
 * over kinds.  A new node kind is one descriptor here (optab.c) plus one
 * lowering per backend (nn/ref/ref_ops.c, nn/dnnl/lower_*.c); see
 * docs/DEVELOPING.md, "Adding a node kind". */
#ifndef MC_MODEL_OPTAB_H
#define MC_MODEL_OPTAB_H

#include "modeconn.h"

/* ------------------------------------------------------------ spec keys */
/* Every key a spec line can carry (besides from=), each stored in one
 * field of mc_node.  A kind accepts the keys its descriptor lists. */
typedef enum {
  MC_KEY_OUT = 0, /* out channels / features, integer <= 2^40, "classes", "in_c" */
  MC_KEY_K,       /* kernel / window, integer <= 2^20 */
  MC_KEY_S,       /* stride */
  MC_KEY_P,       /* padding */
  MC_KEY_BIAS,    /* 0/1, or the bare word `bias` */
  MC_KEY_EPS,     /* float */
  MC_KEY_MOMENTUM,
  MC_KEY_RATE,
  MC_KEY_CEIL,    /* maxpool: 0/1, PyTorch's ceil_mode */
  MC_KEY_COUNT
} mc_key;

/* A key a kind accepts: its default, or required (must be given, >= 1). */
typedef struct {
  mc_key key;
  double dflt;
  int required;
} mc_op_key;

typedef enum {
  MC_KEYT_COUNT = 0, /* int64 in [0, 2^40]; "classes" and "in_c" name the run's sizes */
  MC_KEYT_SMALL,     /* int in [0, 2^20] */
  MC_KEYT_FLAG,      /* int 0/1 from an integer, or the bare key alone */
  MC_KEYT_FLOAT      /* a finite float */
} mc_key_type;

/* How a key is written and stored: its name in specs, its type, the
 * offset of its field in mc_node, and the value every node starts with
 * (a kind's own defaults then apply, mc_op_key.dflt). */
typedef struct {
  const char *name;
  mc_key_type type;
  size_t field;
  double base;
} mc_key_info;

const mc_key_info *mc_key_info_of(mc_key k);
/* Stores v into node field of key k (converted to the field's type);
 * mc_key_load reads it back. */
void mc_key_store(mc_node *nd, mc_key k, double v);
double mc_key_load(const mc_node *nd, mc_key k);

/* --------------------------------------------------------- channel space */
/* How a node's output channels relate to its inputs' (the union-find of
 * graph.c turns these into permutation groups). */
typedef enum {
  MC_SPACE_FIXED = 0, /* a new space that is never permuted (the input) */
  MC_SPACE_OPEN,      /* a new space of C channels (conv, linear) */
  MC_SPACE_KEEP,      /* the first input's layout (bn, relu, pooling, ...) */
  MC_SPACE_MERGE,     /* the inputs' spaces are one (add): union, then keep */
  MC_SPACE_CONCAT,    /* the inputs' layouts one after the other */
  MC_SPACE_EXPAND     /* the first input's, each channel repeated H*W times (flatten) */
} mc_space_rule;

/* ----------------------------------------------------------- parameters */
typedef enum {
  MC_INIT_ZERO = 0,
  MC_INIT_ONE,
  MC_INIT_FANIN /* U(-b, b), b = 1/sqrt(fan_in of the node's weight): PyTorch's default */
} mc_init_rule;

/* A tensor a node owns: "<label>.<suffix>", in theta or (running
 * statistics) in state by its role.  Axis 0 is the node's own output
 * layout; axis 1, when ndim > 1, the first input's. */
typedef struct {
  const char *suffix;
  mc_role role;
  int ndim;
  int with_bias; /* present only when the node's bias flag is set */
  mc_init_rule init;
} mc_param_desc;

/* -------------------------------------------------------- reference ops */
struct ref_ctx; /* nn/ref/ref_ops.h */
typedef mc_status (*mc_ref_fn)(struct ref_ctx *c);

/* ----------------------------------------------------------- descriptor */
typedef struct mc_op_desc {
  mc_node_kind kind;
  const char *name;        /* spec keyword, and the kind `info` prints */
  const mc_op_key *keys;   /* accepted keys, n_keys of them */
  int n_keys;
  int min_in, max_in;      /* input count (from=, else the previous line) */
  /* After the keys are read: kind-specific ranges and derived defaults.
   * given[k] says whether key k was written.  Returns a message (the
   * parser prefixes file:line) or NULL when the node is fine. */
  const char *(*check)(mc_node *nd, const int *given);
  /* Shape rule: sets nd->C, H, W and flat from the inputs (m->nodes, the
   * input size m->in_c/h/w), or returns MC_ESHAPE/MC_EFORMAT naming
   * `file` and the node.  Every product a spec can make large is
   * overflow-checked (core/checked.h); the builder then checks the
   * output's C*H*W. */
  mc_status (*shape)(const mc_model *m, mc_node *nd, const char *file);
  mc_space_rule space;
  const mc_param_desc *params; /* n_params of them, in theta/state order */
  int n_params;
  /* shape of params[j] for this node (ndim entries) */
  void (*param_shape)(const mc_model *m, const mc_node *nd, int j, int64_t *shape);
  /* forward FLOPs per sample (2 per multiply-add); NULL: none counted */
  double (*flops)(const mc_model *m, const mc_node *nd);
  /* the reference backend (nn/ref): what it needs at init (saved
   * statistics, masks, scratch sizes; NULL: nothing), forward, backward
   * (NULL: no gradient flows, the input node) */
  mc_ref_fn ref_prepare, ref_forward, ref_backward;
} mc_op_desc;

/* The descriptor of kind k (k must be a valid kind). */
const mc_op_desc *mc_op_desc_of(mc_node_kind k);
/* d's parameter of the given role, or NULL. */
const mc_param_desc *mc_op_param_of(const mc_op_desc *d, mc_role role);
/* The kind whose keyword is `name`, or -1. */
int mc_op_kind_by_name(const char *name);

/* A layout's channel segments at most: nested concats multiply them, and
 * each costs memory in every node downstream. */
#define MC_MAX_SEGMENTS (1 << 16)

/* Index of `role`'s tensor slot in the node (t_weight, t_bias, ...). */
static inline int *mc_node_tensor_slot(mc_node *nd, mc_role role) {
  switch (role) {
  case MC_ROLE_WEIGHT: return &nd->t_weight;
  case MC_ROLE_BIAS: return &nd->t_bias;
  case MC_ROLE_RMEAN: return &nd->t_rmean;
  default: return &nd->t_rvar;
  }
}

#endif
