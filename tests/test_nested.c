/*
 * test_nested.c - workers are fresh processes, not fork() copies, so a task
 * may start threads and create a pool of its own (with PP_POOL_NESTED).
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#ifdef _WIN32
#include <windows.h>
#endif

#include "helpers.h"
#include "tasks.h"

static void test_nested_threads_in_workers(void **state) {
  pp_pool_t *pool = *state;
  pp_buf_t none[6];
  pp_result_t res[6];
  size_t i;
  memset(none, 0, sizeof(none));
  assert_int_equal(pp_pool_map(pool, "threads", none, 6, res, NULL), 0);
  for (i = 0; i < 6; i++)
    assert_true(pp_test_int_result(&res[i]) == PP_TEST_THREADS_SUM);
  pp_results_free(res, 6);
}

/* Two nested calls at once: four grandchildren, each pool independent. */
static void test_nested_pools_in_workers(void **state) {
  pp_pool_t *pool = *state;
  pp_buf_t none[2];
  pp_result_t res[2];
  pp_map_options_t mo;
  int64_t parents[2];
  size_t i;
  memset(none, 0, sizeof(none));
  memset(&mo, 0, sizeof(mo));
  mo.chunksize = 1;
  assert_int_equal(pp_pool_worker_pids(pool, parents, 2), 2);
  assert_int_equal(pp_pool_map(pool, "nested", none, 2, res, &mo), 0);
  for (i = 0; i < 2; i++) {
    int64_t sum = 0, plain = 0, g[2] = {0, 0};
    assert_int_equal(res[i].status, 0);
    assert_int_equal(
        pp_unpack(res[i].data, res[i].len, "iiii", &sum, &plain, &g[0], &g[1]),
        0);
    assert_true(sum == 385);
    /* In a worker, a pool without PP_POOL_NESTED is refused. */
    assert_true(plain == PP_ENESTED);
    /* The grandchildren were real processes of their own... */
    assert_true(g[0] > 0 && g[1] > 0 && g[0] != g[1]);
    assert_true(g[0] != parents[0] && g[0] != parents[1]);
    assert_true(g[0] != pp_test_self_pid());
    /* ...and the nested pool's destroy left none of them behind. */
    assert_true(pp_test_wait_gone(g, 2, 10000));
  }
  pp_results_free(res, 2);
}

/* A worker may be asked for a nested pool again and again; nothing piles
 * up in it between calls. */
static void test_nested_repeatedly(void **state) {
  pp_pool_t *pool = *state;
  pp_buf_t none[4];
  pp_result_t res[4];
  pp_map_options_t mo;
  size_t i;
  memset(none, 0, sizeof(none));
  memset(&mo, 0, sizeof(mo));
  mo.chunksize = 1;
  assert_int_equal(pp_pool_map(pool, "nested", none, 4, res, &mo), 0);
  for (i = 0; i < 4; i++) {
    int64_t sum = 0, plain = 0, g0 = 0, g1 = 0;
    assert_int_equal(
        pp_unpack(res[i].data, res[i].len, "iiii", &sum, &plain, &g0, &g1), 0);
    assert_true(sum == 385);
  }
  pp_results_free(res, 4);
}

/* Windows: every worker is in a job (the pool's kill-on-close job, in
 * which it is born where the system takes PROC_THREAD_ATTRIBUTE_JOB_LIST,
 * issue 18 item 9), which is what ends the processes its tasks start with
 * the program. */
static void test_nested_workers_are_in_a_job(void **state) {
#ifndef _WIN32
  (void)state;
  print_message("skipped: job objects are Windows'\n");
  skip();
#else
  pp_pool_t *pool = *state;
  int64_t pids[8];
  BOOL self_in = FALSE;
  int n, i;
  IsProcessInJob(GetCurrentProcess(), NULL, &self_in);
  print_message("this process is %sin a job\n", self_in ? "" : "not ");
  n = pp_pool_worker_pids(pool, pids, 8);
  assert_true(n > 0);
  for (i = 0; i < n; i++) {
    HANDLE h = OpenProcess(PROCESS_QUERY_INFORMATION, FALSE, (DWORD)pids[i]);
    BOOL in = FALSE;
    assert_non_null(h);
    assert_true(IsProcessInJob(h, NULL, &in));
    CloseHandle(h);
    print_message("worker %d (pid %lld) is %sin a job\n", i, (long long)pids[i],
                  in ? "" : "not ");
    assert_true(in);
  }
#endif
}

int main(int argc, char **argv) {
  int rc;
  if (pp_worker_main(argc, argv, pp_test_tasks, &rc))
    return rc;
  const struct CMUnitTest tests[] = {
      PP_TEST_POOL_TEST(test_nested_threads_in_workers),
      PP_TEST_POOL_TEST(test_nested_pools_in_workers),
      PP_TEST_POOL_TEST(test_nested_repeatedly),
      PP_TEST_POOL_TEST(test_nested_workers_are_in_a_job),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
