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
} sbuf;

static void sb_printf(sbuf *b, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));
static void sb_printf(sbuf *b, const char *fmt, ...) {
  va_list ap;
  for (;;) {
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
    char *t = realloc(b->s, b->cap);
    MC_ASSERT(t != NULL);
    b->s = t;
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

static const char *const zoo_names[] = {"mlp",      "tinyten", "resnet20",
                                        "resnet32", "resnet56", "vgg16-bn",
                                        "branchnet", NULL};

const char *const *mc_zoo_names(void) { return zoo_names; }

char *mc_zoo_spec(const char *arch, const mc_arch_params *p) {
  sbuf b = {0};
  if (!strcmp(arch, "tinyten")) tinyten(&b, p);
  else if (!strcmp(arch, "resnet20")) resnet(&b, 20, p);
  else if (!strcmp(arch, "resnet32")) resnet(&b, 32, p);
  else if (!strcmp(arch, "resnet56")) resnet(&b, 56, p);
  else if (!strcmp(arch, "vgg16-bn")) vgg16bn(&b, p);
  else if (!strcmp(arch, "mlp")) mlp(&b, p);
  else if (!strcmp(arch, "branchnet")) branchnet(&b, p);
  else {
    mc_error(MC_EARG,
             "unknown architecture '%s' (built-in: mlp, tinyten, resnet20, "
             "resnet32, resnet56, vgg16-bn, branchnet; or a spec file path)",
             arch);
    return NULL;
  }
  return b.s;
}
