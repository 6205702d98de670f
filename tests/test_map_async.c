/*
 * test_map_async.c - pp_pool_map_async(), pp_pool_starmap_async() and the
 * pp_map_* functions: the start returns at once, waits with and without a
 * time limit, polling, cancelling, releasing an unfinished map, failures
 * of single calls, bad input, a destroy with a map outstanding, and
 * progress reports made by the waiter.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include <apr_thread_proc.h>
#include <apr_time.h>

#include "helpers.h"
#include "tasks.h"

/* Time limits of the tests grow with the leg's slowness (Wine, valgrind). */
#define SCALE ((int64_t)PP_TEST_TIME_SCALE)

static pp_buf_t pack_act(const char *what, int64_t v) {
  pp_buf_t b;
  assert_int_equal(pp_pack(&b, "si", what, v), 0);
  return b;
}

static uint64_t submitted(pp_pool_t *pool) {
  pp_pool_stats_t st;
  assert_int_equal(pp_pool_stats(pool, &st), 0);
  return st.calls_submitted;
}

static int64_t ms_since(apr_time_t t0) {
  return (int64_t)((apr_time_now() - t0) / 1000);
}

/* Waits until at least `done` calls of the map have finished. */
static void wait_done(pp_map_t *map, size_t done) {
  apr_time_t t0 = apr_time_now();
  pp_progress_t p;
  for (;;) {
    assert_int_equal(pp_map_progress(map, &p), 0);
    if (p.done >= done)
      return;
    assert_true(ms_since(t0) < 20000 * SCALE);
    pp_test_sleep_ms(5);
  }
}

static void test_async_1000_squares_in_order(void **state) {
  pp_pool_t *pool = *state;
  enum { N = 1000 };
  pp_buf_t *args = calloc(N, sizeof(*args));
  pp_result_t *res = calloc(N, sizeof(*res));
  pp_map_t *map = NULL;
  pp_progress_t p;
  size_t i;
  assert_non_null(args);
  assert_non_null(res);
  for (i = 0; i < N; i++)
    args[i] = pp_test_pack_int((int64_t)i - 500);
  PP_TEST_OK(pp_pool_map_async(pool, "square", args, N, res, NULL, &map));
  assert_non_null(map);
  PP_TEST_OK(pp_map_wait(map, -1));
  for (i = 0; i < N; i++) {
    int64_t x = (int64_t)i - 500;
    assert_int_equal(res[i].status, 0);
    assert_null(res[i].message);
    assert_true(pp_test_int_result(&res[i]) == x * x);
  }
  /* An ended map keeps telling its status. */
  assert_int_equal(pp_map_status(map), 0);
  assert_int_equal(pp_map_wait(map, 0), 0);
  assert_int_equal(pp_map_progress(map, &p), 0);
  assert_true(p.done == N && p.total == N && p.failed == 0);
  assert_int_equal(p.final, 1);
  pp_map_free(map);
  pp_results_free(res, N);
  pp_test_free_bufs(args, N);
  free(res);
  free(args);
}

/* The start returns while the calls sleep; polling sees them end. */
static void test_async_returns_at_once_and_polls(void **state) {
  pp_pool_t *pool = *state;
  enum { N = 4 };
  pp_buf_t args[N];
  pp_result_t res[N];
  pp_map_t *map = NULL;
  apr_time_t t0 = apr_time_now();
  size_t i;
  int rc;
  for (i = 0; i < N; i++)
    args[i] = pp_test_pack_int(300 * SCALE);
  PP_TEST_OK(pp_pool_map_async(pool, "sleep_ms", args, N, res, NULL, &map));
  /* Four calls of 300 ms on two workers take 600 ms at least. */
  assert_true(ms_since(t0) < 300 * SCALE);
  assert_int_equal(pp_map_status(map), PP_EAGAIN);
  while ((rc = pp_map_status(map)) == PP_EAGAIN) {
    assert_true(ms_since(t0) < 20000 * SCALE);
    pp_test_sleep_ms(10);
  }
  assert_int_equal(rc, 0);
  assert_true(ms_since(t0) >= 600 * SCALE - 10);
  for (i = 0; i < N; i++)
    assert_true(pp_test_int_result(&res[i]) == 300 * SCALE);
  pp_map_free(map);
  pp_results_free(res, N);
  pp_test_free_bufs(args, N);
}

static void test_async_wait_times_out_and_map_goes_on(void **state) {
  pp_pool_t *pool = *state;
  enum { N = 2 };
  pp_buf_t args[N];
  pp_result_t res[N];
  pp_map_t *map = NULL;
  apr_time_t t0;
  size_t i;
  for (i = 0; i < N; i++)
    args[i] = pp_test_pack_int(500 * SCALE);
  PP_TEST_OK(pp_pool_map_async(pool, "sleep_ms", args, N, res, NULL, &map));
  t0 = apr_time_now();
  assert_int_equal(pp_map_wait(map, 10), PP_ETIMEDOUT);
  assert_true(ms_since(t0) < 400 * SCALE);
  assert_non_null(strstr(pp_last_error(), "have not finished in 10 ms"));
  assert_int_equal(pp_map_status(map), PP_EAGAIN);
  PP_TEST_OK(pp_map_wait(map, -1));
  for (i = 0; i < N; i++) {
    assert_int_equal(res[i].status, 0);
    assert_true(pp_test_int_result(&res[i]) == 500 * SCALE);
  }
  pp_map_free(map);
  pp_results_free(res, N);
  pp_test_free_bufs(args, N);
}

/* Records the workers' pids, then destroys the pool and checks that they
 * have all ended. */
static void destroy_and_check_gone(pp_pool_t *pool, pp_destroy_mode_t mode) {
  int64_t pids[8];
  int n = pp_pool_worker_pids(pool, pids, 8);
  assert_true(n > 0 && n <= 8);
  PP_TEST_OK(pp_pool_destroy(pool, mode));
  assert_true(pp_test_wait_gone(pids, (size_t)n, 10000));
}

static void test_async_cancel_keeps_results_computed(void **state) {
  enum { N = 20, QUICK = 4 };
  pp_pool_t *pool = pp_test_make_pool(2, 0, 200, NULL);
  pp_buf_t args[N];
  pp_result_t res[N];
  pp_map_options_t mo;
  pp_map_t *map = NULL;
  apr_time_t t0 = apr_time_now();
  size_t i;
  (void)state;
  /* A few quick calls, then calls that would sleep for 30 s. */
  for (i = 0; i < N; i++)
    args[i] =
        i < QUICK ? pack_act("square", (int64_t)i) : pack_act("sleep", 30000);
  memset(&mo, 0, sizeof(mo));
  mo.chunksize = 1;
  PP_TEST_OK(pp_pool_map_async(pool, "act", args, N, res, &mo, &map));
  wait_done(map, QUICK);
  PP_TEST_OK(pp_map_cancel(map));
  assert_int_equal(pp_map_wait(map, 10000 * SCALE), PP_ECANCELED);
  assert_true(ms_since(t0) < 10000 * SCALE);
  for (i = 0; i < QUICK; i++) {
    assert_int_equal(res[i].status, 0);
    assert_true(pp_test_int_result(&res[i]) == (int64_t)(i * i));
  }
  for (i = QUICK; i < N; i++) {
    assert_int_equal(res[i].status, PP_ECANCELED);
    assert_non_null(res[i].message);
  }
  /* Cancelling an ended map changes nothing. */
  PP_TEST_OK(pp_map_cancel(map));
  assert_int_equal(pp_map_status(map), PP_ECANCELED);
  pp_map_free(map);
  pp_results_free(res, N);
  pp_test_free_bufs(args, N);
  destroy_and_check_gone(pool, PP_DESTROY_WAIT);
}

static void test_async_failing_and_crashing_calls_fail_alone(void **state) {
  pp_pool_t *pool = *state;
  enum { N = 7 };
  pp_buf_t args[N];
  pp_result_t res[N];
  pp_map_options_t mo;
  const int64_t want[N] = {9, 16, 0, 25, 0, 36, 49};
  pp_map_t *map = NULL;
  size_t i;
  args[0] = pack_act("square", 3);
  args[1] = pack_act("square", 4);
  args[2] = pack_act("fail", 7);
  args[3] = pack_act("square", 5);
  args[4] = pack_act("segv", 0);
  args[5] = pack_act("square", 6);
  args[6] = pack_act("square", 7);
  memset(&mo, 0, sizeof(mo));
  mo.chunksize = 1;
  PP_TEST_OK(pp_pool_map_async(pool, "act", args, N, res, &mo, &map));
  /* The first failure in input order is the map's status. */
  assert_int_equal(pp_map_wait(map, -1), PP_ETASK);
  assert_int_equal(res[2].status, PP_ETASK);
  assert_non_null(strstr(res[2].message, "act failed for 7"));
  assert_int_equal(res[4].status, PP_EWORKERDIED);
  /* Every other call has its own right result, the ones after the crash
   * too. */
  for (i = 0; i < N; i++) {
    if (i == 2 || i == 4)
      continue;
    assert_int_equal(res[i].status, 0);
    assert_true(pp_test_int_result(&res[i]) == want[i]);
  }
  pp_map_free(map);
  pp_results_free(res, N);
  pp_test_free_bufs(args, N);
}

/* Releasing a map that has not ended cancels it and waits for it: the
 * results are the caller's afterwards, and nothing leaks (ASan). */
static void test_async_free_unfinished_map(void **state) {
  enum { N = 10 };
  pp_pool_t *pool = pp_test_make_pool(2, 0, 200, NULL);
  pp_buf_t args[N];
  pp_result_t res[N];
  pp_map_options_t mo;
  pp_map_t *map = NULL;
  apr_time_t t0 = apr_time_now();
  size_t i;
  (void)state;
  for (i = 0; i < N; i++)
    args[i] = pp_test_pack_int(30000);
  memset(&mo, 0, sizeof(mo));
  mo.chunksize = 1;
  PP_TEST_OK(pp_pool_map_async(pool, "sleep_ms", args, N, res, &mo, &map));
  /* Some calls run on workers, the others are still queued. */
  pp_test_sleep_ms(100);
  pp_map_free(map);
  assert_true(ms_since(t0) < 10000 * SCALE);
  for (i = 0; i < N; i++)
    assert_int_equal(res[i].status, PP_ECANCELED);
  pp_results_free(res, N);
  /* A map freed at once, before any call ran. */
  PP_TEST_OK(pp_pool_map_async(pool, "sleep_ms", args, N, res, &mo, &map));
  pp_map_free(map);
  pp_results_free(res, N);
  /* The pool goes on. */
  PP_TEST_OK(pp_pool_map(pool, "square", args, 2, res, NULL));
  assert_true(pp_test_int_result(&res[0]) == 900000000);
  pp_results_free(res, 2);
  pp_test_free_bufs(args, N);
  destroy_and_check_gone(pool, PP_DESTROY_WAIT);
}

static void test_async_bad_input(void **state) {
  pp_pool_t *pool = *state;
  enum { N = 10 };
  pp_buf_t args[N];
  pp_result_t res[N];
  pp_map_options_t mo;
  pp_map_t *map = (pp_map_t *)&args;
  uint64_t before = submitted(pool);
  size_t i;
  for (i = 0; i < N; i++)
    args[i] = pp_test_pack_int((int64_t)i);

  /* A malformed tuple in the middle: a truncated one. */
  args[6].len -= 3;
  assert_int_equal(
      pp_pool_starmap_async(pool, "square", args, N, res, NULL, &map),
      PP_EBADARGS);
  assert_null(map);
  assert_non_null(strstr(pp_last_error(), "tuples[6]"));
  args[6].len += 3;

  map = (pp_map_t *)&args;
  assert_int_equal(pp_pool_map_async(NULL, "square", args, N, res, NULL, &map),
                   PP_EINVAL);
  assert_null(map);
  map = (pp_map_t *)&args;
  assert_int_equal(pp_pool_map_async(pool, NULL, args, N, res, NULL, &map),
                   PP_EINVAL);
  assert_null(map);
  map = (pp_map_t *)&args;
  assert_int_equal(pp_pool_map_async(pool, "square", args, N, NULL, NULL, &map),
                   PP_EINVAL);
  assert_null(map);
  assert_int_equal(pp_pool_map_async(pool, "square", args, N, res, NULL, NULL),
                   PP_EINVAL);
  map = (pp_map_t *)&args;
  assert_int_equal(pp_pool_map_async(pool, "sqaure", args, N, res, NULL, &map),
                   PP_ENOTASK);
  assert_null(map);
  assert_non_null(strstr(pp_last_error(), "sqaure"));
  memset(&mo, 0, sizeof(mo));
  mo.flags = 1u << 20;
  map = (pp_map_t *)&args;
  assert_int_equal(pp_pool_map_async(pool, "square", args, N, res, &mo, &map),
                   PP_EINVAL);
  assert_null(map);
  assert_non_null(strstr(pp_last_error(), "flags"));
  assert_true(submitted(pool) == before);

  assert_int_equal(pp_map_wait(NULL, 0), PP_EINVAL);
  assert_int_equal(pp_map_status(NULL), PP_EINVAL);
  assert_int_equal(pp_map_cancel(NULL), PP_EINVAL);
  assert_int_equal(pp_map_progress(NULL, NULL), PP_EINVAL);
  pp_map_free(NULL);

  /* An empty map is a map that has ended. */
  PP_TEST_OK(pp_pool_map_async(pool, "square", NULL, 0, NULL, NULL, &map));
  assert_int_equal(pp_map_status(map), 0);
  PP_TEST_OK(pp_map_wait(map, -1));
  pp_map_free(map);
  pp_test_free_bufs(args, N);
}

/* The handle outlives its pool, like a future. */
static void test_async_destroy_cancel_with_live_map(void **state) {
  enum { N = 8 };
  pp_pool_t *pool = pp_test_make_pool(2, 0, 200, NULL);
  pp_buf_t args[N];
  pp_result_t res[N];
  pp_map_options_t mo;
  pp_map_t *map = NULL;
  pp_progress_t p;
  apr_time_t t0 = apr_time_now();
  size_t i;
  (void)state;
  for (i = 0; i < N; i++)
    args[i] = pp_test_pack_int(30000);
  memset(&mo, 0, sizeof(mo));
  mo.chunksize = 1;
  PP_TEST_OK(pp_pool_map_async(pool, "sleep_ms", args, N, res, &mo, &map));
  pp_test_sleep_ms(100);
  destroy_and_check_gone(pool, PP_DESTROY_CANCEL);
  assert_true(ms_since(t0) < 10000 * SCALE);
  assert_int_equal(pp_map_status(map), PP_ECANCELED);
  assert_int_equal(pp_map_wait(map, -1), PP_ECANCELED);
  PP_TEST_OK(pp_map_cancel(map));
  PP_TEST_OK(pp_map_progress(map, &p));
  assert_true(p.done == N && p.failed == N && p.final == 1);
  for (i = 0; i < N; i++)
    assert_int_equal(res[i].status, PP_ECANCELED);
  /* The last user of the destroyed pool frees it. */
  pp_map_free(map);
  pp_results_free(res, N);
  pp_test_free_bufs(args, N);
}

typedef struct destroyer_s {
  pp_pool_t *pool;
  pp_destroy_mode_t mode;
  int rc;
} destroyer_t;

static void *APR_THREAD_FUNC destroyer(apr_thread_t *t, void *data) {
  destroyer_t *d = data;
  pp_test_sleep_ms(50);
  d->rc = pp_pool_destroy(d->pool, d->mode);
  /* Ended with apr_thread_exit(): on Windows, APR's join of a thread that
   * only returned says APR_INCOMPLETE. */
  apr_thread_exit(t, APR_SUCCESS);
  return NULL;
}

/* A destroy in another thread neither hangs nor leaves a waiter hanging,
 * whether it waits for the map's calls or cancels them. */
static void test_async_destroy_in_another_thread(void **state) {
  enum { N = 6 };
  pp_destroy_mode_t modes[2] = {PP_DESTROY_WAIT, PP_DESTROY_CANCEL};
  apr_pool_t *mem = NULL;
  int k;
  (void)state;
  assert_int_equal(apr_pool_create(&mem, NULL), APR_SUCCESS);
  for (k = 0; k < 2; k++) {
    pp_buf_t args[N];
    pp_result_t res[N];
    pp_map_options_t mo;
    pp_map_t *map = NULL;
    destroyer_t d;
    apr_thread_t *th;
    apr_status_t st;
    size_t i;
    int rc;
    /* One worker: most calls wait in the queue when the destroy comes. */
    d.pool = pp_test_make_pool(1, 0, 200, NULL);
    d.mode = modes[k];
    d.rc = 1;
    for (i = 0; i < N; i++)
      args[i] = pp_test_pack_int(k == 0 ? 50 : 30000);
    memset(&mo, 0, sizeof(mo));
    mo.chunksize = 1;
    PP_TEST_OK(pp_pool_map_async(d.pool, "sleep_ms", args, N, res, &mo, &map));
    assert_int_equal(apr_thread_create(&th, NULL, destroyer, &d, mem),
                     APR_SUCCESS);
    rc = pp_map_wait(map, -1);
    assert_int_equal(apr_thread_join(&st, th), APR_SUCCESS);
    assert_int_equal(d.rc, 0);
    if (k == 0) {
      assert_int_equal(rc, 0);
      for (i = 0; i < N; i++)
        assert_true(pp_test_int_result(&res[i]) == 50);
    } else {
      assert_int_equal(rc, PP_ECANCELED);
    }
    pp_map_free(map);
    pp_results_free(res, N);
    pp_test_free_bufs(args, N);
  }
  apr_pool_destroy(mem);
}

typedef struct reports_s {
  int calls;
  int finals;
  pp_progress_t last;
} reports_t;

static int record_progress(void *data, const pp_progress_t *p) {
  reports_t *r = data;
  r->calls++;
  r->finals += p->final;
  r->last = *p;
  return 0;
}

static void test_async_progress_reported_by_the_waiter(void **state) {
  pp_pool_t *pool = *state;
  enum { N = 20 };
  pp_buf_t args[N];
  pp_result_t res[N];
  pp_map_options_t mo;
  pp_map_t *map = NULL;
  reports_t r;
  size_t i;
  memset(&r, 0, sizeof(r));
  /* Ten rounds of two calls: the map outlasts the 50 ms below (longer on
   * a slow leg). */
  for (i = 0; i < N; i++)
    args[i] = pp_test_pack_int(30 * SCALE);
  memset(&mo, 0, sizeof(mo));
  mo.chunksize = 1;
  mo.progress = record_progress;
  mo.progress_data = &r;
  mo.progress_interval_ms = 10;
  PP_TEST_OK(pp_pool_map_async(pool, "sleep_ms", args, N, res, &mo, &map));
  /* Nobody waits yet: nobody reports. */
  pp_test_sleep_ms(50);
  assert_int_equal(r.calls, 0);
  PP_TEST_OK(pp_map_wait(map, -1));
  assert_int_equal(r.finals, 1);
  assert_true(r.calls >= 2);
  assert_int_equal(r.last.final, 1);
  assert_true(r.last.done == N && r.last.total == N && r.last.failed == 0);
  /* Waiting again reports nothing more. */
  PP_TEST_OK(pp_map_wait(map, -1));
  assert_int_equal(r.finals, 1);
  pp_map_free(map);
  pp_results_free(res, N);
  pp_test_free_bufs(args, N);
}

typedef struct waiter_s {
  pp_map_t *map;
  int rc;
} waiter_t;

static void *APR_THREAD_FUNC waiter(apr_thread_t *t, void *data) {
  waiter_t *w = data;
  w->rc = pp_map_wait(w->map, -1);
  apr_thread_exit(t, APR_SUCCESS);
  return NULL;
}

/* Two threads wait on one map: one of them reports at a time, and the
 * final report is made once. */
static void test_async_two_waiters_one_final_report(void **state) {
  pp_pool_t *pool = *state;
  enum { N = 20 };
  pp_buf_t args[N];
  pp_result_t res[N];
  pp_map_options_t mo;
  pp_map_t *map = NULL;
  apr_pool_t *mem = NULL;
  apr_thread_t *th;
  apr_status_t st;
  waiter_t w;
  reports_t r;
  size_t i;
  memset(&r, 0, sizeof(r));
  assert_int_equal(apr_pool_create(&mem, NULL), APR_SUCCESS);
  for (i = 0; i < N; i++)
    args[i] = pp_test_pack_int(20);
  memset(&mo, 0, sizeof(mo));
  mo.chunksize = 1;
  mo.progress = record_progress;
  mo.progress_data = &r;
  mo.progress_interval_ms = 5;
  PP_TEST_OK(pp_pool_map_async(pool, "sleep_ms", args, N, res, &mo, &map));
  w.map = map;
  w.rc = 1;
  assert_int_equal(apr_thread_create(&th, NULL, waiter, &w, mem), APR_SUCCESS);
  PP_TEST_OK(pp_map_wait(map, -1));
  assert_int_equal(apr_thread_join(&st, th), APR_SUCCESS);
  assert_int_equal(w.rc, 0);
  assert_int_equal(r.finals, 1);
  assert_true(r.last.done == N && r.last.final == 1);
  pp_map_free(map);
  pp_results_free(res, N);
  pp_test_free_bufs(args, N);
  apr_pool_destroy(mem);
}

/* Inline mode runs the whole map inside the start. */
static void test_async_inline_runs_in_the_start(void **state) {
  enum { N = 5 };
  pp_pool_t *pool = pp_test_make_pool(1, PP_POOL_INLINE, 0, NULL);
  pp_buf_t args[N];
  pp_result_t res[N];
  pp_map_t *map = NULL;
  size_t i;
  (void)state;
  for (i = 0; i < N; i++)
    args[i] = pp_test_pack_int((int64_t)i);
  PP_TEST_OK(pp_pool_map_async(pool, "square", args, N, res, NULL, &map));
  assert_int_equal(pp_map_status(map), 0);
  for (i = 0; i < N; i++)
    assert_true(pp_test_int_result(&res[i]) == (int64_t)(i * i));
  PP_TEST_OK(pp_map_wait(map, 0));
  pp_map_free(map);
  pp_results_free(res, N);
  pp_test_free_bufs(args, N);
  PP_TEST_OK(pp_pool_destroy(pool, PP_DESTROY_WAIT));
}

int main(int argc, char **argv) {
  int rc;
  if (pp_worker_main(argc, argv, pp_test_tasks, &rc))
    return rc;
  const struct CMUnitTest tests[] = {
      PP_TEST_POOL_TEST(test_async_1000_squares_in_order),
      PP_TEST_POOL_TEST(test_async_returns_at_once_and_polls),
      PP_TEST_POOL_TEST(test_async_wait_times_out_and_map_goes_on),
      cmocka_unit_test(test_async_cancel_keeps_results_computed),
      PP_TEST_POOL_TEST(test_async_failing_and_crashing_calls_fail_alone),
      cmocka_unit_test(test_async_free_unfinished_map),
      PP_TEST_POOL_TEST(test_async_bad_input),
      cmocka_unit_test(test_async_destroy_cancel_with_live_map),
      cmocka_unit_test(test_async_destroy_in_another_thread),
      PP_TEST_POOL_TEST(test_async_progress_reported_by_the_waiter),
      PP_TEST_POOL_TEST(test_async_two_waiters_one_final_report),
      cmocka_unit_test(test_async_inline_runs_in_the_start),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
