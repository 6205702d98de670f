/*
 * test_fatal.c - a pool whose ground is pulled away under it (issue 17,
 * item 14): the application closes every descriptor above 2 while a pool
 * lives (a closefrom(3) before an exec that never came, say).  That is the
 * program's fault, but the answer must be an error: the pool breaks, every
 * call fails with a reason, nothing hangs and nothing spins, and destroy
 * still ends every worker.
 *
 * POSIX only: Windows has no such call, and its handles are not numbers a
 * program closes in bulk.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#ifndef _WIN32
#include <sys/resource.h>
#include <unistd.h>
#endif

#include <cmocka.h>

#include <apr_time.h>

#include "helpers.h"
#include "tasks.h"

#if !defined(_WIN32) && !defined(PP_TEST_TSAN)
/* Runs a map of n squares with a time limit and checks that it ended:
 * each call either answered right or failed with a message.  Returns the
 * map's status. */
static int squares_within(pp_pool_t *pool, size_t n, size_t *failed) {
  pp_buf_t *args = calloc(n, sizeof(*args));
  pp_result_t *res = calloc(n, sizeof(*res));
  pp_map_t *m = NULL;
  size_t i;
  int rc;
  assert_non_null(args);
  assert_non_null(res);
  for (i = 0; i < n; i++)
    args[i] = pp_test_pack_int((int64_t)i);
  rc = pp_pool_map_async(pool, "square", args, n, res, NULL, &m);
  if (rc == 0) {
    rc = pp_map_wait(m, 30000 * PP_TEST_TIME_SCALE);
    if (rc == PP_ETIMEDOUT)
      fail_msg("the map did not end within 30 s");
    pp_map_free(m);
  }
  *failed = 0;
  for (i = 0; i < n; i++) {
    if (res[i].status == 0) {
      assert_true(pp_test_int_result(&res[i]) == (int64_t)(i * i));
      continue;
    }
    (*failed)++;
    if (res[i].message == NULL || res[i].message[0] == '\0')
      fail_msg("call %llu failed (%s) without a reason", (unsigned long long)i,
               pp_err_name(res[i].status));
    if (*failed == 1)
      print_message("call %llu: %s: %s\n", (unsigned long long)i,
                    pp_err_name(res[i].status), res[i].message);
  }
  pp_results_free(res, n);
  pp_test_free_bufs(args, n);
  free(res);
  free(args);
  return rc;
}
#endif

static void test_fatal_closed_descriptors_break_the_pool(void **state) {
#if defined(_WIN32) || defined(PP_TEST_TSAN)
  /* ThreadSanitizer reports the close of a descriptor another thread
   * waits on, which is the very fault this test makes, and it would lose
   * its own report files with the rest. */
  (void)state;
  print_message("skipped: POSIX descriptors only, not under "
                "ThreadSanitizer\n");
#else
  pp_pool_t *pool = pp_test_make_pool(2, 0, 0, NULL);
  int64_t pids[2], t0;
  double before, used;
  struct rlimit rl;
  size_t failed;
  int fd, max, n, rc;
  (void)state;
  assert_int_equal(squares_within(pool, 100, &failed), 0);
  n = pp_pool_worker_pids(pool, pids, 2);
  assert_int_equal(n, 2);
  max = getrlimit(RLIMIT_NOFILE, &rl) == 0 && rl.rlim_cur < 65536
            ? (int)rl.rlim_cur
            : 65536;
  for (fd = 3; fd < max; fd++)
    close(fd);
  /* The first map after it fails, with reasons, and ends. */
  rc = squares_within(pool, 100, &failed);
  print_message("after closing every descriptor: %s, %llu of 100 failed\n",
                pp_err_name(rc), (unsigned long long)failed);
  assert_int_not_equal(rc, 0);
  assert_true(failed > 0);
  /* The pool does not spin: a second of nothing costs little CPU. */
  before = pp_test_cpu_seconds(pp_test_self_pid());
  pp_test_sleep_ms(1000);
  used = pp_test_cpu_seconds(pp_test_self_pid()) - before;
  print_message("CPU in an idle second after: %.2f s\n", used);
  if (before >= 0) /* where the system tells */
    assert_true(used < 0.3);
  /* It stays broken: later calls fail at once, with the reason. */
  rc = squares_within(pool, 10, &failed);
  assert_int_equal(rc, PP_EIO);
  assert_int_equal(failed, 10);
  t0 = (int64_t)apr_time_now();
  assert_int_equal(pp_pool_destroy(pool, PP_DESTROY_WAIT), 0);
  assert_true((int64_t)apr_time_now() - t0 < 30000000 * PP_TEST_TIME_SCALE);
  assert_true(pp_test_wait_gone(pids, 2, 10000 * PP_TEST_TIME_SCALE));
#endif
}

int main(int argc, char **argv) {
  int rc;
  if (pp_worker_main(argc, argv, pp_test_tasks, &rc))
    return rc;
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_fatal_closed_descriptors_break_the_pool),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
