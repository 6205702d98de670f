/*
 * tasks_chaos.c - the task of the chaos test (test_chaos.c), part of the
 * shared table in tasks.c: it counts its own starts in a file of counters
 * that the test maps too, so the test can tell how often each call really
 * ran, whatever the pool reported.
 */
#include <string.h>

#include <apr_time.h>

#include "helpers.h"
#include "tasks.h"

/* The worker's mapping of the counter file, made by its first call and
 * kept for the worker's life (a worker serves one test). */
static uint32_t *counters;
static size_t counters_n;
static char counters_path[1024];

int pp_test_task_chaos(pp_call_t *call, const void *arg, size_t len) {
  const char *path;
  int64_t n, key, us;
  if (pp_unpack(arg, len, "siii", &path, &n, &key, &us) != 0)
    return pp_call_fail(call, "chaos wants (path, n, key, us)");
  if (n <= 0 || key < 0 || key >= n || us < 0 || us > 10000000 ||
      strlen(path) >= sizeof(counters_path))
    return pp_call_fail(call, "chaos: bad argument (key %lld of %lld)",
                        (long long)key, (long long)n);
  if (counters == NULL || counters_n != (size_t)n ||
      strcmp(counters_path, path) != 0) {
    pp_test_counters_unmap(counters, counters_n);
    counters = pp_test_counters_map(path, (size_t)n, 0);
    if (counters == NULL)
      return pp_call_fail(call, "chaos: cannot map %s", path);
    counters_n = (size_t)n;
    strcpy(counters_path, path);
  }
  /* Counted before anything else: from here on the call has started. */
  pp_test_counter_inc(&counters[key]);
  apr_sleep((apr_interval_time_t)us);
  return pp_call_replyf(call, "i", key * 7 + 1);
}
