/* safetensors files: an 8-byte little-endian header length, a JSON header
 * (parsed with jansson) naming every tensor's dtype, shape and byte range,
 * then the raw data.  Plus the model-level checkpoint layer on top:
 * theta/state of one or more models under name prefixes, with modeconn's
 * metadata keys.  Writes are atomic (temporary file, fsync, rename). */
#ifndef MC_SAFETENSORS_H
#define MC_SAFETENSORS_H

#include "modeconn.h"

typedef enum { MC_DT_F32 = 0, MC_DT_I64, MC_DT_OTHER } mc_dtype;

typedef struct {
  char *name;
  mc_dtype dtype;
  char dtype_name[16]; /* as written in the file, e.g. "F32", "BF16" */
  int ndim;
  int64_t shape[8];
  size_t nbytes;
  const void *data; /* points into the file buffer (reader) or caller's */
} mc_st_tensor;

typedef struct {
  mc_st_tensor *t;
  int n;
  char **meta_key, **meta_val;
  int n_meta;
  void *buf; /* whole file, owned by the reader */
  char path[512];
} mc_st_file;

/* Reads and validates a whole file: header length within the file, JSON
 * object, every entry's dtype known or skipped, shape * dtype size equal to
 * its byte range, ranges inside the data section, non-overlapping, and
 * together covering it.  Errors name the file and the offending entry. */
mc_status mc_st_read(const char *path, mc_st_file *f);
/* The same from a memory buffer (copied); name stands for the path in messages. */
mc_status mc_st_read_mem(const char *name, const void *data, size_t size, mc_st_file *f);
void mc_st_free(mc_st_file *f);
const char *mc_st_meta(const mc_st_file *f, const char *key);
const mc_st_tensor *mc_st_find(const mc_st_file *f, const char *name);

/* Writes n tensors and metadata atomically (path.tmp, fsync, rename). */
mc_status mc_st_write(const char *path, const mc_st_tensor *t, int n,
                      const char *const *meta_key, const char *const *meta_val,
                      int n_meta);

/* ---- model checkpoints ---- */

/* One model's parameters inside a file, under a name prefix ("" for a plain
 * checkpoint, "a.", "b.", "bend1." in curve files).  state may be NULL
 * (curve bends carry no BN statistics). */
typedef struct {
  const char *prefix;
  const float *theta;
  const float *state;
} mc_ckpt_part;

typedef struct {
  const char *key, *val;
} mc_kv;

/* Writes parts + metadata: modeconn.arch, modeconn.input ("CxHxW"),
 * modeconn.classes, modeconn.width (when != 1), modeconn.widths and
 * modeconn.bn (mlp), modeconn.mean, modeconn.std (comma separated), then
 * `extra` (provenance etc.).  Every BN gets "<prefix><bn>.num_batches_tracked"
 * as an I64 scalar (0) so PyTorch's load_state_dict(strict=True) finds it. */
mc_status mc_ckpt_save(const char *path, const mc_model *m,
                       const mc_ckpt_part *parts, int nparts,
                       const mc_kv *extra, int nextra);

/* Builds the model recorded in the file's metadata; fields missing from the
 * metadata come from `fallback` (the command line), with `fallback_arch`
 * for a missing modeconn.arch (NULL: error).  Sets model mean/std. */
mc_status mc_ckpt_model(const mc_st_file *f, const char *fallback_arch,
                        const mc_arch_params *fallback, mc_model **m);

/* Copies the tensors under `prefix` into theta (and state if non-NULL).
 * A missing or mis-shaped tensor is an error naming it; integer buffers
 * (num_batches_tracked) are ignored; with strict, a tensor under the prefix
 * that the model does not have is an error too. */
mc_status mc_ckpt_get(const mc_st_file *f, const mc_model *m,
                      const char *prefix, float *theta, float *state,
                      int strict);

/* Convenience: read file, build model, fill theta/state (prefix ""). */
/* The checks of mc_ckpt_get without copying (theta's tensors, and
 * state's when with_state): run before allocating anything sized by the
 * file's metadata, so the parameters really are in the file. */
mc_status mc_ckpt_check(const mc_st_file *f, const mc_model *m, const char *prefix, int with_state, int strict);
mc_status mc_ckpt_load(const char *path, const char *fallback_arch,
                       const mc_arch_params *fallback, mc_model **m,
                       float **theta, float **state);

#endif
