/*
 * test_scale.c - a pool of 256 workers (issue 9; 100 under Wine, where a
 * process costs tens of megabytes): all start, each is a process of its
 * own, they share a map of a few hundred calls between them, and all are
 * gone after the destroy.  One I/O thread serves them all.
 *
 * 256 workers mean some 1500 descriptors in the parent, more than the
 * usual soft limit of 1024: the test raises its own limit, as a program
 * that wants such a pool would, and checks that a pool too large for the
 * limit is refused up front with the numbers.
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

#ifdef _WIN32
#define WORKERS 100
#else
#include <sys/resource.h>
#define WORKERS 256
#endif
#define CALLS 1024

static int cmp_i64(const void *a, const void *b) {
  int64_t x = *(const int64_t *)a, y = *(const int64_t *)b;
  return (x > y) - (x < y);
}

static size_t distinct(int64_t *v, size_t n) {
  size_t i, d = n > 0;
  qsort(v, n, sizeof(*v), cmp_i64);
  for (i = 1; i < n; i++)
    d += v[i] != v[i - 1];
  return d;
}

static void test_scale_many_workers(void **state) {
  static int64_t pids[WORKERS + 1], served[CALLS];
  static pp_buf_t args[CALLS];
  static pp_result_t res[CALLS];
  pp_pool_options_t o;
  pp_pool_t *pool = NULL;
  pp_pool_stats_t st;
  pp_map_options_t mo;
  apr_time_t t0 = apr_time_now();
  size_t i, nserved;
  int n;
  (void)state;
#ifndef _WIN32
  {
    struct rlimit rl;
    assert_int_equal(getrlimit(RLIMIT_NOFILE, &rl), 0);
    if (rl.rlim_cur < 8 * WORKERS && rl.rlim_max >= 8 * WORKERS) {
      rl.rlim_cur = 8 * WORKERS;
      assert_int_equal(setrlimit(RLIMIT_NOFILE, &rl), 0);
    }
  }
#endif
  memset(&o, 0, sizeof(o));
  o.workers = WORKERS;
  if (pp_pool_create(&pool, &o) != 0)
    fail_msg("pp_pool_create with %d workers: %s", WORKERS, pp_last_error());
  print_message("%d workers started in %.2f s\n", WORKERS,
                (double)(apr_time_now() - t0) / 1e6);
  assert_int_equal(pp_pool_workers(pool), WORKERS);
  n = pp_pool_worker_pids(pool, pids, WORKERS + 1);
  assert_int_equal(n, WORKERS);
  assert_int_equal(distinct(pids, WORKERS), WORKERS);
  for (i = 0; i < WORKERS; i++)
    assert_true(pids[i] > 0 && pids[i] != pp_test_self_pid());

  /* One call per chunk, so that the calls spread over the workers. */
  memset(&mo, 0, sizeof(mo));
  mo.chunksize = 1;
  memset(args, 0, sizeof(args));
  t0 = apr_time_now();
  assert_int_equal(pp_pool_map(pool, "pid", args, CALLS, res, &mo), 0);
  for (i = 0; i < CALLS; i++) {
    served[i] = pp_test_int_result(&res[i]);
    assert_true(bsearch(&served[i], pids, WORKERS, sizeof(*pids), cmp_i64) !=
                NULL);
  }
  pp_results_free(res, CALLS);
  nserved = distinct(served, CALLS);
  print_message("%d calls in %.2f s, served by %d distinct workers\n", CALLS,
                (double)(apr_time_now() - t0) / 1e6, (int)nserved);
  /* Which worker takes which call is up to the scheduler; that several
   * did is what can be asserted. */
  assert_true(nserved > 1);

  for (i = 0; i < CALLS; i++)
    args[i] = pp_test_pack_int((int64_t)i);
  assert_int_equal(pp_pool_map(pool, "square", args, CALLS, res, NULL), 0);
  for (i = 0; i < CALLS; i++)
    assert_true(pp_test_int_result(&res[i]) == (int64_t)(i * i));
  pp_results_free(res, CALLS);
  pp_test_free_bufs(args, CALLS);

  assert_int_equal(pp_pool_stats(pool, &st), 0);
  assert_int_equal(st.workers_started, WORKERS);
  assert_int_equal(st.workers_died, 0);
  assert_int_equal(st.calls_completed, 2 * CALLS);
  t0 = apr_time_now();
  assert_int_equal(pp_pool_destroy(pool, PP_DESTROY_WAIT), 0);
  print_message("destroyed in %.2f s\n", (double)(apr_time_now() - t0) / 1e6);
  assert_true(pp_test_wait_gone(pids, WORKERS, 0));
}

/* A pool that would run out of descriptors is refused before it starts
 * anything, with the numbers and the way out. */
static void test_scale_descriptor_limit_is_explained(void **state) {
#ifdef _WIN32
  (void)state;
  print_message("skipped: handles have no per-process limit to check\n");
  skip();
#else
  struct rlimit rl, low;
  pp_pool_options_t o;
  pp_pool_t *pool = NULL;
  int rc;
  (void)state;
  assert_int_equal(getrlimit(RLIMIT_NOFILE, &rl), 0);
  low = rl;
  low.rlim_cur = 200;
  assert_int_equal(setrlimit(RLIMIT_NOFILE, &low), 0);
  memset(&o, 0, sizeof(o));
  o.workers = 64;
  rc = pp_pool_create(&pool, &o);
  assert_int_equal(setrlimit(RLIMIT_NOFILE, &rl), 0);
  assert_int_equal(rc, PP_ESPAWN);
  assert_null(pool);
  print_message("%s\n", pp_last_error());
  assert_non_null(strstr(pp_last_error(), "may open 200 (RLIMIT_NOFILE)"));
#endif
}

int main(int argc, char **argv) {
  int rc;
  if (pp_worker_main(argc, argv, pp_test_tasks, &rc))
    return rc;
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_scale_many_workers),
      cmocka_unit_test(test_scale_descriptor_limit_is_explained),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
