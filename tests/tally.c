/*
 * tally.c - a tally of call starts for the exactly-once tests (see
 * helpers.h): n counters in a file that the test and its workers map
 * (pp_test_counters_map, helpers_chaos.c).  The task "tally" counts its
 * start, then keeps its worker busy for a while.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <apr_time.h>

#ifdef _WIN32
#include <windows.h>
#else
#include <unistd.h>
#endif

#include "helpers.h"
#include "tasks.h"

struct pp_test_tally_s {
  uint32_t *counts;
  size_t n;
  char path[512];
};

pp_test_tally_t *pp_test_tally_new(const char *name, size_t n) {
  pp_test_tally_t *t = calloc(1, sizeof(*t));
  if (t == NULL)
    return NULL;
  snprintf(t->path, sizeof(t->path), "pp_tally_%s_%lld.bin", name,
           (long long)pp_test_self_pid());
  t->n = n;
  t->counts = pp_test_counters_map(t->path, n, 1);
  if (t->counts == NULL) {
    free(t);
    return NULL;
  }
  return t;
}

uint32_t pp_test_tally_get(const pp_test_tally_t *t, size_t i) {
  return i < t->n ? pp_test_counter_get(&t->counts[i]) : 0;
}

void pp_test_tally_free(pp_test_tally_t *t, int remove) {
  if (t == NULL)
    return;
  pp_test_counters_unmap(t->counts, t->n);
  if (remove)
    pp_test_remove_file(t->path);
  free(t);
}

pp_buf_t pp_test_tally_arg(const pp_test_tally_t *t, size_t i,
                           int64_t busy_us) {
  pp_buf_t b;
  if (pp_pack(&b, "siii", t->path, (int64_t)t->n, (int64_t)i, busy_us) != 0) {
    fprintf(stderr, "pp_test_tally_arg: out of memory\n");
    exit(1);
  }
  return b;
}

/* Counts a start in counter `index` of the tally file `path` (n
 * counters).  A worker keeps the mapping of the last file it was given.
 * Returns 0, or fails the call. */
static int tally_count(pp_call_t *call, const char *path, int64_t n,
                       int64_t index) {
  static uint32_t *counts;
  static size_t counts_n;
  static char counts_path[512];
  if (n <= 0 || index < 0 || index >= n || strlen(path) >= sizeof(counts_path))
    return pp_call_fail(call, "tally: no counter %lld of %lld in %s",
                        (long long)index, (long long)n, path);
  if (counts == NULL || counts_n != (size_t)n ||
      strcmp(counts_path, path) != 0) {
    pp_test_counters_unmap(counts, counts_n);
    counts = pp_test_counters_map(path, (size_t)n, 0);
    if (counts == NULL)
      return pp_call_fail(call, "tally: cannot map %s", path);
    counts_n = (size_t)n;
    strcpy(counts_path, path);
  }
  pp_test_counter_inc(&counts[index]);
  return 0;
}

/* The task: "siii" path, n, index, busy_us -> "i" index. */
int pp_test_task_tally(pp_call_t *call, const void *arg, size_t len) {
  const char *path;
  int64_t n, index, busy_us, until;
  int rc;
  if (pp_unpack(arg, len, "siii", &path, &n, &index, &busy_us) != 0)
    return pp_call_fail(call, "tally wants (path, n, index, busy_us)");
  rc = tally_count(call, path, n, index);
  if (rc != 0)
    return rc;
  /* Busy, not asleep: the call takes its time even when the machine is
   * loaded and a sleep would end late, which is what a test of a timeout
   * that falls as the call ends needs. */
  until = (int64_t)apr_time_now() + busy_us;
  while ((int64_t)apr_time_now() < until)
    ;
  return pp_call_replyf(call, "i", index);
}

/* The task: "siii" path, n, index, size -> `size` bytes of the pattern of
 * PP_TEST_SEED_OUT, after counting its start; a negative size instead
 * ends the worker's process at once with exit code -size, with nothing
 * flushed or cleaned up (TerminateProcess, _exit). */
int pp_test_task_tally_blob(pp_call_t *call, const void *arg, size_t len) {
  const char *path;
  int64_t n, index, size;
  void *out;
  int rc;
  if (pp_unpack(arg, len, "siii", &path, &n, &index, &size) != 0)
    return pp_call_fail(call, "tally_blob wants (path, n, index, size)");
  rc = tally_count(call, path, n, index);
  if (rc != 0)
    return rc;
  if (size < 0) {
#ifdef _WIN32
    TerminateProcess(GetCurrentProcess(), (UINT)-size);
#endif
    _exit((int)-size);
  }
  out = pp_call_reply_alloc(call, (size_t)size);
  if (out == NULL)
    return pp_call_fail(call, "tally_blob: no memory for %lld bytes",
                        (long long)size);
  pp_test_fill(out, (size_t)size, PP_TEST_SEED_OUT);
  return 0;
}
