/*
 * log.c - pp_log(): a task's log line goes to the parent through its
 * worker's ring, to the log callback of the inline executor that runs it,
 * or, outside any pool's call, to stderr.
 *
 * It sits below worker.c and inline.c, whose senders it picks from, so
 * that neither call.c nor they have to call up to the other.
 */
#include <stdarg.h>
#include <stdio.h>

#include "internal.h"

void pp_log(int level, const char *fmt, ...) {
  char msg[PP__MSG_MAX];
  va_list ap;
  int n;
  if (fmt == NULL)
    return;
  va_start(ap, fmt);
  n = vsnprintf(msg, sizeof(msg), fmt, ap);
  va_end(ap);
  if (n < 0)
    return;
  if ((size_t)n >= sizeof(msg))
    n = (int)sizeof(msg) - 1;
  if (pp__worker_log(level, msg, (size_t)n) == 0)
    return;
  if (pp__inline_log(level, msg, (size_t)n) == 0)
    return;
  fprintf(stderr, "[procpool log%d] %s\n", level, msg);
}
