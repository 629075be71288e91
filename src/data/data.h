/* Datasets: images kept as uint8 in memory (CHW per image), converted per
 * batch to float in [0,1] with optional augmentation.  Sources: IDX
 * (MNIST/Fashion-MNIST, gzip or raw), CIFAR-10 and CIFAR-100 binary. */
#ifndef MC_DATA_H
#define MC_DATA_H

#include "modeconn.h"

typedef struct {
  int64_t n;          /* examples */
  int64_t c, h, w;    /* per-image shape */
  int64_t classes;
  uint8_t *images;    /* n * c*h*w, CHW per image */
  int32_t *labels;    /* n, each in [0, classes) */
} mc_dataset;

typedef struct {
  char name[64];      /* "fashion-mnist", "mnist", "cifar10", "cifar100" */
  char source[512];   /* directory the files came from */
  mc_dataset train, test;
  int default_flip;   /* augmentation defaults for this dataset */
  int default_crop_pad;
} mc_data;

/* spec: "fashion-mnist" (Debian's /usr/share/datasets/fashion-mnist),
 * "mnist:DIR", "idx:DIR", "fashion-mnist:DIR", "cifar10:DIR", "cifar100:DIR".
 * Every header, size and label is validated; errors name the file, the
 * byte offset and what was expected. */
mc_status mc_data_load(mc_data *d, const char *spec);
/* The single-file readers behind mc_data_load (also the fuzzers' entry
 * points): an IDX image file (gzip or raw) into images/n/h/w (c = 1), an
 * IDX label file into labels/n (values < classes), and one CIFAR binary
 * file (fine = 1: CIFAR-100's coarse+fine label records) into a dataset
 * of its own.  On error ds holds nothing. */
mc_status mc_idx_read_images(const char *path, mc_dataset *ds);
mc_status mc_idx_read_labels(const char *path, mc_dataset *ds, int64_t classes);
mc_status mc_cifar_read_file(const char *path, int fine, mc_dataset *ds);
void mc_data_free(mc_data *d);

/* Keep the first n examples (no-op when n <= 0 or n >= d->n). */
void mc_dataset_truncate(mc_dataset *d, int64_t n);

/* Per-channel mean and (population) std of pixel values in [0,1]. */
void mc_dataset_mean_std(const mc_dataset *d, float *mean, float *std);

typedef struct {
  int crop_pad; /* random crop with this much zero padding (0 = none) */
  int flip;     /* random horizontal flip */
} mc_augment;

/* Fills x (n, c, h, w) in [0,1] and y (n) for examples idx[0..n).  With a
 * non-NULL aug, draws crop offsets and flips from rng (serially, so the
 * result does not depend on the thread count). */
void mc_dataset_batch(const mc_dataset *d, const int64_t *idx, int64_t n,
                      const mc_augment *aug, mc_rng *rng, float *x,
                      int32_t *y);

#endif
