/* `modeconn info`: the graph, every parameter, the count, and the
 * permutation groups derived from the graph, of a built-in or spec-file
 * architecture or of the one a checkpoint records (--model). */
#include "cli.h"

#include "io/safetensors.h"

#include <stdlib.h>

int cmd_info(int argc, char **argv) {
  static const cli_cmd cmd = {"info", "Print an architecture's graph, parameters, parameter count and permutation groups.",
                              "[--arch NAME] [--input CxHxW] [--classes K] [--width W] [--model FILE] [--spec]", cmd_info};
  cli_model_opts mo;
  int spec = 0;
  const char *model;
  cli_opt opts[] = {CLI_MODEL_OPTS(mo),
                    {"model", OPT_STR, &model, NULL, "a checkpoint: the architecture it records (its modeconn.spec, or arch/input/classes metadata)"},
                    {"spec", OPT_FLAG, &spec, NULL, "print the architecture's spec text instead"},
                    {0}};
  int r = cli_parse(&cmd, opts, argc, argv);
  if (r >= 0) return r;
  mc_arch_params p;
  mc_status st = cli_arch_params(&mo, &p);
  if (st) return cli_fail(st);
  mc_model *m;
  if (model) {
    mc_st_file f;
    if ((st = mc_st_read(model, &f))) return cli_fail(st);
    st = mc_ckpt_model(&f, mo.arch, &p, &m);
    mc_st_free(&f);
  } else {
    st = mc_model_create(&m, mo.arch, &p);
  }
  if (st) return cli_fail(st);
  if (spec) fputs(m->spec, stdout);
  else mc_model_print(m, stdout);
  mc_model_free(m);
  return EXIT_OK;
}
