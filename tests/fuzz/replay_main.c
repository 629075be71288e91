/* Replays fuzz inputs through a harness without libFuzzer, so the seed
 * corpora and every input a fuzzer once crashed on (tests/fuzz/regress/)
 * run in the normal (and the sanitizer) test suite:
 *   replay_HARNESS DIR...  (every regular file of every DIR) */
#include <dirent.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int main(int argc, char **argv) {
  int n = 0;
  for (int a = 1; a < argc; a++) {
    DIR *d = opendir(argv[a]);
    if (!d) continue; /* a harness without regressions has no directory */
    for (struct dirent *e; (e = readdir(d));) {
      char p[4096];
      snprintf(p, sizeof p, "%s/%s", argv[a], e->d_name);
      struct stat sb;
      if (stat(p, &sb) != 0 || !S_ISREG(sb.st_mode)) continue;
      FILE *f = fopen(p, "rb");
      uint8_t *buf = malloc((size_t)sb.st_size + 1);
      size_t got = f ? fread(buf, 1, (size_t)sb.st_size, f) : 0;
      if (f) fclose(f);
      LLVMFuzzerTestOneInput(buf, got);
      free(buf);
      n++;
    }
    closedir(d);
  }
  printf("replayed %d inputs\n", n);
  return n > 0 ? 0 : 1;
}
