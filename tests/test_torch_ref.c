/* The reference executor against PyTorch, with references generated at test
 * time by tests/torch_ref.py under Debian's python3-torch (/usr/bin/python3;
 * override with MC_TORCH_PYTHON).
 *
 * For every case the group setup builds the model, fills theta/state with
 * tu_random_params, draws an input batch (8) and labels, runs
 *   eval:  forward (MC_MODE_EVAL), mean softmax CE, backward (theta + dx)
 *   train: forward (MC_MODE_TRAIN, updates the running statistics), CE,
 *          backward (theta + dx)
 * where CE is mc_exec_loss's: for models with several heads (googlenet)
 * the weighted sum CE + 0.3 CE(aux1) + 0.3 CE(aux2) of the train-mode
 * forward, the main head's CE in eval mode.  Dropout: the train-mode masks
 * the C executor drew (at the real rates, 0.7 and 0.2 in googlenet) are
 * given to PyTorch, so both sides drop the same units.
 * with MC_BACKEND_REF, and writes the parameters (by PyTorch name), the
 * input and the train-mode dropout masks to a temp dir.  One call of the
 * script then computes the same in float64 PyTorch from its own,
 * independently written nn.Module definitions.  Each test compares one case:
 *   parameter names   == state_dict keys (minus num_batches_tracked)
 *   m->n_theta        == sum(p.numel() for p in model.parameters())
 *   logits, dx        max |c - t| / max |t|                 <= 1e-4
 *                     (train mode: every head's logits)
 *   every theta grad  max |c - t| / max(max |t|, 1e-3 G)    <= 1e-4
 *                     (G: the largest |grad| of the mode; a conv bias before
 *                     a train-mode BN has an exactly zero gradient)
 *   loss              |c - t| / |t|                         <= 1e-5
 *   running stats     max |c - t| / max(max |t|, 1e-3)      <= 1e-5
 *                     after the train step (momentum 0.1, unbiased var) and
 *                     after MC_MODE_BN_RECOMPUTE over two batches from reset
 *                     statistics (PyTorch: momentum=None, cumulative average)
 * googlenet also: the definition of tests/googlenet_ref.py computes the
 * same as torchvision 0.14's GoogLeNet with the official code's changes
 * (max rel difference <= 1e-5, both float32 PyTorch), and modeconn's full-
 * width model has torchvision's state_dict names and shapes.
 * File format: see torch_ref.py. */
#include "testutil.h"
#include "mctr.h"

#include "nn/ref/ref.h"

#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#define TOL_ACT 1e-4  /* logits, gradients, dx */
#define TOL_LOSS 1e-5
#define TOL_STATE 1e-5
#define BATCH 8

/* ------------------------------------------------------------- cases */
typedef struct {
  const char *label, *arch;
  int64_t c, h, w;
  double width;
  const char *widths;
  int bn;
  /* filled by the setup */
  mc_model *m;
  float *logits[2], *grad[2], *dx[2], *state1, *state_rc;
  float *heads[4]; /* train mode: head k's logits (k >= 1) */
  int32_t **argmax[2]; /* googlenet: per mode, each maxpool node's argmax */
  uint8_t **relumask[2]; /* googlenet: per mode, each relu node's output > 0 */
  double loss[2];
  char in[512], out[512];
} tcase;

static tcase cases[] = {
    {.label = "tinyten 1x28x28 w=0.5", .arch = "tinyten", .c = 1, .h = 28, .w = 28, .width = 0.5,
     .widths = NULL, .bn = 0},
    {.label = "tinyten 3x32x32 w=0.25", .arch = "tinyten", .c = 3, .h = 32, .w = 32, .width = 0.25,
     .widths = NULL, .bn = 0},
    {.label = "resnet20 1x28x28 w=0.25", .arch = "resnet20", .c = 1, .h = 28, .w = 28, .width = 0.25,
     .widths = NULL, .bn = 0},
    {.label = "resnet20 3x32x32 w=0.5", .arch = "resnet20", .c = 3, .h = 32, .w = 32, .width = 0.5,
     .widths = NULL, .bn = 0},
    {.label = "mlp 1x28x28 64,32", .arch = "mlp", .c = 1, .h = 28, .w = 28, .width = 1.0,
     .widths = "64,32", .bn = 0},
    {.label = "mlp 1x28x28 64,32 bn", .arch = "mlp", .c = 1, .h = 28, .w = 28, .width = 1.0,
     .widths = "64,32", .bn = 1},
    {.label = "vgg16-bn 1x28x28 w=0.125", .arch = "vgg16-bn", .c = 1, .h = 28, .w = 28, .width = 0.125,
     .widths = NULL, .bn = 0},
    {.label = "vgg16-bn 3x32x32 w=0.125", .arch = "vgg16-bn", .c = 3, .h = 32, .w = 32, .width = 0.125,
     .widths = NULL, .bn = 0},
    {.label = "branchnet 1x28x28", .arch = "branchnet", .c = 1, .h = 28, .w = 28, .width = 1.0,
     .widths = NULL, .bn = 0},
    {.label = "googlenet 3x32x32 w=0.125", .arch = "googlenet", .c = 3, .h = 32, .w = 32, .width = 0.125,
     .widths = NULL, .bn = 0},
    {.label = "googlenet 1x28x28 w=0.125", .arch = "googlenet", .c = 1, .h = 28, .w = 28, .width = 0.125,
     .widths = NULL, .bn = 0},
};
#define NCASES ((int)(sizeof cases / sizeof cases[0]))

static char g_dir[256];
static int g_script_status = -1;

static void run_case(tcase *tc, int idx) {
  mc_arch_params p;
  mc_arch_params_default(&p);
  p.in_c = tc->c; p.in_h = tc->h; p.in_w = tc->w;
  p.classes = 10;
  p.width = tc->width;
  if (tc->widths) p.widths = tc->widths;
  p.bn = tc->bn;
  if (mc_model_create(&tc->m, tc->arch, &p)) fail_msg("%s: %s", tc->label, mc_errmsg());
  mc_model *m = tc->m;
  for (int64_t c = 0; c < m->in_c; c++) {
    m->norm_mean[c] = 0.49f - 0.03f * (float)c;
    m->norm_std[c] = 0.25f + 0.02f * (float)c;
  }
  float *theta, *state;
  tu_random_params(m, 100 + (uint64_t)idx, &theta, &state);
  const int64_t n = BATCH;
  const size_t nx = (size_t)(n * m->in_c * m->in_h * m->in_w);
  float *x = mc_malloc(sizeof(float) * nx);
  tu_random_input(x, nx, 200 + (uint64_t)idx);
  int32_t y[BATCH];
  for (int i = 0; i < BATCH; i++) y[i] = (int32_t)((i * 3 + idx) % m->classes);

  mc_exec *e;
  assert_int_equal(mc_exec_create(&e, m, n, MC_BACKEND_REF), MC_OK);
  mc_exec_set_seed(e, 5);
  tc->state1 = mc_malloc(sizeof(float) * (m->n_state + 1));
  for (int mode = 0; mode < 2; mode++) {
    memcpy(tc->state1, state, sizeof(float) * m->n_state);
    const float *lg = tu_forward(e, theta, tc->state1, x, n, mode ? MC_MODE_TRAIN : MC_MODE_EVAL);
    tc->logits[mode] = mc_malloc(sizeof(float) * (size_t)(n * m->classes));
    memcpy(tc->logits[mode], lg, sizeof(float) * (size_t)(n * m->classes));
    if (!strcmp(tc->arch, "googlenet")) { /* PyTorch routes max-pool gradients by these */
      tc->argmax[mode] = mc_calloc((size_t)m->n_nodes, sizeof(int32_t *));
      tc->relumask[mode] = mc_calloc((size_t)m->n_nodes, sizeof(uint8_t *));
      for (int i = 0; i < m->n_nodes; i++)
        if (m->nodes[i].kind == MC_NODE_RELU) {
          size_t cnt = (size_t)(n * m->nodes[i].C * m->nodes[i].H * m->nodes[i].W);
          tc->relumask[mode][i] = mc_malloc(cnt + 1);
          for (size_t j = 0; j < cnt; j++) tc->relumask[mode][i][j] = ref_of(e)->act[i][j] > 0.f;
        }
      for (int i = 0; i < m->n_nodes; i++)
        if (m->nodes[i].kind == MC_NODE_MAXPOOL) {
          size_t cnt = (size_t)(n * m->nodes[i].C * m->nodes[i].H * m->nodes[i].W);
          tc->argmax[mode][i] = mc_malloc(sizeof(int32_t) * cnt);
          memcpy(tc->argmax[mode][i], ref_of(e)->argmax[i], sizeof(int32_t) * cnt);
        }
    }
    for (int k = 1; mode && k < m->n_heads; k++) {
      MC_ASSERT(k < 4 && mc_exec_output(e, k));
      tc->heads[k] = mc_malloc(sizeof(float) * (size_t)(n * m->classes));
      memcpy(tc->heads[k], mc_exec_output(e, k), sizeof(float) * (size_t)(n * m->classes));
    }
    /* the training loss of the heads this mode computes, and its gradient */
    assert_int_equal(mc_exec_loss(e, y, 1.f, &tc->loss[mode], NULL), MC_OK);
    tc->grad[mode] = mc_calloc(m->n_theta + 1, sizeof(float));
    tc->dx[mode] = mc_calloc(nx, sizeof(float));
    tu_backward(e, theta, NULL, tc->grad[mode], tc->dx[mode]);
  }
  /* BN recompute over two batches (x, x2) from reset statistics */
  float *x2 = mc_malloc(sizeof(float) * nx);
  tu_random_input(x2, nx, 300 + (uint64_t)idx);
  tc->state_rc = mc_malloc(sizeof(float) * (m->n_state + 1));
  memcpy(tc->state_rc, state, sizeof(float) * m->n_state);
  float **masks = mc_calloc((size_t)m->n_nodes, sizeof(float *));
  for (int i = 0; i < m->n_nodes; i++) /* keep the train masks: the next forwards redraw */
    if (m->nodes[i].kind == MC_NODE_DROPOUT) {
      size_t cnt = (size_t)(n * m->nodes[i].C * m->nodes[i].H * m->nodes[i].W);
      masks[i] = mc_malloc(sizeof(float) * cnt);
      memcpy(masks[i], ref_of(e)->mask[i], sizeof(float) * cnt);
    }
  mc_exec_bn_reset(e, tc->state_rc);
  (void)tu_forward(e, theta, tc->state_rc, x, n, MC_MODE_BN_RECOMPUTE);
  (void)tu_forward(e, theta, tc->state_rc, x2, n, MC_MODE_BN_RECOMPUTE);

  snprintf(tc->in, sizeof tc->in, "%s/case%d.in", g_dir, idx);
  snprintf(tc->out, sizeof tc->out, "%s/case%d.out", g_dir, idx);
  writer w;
  w_open(&w, tc->in);
  char cfg[256];
  snprintf(cfg, sizeof cfg, "arch=%s in=%lldx%lldx%lld classes=%lld width=%.17g widths=%s bn=%d",
           tc->arch, (long long)m->in_c, (long long)m->in_h, (long long)m->in_w,
           (long long)m->classes, tc->width, tc->widths ? tc->widths : "", tc->bn);
  int64_t d[4] = {(int64_t)strlen(cfg)};
  w_put(&w, "meta.config", DT_U8, 1, d, cfg);
  d[0] = m->in_c;
  w_put(&w, "norm.mean", DT_F32, 1, d, m->norm_mean);
  w_put(&w, "norm.std", DT_F32, 1, d, m->norm_std);
  int64_t dxs[4] = {n, m->in_c, m->in_h, m->in_w};
  w_put(&w, "input.x", DT_F32, 4, dxs, x);
  w_put(&w, "input.x2", DT_F32, 4, dxs, x2);
  d[0] = n;
  w_put(&w, "input.y", DT_I32, 1, d, y);
  for (int t = 0; t < m->n_tensors; t++) {
    const mc_tensor *T = &m->tensors[t];
    char name[MC_NAME_MAX + 32];
    snprintf(name, sizeof name, "param.%s", T->name);
    w_put(&w, name, DT_F32, T->ndim, T->shape, (T->in_state ? state : theta) + T->off);
  }
  /* the train-mode dropout masks the executor drew (last forward = train) */
  for (int i = 0; i < m->n_nodes; i++) {
    const mc_node *nd = &m->nodes[i];
    if (nd->kind != MC_NODE_DROPOUT) continue;
    char name[MC_NAME_MAX + 32];
    snprintf(name, sizeof name, "mask.%s", nd->name);
    int64_t dm[4] = {n, nd->C, nd->H, nd->W};
    w_put(&w, name, DT_F32, nd->flat ? 2 : 4, dm, masks[i]);
  }
  for (int md = 0; md < 2 && tc->argmax[md]; md++)
    for (int i = 0; i < m->n_nodes; i++) {
      const mc_node *nd = &m->nodes[i];
      if (tc->relumask[md][i]) {
        char name[MC_NAME_MAX + 32];
        snprintf(name, sizeof name, "relumask.%s.%s", md ? "train" : "eval", nd->name);
        int64_t dm[4] = {n, nd->C, nd->H, nd->W};
        w_put(&w, name, DT_U8, nd->flat ? 2 : 4, dm, tc->relumask[md][i]);
        free(tc->relumask[md][i]);
      }
      if (!tc->argmax[md][i]) continue;
      char name[MC_NAME_MAX + 32];
      snprintf(name, sizeof name, "argmax.%s.%s", md ? "train" : "eval", nd->name);
      int64_t dm[4] = {n, nd->C, nd->H, nd->W};
      w_put(&w, name, DT_I32, 4, dm, tc->argmax[md][i]);
      free(tc->argmax[md][i]);
    }
  free(tc->argmax[0]);
  free(tc->argmax[1]);
  free(tc->relumask[0]);
  free(tc->relumask[1]);
  w_close(&w);
  mc_exec_free(e);
  for (int i = 0; i < m->n_nodes; i++) free(masks[i]);
  free(masks);
  free(x); free(x2); free(theta); free(state);
}

static int group_setup(void **st) {
  (void)st;
  const char *tmp = tu_env("TMPDIR", "/tmp");
  snprintf(g_dir, sizeof g_dir, "%s/mc_torch_ref.XXXXXX", tmp);
  if (!mkdtemp(g_dir)) {
    fprintf(stderr, "mkdtemp %s: %s\n", g_dir, strerror(errno));
    return -1;
  }
  for (int i = 0; i < NCASES; i++) run_case(&cases[i], i);
  char args[8192];
  int k = 0;
  for (int i = 0; i < NCASES; i++)
    k += snprintf(args + k, sizeof args - (size_t)k, " '%s' '%s'", cases[i].in, cases[i].out);
  MC_ASSERT(k < (int)sizeof args);
  g_script_status = mctr_run_script("torch_ref.py", args);
  return 0;
}

static int group_teardown(void **st) {
  (void)st;
  for (int i = 0; i < NCASES; i++) {
    tcase *tc = &cases[i];
    for (int md = 0; md < 2; md++) {
      free(tc->logits[md]);
      free(tc->grad[md]);
      free(tc->dx[md]);
    }
    free(tc->state1);
    free(tc->state_rc);
    for (int k = 0; k < 4; k++) free(tc->heads[k]);
    mc_model_free(tc->m);
    if (!getenv("MC_TORCH_REF_KEEP")) { /* set: keep the files for a look with torch_ref.py */
      unlink(tc->in);
      unlink(tc->out);
    }
  }
  if (g_dir[0] && !getenv("MC_TORCH_REF_KEEP")) rmdir(g_dir);
  return 0;
}

static const rec *need(const recset *rs, const char *name) {
  const rec *r = r_get(rs, name);
  if (!r) fail_msg("reference output lacks '%s'", name);
  return r;
}

/* googlenet: the reference definition against torchvision's module, and
 * modeconn's full-width names and shapes against torchvision's. */
static int check_torchvision(const tcase *tc, const recset *rs) {
  const double err = need(rs, "meta.tv_err")->v[0];
  mc_arch_params p;
  mc_arch_params_default(&p);
  p.in_c = tc->c;
  p.in_h = p.in_w = 32;
  p.classes = tc->m->classes;
  mc_model *m;
  if (mc_model_create(&m, "googlenet", &p)) fail_msg("%s", mc_errmsg());
  const rec *names = need(rs, "meta.tv_names");
  char *text = strdup(names->raw ? names->raw : "");
  int nref = 0, matched = 0;
  for (char *s = strtok(text, "\n"); s; s = strtok(NULL, "\n")) {
    char *sp = strchr(s, ' ');
    if (!sp) continue;
    *sp = 0;
    nref++;
    const int t = mc_model_find_tensor(m, s);
    char shape[64] = "";
    for (int d = 0; t >= 0 && d < m->tensors[t].ndim; d++)
      snprintf(shape + strlen(shape), sizeof shape - strlen(shape), "%s%lld", d ? "x" : "",
               (long long)m->tensors[t].shape[d]);
    if (t >= 0 && !strcmp(shape, sp + 1)) matched++;
    else printf("  torchvision '%s' [%s]: modeconn %s\n", s, sp + 1, t < 0 ? "has no such tensor" : shape);
  }
  free(text);
  const int pass = nref == m->n_tensors && matched == nref && err <= 1e-5;
  printf("  %-26s torchvision 0.14 (modified): %d/%d tensors match by name and shape (width 1, %zu params); "
         "reference vs torchvision forward %.1e%s\n",
         tc->label, matched, m->n_tensors, m->n_theta, err, pass ? "" : "  <-- FAIL");
  mc_model_free(m);
  return pass;
}

static void check_case(void **st) {
  tcase *tc = (tcase *)*st;
  assert_int_equal(g_script_status, 0);
  recset rs;
  if (r_load(&rs, tc->out)) fail_msg("%s: cannot read %s", tc->label, tc->out);
  const mc_model *m = tc->m;
  int ok = 1;

  /* names and parameter count */
  const rec *names = need(&rs, "meta.names");
  int nref = 0, matched = 0;
  char *text = strdup(names->raw ? names->raw : "");
  for (char *s = strtok(text, "\n"); s; s = strtok(NULL, "\n")) {
    nref++;
    if (mc_model_find_tensor(m, s) >= 0) matched++;
    else { printf("  %s: PyTorch tensor '%s' missing in modeconn\n", tc->label, s); ok = 0; }
  }
  free(text);
  if (nref != m->n_tensors || matched != m->n_tensors) {
    printf("  %s: %d modeconn tensors, %d PyTorch state_dict entries, %d matched\n", tc->label,
           m->n_tensors, nref, matched);
    ok = 0;
  }
  const double nparams = need(&rs, "meta.nparams")->v[0];
  printf("  %-26s %zu parameters (PyTorch %.0f), %d tensors matched by name\n", tc->label,
         m->n_theta, nparams, matched);
  if ((double)m->n_theta != nparams) ok = 0;

  const size_t nl = (size_t)(BATCH * m->classes);
  const size_t nx = (size_t)(BATCH * m->in_c * m->in_h * m->in_w);
  static const char *mode_names[2] = {"eval", "train"};
  for (int md = 0; md < 2; md++) {
    char key[MC_NAME_MAX + 64];
    snprintf(key, sizeof key, "%s.logits", mode_names[md]);
    double e_logits = rec_rel_err(tc->logits[md], need(&rs, key), nl, 1e-30);
    for (int k = 1; md == 1 && k < m->n_heads; k++) {
      snprintf(key, sizeof key, "train.head%d.logits", k);
      e_logits = fmax(e_logits, rec_rel_err(tc->heads[k], need(&rs, key), nl, 1e-30));
    }
    snprintf(key, sizeof key, "%s.loss", mode_names[md]);
    double tl = need(&rs, key)->v[0];
    double e_loss = fabs(tc->loss[md] - tl) / fabs(tl);
    snprintf(key, sizeof key, "%s.dx", mode_names[md]);
    double e_dx = rec_rel_err(tc->dx[md], need(&rs, key), nx, 1e-30);
    /* gradient scale of this mode */
    double G = 0;
    for (int t = 0; t < m->n_tensors; t++) {
      const mc_tensor *T = &m->tensors[t];
      if (T->in_state) continue;
      snprintf(key, sizeof key, "%s.grad.%s", mode_names[md], T->name);
      const rec *r = need(&rs, key);
      for (size_t i = 0; i < r->n; i++) G = fmax(G, fabs(r->v[i]));
    }
    double e_grad = 0;
    const char *worst = "";
    for (int t = 0; t < m->n_tensors; t++) {
      const mc_tensor *T = &m->tensors[t];
      if (T->in_state) continue;
      snprintf(key, sizeof key, "%s.grad.%s", mode_names[md], T->name);
      double e = rec_rel_err(tc->grad[md] + T->off, need(&rs, key), T->numel, 1e-3 * G);
      if (!(e <= e_grad)) { e_grad = e; worst = T->name; }
    }
    int pass = e_logits <= TOL_ACT && e_loss <= TOL_LOSS && e_dx <= TOL_ACT && e_grad <= TOL_ACT;
    printf("  %-26s %-5s logits %.1e  loss %.1e  grads %.1e (%s)  dx %.1e%s\n", tc->label,
           mode_names[md], e_logits, e_loss, e_grad, worst, e_dx, pass ? "" : "  <-- FAIL");
    ok &= pass;
  }
  /* running statistics after the train step, and after BN recompute */
  for (int k = 0; k < 2 && m->n_state; k++) {
    double e_state = 0;
    const char *worst = "";
    for (int t = 0; t < m->n_tensors; t++) {
      const mc_tensor *T = &m->tensors[t];
      if (!T->in_state) continue;
      char key[MC_NAME_MAX + 64];
      snprintf(key, sizeof key, "%s.state.%s", k ? "recompute" : "train", T->name);
      double e = rec_rel_err((k ? tc->state_rc : tc->state1) + T->off, need(&rs, key), T->numel, 1e-3);
      if (!(e <= e_state)) { e_state = e; worst = T->name; }
    }
    int pass = e_state <= TOL_STATE;
    printf("  %-26s %s running stats %.1e (%s)%s\n", tc->label,
           k ? "bn-recompute (2 batches)" : "train step", e_state, worst, pass ? "" : "  <-- FAIL");
    ok &= pass;
  }
  if (!strcmp(tc->arch, "googlenet")) ok &= check_torchvision(tc, &rs);
  r_free(&rs);
  assert_true(ok);
}

int main(void) {
  struct CMUnitTest tests[NCASES];
  for (int i = 0; i < NCASES; i++) {
    struct CMUnitTest t = {cases[i].label, check_case, NULL, NULL, &cases[i]};
    tests[i] = t;
  }
  return _cmocka_run_group_tests("torch_ref", tests, (size_t)NCASES, group_setup, group_teardown);
}
