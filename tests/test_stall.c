/*
 * test_stall.c - processes that keep a pool waiting (issue 7, items 1 and
 * 5): a task's forked child that holds the worker's channel and output
 * open after the worker died, and a worker that stops reading (SIGSTOP)
 * while the pool writes a large argument to it.  Neither may hang a result,
 * a timeout or a destroy.
 *
 * These need fork() and SIGSTOP, so on Windows every test skips itself and
 * says why.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#ifndef _WIN32
#include <signal.h>
#include <sys/types.h>
#endif

#include <cmocka.h>

#include <apr_time.h>

#include "helpers.h"
#include "tasks.h"

/* Scaled with the leg, so that the bound on a destroy below (a quarter of
 * it) keeps its meaning on a slow one. */
#define HOLD_MS PP_TEST_MS(60000)

/* A worker stopped by a test, continued by the teardown whatever happens. */
static int64_t stopped_pid;

static int skip_on_windows(void) {
#ifdef _WIN32
  print_message("skipped: needs fork() and SIGSTOP, which Windows has not\n");
  return 1;
#else
  return 0;
#endif
}

/* Reads the holder's pid from the "fork_hold: holder <pid>" log line. */
static int64_t holder_pid(pp_test_log_t *log) {
  size_t i, n;
  int64_t deadline = apr_time_now() + apr_time_from_msec(PP_TEST_MS(30000));
  for (;;) {
    n = pp_test_log_count(log);
    for (i = 0; i < n; i++) {
      pp_test_record_t r;
      long long pid;
      if (pp_test_log_get(log, i, &r) &&
          sscanf(r.line, "fork_hold: holder %lld", &pid) == 1)
        return pid;
    }
    if (apr_time_now() > deadline)
      fail_msg("no holder pid was logged");
    pp_test_sleep_ms(5);
  }
}

static pp_future_t *submit_hold(pp_pool_t *pool, int64_t how,
                                const char *action, int64_t timeout_ms) {
  pp_call_options_t co;
  pp_future_t *f = NULL;
  pp_buf_t b;
  memset(&co, 0, sizeof(co));
  co.timeout_ms = timeout_ms;
  PP_TEST_OK(pp_pack(&b, "iis", how, (int64_t)HOLD_MS, action));
  PP_TEST_OK(pp_pool_submit(pool, "fork_hold", b.data, b.len, &co, &f));
  pp_free((void *)b.data);
  return f;
}

/* A crash is reported while the task's forked child, which holds the
 * worker's channel, stdout and stderr, is still alive: the pool watches the
 * worker process, not only the end of its streams.  how 1 forks without
 * running fork handlers, so the channel is not closed in the child. */
static void crash_with_holder(int64_t how) {
  pp_test_log_t *log = pp_test_log_new();
  pp_pool_t *pool = pp_test_make_pool(2, 0, 0, log);
  pp_future_t *f = submit_hold(pool, how, "segv", 0);
  pp_result_t r;
  int64_t holder;
  assert_int_equal(pp_future_wait(f, PP_TEST_MS(30000)), 0);
  assert_int_equal(pp_future_take(f, &r), 0);
  holder = holder_pid(log);
  print_message("how %d: %s (holder %lld still alive: %d)\n", (int)how,
                r.message, (long long)holder, pp_test_pid_alive(holder));
  assert_int_equal(r.status, PP_EWORKERDIED);
#ifndef _WIN32
  assert_int_equal(r.term_signal, SIGSEGV);
#endif
  /* The holder sleeps a minute; the answer did not wait for it. */
  assert_true(pp_test_pid_alive(holder));
  pp_results_free(&r, 1);
  pp_future_free(f);
  pp_test_kill(holder);
  assert_int_equal(pp_pool_destroy(pool, PP_DESTROY_WAIT), 0);
  pp_test_log_free(log);
}

static void test_stall_forked_child_does_not_hide_a_crash(void **state) {
  (void)state;
  if (skip_on_windows())
    skip();
  crash_with_holder(0);
  crash_with_holder(1);
}

/* A timeout kills the worker and what its task forked (the worker's
 * process group), and is reported at once. */
static void test_stall_timeout_kills_the_forked_child(void **state) {
  pp_test_log_t *log;
  pp_pool_t *pool;
  pp_future_t *f;
  pp_result_t r;
  int64_t holder;
  (void)state;
  if (skip_on_windows())
    skip();
  log = pp_test_log_new();
  pool = pp_test_make_pool(2, 0, 0, log);
  f = submit_hold(pool, 0, "hang", 300);
  assert_int_equal(pp_future_wait(f, PP_TEST_MS(30000)), 0);
  assert_int_equal(pp_future_take(f, &r), 0);
  assert_int_equal(r.status, PP_ETIMEDOUT);
  pp_results_free(&r, 1);
  pp_future_free(f);
  holder = holder_pid(log);
  assert_true(pp_test_wait_gone(&holder, 1, 5000));
  assert_int_equal(pp_pool_destroy(pool, PP_DESTROY_WAIT), 0);
  pp_test_log_free(log);
}

/* A cancelling destroy ends a call whose task forked a child that holds the
 * channel (without fork handlers) and returns; it does not wait for that
 * child to exit by itself a minute later. */
static void test_stall_destroy_with_a_holder_returns(void **state) {
  pp_test_log_t *log;
  pp_pool_t *pool;
  pp_future_t *f;
  apr_time_t t0;
  double secs;
  int64_t holder;
  (void)state;
  if (skip_on_windows())
    skip();
  log = pp_test_log_new();
  pool = pp_test_make_pool(2, 0, 200, log);
  f = submit_hold(pool, 1, "hang", 0);
  holder = holder_pid(log);
  t0 = apr_time_now();
  assert_int_equal(pp_pool_destroy(pool, PP_DESTROY_CANCEL), 0);
  secs = (double)(apr_time_now() - t0) / 1e6;
  print_message("destroy took %.2f s with a holder of %d s\n", secs,
                (int)(HOLD_MS / 1000));
  assert_true(secs < (double)HOLD_MS / 4000.0);
  assert_int_equal(pp_future_status(f), PP_ECANCELED);
  pp_future_free(f);
  assert_true(pp_test_wait_gone(&holder, 1, 5000));
  pp_test_log_free(log);
}

/* A child forked by a task does not hold the channel at all. */
static void test_stall_forked_child_has_no_channel(void **state) {
  pp_pool_t *pool = *state;
  pp_future_t *f = NULL;
  pp_result_t r;
  if (skip_on_windows())
    skip();
  PP_TEST_OK(pp_pool_submit(pool, "fork_fd", NULL, 0, NULL, &f));
  assert_int_equal(pp_future_wait(f, PP_TEST_MS(30000)), 0);
  assert_int_equal(pp_future_take(f, &r), 0);
  assert_int_equal(r.status, 0);
  assert_true(pp_test_int_result(&r) == 0);
  pp_results_free(&r, 1);
  pp_future_free(f);
}

/* One worker is stopped while its slot writes a 64 MiB argument to it, and
 * that call is cancelled, so the timer has a CANCEL to send on a channel
 * that is busy and full.  A timeout on the other worker still fires on
 * time, and the stopped worker's call ends when its grace period is over. */
static void test_stall_stopped_worker_does_not_freeze_timers(void **state) {
#ifdef _WIN32
  (void)state;
  skip_on_windows();
  skip();
#else
  enum { BIG = 64 << 20 };
  pp_test_log_t *log = pp_test_log_new();
  pp_pool_t *pool = pp_test_make_pool(2, 0, 500, log);
  pp_call_options_t co;
  pp_future_t *hang = NULL, *big = NULL;
  pp_test_record_t rec;
  pp_result_t r;
  int64_t pids[2];
  void *arg = malloc(BIG);
  (void)state;
  assert_non_null(arg);
  memset(arg, 'x', BIG);
  memset(&co, 0, sizeof(co));
  co.timeout_ms = 3000;
  PP_TEST_OK(pp_pool_submit(pool, "hang", NULL, 0, &co, &hang));
  assert_true(pp_test_log_wait(log, "hang: started", 30000, &rec));
  assert_int_equal(pp_pool_worker_pids(pool, pids, 2), 2);
  /* Stop the other worker, then give its slot a call it cannot take. */
  stopped_pid = pids[1 - rec.worker];
  assert_int_equal(kill((pid_t)stopped_pid, SIGSTOP), 0);
  co.timeout_ms = 0;
  co.borrow_arg = 1;
  PP_TEST_OK(pp_pool_submit(pool, "echo", arg, BIG, &co, &big));
  pp_test_sleep_ms(300);
  PP_TEST_OK(pp_future_cancel(big));

  assert_int_equal(pp_future_wait(hang, PP_TEST_MS(20000)), 0);
  assert_int_equal(pp_future_status(hang), PP_ETIMEDOUT);
  assert_int_equal(pp_future_wait(big, PP_TEST_MS(20000)), 0);
  assert_int_equal(pp_future_take(big, &r), 0);
  print_message("stopped worker's call: %s: %s\n", pp_err_name(r.status),
                r.message);
  assert_int_equal(r.status, PP_ECANCELED);
  pp_results_free(&r, 1);
  pp_future_free(hang);
  pp_future_free(big);
  kill((pid_t)stopped_pid, SIGCONT);
  stopped_pid = 0;
  assert_int_equal(pp_pool_destroy(pool, PP_DESTROY_CANCEL), 0);
  pp_test_log_free(log);
  free(arg);
#endif
}

static int continue_stopped(void **state) {
  (void)state;
#ifndef _WIN32
  if (stopped_pid != 0)
    kill((pid_t)stopped_pid, SIGCONT);
#endif
  stopped_pid = 0;
  return 0;
}

int main(int argc, char **argv) {
  int rc;
  if (pp_worker_main(argc, argv, pp_test_tasks, &rc))
    return rc;
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_stall_forked_child_does_not_hide_a_crash),
      cmocka_unit_test(test_stall_timeout_kills_the_forked_child),
      cmocka_unit_test(test_stall_destroy_with_a_holder_returns),
      PP_TEST_POOL_TEST(test_stall_forked_child_has_no_channel),
      cmocka_unit_test_teardown(
          test_stall_stopped_worker_does_not_freeze_timers, continue_stopped),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
