/*
 * test_scale.c - a pool of 100 workers (issue 3): all start, each is a
 * process of its own, they share a map of a few hundred calls between
 * them, and all are gone after the destroy.
 *
 * A hundred workers means a hundred slot threads, two hundred output
 * drains and three hundred descriptors or handles in the parent, which is
 * where limits that a 2-worker test never meets would show.
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

#define WORKERS 100
#define CALLS 400

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

static void test_scale_hundred_workers(void **state) {
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

int main(int argc, char **argv) {
  int rc;
  if (pp_worker_main(argc, argv, pp_test_tasks, &rc))
    return rc;
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_scale_hundred_workers),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
