/*
 * tasks.c - a task library: tasks in a shared library, for programs that
 * cannot put the worker guard in main() (GUI applications, plugins, language
 * bindings).  The procpool-worker host loads it and runs its tasks by name.
 */
#include <ctype.h>
#include <string.h>

#include "procpool.h"

/* Returns the argument's bytes in reverse order. */
static int reverse(pp_call_t *call, const void *arg, size_t len) {
  const unsigned char *in = arg;
  unsigned char *out = pp_call_reply_alloc(call, len);
  size_t i;
  if (out == NULL)
    return PP_ENOMEM;
  for (i = 0; i < len; i++)
    out[i] = in[len - 1 - i];
  return 0;
}

/* Returns the argument (a tuple with one string) in upper case. */
static int shout(pp_call_t *call, const void *arg, size_t len) {
  const char *text;
  char *out;
  size_t i, n;
  if (pp_unpack(arg, len, "s", &text) != 0)
    return pp_call_fail(call, "shout wants a tuple (string)");
  n = strlen(text);
  out = pp_call_reply_alloc(call, n);
  if (out == NULL)
    return PP_ENOMEM;
  for (i = 0; i < n; i++)
    out[i] = (char)toupper((unsigned char)text[i]);
  return 0;
}

static const pp_task_t tasks[] = {PP_TASK(reverse), PP_TASK(shout),
                                  PP_TASK_END};

PP_TASK_LIBRARY(tasks)
