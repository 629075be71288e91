/* The built-in architectures, written in the same text format a user's own
 * spec file uses (see docs/ARCH_FORMAT.md).  Only loops that would be
 * tedious to write out (ResNet stages, VGG's layer list) are generated here;
 * the result is plain spec text, printable with `modeconn info --spec`. */
#include "modeconn.h"

#include <math.h>
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>

typedef struct {
  char *s;
  size_t n, cap;
  int oom; /* a growth failed: later appends do nothing, mc_zoo_spec reports it */
} sbuf;

static void sb_printf(sbuf *b, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));
static void sb_printf(sbuf *b, const char *fmt, ...) {
  va_list ap;
  while (!b->oom) {
    va_start(ap, fmt);
    int k = vsnprintf(b->s ? b->s + b->n : NULL, b->s ? b->cap - b->n : 0,
                      fmt, ap);
    va_end(ap);
    MC_ASSERT(k >= 0);
    if (b->s && b->n + (size_t)k < b->cap) {
      b->n += (size_t)k;
      return;
    }
    b->cap = (b->cap + (size_t)k + 1) * 2;
    char *t = mc_realloc_try(b->s, b->cap);
    if (!t) b->oom = 1;
    else b->s = t;
  }
}

static int64_t scaled(int64_t c, double w) {
  int64_t r = (int64_t)llround((double)c * w);
  return r < 1 ? 1 : r;
}

static void conv_bn_relu(sbuf *b, int idx, int64_t out, int k, int s, int p) {
  sb_printf(b, "conv%d: conv out=%lld k=%d s=%d p=%d bias=1\n", idx,
            (long long)out, k, s, p);
  sb_printf(b, "bn%d: bn\nrelu%d: relu\n", idx, idx);
}

static void tinyten(sbuf *b, const mc_arch_params *p) {
  double w = p->width;
  sb_printf(b, "# TinyTen (Tatro et al. 2020): 8 conv-BN-ReLU, GAP, linear\n");
  sb_printf(b, "input\nnormalize\n");
  conv_bn_relu(b, 1, scaled(16, w), 3, 1, 1);
  conv_bn_relu(b, 2, scaled(16, w), 3, 1, 1);
  conv_bn_relu(b, 3, scaled(32, w), 3, 2, 1);
  conv_bn_relu(b, 4, scaled(32, w), 3, 1, 1);
  conv_bn_relu(b, 5, scaled(32, w), 3, 1, 1);
  conv_bn_relu(b, 6, scaled(64, w), 3, 2, 1);
  conv_bn_relu(b, 7, scaled(64, w), 3, 1, 0);
  conv_bn_relu(b, 8, scaled(64, w), 1, 1, 0);
  sb_printf(b, "gap\nfc: linear out=classes\n");
}

static void resnet(sbuf *b, int depth, const mc_arch_params *p) {
  int n = (depth - 2) / 6;
  double w = p->width;
  int64_t ch[3] = {scaled(16, w), scaled(32, w), scaled(64, w)};
  sb_printf(b, "# ResNet-%d (CIFAR style), %d basic blocks per stage\n",
            depth, n);
  sb_printf(b, "input\nnormalize\n");
  sb_printf(b, "conv1: conv out=%lld k=3 s=1 p=1\nbn1: bn\nstem: relu\n",
            (long long)ch[0]);
  const char *prev = "stem";
  char prevbuf[64];
  int64_t cin = ch[0];
  for (int s = 0; s < 3; s++) {
    for (int i = 0; i < n; i++) {
      int stride = (s > 0 && i == 0) ? 2 : 1;
      char pre[32];
      snprintf(pre, sizeof pre, "layer%d.%d", s + 1, i);
      sb_printf(b, "%s.conv1: conv out=%lld k=3 s=%d p=1 from=%s\n", pre,
                (long long)ch[s], stride, prev);
      sb_printf(b, "%s.bn1: bn\n%s.relu1: relu\n", pre, pre);
      sb_printf(b, "%s.conv2: conv out=%lld k=3 s=1 p=1\n%s.bn2: bn\n", pre,
                (long long)ch[s], pre);
      const char *sc = prev;
      if (stride != 1 || cin != ch[s]) {
        sb_printf(b, "%s.shortcut.0: conv out=%lld k=1 s=%d p=0 from=%s\n",
                  pre, (long long)ch[s], stride, prev);
        sb_printf(b, "%s.shortcut.1: bn\n", pre);
        sb_printf(b, "%s.add: add from=%s.bn2,%s.shortcut.1\n", pre, pre, pre);
      } else {
        sb_printf(b, "%s.add: add from=%s.bn2,%s\n", pre, pre, sc);
      }
      sb_printf(b, "%s.out: relu\n", pre);
      snprintf(prevbuf, sizeof prevbuf, "%s.out", pre);
      prev = prevbuf;
      cin = ch[s];
    }
  }
  sb_printf(b, "gap\nfc: linear out=classes\n");
}

/* torchvision's VGG-16 "D" configuration with BN: features.{i} indices count
 * conv, bn, relu and maxpool modules in order. */
static void vgg16bn(sbuf *b, const mc_arch_params *p) {
  static const int cfg[] = {64, 64, -1, 128, 128, -1, 256, 256, 256, -1,
                            512, 512, 512, -1, 512, 512, 512, -1};
  int ncfg = (int)(sizeof cfg / sizeof cfg[0]);
  sb_printf(b, "# VGG-16 with BN (torchvision indices), linear classifier\n");
  sb_printf(b, "input\nnormalize\n");
  int idx = 0;
  int64_t h = p->in_h, wd = p->in_w;
  for (int i = 0; i < ncfg; i++) {
    if (cfg[i] < 0) {
      /* A 28x28 input reaches 1x1 after four pools; the fifth (always the
       * last module) is then dropped, so later indices are unchanged. */
      if (h >= 2 && wd >= 2) {
        sb_printf(b, "features.%d: maxpool k=2 s=2\n", idx);
        h /= 2;
        wd /= 2;
      }
      idx++;
      continue;
    }
    sb_printf(b, "features.%d: conv out=%lld k=3 s=1 p=1 bias=1\n", idx,
              (long long)scaled(cfg[i], p->width));
    sb_printf(b, "features.%d: bn\nfeatures.%d: relu\n", idx + 1, idx + 2);
    idx += 3;
  }
  sb_printf(b, "flatten\nclassifier: linear out=classes\n");
}

static void mlp(sbuf *b, const mc_arch_params *p) {
  const char *ws = p->widths && *p->widths ? p->widths : "512,512";
  sb_printf(b, "# MLP, hidden widths %s%s\n", ws, p->bn ? ", with BN" : "");
  sb_printf(b, "input\nnormalize\nflatten\n");
  int k = 1;
  const char *s = ws;
  while (*s) {
    char *end;
    long v = strtol(s, &end, 10);
    if (end == s) break;
    sb_printf(b, "fc%d: linear out=%lld\n", k, (long long)scaled(v, p->width));
    if (p->bn) sb_printf(b, "bn%d: bn\n", k);
    sb_printf(b, "relu%d: relu\n", k);
    k++;
    s = *end == ',' ? end + 1 : end;
  }
  sb_printf(b, "fc%d: linear out=classes\n", k);
}

/* Small net exercising concat, avgpool, maxpool, flatten and dropout: the
 * permutation invariants of block-structured spaces are tested on it. */
static void branchnet(sbuf *b, const mc_arch_params *p) {
  (void)p;
  sb_printf(b, "# Branch + concat test net\n");
  sb_printf(b, "input\nnormalize\n");
  sb_printf(b, "conv1: conv out=8 k=3 p=1 bias=1\nbn1: bn\nrelu1: relu\n");
  sb_printf(b, "a.conv: conv out=6 k=3 p=1 from=relu1\na.bn: bn\na.relu: relu\n");
  sb_printf(b, "b.conv: conv out=4 k=1 from=relu1\nb.bn: bn\nb.relu: relu\n");
  sb_printf(b, "cat: concat from=a.relu,b.relu\n");
  sb_printf(b, "pool1: avgpool k=2 s=2\n");
  sb_printf(b, "conv2: conv out=8 k=3 p=1 bias=1\nbn2: bn\nrelu2: relu\n");
  sb_printf(b, "pool2: maxpool k=2 s=2\nflatten\n");
  sb_printf(b, "fc1: linear out=32\nbn3: bn\nrelu3: relu\ndrop: dropout rate=0.1\n");
  sb_printf(b, "fc2: linear out=classes\n");
}

/* GoogLeNet (Inception-v1) as Tatro et al.'s official code adapts
 * torchvision's for 32x32 inputs: conv1 7x7 with stride 1, maxpool1 and
 * maxpool4 removed, everything else torchvision 0.14's (the "5x5" branch
 * is a 3x3 conv there too; BasicConv2d = conv without bias, BN eps 1e-3,
 * ReLU; ceil-mode max pools).  Labels are torchvision's module names, so the
 * state_dict keys are torchvision's.  The auxiliary heads (after 4a, 4d)
 * are train-only outputs of weight 0.3; torchvision pools their input
 * adaptively to 4x4, which is a plain average pool when the side divides by
 * 4 (8x8 for 32x32 inputs); other sides (7x7 for 28x28) get the pool of
 * ceil(side/4) with the zero padding that yields 4x4 (docs/ARCH_FORMAT.md). */
static void basic_conv(sbuf *b, const char *pre, const char *from, int64_t out, int k, int s, int p) {
  sb_printf(b, "%s.conv: conv out=%lld k=%d s=%d p=%d%s%s\n", pre, (long long)out, k, s, p, from ? " from=" : "",
            from ? from : "");
  sb_printf(b, "%s.bn: bn eps=0.001\n%s.relu: relu\n", pre, pre);
}

static void inception(sbuf *b, const char *name, const char *from, const int c[6], double w) {
  char pre[64], src[80];
  snprintf(pre, sizeof pre, "%s.branch1", name);
  basic_conv(b, pre, from, scaled(c[0], w), 1, 1, 0);
  snprintf(pre, sizeof pre, "%s.branch2.0", name);
  basic_conv(b, pre, from, scaled(c[1], w), 1, 1, 0);
  snprintf(src, sizeof src, "%s.relu", pre);
  snprintf(pre, sizeof pre, "%s.branch2.1", name);
  basic_conv(b, pre, src, scaled(c[2], w), 3, 1, 1);
  snprintf(pre, sizeof pre, "%s.branch3.0", name);
  basic_conv(b, pre, from, scaled(c[3], w), 1, 1, 0);
  snprintf(src, sizeof src, "%s.relu", pre);
  snprintf(pre, sizeof pre, "%s.branch3.1", name);
  basic_conv(b, pre, src, scaled(c[4], w), 3, 1, 1);
  sb_printf(b, "%s.branch4.0: maxpool k=3 s=1 p=1 ceil=1 from=%s\n", name, from);
  snprintf(src, sizeof src, "%s.branch4.0", name);
  snprintf(pre, sizeof pre, "%s.branch4.1", name);
  basic_conv(b, pre, src, scaled(c[5], w), 1, 1, 0);
  sb_printf(b, "%s: concat from=%s.branch1.relu,%s.branch2.1.relu,%s.branch3.1.relu,%s.branch4.1.relu\n", name,
            name, name, name, name);
}

/* The average pool that takes a side of n to 4 (0: none does). */
static int aux_pool(int64_t n, int *k, int *pad) {
  *k = (int)((n + 3) / 4);
  *pad = (int)((4 * (int64_t)*k - n + 1) / 2);
  return *pad <= *k / 2 && (n + 2 * *pad - *k) / *k + 1 == 4;
}

static void inception_aux(sbuf *b, const char *name, const char *from, int k, int pad, double w) {
  sb_printf(b, "%s.pool: avgpool k=%d s=%d p=%d from=%s\n", name, k, k, pad, from);
  char pre[64], src[80];
  snprintf(pre, sizeof pre, "%s.conv", name);
  snprintf(src, sizeof src, "%s.pool", name);
  basic_conv(b, pre, src, scaled(128, w), 1, 1, 0);
  sb_printf(b, "%s.flatten: flatten\n%s.fc1: linear out=%lld\n%s.relu: relu\n", name, name,
            (long long)scaled(1024, w), name);
  sb_printf(b, "%s.dropout: dropout rate=0.7\n%s.fc2: linear out=classes\n", name, name);
}

static int64_t maxpool_ceil(int64_t n) { /* k=3 s=2 ceil_mode, as PyTorch */
  int64_t o = (n - 3 + 1) / 2 + 1;
  return (o - 1) * 2 >= n ? o - 1 : o;
}

static int googlenet(sbuf *b, const mc_arch_params *p) {
  static const int cfg[9][6] = {
      {64, 96, 128, 16, 32, 32},    {128, 128, 192, 32, 96, 64},  {192, 96, 208, 16, 48, 64},
      {160, 112, 224, 24, 64, 64},  {128, 128, 256, 24, 64, 64},  {112, 144, 288, 32, 64, 64},
      {256, 160, 320, 32, 128, 128}, {256, 160, 320, 32, 128, 128}, {384, 192, 384, 48, 128, 128}};
  static const char *names[9] = {"inception3a", "inception3b", "inception4a", "inception4b", "inception4c",
                                 "inception4d", "inception4e", "inception5a", "inception5b"};
  const double w = p->width;
  const int64_t ah = maxpool_ceil(maxpool_ceil(p->in_h)), aw = maxpool_ceil(maxpool_ceil(p->in_w));
  int k, pad, kw, padw;
  if (p->in_h < 3 || p->in_w < 3 || !aux_pool(ah, &k, &pad) || !aux_pool(aw, &kw, &padw) || k != kw ||
      pad != padw) {
    mc_error(MC_ESHAPE,
             "googlenet: a %lldx%lld input reaches the auxiliary heads as %lldx%lld, which no square average "
             "pool takes to 4x4 (32x32 and 28x28 inputs work)",
             (long long)p->in_h, (long long)p->in_w, (long long)ah, (long long)aw);
    return -1;
  }
  sb_printf(b, "# GoogLeNet for 32x32 (Tatro et al.'s adaptation of torchvision's), aux heads after 4a, 4d\n");
  sb_printf(b, "input\nnormalize\n");
  basic_conv(b, "conv1", NULL, scaled(64, w), 7, 1, 3);
  basic_conv(b, "conv2", "conv1.relu", scaled(64, w), 1, 1, 0);
  basic_conv(b, "conv3", "conv2.relu", scaled(192, w), 3, 1, 1);
  sb_printf(b, "maxpool2: maxpool k=3 s=2 ceil=1\n");
  const char *prev = "maxpool2";
  for (int i = 0; i < 9; i++) {
    inception(b, names[i], prev, cfg[i], w);
    prev = names[i];
    if (i == 1) {
      sb_printf(b, "maxpool3: maxpool k=3 s=2 ceil=1\n");
      prev = "maxpool3";
    }
    if (i == 2) inception_aux(b, "aux1", prev, k, pad, w);
    if (i == 5) inception_aux(b, "aux2", prev, k, pad, w);
  }
  sb_printf(b, "avgpool: gap from=inception5b\ndropout: dropout rate=0.2\nfc: linear out=classes\n");
  sb_printf(b, "output from=aux1.fc2 weight=0.3 train-only\noutput from=aux2.fc2 weight=0.3 train-only\n");
  return 0;
}

static const char *const zoo_names[] = {"mlp",      "tinyten", "resnet20",
                                        "resnet32", "resnet56", "vgg16-bn",
                                        "googlenet", "branchnet", NULL};

const char *const *mc_zoo_names(void) { return zoo_names; }

mc_status mc_zoo_spec(const char *arch, const mc_arch_params *p, char **out) {
  *out = NULL;
  sbuf b = {0};
  if (!strcmp(arch, "tinyten")) tinyten(&b, p);
  else if (!strcmp(arch, "resnet20")) resnet(&b, 20, p);
  else if (!strcmp(arch, "resnet32")) resnet(&b, 32, p);
  else if (!strcmp(arch, "resnet56")) resnet(&b, 56, p);
  else if (!strcmp(arch, "vgg16-bn")) vgg16bn(&b, p);
  else if (!strcmp(arch, "mlp")) mlp(&b, p);
  else if (!strcmp(arch, "branchnet")) branchnet(&b, p);
  else if (!strcmp(arch, "googlenet")) {
    if (googlenet(&b, p)) {
      free(b.s);
      return MC_ESHAPE;
    }
  }
  else {
    return mc_error(MC_EARG,
                    "unknown architecture '%s' (built-in: mlp, tinyten, resnet20, "
                    "resnet32, resnet56, vgg16-bn, googlenet, branchnet; or a spec file path)",
                    arch);
  }
  if (b.oom) {
    free(b.s);
    return mc_oom(b.cap, "the spec text of architecture %s", arch);
  }
  *out = b.s;
  return MC_OK;
}
