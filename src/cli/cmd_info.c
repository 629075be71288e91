/* `modeconn info`: the graph, every parameter, the count, and the
 * permutation groups derived from the graph. */
#include "cli.h"

#include <stdlib.h>

int cmd_info(int argc, char **argv) {
  static const cli_cmd cmd = {"info", "Print an architecture's graph, parameters, parameter count and permutation groups.",
                              "[--arch NAME] [--input CxHxW] [--classes K] [--width W] [--spec]", cmd_info};
  cli_model_opts mo;
  int spec = 0;
  cli_opt opts[] = {CLI_MODEL_OPTS(mo),
                    {"spec", OPT_FLAG, &spec, NULL, "print the architecture's spec text instead"},
                    {0}};
  int r = cli_parse(&cmd, opts, argc, argv);
  if (r >= 0) return r;
  mc_arch_params p;
  mc_status st = cli_arch_params(&mo, &p);
  if (st) return cli_fail(st);
  mc_model *m;
  if ((st = mc_model_create(&m, mo.arch, &p))) return cli_fail(st);
  if (spec) fputs(m->spec, stdout);
  else mc_model_print(m, stdout);
  mc_model_free(m);
  return EXIT_OK;
}
