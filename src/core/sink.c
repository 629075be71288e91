/* mc_msg: printf into one line for the caller's sink (core/sink.h). */
#include "core/sink.h"

#include "modeconn.h"

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>

void mc_msg(const mc_sink *s, mc_msg_level level, const char *fmt, ...) {
  if (!s || !s->msg) return;
  char buf[1024], *text = buf;
  va_list ap;
  va_start(ap, fmt);
  const int n = vsnprintf(buf, sizeof buf, fmt, ap);
  va_end(ap);
  if (n < 0) return;
  /* a longer line: formatted again in full, or (no memory for it: mc_msg
   * has no status to return) passed on cut to the buffer's length */
  if ((size_t)n >= sizeof buf && (text = mc_malloc_try((size_t)n + 1))) {
    va_start(ap, fmt);
    vsnprintf(text, (size_t)n + 1, fmt, ap);
    va_end(ap);
  } else if (!text) {
    text = buf;
  }
  s->msg(s->arg, level, text);
  if (text != buf) free(text);
}
