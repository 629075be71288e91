/* The kernel registry: CPU features read once, and for every kernel the
 * best variant they allow (kernels.h). */
#include "nn/kernels/kernels.h"

#include "modeconn.h"

#include <stdlib.h>
#include <string.h>

static mc_cpu_features g_cpu;
static int g_scalar; /* MC_KERNELS=scalar */
static int g_avx2;   /* MC_KERNELS=avx2: no AVX-512 variants */

static void cpu_init(void) {
#if defined(__x86_64__) || defined(__i386__)
  __builtin_cpu_init();
  g_cpu.avx2_fma = __builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma");
  g_cpu.avx512f = __builtin_cpu_supports("avx512f");
#endif
  const char *k = getenv("MC_KERNELS");
  g_scalar = k && !strcmp(k, "scalar");
  g_avx2 = k && !strcmp(k, "avx2");
}

/* Read on first use; the answer never changes, so a race between two
 * first uses writes the same values. */
static const mc_cpu_features *cpu(void) {
  static int done;
  if (!done) {
    cpu_init();
    done = 1;
  }
  return &g_cpu;
}

const mc_cpu_features *mc_cpu(void) { return cpu(); }

static int use_avx2(void) {
#if defined(__x86_64__) || defined(__i386__)
  return cpu()->avx2_fma && !g_scalar;
#else
  return 0;
#endif
}

static int use_avx512(void) { return use_avx2() && cpu()->avx512f && !g_avx2; }

int mc_kern_wino_available(void) { return use_avx2(); }

mc_kern_wino_fn mc_kern_wino_forward(int block) {
  MC_ASSERT(use_avx2() && (block == 8 || block == 16));
  return block == 16 && use_avx512() ? mc_kern_wino_forward_avx512 : mc_kern_wino_forward_avx2;
}

mc_kern_wgrad_fn mc_kern_wino_wgrad(int block) {
  MC_ASSERT(use_avx2() && (block == 8 || block == 16));
  return block == 16 && use_avx512() ? mc_kern_wino_wgrad_avx512 : mc_kern_wino_wgrad_avx2;
}

mc_kern_bn_sums_fn mc_kern_bn_sums(int block) {
  MC_ASSERT(block == 8 || block == 16);
#if defined(__x86_64__) || defined(__i386__)
  if (use_avx2()) return block == 8 ? mc_kern_bn_sums8_avx2 : mc_kern_bn_sums16_avx2;
#endif
  return block == 8 ? mc_kern_bn_sums8_scalar : mc_kern_bn_sums16_scalar;
}

mc_kern_scale_mask_fn mc_kern_scale_mask(void) {
#if defined(__x86_64__) || defined(__i386__)
  if (use_avx2()) return mc_kern_scale_mask_avx2;
#endif
  return mc_kern_scale_mask_scalar;
}

mc_kern_block_sums_fn mc_kern_block_sums(void) {
#if defined(__x86_64__) || defined(__i386__)
  if (use_avx2()) return mc_kern_block_sums_avx2;
#endif
  return mc_kern_block_sums_scalar;
}

mc_kern_block_cross_fn mc_kern_block_cross(void) {
#if defined(__x86_64__) || defined(__i386__)
  if (use_avx2()) return mc_kern_block_cross_avx2;
#endif
  return mc_kern_block_cross_scalar;
}

mc_kern_dx3_fn mc_kern_dx3(void) {
#if defined(__x86_64__) || defined(__i386__)
  if (use_avx2()) return mc_kern_dx3_avx2;
#endif
  return NULL;
}

void mc_kernels_info(FILE *f) {
  const mc_cpu_features *c = cpu();
  const char *v = use_avx2() ? "avx2+fma" : "scalar";
  fprintf(f, "cpu features: avx2+fma %s, avx512f %s%s\n", c->avx2_fma ? "yes" : "no", c->avx512f ? "yes" : "no",
          g_scalar ? " (MC_KERNELS=scalar)" : g_avx2 ? " (MC_KERNELS=avx2)" : "");
  if (!use_avx2()) fprintf(f, "kernel winograd 3x3: off (oneDNN's convolution)\n");
  else fprintf(f, "kernel winograd 3x3: 8-channel blocks avx2+fma, 16-channel blocks %s\n",
               use_avx512() ? "avx512f" : "avx2+fma (two 8-lane halves)");
  fprintf(f, "kernel bn-recompute sums (8- and 16-channel blocks): %s\n", v);
  fprintf(f, "kernel alignment moments: %s\n", v);
  fprintf(f, "kernel folded-BN input gradient: %s\n", v);
  fprintf(f, "kernel stem 3x3 input gradient: %s\n", use_avx2() ? v : "off (oneDNN's)");
}
