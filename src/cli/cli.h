/* Command-line plumbing shared by the subcommands: one option table per
 * command drives both parsing and --help, so help can never drift from the
 * flags actually accepted. */
#ifndef MC_CLI_H
#define MC_CLI_H

#include "modeconn.h"
#include "data/data.h"
#include "eval/attack.h"
#include "eval/path.h"

#include <jansson.h>

enum { EXIT_OK = 0, EXIT_RUNTIME = 1, EXIT_USAGE = 2 };

typedef enum { OPT_STR, OPT_INT, OPT_DOUBLE, OPT_FLAG } opt_type;

typedef struct {
  const char *name; /* without leading dashes */
  opt_type type;
  void *ptr;        /* const char **, int64_t *, double *, int * */
  const char *def;  /* default shown in help (also parsed into ptr) */
  const char *help;
} cli_opt;

typedef struct {
  const char *name;
  const char *summary;
  const char *usage;
  int (*run)(int argc, char **argv);
} cli_cmd;

/* Parses argv (argv[0] is the subcommand).  Returns -1 to continue, or an
 * exit code (0 after --help, 2 after a usage error). */
int cli_parse(const cli_cmd *cmd, cli_opt *opts, int argc, char **argv);
void cli_help(const cli_cmd *cmd, const cli_opt *opts, FILE *f);
int cli_fail(mc_status st);               /* prints mc_errmsg, returns 1/2 */
int cli_usage(const char *cmd, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));

/* Options every model-building command shares. */
typedef struct {
  const char *arch, *input, *widths;
  int64_t classes;
  double width;
  int bn;
  int64_t threads;
  const char *backend;
  const char *max_memory;
} cli_model_opts;

#define CLI_MODEL_OPTS(o)                                                     \
  {"arch", OPT_STR, &(o).arch, "tinyten",                                     \
   "architecture: mlp, tinyten, resnet20/32/56, vgg16-bn, googlenet, branchnet, or a "   \
   "spec file (see docs/ARCH_FORMAT.md)"},                                    \
  {"input", OPT_STR, &(o).input, "1x28x28", "input shape CxHxW"},           \
  {"classes", OPT_INT, &(o).classes, "10", "number of classes"},             \
  {"width", OPT_DOUBLE, &(o).width, "1", "width multiplier"},                \
  {"widths", OPT_STR, &(o).widths, "512,512", "mlp hidden widths"},         \
  {"bn", OPT_FLAG, &(o).bn, NULL, "mlp: batch norm after hidden layers"}

#define CLI_RUNTIME_OPTS(o)                                                   \
  {"threads", OPT_INT, &(o).threads, "0", "threads (0 = all cores)"},       \
  {"backend", OPT_STR, &(o).backend, NULL,                                   \
   "compute path: dnnl (oneDNN), ref (reference ops on OpenBLAS), or auto "   \
   "(dnnl for models with convolutions, else ref) (default: $MODECONN_BACKEND, else auto)"}, \
  {"max-memory", OPT_STR, &(o).max_memory, "auto",                            \
   "refuse to start when the estimated memory (parameters, optimizer state, " \
   "activations of a batch) exceeds this many bytes (suffix K, M, G or T; "   \
   "auto = MemAvailable in /proc/meminfo)"}

mc_status cli_arch_params(const cli_model_opts *o, mc_arch_params *p);
mc_status cli_runtime(const cli_model_opts *o, mc_backend *be);
/* Refuses (MC_EARG, with the numbers) when m with `copies` parameter-sized
 * vectors and a batch of `batch` is estimated to exceed --max-memory. */
mc_status cli_check_memory(const mc_model *m, int64_t batch, int copies, const char *what);
/* Batch-size flags: 1..CLI_MAX_BATCH. */
#define CLI_MAX_BATCH ((int64_t)1 << 24)

/* Data options shared by every command that reads a dataset. */
typedef struct {
  const char *data;
  int64_t train_subset, test_subset;
} cli_data_opts;

#define CLI_DATA_OPTS(o)                                                      \
  {"data", OPT_STR, &(o).data, "fashion-mnist",                              \
   "dataset: fashion-mnist[:DIR], mnist:DIR, idx:DIR, cifar10:DIR, "         \
   "cifar100:DIR"},                                                           \
  {"train-subset", OPT_INT, &(o).train_subset, "0",                          \
   "use only the first N training images (0 = all)"},                        \
  {"test-subset", OPT_INT, &(o).test_subset, "0",                            \
   "use only the first N test images (0 = all)"}


/* Data, model and runtime options together: what a command reading
 * checkpoints and a dataset takes. */
#define CLI_ALL_OPTS(d, m) CLI_DATA_OPTS(d), CLI_MODEL_OPTS(m), CLI_RUNTIME_OPTS(m)

mc_status cli_load_data(const cli_data_opts *o, mc_data *d);
/* Builds the model from a checkpoint (metadata first, then flags). */
mc_status cli_load_model(const char *path, const cli_model_opts *mo, mc_model **m,
                         float **theta, float **state);

/* Loads two checkpoints of one architecture (B strictly into A's layout). */
mc_status cli_load_pair(const char *pa, const char *pb, const cli_model_opts *mo, mc_model **m, float **ta,
                        float **sa, float **tb, float **sb);
/* Two checkpoints of one architecture and the dataset to study them on. */
typedef struct {
  mc_model *m;
  float *ta, *sa, *tb, *sb;
  mc_data d;
} cli_pair;
mc_status cli_pair_load(const char *pa, const char *pb, const cli_model_opts *mo, const cli_data_opts *dopt,
                        cli_pair *p);
void cli_pair_free(cli_pair *p);
/* The SGD flags train and curve train share, validated by one function:
 * epochs >= 1 (0 = the preset's when preset), batch 2..CLI_MAX_BATCH,
 * lr > 0 (0 = preset), momentum in [0, 1), wd >= 0, crop -1..1024,
 * eval-every >= 0, seed >= 0, flip on|off|auto. */
typedef struct {
  int64_t epochs, batch, seed, crop, eval_every;
  double lr, momentum, wd;
  const char *flip;
  int no_nesterov;
} cli_sgd_opts;
mc_status cli_sgd_check(const cli_sgd_opts *o, int preset);

/* The PGD flags (SPEC section 4) of every command that attacks. */
typedef struct {
  const char *adv, *eps, *alpha, *random_start, *bn_adv;
  int64_t steps, seed;
} cli_adv_opts;
#define CLI_ADV_OPTS(o)                                                                                   \
  {"adv", OPT_STR, &(o).adv, "none", "adversarial mode: none, or pgd (L-infinity PGD of SPEC section 4)"}, \
  CLI_PGD_OPTS(o)
#define CLI_PGD_OPTS(o)                                                                                   \
  {"eps", OPT_STR, &(o).eps, "auto",                                                                      \
   "PGD radius, a number or a fraction such as 8/255 (auto: 0.1 for 1-channel data such as "               \
   "Fashion-MNIST and MNIST, 8/255 for 3-channel CIFAR data)"},                                           \
  {"alpha", OPT_STR, &(o).alpha, "auto", "PGD step size (auto: 0.025 for 1-channel data, 2/255 for CIFAR)"}, \
  {"steps", OPT_INT, &(o).steps, "5", "PGD steps k (0: the clean inputs)"},                               \
  {"random-start", OPT_STR, &(o).random_start, "yes",                                                     \
   "PGD start: yes (x + U(-eps, eps), not clipped, as the official code) or no (x itself)"},             \
  {"attack-seed", OPT_INT, &(o).seed, "1", "seed of the PGD random starts (keyed by image index)"}
/* ... and of the commands that recompute BN along a path */
#define CLI_BN_ADV_OPT(o)                                                                                 \
  {"bn-adv", OPT_STR, &(o).bn_adv, "yes",                                                                 \
   "with --adv pgd: recompute BN on PGD examples of the training images generated at each point (yes, "    \
   "as the official code) or on the clean images (no)"}
/* Validates the flags; *on = 0 for --adv none (p then untouched, except
 * defaults).  channels picks the auto eps/alpha. */
mc_status cli_adv_setup(const cli_adv_opts *o, int64_t channels, mc_pgd *p, int *on);
/* --FLAG yes|no into *out (1/0). */
mc_status cli_yes_no(const char *flag, const char *s, int *out);
/* "pgd eps=... alpha=... steps=... start=random|zero seed=..." */
void cli_adv_describe(const mc_pgd *p, char *buf, size_t n);
/* The attack parameters as a JSON object (keys eps, alpha, steps,
 * random_start, attack_seed). */
json_t *cli_adv_json(const mc_pgd *p);
/* The flags of a path or plane evaluation into po (po->adv = p or NULL,
 * po->bn_adv); with --adv pgd prints the attack and, when extra is not
 * NULL, records it there under "adversarial". */
mc_status cli_path_adv(const cli_adv_opts *o, int64_t channels, mc_pgd *p, mc_path_opts *po, json_t *extra);

/* Claims an output file before any work: takes an advisory lock
 * (flock on OUT.lock, kept until exit) so two processes cannot write the
 * same OUT, which also proves its directory writable; then removes stale
 * temporaries of OUT and OUT.train left by a killed run. */
mc_status cli_claim_out(const char *out);
/* A safetensors file of one F32 tensor `name` (shape[0] = n rows of ds) and
 * I64 "labels" [n], ds's first n labels, with nmeta metadata pairs. */
mc_status cli_write_with_labels(const char *path, const char *name, const float *data, int ndim, const int64_t *shape,
                                const mc_dataset *ds, const char *const *mk, const char *const *mv, int nmeta);
/* Writes JSON atomically if path is non-NULL; takes ownership of j. */
mc_status cli_write_json(const char *path, json_t *j);

/* Plots PREFIX_loss and PREFIX_acc (.png and .svg) of a plane with an
 * optional curve overlay (nc points at plane coordinates ca, cb). */
mc_status cli_plot_plane(const char *prefix, const char *title, const mc_plane_result *pr, const double *ca,
                         const double *cb, int nc);

int cmd_info(int argc, char **argv);
int cmd_align(int argc, char **argv);
int cmd_interp(int argc, char **argv);
int cmd_curve(int argc, char **argv);
int cmd_plane(int argc, char **argv);
int cmd_report(int argc, char **argv);

int cmd_train(int argc, char **argv);
int cmd_eval(int argc, char **argv);
int cmd_attack(int argc, char **argv);

/* --repair of interp, curve eval and plane (cmd_path.c): s (NULL: the
 * default for m, reset with BN, none without) into po->repair and
 * po->bn_recompute; bn_flag_off is interp's --no-bn-recompute (= none).
 * With repair, m's REPAIR layers are checked first (a layer without a bias
 * is an error naming it). */
#define CLI_REPAIR_HELP                                                                                   \
  "none (theta as interpolated; BN running statistics interpolated between the endpoints), reset (BN "    \
  "statistics recomputed at every point) or repair (REPAIR: every conv/linear layer not followed by BN, "  \
  "except the logits, rescaled per channel to the interpolated endpoint statistics of its output and the " \
  "correction folded into its weight and bias; then BN reset) (default: reset for models with BN, none "   \
  "for models without)"
mc_status cli_repair_mode(const char *s, const mc_model *m, int bn_flag_off, mc_path_opts *po);

/* What the library has to say (core/sink.h), printed: report lines
 * (MC_MSG_INFO) on stdout, notices on stderr; progress on stderr as a bar
 * when stderr is a terminal, else one line per path point (for logs) and
 * nothing for the other loops. */
extern const mc_sink cli_sink;

#endif
