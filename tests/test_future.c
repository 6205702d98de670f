/*
 * test_future.c - one call at a time: submit, wait, take, cancel, per-call
 * timeouts, and futures that outlive their pool.
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

/* Submits a task with a tuple "i" argument (the pool copies it). */
static pp_future_t *submit_int(pp_pool_t *pool, const char *task, int64_t v,
                               const pp_call_options_t *co) {
  pp_buf_t b = pp_test_pack_int(v);
  pp_future_t *f = NULL;
  assert_int_equal(pp_pool_submit(pool, task, b.data, b.len, co, &f), 0);
  assert_non_null(f);
  pp_free((void *)b.data);
  return f;
}

/* Waits for a future (generously), takes its result and frees it. */
static pp_result_t finish(pp_future_t *f) {
  pp_result_t r;
  assert_int_equal(pp_future_wait(f, PP_TEST_MS(60000)), 0);
  assert_int_equal(pp_future_take(f, &r), 0);
  pp_future_free(f);
  return r;
}

static int64_t worker_pid(pp_pool_t *pool) {
  pp_result_t r = finish(submit_int(pool, "pid", 0, NULL));
  int64_t pid = pp_test_int_result(&r);
  pp_results_free(&r, 1);
  assert_true(pid > 0);
  return pid;
}

static void test_future_submit_wait_take(void **state) {
  pp_pool_t *pool = pp_test_make_pool(2, 0, 0, NULL);
  pp_future_t *f = submit_int(pool, "square", 7, NULL);
  pp_result_t r, again;
  (void)state;
  assert_int_equal(pp_future_wait(f, -1), 0);
  assert_int_equal(pp_future_status(f), 0);
  assert_int_equal(pp_future_take(f, &r), 0);
  assert_int_equal(r.status, 0);
  assert_true(pp_test_int_result(&r) == 49);
  /* A second take gets the status, but the data has moved out. */
  assert_int_equal(pp_future_take(f, &again), 0);
  assert_int_equal(again.status, 0);
  assert_null(again.data);
  assert_int_equal(again.len, 0);
  pp_results_free(&r, 1);
  pp_future_free(f);
  assert_int_equal(pp_pool_destroy(pool, PP_DESTROY_WAIT), 0);
}

static void test_future_task_error_has_message(void **state) {
  pp_pool_t *pool = pp_test_make_pool(1, 0, 0, NULL);
  pp_future_t *f = NULL;
  pp_result_t r;
  (void)state;
  assert_int_equal(pp_pool_submit(pool, "fail", "why not", 7, NULL, &f), 0);
  r = finish(f);
  assert_int_equal(r.status, PP_ETASK);
  assert_string_equal(r.message, "fail: why not");
  assert_null(r.data);
  pp_results_free(&r, 1);
  /* A task that refuses its argument fails only its own call. */
  assert_int_equal(pp_pool_submit(pool, "square", "junk", 4, NULL, &f), 0);
  r = finish(f);
  assert_int_equal(r.status, PP_ETASK);
  assert_string_equal(r.message, "square wants one int64");
  pp_results_free(&r, 1);
  assert_int_equal(pp_pool_destroy(pool, PP_DESTROY_WAIT), 0);
}

static void test_future_wait_timeout_while_running(void **state) {
  pp_pool_t *pool = pp_test_make_pool(1, 0, 0, NULL);
  pp_future_t *f = submit_int(pool, "sleep_ms", 600, NULL);
  pp_result_t r;
  (void)state;
  assert_int_equal(pp_future_status(f), PP_EAGAIN);
  assert_int_equal(pp_future_take(f, &r), PP_EAGAIN);
  assert_int_equal(pp_future_wait(f, 50), PP_ETIMEDOUT);
  assert_int_equal(pp_future_wait(f, 0), PP_ETIMEDOUT);
  /* The call goes on after a timed-out wait. */
  r = finish(f);
  assert_int_equal(r.status, 0);
  assert_true(pp_test_int_result(&r) == 600);
  pp_results_free(&r, 1);
  assert_int_equal(pp_pool_destroy(pool, PP_DESTROY_WAIT), 0);
}

static void test_future_cancel_pending_never_runs(void **state) {
  pp_test_log_t *log = pp_test_log_new();
  pp_pool_t *pool = pp_test_make_pool(1, 0, 0, log);
  pp_future_t *busy = submit_int(pool, "sleep_ms", 1000, NULL);
  pp_future_t *f = NULL;
  pp_buf_t tag;
  pp_result_t r;
  (void)state;
  /* The only worker is busy, so this call waits in the queue. */
  assert_int_equal(pp_pack(&tag, "s", "never"), 0);
  assert_int_equal(pp_pool_submit(pool, "print", tag.data, tag.len, NULL, &f),
                   0);
  pp_free((void *)tag.data);
  assert_int_equal(pp_future_cancel(f), 0);
  /* Cancelling twice is harmless. */
  assert_int_equal(pp_future_cancel(f), 0);
  r = finish(f);
  assert_int_equal(r.status, PP_ECANCELED);
  assert_non_null(strstr(r.message, "before it ran"));
  pp_results_free(&r, 1);

  r = finish(busy);
  assert_int_equal(r.status, 0);
  pp_results_free(&r, 1);
  /* A later call's output comes after anything the cancelled one could
   * have written, so once it is seen, "never" would have been too. */
  assert_int_equal(pp_pack(&tag, "s", "after"), 0);
  assert_int_equal(pp_pool_submit(pool, "print", tag.data, tag.len, NULL, &f),
                   0);
  pp_free((void *)tag.data);
  r = finish(f);
  assert_int_equal(r.status, 0);
  pp_results_free(&r, 1);
  assert_true(pp_test_log_wait(log, "out after", 10000, NULL));
  assert_true(pp_test_log_wait(log, "log after", 10000, NULL));
  assert_int_equal(pp_test_log_count_line(log, "out never"), 0);
  assert_int_equal(pp_test_log_count_line(log, "log never"), 0);
  assert_int_equal(pp_pool_destroy(pool, PP_DESTROY_WAIT), 0);
  pp_test_log_free(log);
}

/* Waits, at most 30 s (scaled), until the call is in `want`; returns 1 if
 * it was. */
static int state_becomes(pp_future_t *f, int want) {
  int64_t i;
  for (i = 0; i < PP_TEST_MS(3000); i++) {
    if (pp_future_state(f) == want)
      return 1;
    pp_test_sleep_ms(10);
  }
  return 0;
}

/* A running call is told from one a worker holds but has not started, and
 * from one still in the pool's queue; all end done. */
static void test_future_state_tells_queued_from_running(void **state) {
  pp_pool_t *pool = pp_test_make_pool(1, 0, 0, NULL);
  pp_future_t *run = submit_int(pool, "sleep_ms", 60000, NULL);
  pp_future_t *held = submit_int(pool, "square", 3, NULL);
  pp_future_t *queued = submit_int(pool, "square", 4, NULL);
  pp_pool_t *inl;
  pp_future_t *f;
  pp_result_t r;
  (void)state;
  assert_true(state_becomes(run, PP_FUTURE_RUNNING));
  /* The only worker runs the long call: the other two wait, one in its
   * ring (it holds its chunk and one more), one in the queue. */
  assert_int_equal(pp_future_state(held), PP_FUTURE_QUEUED);
  assert_int_equal(pp_future_state(queued), PP_FUTURE_QUEUED);
  assert_int_equal(pp_future_state(run), PP_FUTURE_RUNNING);
  assert_int_equal(pp_future_cancel(run), 0);
  assert_int_equal(pp_future_wait(run, PP_TEST_MS(60000)), 0);
  assert_int_equal(pp_future_state(run), PP_FUTURE_DONE);
  assert_int_equal(pp_future_status(run), PP_ECANCELED);
  pp_future_free(run);
  assert_int_equal(pp_future_wait(queued, PP_TEST_MS(30000)), 0);
  assert_int_equal(pp_future_state(queued), PP_FUTURE_DONE);
  r = finish(held);
  assert_true(pp_test_int_result(&r) == 9);
  pp_results_free(&r, 1);
  r = finish(queued);
  assert_true(pp_test_int_result(&r) == 16);
  pp_results_free(&r, 1);
  assert_int_equal(pp_future_state(NULL), PP_EINVAL);
  assert_int_equal(pp_pool_destroy(pool, PP_DESTROY_WAIT), 0);
  /* Inline calls run inside pp_pool_submit(). */
  inl = pp_test_make_pool(1, PP_POOL_INLINE, 0, NULL);
  f = submit_int(inl, "square", 5, NULL);
  assert_int_equal(pp_future_state(f), PP_FUTURE_DONE);
  pp_future_free(f);
  assert_int_equal(pp_pool_destroy(inl, PP_DESTROY_WAIT), 0);
}

/* pp_future_wait_many: an as_completed loop hands out each future once;
 * FIRST_FAILED returns for a failure while a long call still runs;
 * ALL_COMPLETED says n when none failed; a time limit and bad input. */
static void test_future_wait_many(void **state) {
  static const int64_t ms[6] = {200, 10, 120, 30, 60, 0};
  pp_pool_t *pool = pp_test_make_pool(2, 0, 0, NULL);
  pp_pool_t *other = pp_test_make_pool(1, PP_POOL_INLINE, 0, NULL);
  pp_future_t *fs[6], *two[2], *none[2] = {NULL, NULL};
  int seen[6] = {0};
  size_t i, at, left = 6;
  pp_result_t r;
  pp_buf_t bad;
  (void)state;
  for (i = 0; i < 6; i++)
    fs[i] = submit_int(pool, "sleep_ms", ms[i], NULL);
  while (left > 0) {
    assert_int_equal(pp_future_wait_many(fs, 6, PP_WAIT_FIRST_COMPLETED,
                                         PP_TEST_MS(60000), &at),
                     0);
    assert_true(at < 6);
    assert_int_equal(pp_future_state(fs[at]), PP_FUTURE_DONE);
    assert_int_equal(pp_future_take(fs[at], &r), 0);
    assert_true(pp_test_int_result(&r) == ms[at]);
    pp_results_free(&r, 1);
    pp_future_free(fs[at]);
    fs[at] = NULL;
    seen[at]++;
    left--;
  }
  for (i = 0; i < 6; i++)
    assert_int_equal(seen[i], 1);
  /* Everything taken: nothing left to wait for. */
  assert_int_equal(pp_future_wait_many(fs, 6, PP_WAIT_FIRST_COMPLETED, 0, &at),
                   PP_EINVAL);

  /* A failure ends FIRST_FAILED while the long call goes on. */
  two[0] = submit_int(pool, "sleep_ms", 60000, NULL);
  assert_int_equal(pp_pack(&bad, "s", "not an int"), 0);
  assert_int_equal(
      pp_pool_submit(pool, "square", bad.data, bad.len, NULL, &two[1]), 0);
  pp_free((void *)bad.data);
  assert_int_equal(
      pp_future_wait_many(two, 2, PP_WAIT_FIRST_FAILED, PP_TEST_MS(60000), &at),
      0);
  assert_int_equal(at, 1);
  assert_int_equal(pp_future_status(two[1]), PP_ETASK);
  assert_int_not_equal(pp_future_state(two[0]), PP_FUTURE_DONE);
  /* A time limit while it runs. */
  assert_int_equal(pp_future_wait_many(two, 2, PP_WAIT_ALL_COMPLETED, 50, &at),
                   PP_ETIMEDOUT);
  assert_int_equal(at, 2);
  assert_int_equal(pp_future_cancel(two[0]), 0);
  assert_int_equal(pp_future_wait_many(two, 2, PP_WAIT_ALL_COMPLETED,
                                       PP_TEST_MS(60000), &at),
                   0);
  assert_int_equal(at, 0); /* the cancelled call is the first that failed */
  pp_future_free(two[0]);
  pp_future_free(two[1]);

  /* All finished, none failed: n. */
  two[0] = submit_int(pool, "square", 2, NULL);
  two[1] = submit_int(pool, "square", 3, NULL);
  assert_int_equal(pp_future_wait_many(two, 2, PP_WAIT_ALL_COMPLETED,
                                       PP_TEST_MS(60000), &at),
                   0);
  assert_int_equal(at, 2);
  assert_int_equal(
      pp_future_wait_many(two, 2, PP_WAIT_FIRST_FAILED, PP_TEST_MS(60000), &at),
      0);
  assert_int_equal(at, 2);

  /* Bad input. */
  assert_int_equal(
      pp_future_wait_many(NULL, 2, PP_WAIT_FIRST_COMPLETED, 0, &at), PP_EINVAL);
  assert_int_equal(
      pp_future_wait_many(none, 2, PP_WAIT_FIRST_COMPLETED, 0, &at), PP_EINVAL);
  assert_int_equal(pp_future_wait_many(two, 2, (pp_wait_mode_t)7, 0, &at),
                   PP_EINVAL);
  pp_future_free(two[1]);
  /* Futures of two pools (test_callback.c waits on more of them). */
  two[1] = submit_int(other, "square", 4, NULL);
  assert_int_equal(pp_future_wait_many(two, 2, PP_WAIT_ALL_COMPLETED,
                                       PP_TEST_MS(60000), &at),
                   0);
  assert_int_equal(at, 2);
  pp_future_free(two[0]);
  pp_future_free(two[1]);
  assert_int_equal(pp_pool_destroy(pool, PP_DESTROY_WAIT), 0);
  assert_int_equal(pp_pool_destroy(other, PP_DESTROY_WAIT), 0);
}

/* A task that checks pp_call_cancelled() stops by itself; its worker is not
 * killed. */
static void test_future_cancel_running_is_ecanceled(void **state) {
  pp_pool_t *pool = pp_test_make_pool(1, 0, 0, NULL);
  int64_t pid = worker_pid(pool);
  pp_future_t *f = submit_int(pool, "sleep_ms", PP_TEST_MS(60000), NULL);
  apr_time_t t0;
  pp_pool_stats_t st;
  pp_result_t r;
  (void)state;
  pp_test_sleep_ms(200);
  t0 = apr_time_now();
  assert_int_equal(pp_future_cancel(f), 0);
  r = finish(f);
  assert_int_equal(r.status, PP_ECANCELED);
  assert_non_null(r.message);
  assert_null(r.data);
  /* Not a speed test: the 60 s sleep was cut short. */
  assert_true(apr_time_now() - t0 < apr_time_from_msec(PP_TEST_MS(30000)));
  pp_results_free(&r, 1);
  assert_true(worker_pid(pool) == pid);
  assert_int_equal(pp_pool_stats(pool, &st), 0);
  assert_int_equal(st.workers_died, 0);
  assert_int_equal(pp_pool_destroy(pool, PP_DESTROY_WAIT), 0);
}

/* A task that ignores the cancel is killed when the grace period ends. */
static void test_future_cancel_hung_call_kills_worker(void **state) {
  pp_test_log_t *log = pp_test_log_new();
  pp_pool_t *pool = pp_test_make_pool(1, 0, 200, log);
  int64_t pid = worker_pid(pool), pid2;
  pp_future_t *f = NULL;
  pp_pool_stats_t st;
  pp_result_t r;
  (void)state;
  assert_int_equal(pp_pool_submit(pool, "hang", NULL, 0, NULL, &f), 0);
  /* Cancelled while running, not while still queued. */
  assert_true(pp_test_log_wait(log, "hang: started", 20000, NULL));
  assert_int_equal(pp_future_cancel(f), 0);
  r = finish(f);
  assert_int_equal(r.status, PP_ECANCELED);
  assert_non_null(strstr(r.message, "cancel"));
  pp_results_free(&r, 1);
  pid2 = worker_pid(pool);
  assert_true(pid2 != pid);
  assert_true(pp_test_wait_gone(&pid, 1, 10000));
  assert_int_equal(pp_pool_stats(pool, &st), 0);
  assert_int_equal(st.workers_died, 1);
  assert_int_equal(pp_pool_destroy(pool, PP_DESTROY_WAIT), 0);
  pp_test_log_free(log);
}

static void test_future_timeout_replaces_worker(void **state) {
  pp_pool_t *pool = pp_test_make_pool(1, 0, 0, NULL);
  int64_t pid = worker_pid(pool);
  pp_call_options_t co;
  pp_future_t *f = NULL;
  pp_result_t r;
  (void)state;
  memset(&co, 0, sizeof(co));
  co.timeout_ms = 300;
  assert_int_equal(pp_pool_submit(pool, "hang", NULL, 0, &co, &f), 0);
  r = finish(f);
  assert_int_equal(r.status, PP_ETIMEDOUT);
  assert_non_null(strstr(r.message, "timeout"));
  pp_results_free(&r, 1);
  /* The hung worker was killed and replaced; the pool goes on. */
  assert_true(worker_pid(pool) != pid);
  assert_true(pp_test_wait_gone(&pid, 1, 10000));
  r = finish(submit_int(pool, "square", 12, NULL));
  assert_true(pp_test_int_result(&r) == 144);
  pp_results_free(&r, 1);
  assert_int_equal(pp_pool_destroy(pool, PP_DESTROY_WAIT), 0);
}

static void test_future_pool_timeout_and_per_call_override(void **state) {
  pp_pool_options_t o;
  pp_pool_t *pool = NULL;
  pp_call_options_t co;
  pp_result_t r;
  pp_future_t *f = NULL;
  (void)state;
  memset(&o, 0, sizeof(o));
  o.workers = 1;
  o.call_timeout_ms = 300;
  PP_TEST_OK(pp_pool_create(&pool, &o));
  assert_int_equal(pp_pool_submit(pool, "hang", NULL, 0, NULL, &f), 0);
  r = finish(f);
  assert_int_equal(r.status, PP_ETIMEDOUT);
  pp_results_free(&r, 1);
  /* A negative per-call timeout means none, whatever the pool's is. */
  memset(&co, 0, sizeof(co));
  co.timeout_ms = -1;
  r = finish(submit_int(pool, "sleep_ms", 700, &co));
  assert_int_equal(r.status, 0);
  assert_true(pp_test_int_result(&r) == 700);
  pp_results_free(&r, 1);
  assert_int_equal(pp_pool_destroy(pool, PP_DESTROY_WAIT), 0);
}

static void test_future_outlives_pool_destroy(void **state) {
  pp_pool_t *pool = pp_test_make_pool(2, 0, 0, NULL);
  pp_future_t *done = submit_int(pool, "square", 5, NULL);
  pp_future_t *running = submit_int(pool, "sleep_ms", 200, NULL);
  pp_future_t *dropped = submit_int(pool, "sleep_ms", 60000, NULL);
  pp_result_t r;
  (void)state;
  assert_int_equal(pp_future_wait(done, -1), 0);
  /* Freeing an unfinished future cancels its call. */
  pp_future_free(dropped);
  assert_int_equal(pp_pool_destroy(pool, PP_DESTROY_WAIT), 0);
  /* Both futures are valid and finished after the pool is gone. */
  assert_int_equal(pp_future_status(done), 0);
  assert_int_equal(pp_future_wait(running, 0), 0);
  assert_int_equal(pp_future_take(done, &r), 0);
  assert_true(pp_test_int_result(&r) == 25);
  pp_results_free(&r, 1);
  assert_int_equal(pp_future_take(running, &r), 0);
  assert_true(pp_test_int_result(&r) == 200);
  pp_results_free(&r, 1);
  assert_int_equal(pp_future_cancel(done), 0);
  pp_future_free(running);
  pp_future_free(done);
}

static void test_future_borrowed_argument(void **state) {
  pp_pool_t *pool = pp_test_make_pool(1, 0, 0, NULL);
  pp_call_options_t co;
  pp_future_t *f = NULL;
  pp_result_t r;
  char arg[64];
  (void)state;
  memset(&co, 0, sizeof(co));
  co.borrow_arg = 1;
  snprintf(arg, sizeof(arg), "borrowed bytes");
  assert_int_equal(pp_pool_submit(pool, "echo", arg, strlen(arg), &co, &f), 0);
  r = finish(f);
  assert_int_equal(r.status, 0);
  assert_int_equal(r.len, strlen(arg));
  assert_memory_equal(r.data, arg, r.len);
  pp_results_free(&r, 1);
  assert_int_equal(pp_pool_destroy(pool, PP_DESTROY_WAIT), 0);
}

/* The argument is copied at submit unless borrowed: changing it afterwards
 * must not change what the task sees. */
static void test_future_argument_is_copied(void **state) {
  pp_pool_t *pool = pp_test_make_pool(1, 0, 0, NULL);
  pp_future_t *busy = submit_int(pool, "sleep_ms", 300, NULL);
  pp_future_t *f = NULL;
  pp_result_t r;
  char arg[16] = "original";
  (void)state;
  assert_int_equal(pp_pool_submit(pool, "echo", arg, 8, NULL, &f), 0);
  memcpy(arg, "CHANGED!", 8);
  r = finish(f);
  assert_memory_equal(r.data, "original", 8);
  pp_results_free(&r, 1);
  r = finish(busy);
  pp_results_free(&r, 1);
  assert_int_equal(pp_pool_destroy(pool, PP_DESTROY_WAIT), 0);
}

static void test_future_big_payload_roundtrip(void **state) {
  pp_pool_t *pool = pp_test_make_pool(1, 0, 0, NULL);
  size_t len = (24u << 20) + 5;
  void *arg = malloc(len);
  pp_result_t r;
  (void)state;
  assert_non_null(arg);
  pp_test_fill(arg, len, PP_TEST_SEED_IN);
  r = pp_test_big_call(pool, arg, len, 60000);
  assert_int_equal(r.status, 0);
  assert_int_equal(r.len, len);
  assert_int_equal(pp_test_check(r.data, r.len, PP_TEST_SEED_OUT), len);
  pp_results_free(&r, 1);
  /* A damaged argument is reported by the task, not by a crash. */
  ((unsigned char *)arg)[len / 2] ^= 1;
  r = pp_test_big_call(pool, arg, len, 60000);
  assert_int_equal(r.status, PP_ETASK);
  assert_non_null(strstr(r.message, "differs"));
  pp_results_free(&r, 1);
  free(arg);
  assert_int_equal(pp_pool_destroy(pool, PP_DESTROY_WAIT), 0);
}

static void test_future_many_in_flight(void **state) {
  pp_pool_t *pool = pp_test_make_pool(2, 0, 0, NULL);
  enum { N = 300 };
  pp_future_t *f[N];
  int i;
  (void)state;
  for (i = 0; i < N; i++)
    f[i] = submit_int(pool, "square", i, NULL);
  /* Waited in reverse, to finish out of submit order. */
  for (i = N - 1; i >= 0; i--) {
    pp_result_t r = finish(f[i]);
    assert_true(pp_test_int_result(&r) == (int64_t)i * i);
    pp_results_free(&r, 1);
  }
  assert_int_equal(pp_pool_destroy(pool, PP_DESTROY_WAIT), 0);
}

/* A thread waits on a queued call without a time limit; another thread
 * cancels the call.  The waiter wakes at once: no other call finishes to
 * wake it (its worker holds two hanging calls). */
typedef struct waiter_s {
  pp_future_t *f;
  int rc;
  int64_t took_ms;
} waiter_t;

static void *APR_THREAD_FUNC wait_forever(apr_thread_t *t, void *data) {
  waiter_t *w = data;
  apr_time_t t0 = apr_time_now();
  w->rc = pp_future_wait(w->f, -1);
  w->took_ms = (int64_t)((apr_time_now() - t0) / 1000);
  apr_thread_exit(t, APR_SUCCESS);
  return NULL;
}

static void test_future_cancel_wakes_another_threads_wait(void **state) {
  pp_pool_t *pool = pp_test_make_pool(1, 0, 100, NULL);
  pp_future_t *h1 = NULL, *h2 = NULL;
  pp_buf_t arg = pp_test_pack_int(7);
  apr_pool_t *mem;
  apr_thread_t *t;
  apr_status_t rv;
  waiter_t w;
  (void)state;
  memset(&w, 0, sizeof(w));
  assert_int_equal(apr_pool_create(&mem, NULL), APR_SUCCESS);
  PP_TEST_OK(pp_pool_submit(pool, "hang", NULL, 0, NULL, &h1));
  PP_TEST_OK(pp_pool_submit(pool, "hang", NULL, 0, NULL, &h2));
  PP_TEST_OK(pp_pool_submit(pool, "square", arg.data, arg.len, NULL, &w.f));
  assert_int_equal(apr_thread_create(&t, NULL, wait_forever, &w, mem),
                   APR_SUCCESS);
  pp_test_sleep_ms(200);
  assert_int_equal(pp_future_state(w.f), PP_FUTURE_QUEUED);
  PP_TEST_OK(pp_future_cancel(w.f));
  apr_thread_join(&rv, t);
  assert_int_equal(w.rc, 0);
  assert_int_equal(pp_future_status(w.f), PP_ECANCELED);
  /* Woken by the cancel, not by the hanging calls' end (they never end
   * before the destroy below). */
  assert_true(w.took_ms < 5000 * PP_TEST_TIME_SCALE);
  pp_future_free(w.f);
  pp_future_free(h1);
  pp_future_free(h2);
  pp_free((void *)arg.data);
  PP_TEST_OK(pp_pool_destroy(pool, PP_DESTROY_CANCEL));
  apr_pool_destroy(mem);
}

int main(int argc, char **argv) {
  int rc;
  if (pp_worker_main(argc, argv, pp_test_tasks, &rc))
    return rc;
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_future_submit_wait_take),
      cmocka_unit_test(test_future_task_error_has_message),
      cmocka_unit_test(test_future_wait_timeout_while_running),
      cmocka_unit_test(test_future_cancel_pending_never_runs),
      cmocka_unit_test(test_future_cancel_running_is_ecanceled),
      cmocka_unit_test(test_future_state_tells_queued_from_running),
      cmocka_unit_test(test_future_wait_many),
      cmocka_unit_test(test_future_cancel_hung_call_kills_worker),
      cmocka_unit_test(test_future_timeout_replaces_worker),
      cmocka_unit_test(test_future_pool_timeout_and_per_call_override),
      cmocka_unit_test(test_future_outlives_pool_destroy),
      cmocka_unit_test(test_future_borrowed_argument),
      cmocka_unit_test(test_future_argument_is_copied),
      cmocka_unit_test(test_future_big_payload_roundtrip),
      cmocka_unit_test(test_future_many_in_flight),
      cmocka_unit_test(test_future_cancel_wakes_another_threads_wait),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
