/*
 * tasklib.c - a task library for the worker-host test (test_host.c).
 *
 * It is what a plugin or a language binding would ship: a shared library
 * with a task table exported by PP_TASK_LIBRARY, run by the procpool-worker
 * host instead of by the application's own executable.
 */
#include <stdio.h>
#include <string.h>

#include "procpool.h"

static int lib_square(pp_call_t *call, const void *arg, size_t len) {
  int64_t x;
  if (pp_unpack(arg, len, "i", &x) != 0)
    return pp_call_fail(call, "lib_square wants one int64");
  return pp_call_replyf(call, "i", x * x);
}

static int lib_upper(pp_call_t *call, const void *arg, size_t len) {
  const unsigned char *in = arg;
  unsigned char *out = pp_call_reply_alloc(call, len);
  size_t i;
  if (out == NULL)
    return PP_ENOMEM;
  for (i = 0; i < len; i++)
    out[i] = in[i] >= 'a' && in[i] <= 'z' ? (unsigned char)(in[i] - 32) : in[i];
  return 0;
}

static int lib_fail(pp_call_t *call, const void *arg, size_t len) {
  return pp_call_fail(call, "lib_fail: %.*s", (int)len, (const char *)arg);
}

/* Tells the test that the task ran in a worker of the host (index >= 0).
 * The second build of this library (PP_TEST_TASKLIB_VARIANT, for the
 * upgrade test) adds 1000, so that a call it served would show. */
#ifndef PP_TEST_TASKLIB_VARIANT
#define PP_TEST_TASKLIB_VARIANT 0
#endif
static int lib_worker(pp_call_t *call, const void *arg, size_t len) {
  (void)arg, (void)len;
  return pp_call_replyf(call, "i", (int64_t)pp_worker_index() +
                                       1000 * PP_TEST_TASKLIB_VARIANT);
}

/* Prints a line with the library's own printf and does not flush it: the
 * worker flushes stdout at the end of the call, which reaches this line
 * only if the library shares the worker's C runtime (README, "One C
 * runtime").  Replies the call's id. */
static int lib_print(pp_call_t *call, const void *arg, size_t len) {
  printf("lib_print %.*s\n", (int)len, (const char *)arg);
  return pp_call_replyf(call, "i", (int64_t)pp_call_id(call));
}

static const pp_task_t lib_tasks[] = {PP_TASK(lib_square), PP_TASK(lib_upper),
                                      PP_TASK(lib_fail),   PP_TASK(lib_worker),
                                      PP_TASK(lib_print),  PP_TASK_END};

PP_TASK_LIBRARY(lib_tasks)
