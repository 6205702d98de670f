/*
 * test_clock.c - a step of the wall clock changes no deadline (issue 7,
 * item 10).
 *
 * The test program replaces the C library's clock_gettime() and
 * gettimeofday() for itself and the libraries it loads (APR among them),
 * adding an offset to the wall clock (CLOCK_REALTIME) that a test sets, as
 * NTP, an administrator or a resumed virtual machine would.  procpool's
 * timeouts and waits must go on as if nothing happened: they are measured
 * on the monotonic clock.  Workers are this program too, with no offset.
 *
 * Linux only: elsewhere the system's clock functions cannot be replaced
 * this way, and the tests skip themselves.
 */
#if defined(__linux__)
#ifndef _GNU_SOURCE
#define _GNU_SOURCE
#endif
#endif

#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#if defined(__linux__)
#include <sys/syscall.h>
#include <sys/time.h>
#include <time.h>
#include <unistd.h>
#endif

#include <cmocka.h>

#include <apr_atomic.h>
#include <apr_thread_proc.h>

#include "helpers.h"
#include "tasks.h"

#define HOUR_US ((int64_t)3600 * 1000000)

#if defined(__linux__)
/* Microseconds added to the wall clock; set by the tests, read by every
 * thread (atomically: the pool's threads read the clock all the time). */
static int64_t wall_offset_us;

__attribute__((visibility("default"))) int clock_gettime(clockid_t id,
                                                     struct timespec *ts) {
  long rc = syscall(SYS_clock_gettime, id, ts);
  int64_t off = __atomic_load_n(&wall_offset_us, __ATOMIC_RELAXED);
  if (rc != 0)
    return -1;
  if ((id == CLOCK_REALTIME || id == CLOCK_REALTIME_COARSE) && off != 0) {
    int64_t ns = (int64_t)ts->tv_sec * 1000000000 + ts->tv_nsec + off * 1000;
    ts->tv_sec = (time_t)(ns / 1000000000);
    ts->tv_nsec = (long)(ns % 1000000000);
  }
  return 0;
}

__attribute__((visibility("default"))) int
gettimeofday(struct timeval *restrict tv, void *restrict tz) {
  struct timespec ts;
  (void)tz;
  clock_gettime(CLOCK_REALTIME, &ts);
  tv->tv_sec = ts.tv_sec;
  tv->tv_usec = (suseconds_t)(ts.tv_nsec / 1000);
  return 0;
}
#endif

static void step_clock(int64_t us) {
#if defined(__linux__)
  __atomic_store_n(&wall_offset_us, us, __ATOMIC_RELAXED);
#else
  (void)us;
#endif
}

static int clock_reset(void **state) {
  (void)state;
  step_clock(0);
  return 0;
}

static int skip_unless_linux(void) {
#if defined(__linux__)
  return 0;
#else
  print_message("skipped: the wall clock can only be stepped on Linux\n");
  return 1;
#endif
}

/* A step of the wall clock does not make the system's clock functions lie:
 * otherwise the tests below would prove nothing. */
static void test_clock_the_step_is_real(void **state) {
  apr_time_t before = apr_time_now();
  (void)state;
  if (skip_unless_linux())
    skip();
  step_clock(HOUR_US);
  assert_true(apr_time_now() - before >= HOUR_US);
  step_clock(0);
}

static pp_future_t *submit_ms(pp_pool_t *pool, const char *task, int64_t ms,
                              int64_t timeout_ms) {
  pp_call_options_t co;
  pp_future_t *f = NULL;
  pp_buf_t b = pp_test_pack_int(ms);
  memset(&co, 0, sizeof(co));
  co.timeout_ms = timeout_ms;
  PP_TEST_OK(pp_pool_submit(pool, task, b.data, b.len, &co, &f));
  pp_free((void *)b.data);
  return f;
}

/* A step forward does not fire a timeout early: the call of 1.5 s with a
 * timeout of 5 s finishes, although a call started after the step wakes
 * the timer. */
static void test_clock_step_forward_keeps_timeouts(void **state) {
  pp_pool_t *pool = *state;
  pp_future_t *f, *poke;
  if (skip_unless_linux())
    skip();
  f = submit_ms(pool, "sleep_ms", 1500, PP_TEST_MS(5000));
  pp_test_sleep_ms(300);
  step_clock(HOUR_US);
  poke = submit_ms(pool, "sleep_ms", 10, PP_TEST_MS(5000));
  assert_int_equal(pp_future_wait(poke, PP_TEST_MS(30000)), 0);
  assert_int_equal(pp_future_wait(f, PP_TEST_MS(30000)), 0);
  assert_int_equal(pp_future_status(f), 0);
  assert_int_equal(pp_future_status(poke), 0);
  pp_future_free(f);
  pp_future_free(poke);
  step_clock(0);
}

/* A step back does not stretch a timeout by the size of the step. */
static void test_clock_step_back_keeps_timeouts(void **state) {
  pp_pool_t *pool = *state;
  pp_future_t *f;
  if (skip_unless_linux())
    skip();
  f = submit_ms(pool, "hang", 0, 800);
  pp_test_sleep_ms(100);
  step_clock(-HOUR_US);
  assert_int_equal(pp_future_wait(f, PP_TEST_MS(20000)), 0);
  assert_int_equal(pp_future_status(f), PP_ETIMEDOUT);
  pp_future_free(f);
  step_clock(0);
}

typedef struct {
  pp_pool_t *pool;
  int64_t offset;
} stepper_t;

/* Steps the clock while the main thread waits, then finishes a few quick
 * calls, which wake every waiter of the pool. */
static void *APR_THREAD_FUNC step_and_poke(apr_thread_t *thread, void *data) {
  stepper_t *s = data;
  int i;
  pp_test_sleep_ms(300);
  step_clock(s->offset);
  for (i = 0; i < 5; i++) {
    pp_future_t *f = submit_ms(s->pool, "sleep_ms", 1, -1);
    pp_future_wait(f, PP_TEST_MS(30000));
    pp_future_free(f);
  }
  (void)thread;
  return NULL;
}

/* pp_future_wait(f, PP_TEST_MS(60000)) waits for the call, not for the wall
 * clock to pass a mark, in both directions. */
static void wait_through_a_step(pp_pool_t *pool, int64_t offset) {
  apr_pool_t *mem = NULL;
  apr_thread_t *t;
  apr_status_t rv;
  stepper_t s;
  pp_future_t *f = submit_ms(pool, "sleep_ms", 1500, -1);
  s.pool = pool;
  s.offset = offset;
  assert_int_equal(apr_pool_create(&mem, NULL), APR_SUCCESS);
  assert_int_equal(apr_thread_create(&t, NULL, step_and_poke, &s, mem),
                   APR_SUCCESS);
  assert_int_equal(pp_future_wait(f, PP_TEST_MS(60000)), 0);
  assert_int_equal(pp_future_status(f), 0);
  apr_thread_join(&rv, t);
  apr_pool_destroy(mem);
  pp_future_free(f);
  step_clock(0);
}

static void test_clock_future_wait_ignores_steps(void **state) {
  pp_pool_t *pool = *state;
  if (skip_unless_linux())
    skip();
  wait_through_a_step(pool, HOUR_US);
  wait_through_a_step(pool, -HOUR_US);
}

int main(int argc, char **argv) {
  int rc;
  if (pp_worker_main(argc, argv, pp_test_tasks, &rc))
    return rc;
  const struct CMUnitTest tests[] = {
      cmocka_unit_test_teardown(test_clock_the_step_is_real, clock_reset),
      cmocka_unit_test_setup_teardown(test_clock_step_forward_keeps_timeouts,
                                      pp_test_setup_pool,
                                      pp_test_teardown_pool),
      cmocka_unit_test_setup_teardown(test_clock_step_back_keeps_timeouts,
                                      pp_test_setup_pool,
                                      pp_test_teardown_pool),
      cmocka_unit_test_setup_teardown(test_clock_future_wait_ignores_steps,
                                      pp_test_setup_pool,
                                      pp_test_teardown_pool),
  };
  return cmocka_run_group_tests(tests, NULL, clock_reset);
}
