/* The checkpoint pair of a resumable run (see train.h): OUT.train, the
 * whole resume state, written before OUT, both carrying the run id and the
 * epoch count (the generation), and the checks a resume makes on them.
 * Shared by `train` and `curve train`. */
#include "train/train.h"

#include <stdlib.h>
#include <string.h>

mc_status mc_resume_path(const char *out, char **path) {
  size_t l = strlen(out);
  char *p = *path = mc_malloc_try(l + 7);
  if (!p) return mc_oom(l + 7, "the name of %s's resume state", out);
  memcpy(p, out, l);
  memcpy(p + l, ".train", 7);
  return MC_OK;
}

uint64_t mc_run_hash(uint64_t h, const void *p, size_t n) {
  const unsigned char *s = p;
  if (!h) h = 0xcbf29ce484222325ULL; /* FNV-1a */
  for (size_t i = 0; i < n; i++) h = (h ^ s[i]) * 0x100000001b3ULL;
  return h;
}

void mc_run_id_str(uint64_t h, char out[24]) { snprintf(out, 24, "%016llx", (unsigned long long)h); }

mc_status mc_resume_save(const char *out, const mc_model *m, const mc_ckpt_part *tparts, int ntparts,
                         const mc_ckpt_part *parts, int nparts, const mc_kv *kv, int nkv, int64_t epoch,
                         const char *run) {
  char ep[32];
  snprintf(ep, sizeof ep, "%lld", (long long)epoch);
  mc_kv *all = mc_calloc_try((size_t)nkv + 2, sizeof *all);
  if (!all) return mc_oom(sizeof *all * ((size_t)nkv + 2), "the metadata of %s", out);
  if (nkv) memcpy(all, kv, sizeof *kv * (size_t)nkv);
  all[nkv] = (mc_kv){"modeconn.epoch", ep};
  all[nkv + 1] = (mc_kv){"modeconn.run", run};
  char *tp;
  mc_status st = mc_resume_path(out, &tp);
  if (st) {
    free(all);
    return st;
  }
  st = mc_ckpt_save(tp, m, tparts, ntparts, all, nkv + 2);
  free(tp);
  all[nkv].key = "modeconn.epochs";
  if (!st) st = mc_ckpt_save(out, m, parts, nparts, all, nkv + 2);
  free(all);
  return st;
}

mc_status mc_resume_open(const char *ckpt, const char *want, const char *what, mc_st_file *g, int64_t *epoch,
                         int *behind, const mc_sink *sink) {
  mc_st_file f;
  mc_status st = mc_st_read(ckpt, &f);
  if (st) return st;
  char *tp = NULL;
  if ((st = mc_resume_path(ckpt, &tp))) goto out_f;
  const char *ep = mc_st_meta(&f, "modeconn.epochs"), *run = mc_st_meta(&f, "modeconn.run");
  if (!ep || !run) {
    st = mc_error(MC_EFORMAT, "%s: no modeconn.epochs / modeconn.run metadata: not a checkpoint of a modeconn "
                  "run that can be resumed", ckpt);
    goto out_f;
  }
  if ((st = mc_st_read(tp, g))) {
    char msg[1024];
    snprintf(msg, sizeof msg, "%s", mc_errmsg());
    st = mc_error(st, "%s (resume needs the state written next to the checkpoint)", msg);
    goto out_f;
  }
  const char *ep2 = mc_st_meta(g, "modeconn.epoch"), *run2 = mc_st_meta(g, "modeconn.run");
  char *end;
  long long em = strtoll(ep, &end, 10), et = ep2 ? strtoll(ep2, &end, 10) : -1;
  if (!run2 || strcmp(run, run2))
    st = mc_error(MC_EFORMAT, "%s: resume state of run %s, but %s is from run %s (another %s)", tp,
                  run2 ? run2 : "(none)", ckpt, run, what);
  else if (strcmp(run, want))
    st = mc_error(MC_EARG, "%s is from run %s, but this command's %s make run %s: resume with the original run's "
                  "flags", ckpt, run, what, want);
  else if (et < em || em < 0)
    st = mc_error(MC_EFORMAT, "%s: resume state is for epoch %s but %s is at epoch %s", tp, ep2 ? ep2 : "?", ckpt,
                  ep);
  else {
    if (et > em)
      mc_msg(sink, MC_MSG_NOTE, "%s is at epoch %lld, %s at %lld (a write was interrupted): continuing from the latter",
             ckpt, em, tp, et);
    *epoch = et;
    *behind = et > em;
  }
  if (st) mc_st_free(g);
out_f:
  free(tp);
  mc_st_free(&f);
  return st;
}
