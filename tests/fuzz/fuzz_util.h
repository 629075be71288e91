/* Shared by the libFuzzer harnesses: readers that want a path get the
 * input written to one per-process temporary file (on /dev/shm when it
 * exists), rewritten for every input. */
#ifndef MC_FUZZ_UTIL_H
#define MC_FUZZ_UTIL_H

#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

static inline const char *fuzz_file(const uint8_t *data, size_t size, const char *suffix) {
  static char path[256];
  if (!path[0]) {
    const char *dir = access("/dev/shm", W_OK) == 0 ? "/dev/shm" : "/tmp";
    snprintf(path, sizeof path, "%s/mc_fuzz_%d%s", dir, (int)getpid(), suffix);
  }
  FILE *f = fopen(path, "wb");
  if (!f) abort();
  if (size && fwrite(data, 1, size, f) != size) abort();
  if (fclose(f)) abort();
  return path;
}

#endif
