/* modeconn: mode connectivity with neuron alignment.  The only place that
 * exits: every subcommand returns 0 (success), 1 (runtime error) or
 * 2 (usage error). */
#include "cli.h"

#include <string.h>

static const struct {
  const char *name, *summary;
  int (*run)(int, char **);
} cmds[] = {
    {"info", "print an architecture's graph, parameters and permutation groups", cmd_info},
    {"train", "train a network with SGD and write a safetensors checkpoint", cmd_train},
    {"eval", "evaluate a checkpoint's loss and accuracy on a dataset split", cmd_eval},
    {"attack", "clean and PGD (robust) loss and accuracy of a checkpoint", cmd_attack},
    {"align", "permute model B's neurons to match model A's (correlation or weight matching)", cmd_align},
    {"interp", "evaluate the straight line between two models, BN recomputed at every point", cmd_interp},
    {"curve", "train (curve train) or evaluate (curve eval) a low-loss curve between two models", cmd_curve},
    {"plane", "test loss/accuracy over the plane through three models or a curve", cmd_plane},
    {"report", "write a Markdown report with figures from a pipeline run's JSON results", cmd_report},
};

static void usage(FILE *f) {
  fprintf(f, "usage: modeconn COMMAND [options]   (modeconn COMMAND --help for its flags)\n\ncommands:\n");
  for (size_t i = 0; i < sizeof cmds / sizeof cmds[0]; i++)
    fprintf(f, "  %-14s %s\n", cmds[i].name, cmds[i].summary);
  fprintf(f, "\nmodeconn --version: the version, the CPU features found, and which variant of\n"
             "each hand-written kernel and which oneDNN ISA this machine runs.\n"
             "\nenvironment: MODECONN_BACKEND=auto|dnnl|ref sets the default compute path (an\n"
             "unknown name is an error); OMP_NUM_THREADS sets the default thread count;\n"
             "MC_WINO=0 runs 3x3 stride-1 convolutions as oneDNN's direct convolutions\n"
             "instead of Winograd (src/nn/kernels/), MC_WINO_DW=0 only their weight\n"
             "gradients; MC_KERNELS=scalar forces the scalar\n"
             "variants of the hand-written kernels (Winograd then off), MC_KERNELS=avx2\n"
             "caps them at AVX2 (no AVX-512 variants); DNNL_MAX_CPU_ISA (e.g. AVX2) caps\n"
             "the instruction set oneDNN uses.\n");
}

int main(int argc, char **argv) {
  if (argc < 2) {
    usage(stderr);
    return EXIT_USAGE;
  }
  if (!strcmp(argv[1], "-h") || !strcmp(argv[1], "--help") || !strcmp(argv[1], "help")) {
    usage(stdout);
    return EXIT_OK;
  }
  if (!strcmp(argv[1], "--version") || !strcmp(argv[1], "version")) {
    printf("modeconn %s\n", MODECONN_VERSION);
    mc_system_info(stdout);
    return EXIT_OK;
  }
  for (size_t i = 0; i < sizeof cmds / sizeof cmds[0]; i++)
    if (!strcmp(argv[1], cmds[i].name)) return cmds[i].run(argc - 1, argv + 1);
  fprintf(stderr, "modeconn: unknown command '%s'\n", argv[1]);
  usage(stderr);
  return EXIT_USAGE;
}
