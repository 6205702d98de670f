/*
 * test_orphans.c - no worker outlives a parent that is killed outright,
 * not even a busy one, and not even the workers of a pool that a worker
 * created (nested pools).
 *
 * The test starts itself again as a helper (`--orphan-tree`).  The helper
 * creates a 3-worker pool: two workers run the hang task, the third runs
 * nest_hang, which creates a nested 2-worker pool whose workers hang too.
 * Once all five are busy the helper prints their pids on stdout.  The test
 * then kills the helper with SIGKILL (TerminateProcess on Windows), which
 * leaves it no chance to clean up, and measures how long the last of the
 * five takes to disappear: the contract (docs/design.md, the failure contract) is one
 * second.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include <apr_time.h>

#include "helpers.h"
#include "tasks.h"

#define TREE_ARG "--orphan-tree"
#define NESTED 2
#define ALL (2 + 1 + NESTED)

/* argv[0], for starting the helper where the system cannot tell the
 * running executable. */
static const char *self_exe;

/* Waits up to 60 s for the capture to hold a line that starts with
 * `prefix`, and copies it into buf.  Returns 1 if found. */
static int wait_prefix(pp_test_log_t *log, const char *prefix, char *buf,
                       size_t cap) {
  apr_time_t end = apr_time_now() + apr_time_from_msec(PP_TEST_MS(60000));
  size_t len = strlen(prefix);
  do {
    pp_test_record_t r;
    size_t i;
    for (i = 0; pp_test_log_get(log, i, &r); i++)
      if (strncmp(r.line, prefix, len) == 0) {
        snprintf(buf, cap, "%s", r.line);
        return 1;
      }
    pp_test_sleep_ms(10);
  } while (apr_time_now() < end);
  return 0;
}

/* The helper: builds the busy tree, reports it, and waits to be killed.
 * Its failures are reported as a line without pids, which fails the test
 * with the reason. */
static int tree_main(void) {
  pp_test_log_t *log = pp_test_log_new();
  pp_pool_options_t o;
  pp_pool_t *pool = NULL;
  pp_future_t *f[3];
  pp_buf_t n = pp_test_pack_int(NESTED);
  int64_t pids[3];
  char nested[256];
  apr_time_t end = apr_time_now() + apr_time_from_msec(PP_TEST_MS(60000));
  int i;
  memset(&o, 0, sizeof(o));
  o.workers = 3;
  o.log_cb = pp_test_log_cb;
  o.log_data = log;
  if (pp_pool_create(&pool, &o) != 0) {
    printf("error: pp_pool_create: %s\n", pp_last_error());
    return 1;
  }
  /* Each idle worker takes one call, and none of them ever finishes. */
  if (pp_pool_submit(pool, "hang", NULL, 0, NULL, &f[0]) != 0 ||
      pp_pool_submit(pool, "hang", NULL, 0, NULL, &f[1]) != 0 ||
      pp_pool_submit(pool, "nest_hang", n.data, n.len, NULL, &f[2]) != 0) {
    printf("error: pp_pool_submit: %s\n", pp_last_error());
    return 1;
  }
  while (pp_test_log_count_line(log, "hang: started") < 2 &&
         apr_time_now() < end)
    pp_test_sleep_ms(10);
  if (pp_test_log_count_line(log, "hang: started") < 2 ||
      !wait_prefix(log, "nest_hang: pids ", nested, sizeof(nested)) ||
      pp_pool_worker_pids(pool, pids, 3) != 3) {
    printf("error: the workers did not all start their calls\n");
    return 1;
  }
  printf("pids");
  for (i = 0; i < 3; i++)
    printf(" %lld", (long long)pids[i]);
  printf(" %s\n", nested + strlen("nest_hang: pids "));
  fflush(stdout);
  for (;;)
    pp_test_sleep_ms(1000);
}

/* A process is gone once it has ended.  On Linux an orphan that has ended
 * may stay a zombie until init reaps it, which is gone for this purpose;
 * but a zombie whose parent is this test would be one of ours left
 * unreaped, and does not count. */
static int gone(int64_t pid) {
  if (pp_test_pid_alive(pid))
    return 0;
  return pp_test_pid_parent(pid) != pp_test_self_pid();
}

static void test_orphans_busy_tree_dies_with_parent(void **state) {
  pp_test_child_t *child;
  char line[512];
  long long v[ALL];
  int64_t pids[ALL], last = 0;
  apr_time_t t0, dt = 0;
  size_t i, left;
  (void)state;
  child = pp_test_child_start(self_exe, TREE_ARG, line, sizeof(line));
  assert_non_null(child);
  if (sscanf(line, "pids %lld %lld %lld %lld %lld", &v[0], &v[1], &v[2], &v[3],
             &v[4]) != ALL) {
    pp_test_child_kill(child);
    fail_msg("the helper said: %s", line);
  }
  for (i = 0; i < ALL; i++) {
    pids[i] = v[i];
    assert_true(pids[i] > 0);
    assert_true(pp_test_pid_alive(pids[i]));
  }
  print_message("workers %lld %lld %lld, nested %lld %lld\n", v[0], v[1], v[2],
                v[3], v[4]);

  t0 = apr_time_now();
  pp_test_child_kill(child);
  /* Polled for up to 10 s (scaled), so that a slow end is measured and
   * shown, not just reported as late. */
  do {
    left = 0;
    for (i = 0; i < ALL; i++)
      if (!gone(pids[i])) {
        left++;
        last = pids[i];
      }
    dt = apr_time_now() - t0;
    if (left > 0)
      pp_test_sleep_ms(2);
  } while (left > 0 && dt < apr_time_from_msec(PP_TEST_MS(10000)));
  if (left > 0)
    fail_msg("%d of %d workers still alive %.0f s after their parent was "
             "killed (one is pid %lld)",
             (int)left, ALL, (double)dt / 1e6, (long long)last);
  print_message("all %d workers gone %.0f ms after the parent was killed\n",
                ALL, (double)dt / 1000.0);
  assert_true(dt <= apr_time_from_msec(PP_TEST_MS(1000)));
}

int main(int argc, char **argv) {
  int rc;
  if (pp_worker_main(argc, argv, pp_test_tasks, &rc))
    return rc;
  self_exe = argv[0];
  if (argc > 1 && strcmp(argv[1], TREE_ARG) == 0)
    return tree_main();
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_orphans_busy_tree_dies_with_parent),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
