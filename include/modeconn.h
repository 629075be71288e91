/* modeconn public API.
 *
 * The data path is short on purpose:
 *   dataset (uint8) -> batch (float [0,1], NCHW) -> model graph -> flat theta
 *   -> ops (reference or oneDNN executor) -> logits -> loss / metrics.
 *
 * A model (mc_model) is a graph description plus the *layout* of one flat
 * float vector theta (all trainable parameters) and one flat float vector
 * state (BN running statistics).  No layer owns memory: every tensor is a
 * named view (name, shape, offset) into theta or state.  An executor
 * (mc_exec) owns the activation workspace for one batch size and runs the
 * forward and backward passes given theta/state pointers.
 */
#ifndef MODECONN_H
#define MODECONN_H

#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

#ifdef __cplusplus
extern "C" {
#endif

/* ---------------------------------------------------------------- errors */
typedef enum {
  MC_OK = 0,
  MC_EARG,    /* bad argument / usage */
  MC_EIO,     /* file system error */
  MC_EFORMAT, /* malformed file */
  MC_ESHAPE,  /* shape / architecture mismatch */
  MC_ENOMEM,  /* out of memory */
  MC_ENAN,    /* non-finite loss or value */
  MC_EINTERNAL
} mc_status;

/* Sets the thread's last error message (printf style) and returns st. */
mc_status mc_error(mc_status st, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));
const char *mc_errmsg(void);
const char *mc_status_name(mc_status st);

/* Always-on invariant check for our own code (not for user input). */
#define MC_ASSERT(c)                                                        \
  do {                                                                      \
    if (!(c)) mc_assert_fail(#c, __FILE__, __LINE__);                      \
  } while (0)
_Noreturn void mc_assert_fail(const char *expr, const char *file, int line);

/* Allocation.  Every allocation whose size or failure the user or the
 * system can cause goes through the _try functions, which return NULL on
 * failure (never for n = 0); the caller then returns mc_oom(bytes, what),
 * MC_ENOMEM with a message naming what it was allocating and how many
 * bytes, and frees what it had on its usual error path. */
void *mc_malloc_try(size_t n);
void *mc_calloc_try(size_t n, size_t size); /* zeroed; NULL if n * size overflows */
void *mc_realloc_try(void *p, size_t n);    /* p stays valid on failure */
void *mc_aligned_alloc_try(size_t n);       /* 64-byte aligned, zeroed; free() */
char *mc_strdup_try(const char *s);
mc_status mc_oom(size_t bytes, const char *what_fmt, ...) __attribute__((format(printf, 2, 3)));

/* The same, aborting with a message on failure, and outside the fault
 * injection.  Nothing in src/ uses them (the library and the CLI report
 * MC_ENOMEM); they are kept for tests and benchmarks, where an allocation
 * failure is not a path to recover from. */
void *mc_malloc(size_t n);
void *mc_calloc(size_t n, size_t size);
void *mc_aligned_alloc(size_t n);

/* Fault injection for tests, compiled in and off by default: the n-th _try
 * allocation from this call on fails, once (n = 0: none).  Returns how many
 * _try allocations were made since the previous call.  MC_TEST_FAIL_ALLOC=n
 * in the environment does the same from the first allocation of a process
 * (for the CLI). */
long mc_test_fail_alloc(long n);

/* ------------------------------------------------------------------- rng */
/* xoshiro256** seeded by splitmix64; the whole state is 4 words so it can
 * be stored in a checkpoint for exact resume. */
typedef struct { uint64_t s[4]; } mc_rng;
void mc_rng_seed(mc_rng *r, uint64_t seed);
uint64_t mc_rng_next(mc_rng *r);
double mc_rng_uniform(mc_rng *r);          /* [0,1) */
uint64_t mc_rng_below(mc_rng *r, uint64_t n); /* [0,n) */
float mc_rng_normal(mc_rng *r);
void mc_rng_shuffle(mc_rng *r, int64_t *a, size_t n);

/* --------------------------------------------------------------- threads */
void mc_set_threads(int n); /* OpenMP + BLAS share one pool */
int mc_get_threads(void);

/* ----------------------------------------------------------------- graph */
typedef enum {
  MC_NODE_INPUT = 0,
  MC_NODE_NORMALIZE,
  MC_NODE_CONV,
  MC_NODE_LINEAR,
  MC_NODE_BN,
  MC_NODE_RELU,
  MC_NODE_MAXPOOL,
  MC_NODE_AVGPOOL,
  MC_NODE_GAP,
  MC_NODE_FLATTEN,
  MC_NODE_ADD,
  MC_NODE_CONCAT,
  MC_NODE_DROPOUT,
  MC_NODE_KIND_COUNT
} mc_node_kind;

const char *mc_node_kind_name(mc_node_kind k);

#define MC_MAX_INPUTS 8
#define MC_NAME_MAX 96

/* One segment of a channel axis: `count` units of permutation group
 * `group` (-1 = fixed), each unit spanning `repeat` consecutive indices
 * (repeat = H*W after a flatten, 1 otherwise). */
typedef struct {
  int group;  /* final group id after union-find, -1 = fixed */
  int space;  /* raw space id before union-find */
  int64_t count;
  int64_t repeat;
} mc_segment;

typedef struct {
  int n;
  mc_segment *seg; /* n segments, concatenated in order */
} mc_layout;

typedef struct {
  mc_node_kind kind;
  char name[MC_NAME_MAX]; /* PyTorch module prefix for parametrised nodes */
  int in[MC_MAX_INPUTS];
  int n_in;
  /* hyper-parameters */
  int64_t out;      /* conv out channels / linear out features */
  int k, stride, pad; /* conv and pooling */
  int ceil;         /* maxpool: output size rounded up (PyTorch ceil_mode) */
  int bias;         /* conv/linear */
  float eps, momentum; /* bn */
  float p;          /* dropout */
  /* output shape per sample (linear/flatten: C = features, H = W = 1) */
  int64_t C, H, W;
  int flat;         /* output is a feature vector (after flatten/linear) */
  /* tensor indices into model->tensors (-1 = absent) */
  int t_weight, t_bias, t_rmean, t_rvar;
  mc_layout layout; /* channel layout of the output */
} mc_node;

typedef enum {
  MC_ROLE_WEIGHT = 0, MC_ROLE_BIAS, MC_ROLE_RMEAN, MC_ROLE_RVAR
} mc_role;

typedef struct {
  char name[MC_NAME_MAX + 16]; /* e.g. "layer1.0.conv1.weight" */
  int ndim;
  int64_t shape[4];
  size_t off;   /* into theta (or state when in_state) */
  size_t numel;
  int in_state; /* 1: BN running statistic in `state`, 0: trainable in theta */
  int node;
  mc_role role;
  /* channel layouts of axis 0 and axis 1 (NULL when that axis is never
   * permuted, e.g. the spatial axes); they point into node layouts. */
  const mc_layout *axis[2];
} mc_tensor;

typedef struct {
  char name[MC_NAME_MAX]; /* name of the first node that opens it */
  int64_t size;
  int n_members;          /* nodes whose output opens or joins this group */
} mc_group;

/* An output head: a node whose output (a vector of `classes` logits) enters
 * the training loss with weight `weight`.  Head 0 is the last node (weight
 * 1), the model's prediction; more heads come from `output` lines of the
 * spec (GoogLeNet's auxiliary classifiers: weight 0.3, train-only). */
typedef struct {
  int node;
  float weight;
  int train_only; /* computed in MC_MODE_TRAIN only */
} mc_head;

typedef struct mc_model {
  char arch[64];
  int64_t in_c, in_h, in_w;
  int64_t classes;
  double width;
  mc_node *nodes;
  int n_nodes;
  mc_tensor *tensors;
  int n_tensors;
  size_t n_theta, n_state;
  float *norm_mean, *norm_std; /* in_c each; set from the dataset */
  mc_group *groups;
  int n_groups;
  mc_head *heads; /* n_heads >= 1; heads[0].node = n_nodes - 1 */
  int n_heads;
  char *spec; /* the architecture text this model was built from */
} mc_model;

/* Parameters for a built-in architecture or a spec file. */
typedef struct {
  int64_t in_c, in_h, in_w;
  int64_t classes;
  double width;      /* width multiplier (resnet, tinyten, vgg, mlp, googlenet) */
  const char *widths; /* mlp hidden widths, comma separated ("512,512") */
  int bn;            /* mlp: batch norm after each hidden linear */
} mc_arch_params;

void mc_arch_params_default(mc_arch_params *p); /* 1x28x28, 10 classes */

/* *out = the text of a built-in architecture (caller frees). */
mc_status mc_zoo_spec(const char *arch, const mc_arch_params *p, char **out);
const char *const *mc_zoo_names(void); /* NULL-terminated */

/* Build a model from spec text.  `arch` is the name recorded in files. */
mc_status mc_model_from_spec(mc_model **out, const char *arch,
                             const char *spec, const mc_arch_params *p);
/* Built-in name, or "file:PATH" / a path ending in .arch for a spec file. */
mc_status mc_model_create(mc_model **out, const char *arch,
                          const mc_arch_params *p);
void mc_model_free(mc_model *m);
int mc_model_find_tensor(const mc_model *m, const char *name);
void mc_model_print(const mc_model *m, FILE *f);
/* Deterministic PyTorch-style initialisation (kaiming-uniform a=sqrt(5) for
 * conv/linear weights, uniform bias, BN gamma=1 beta=0, rmean 0, rvar 1). */
void mc_model_init(const mc_model *m, float *theta, float *state,
                   uint64_t seed);
/* Output layout of the final node (logits). */
int mc_model_output(const mc_model *m);
/* Nodes a forward computes (live: n_nodes bytes, set to 0/1): every head
 * (train = 1) or the heads not marked train-only, and all they read. */
void mc_model_live(const mc_model *m, char *live, int train);
/* Forward FLOPs per sample (2 per multiply-add, conv + linear only; every
 * node, train-only heads included). */
double mc_model_flops(const mc_model *m);

/* ----------------------------------------------------------- permutation */
/* perm[g] has groups[g].size entries; perm[g][i] = index in the source of
 * the unit that becomes unit i. */
void mc_model_permute(const mc_model *m, int *const *perm, const float *theta,
                      const float *state, float *theta_out, float *state_out);

/* -------------------------------------------------------------- executor */
/* Backends are entries of one table (src/nn/backend.c): the reference ops
 * on OpenBLAS and oneDNN today.  mc_backend is an index into it, or AUTO:
 * every backend scores the model and the highest score wins (oneDNN for
 * models with convolutions, the reference path for the rest -- on AVX2
 * OpenBLAS's sgemm beats oneDNN's inner product for an mlp,
 * bench/README.md). */
typedef enum { MC_BACKEND_AUTO = -1, MC_BACKEND_REF = 0, MC_BACKEND_DNNL = 1 } mc_backend;
typedef enum {
  MC_MODE_EVAL = 0,   /* BN uses running stats, dropout identity */
  MC_MODE_TRAIN,      /* BN batch stats, running stats updated by momentum */
  MC_MODE_BN_RECOMPUTE, /* BN batch stats, running stats = exact cumulative
                          average over the batches since mc_exec_bn_reset */
  MC_MODE_EVAL_ALL_HEADS /* EVAL (running stats, dropout identity, state
                          untouched) that also computes the train-only heads
                          and what only they read: alignment statistics read
                          the auxiliary heads' hidden layers this way */
} mc_mode;

typedef struct mc_exec mc_exec;

#define MODECONN_VERSION "0.6.0"
/* What this machine runs: CPU features, the variant of every hand-written
 * kernel, and a line per backend (oneDNN's version and ISA in use). */
void mc_system_info(FILE *f);

mc_status mc_exec_create(mc_exec **out, const mc_model *m, int64_t batch,
                         mc_backend be);
void mc_exec_free(mc_exec *e);
mc_backend mc_backend_default(void); /* from MODECONN_BACKEND, else auto */
/* Reads MODECONN_BACKEND: unset or empty -> auto; an unknown name is an
 * error (MC_EARG) naming the variable. */
mc_status mc_backend_from_env(mc_backend *be);
mc_status mc_backend_parse(const char *s, mc_backend *be);
const char *mc_backend_name(mc_backend be);
/* The backend mc_exec_create takes for m: AUTO resolved, others unchanged. */
mc_backend mc_backend_for(const mc_model *m, mc_backend be);

/* Forward pass over x: (n, in_c, in_h, in_w) in [0,1], 1 <= n <= batch.
 * state is updated in the train modes.  Computes every output head live in
 * `mode` (eval: the heads not marked train-only; every other mode: all
 * heads, so BN recompute also refreshes the statistics of BNs that only
 * train-only heads read) and nothing that only feeds the others.  A failure (plan,
 * backend, memory) returns its status with a message naming the node. */
mc_status mc_exec_forward(mc_exec *e, const float *theta, float *state,
                          const float *x, int64_t n, mc_mode mode);
/* Head k's output of the last forward, plain (n, classes_k); head 0 is the
 * main head (the logits).  NULL when head k was not computed. */
const float *mc_exec_output(const mc_exec *e, int head);
/* After a forward: the training loss sum_k weight_k * CE_k (mean softmax
 * cross-entropy of each head computed) into *loss, the main head's argmax
 * hits into *correct (either may be NULL), and d(scale * loss)/d(output_k)
 * into the executor's own buffers, which a backward with dout = NULL uses. */
mc_status mc_exec_loss(mc_exec *e, const int32_t *labels, float scale,
                       double *loss, int64_t *correct);
/* Backward pass of the last forward.  dout[k] is d(loss)/d(output of head
 * k) (n, classes_k) for each head the forward computed (NULL entries
 * contribute nothing); dout = NULL takes mc_exec_loss's buffers.  Both
 * outputs are optional and ACCUMULATE: grad += d(loss)/d(theta) (NULL: no
 * weight gradient is computed at all), dx += d(loss)/dx (n, in_c, in_h,
 * in_w) (NULL: the input gradient is not computed). */
mc_status mc_exec_backward(mc_exec *e, const float *theta,
                           const float *const *dout, float *grad, float *dx);
/* Plain NCHW copy of node `node`'s last forward output: (n, C, H, W).
 * The node must have been computed by that forward. */
mc_status mc_exec_read(mc_exec *e, int node, float *out);
/* The same output where it lies, without a copy when the layout allows
 * (else copied to plain layout into buf, room for (n, C, H, W)): element
 * (i, c, s), s = h*W + w, is
 * data[i*n_stride + (c/block)*cb_stride + c%block + s*s_stride]. Valid
 * until the next forward (or until buf changes). */
typedef struct {
  const float *data;
  int64_t block, n_stride, cb_stride, s_stride;
} mc_act_view;
mc_status mc_exec_view(mc_exec *e, int node, float *buf, mc_act_view *v);
/* Runs fn once on every thread at the same time, each thread with its own
 * single-threaded copy of each of es[0..ne) (made on first use for at
 * least `rows` rows, kept until the executor is freed): fn(w, tid, nthr, arg), w[i]
 * being thread tid's copy of es[i]. For eval-mode passes, whose samples
 * are independent: threads never wait for one another, and a single-
 * threaded oneDNN primitive wastes nothing on synchronisation (two such
 * threads evaluate resnet20 about 1.3x faster than one 2-thread
 * executor). fn runs in a one-thread team of its own, so its nested
 * parallel regions, and any orphaned barrier in the libraries it calls,
 * involve its thread alone.  fn returns a status; the first failure (in
 * thread order) is returned. */
#define MC_EXEC_PARALLEL_MAX 4
typedef mc_status (*mc_exec_worker_fn)(mc_exec **w, int tid, int nthr, void *arg);
mc_status mc_exec_parallel(mc_exec *const *es, int ne, int64_t rows, mc_exec_worker_fn fn, void *arg);
void mc_exec_set_seed(mc_exec *e, uint64_t seed); /* dropout masks */
void mc_exec_bn_reset(mc_exec *e, float *state);  /* for BN_RECOMPUTE */
int64_t mc_exec_batch(const mc_exec *e);
const mc_model *mc_exec_model(const mc_exec *e);
mc_backend mc_exec_backend(const mc_exec *e);

/* Mean softmax cross-entropy over n rows; dlogits (may be NULL) receives
 * d(mean loss)/d(logits) * scale.  *correct counts argmax hits. */
double mc_softmax_xent(const float *logits, const int32_t *labels, int64_t n,
                       int64_t classes, float *dlogits, float scale,
                       int64_t *correct);

#ifdef __cplusplus
}
#endif
#endif
