/*
 * test_wake.c - the wake objects of the platform layer (platform.h,
 * pp__wake_t): one signal wakes every thread that sleeps on the object,
 * a signal given after a thread took its ticket is not lost to it even
 * when another thread takes it from the system, signals do not count, and
 * a wait that cannot be made is an error, never a timeout (a caller that
 * took it for one would wait again at once, and spin).
 *
 * A worker sleeps on one wake object from two threads: its main thread
 * waits for calls, and a thread that logs or prints waits there for room
 * in the result ring.  On Windows an auto-reset event released one of
 * them only (issue 18, item 3).
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#ifdef _WIN32
#include "../platform/win32/internal.h"
#else
#include <fcntl.h>
#include <unistd.h>

#include "../platform/posix/internal.h"
#endif

#include <cmocka.h>

#include <apr_atomic.h>
#include <apr_general.h>
#include <apr_thread_proc.h>

#include "helpers.h"
#include "tasks.h"

/* A thread that sleeps on a wake object. */
typedef struct sleeper_s {
  pp__wake_t *wake;
  int64_t limit_ms;
  volatile apr_uint32_t ready; /* it has its ticket */
  int rc;                      /* what pp__wake_wait returned */
} sleeper_t;

static void *APR_THREAD_FUNC sleep_on(apr_thread_t *thread, void *arg) {
  sleeper_t *s = arg;
  uint64_t ticket = pp__wake_ticket(s->wake);
  apr_atomic_set32(&s->ready, 1);
  s->rc = pp__wake_wait(s->wake, ticket, NULL, s->limit_ms);
  (void)thread;
  return NULL;
}

static void start_sleepers(apr_pool_t *mem, sleeper_t *s, apr_thread_t **t,
                           int n, pp__wake_t *wake, int64_t limit_ms) {
  int i;
  for (i = 0; i < n; i++) {
    memset(&s[i], 0, sizeof(s[i]));
    s[i].wake = wake;
    s[i].limit_ms = limit_ms;
    s[i].rc = -1000;
    assert_int_equal(apr_thread_create(&t[i], NULL, sleep_on, &s[i], mem),
                     APR_SUCCESS);
  }
  for (i = 0; i < n; i++)
    while (apr_atomic_read32(&s[i].ready) == 0)
      pp_test_sleep_ms(1);
}

static void join_sleepers(apr_thread_t **t, int n) {
  apr_status_t rv;
  int i;
  for (i = 0; i < n; i++)
    apr_thread_join(&rv, t[i]);
}

/* Two threads sleep on one wake object; one signal wakes both, long before
 * their time limit. */
static void test_wake_one_signal_wakes_every_sleeper(void **state) {
  apr_pool_t *mem = NULL;
  apr_thread_t *t[2];
  sleeper_t s[2];
  pp__wake_t *wake = NULL;
  int64_t limit_ms = PP_TEST_MS(10000), t0;
  (void)state;
  assert_int_equal(apr_pool_create(&mem, NULL), APR_SUCCESS);
  PP_TEST_OK(pp__wake_new(&wake));
  start_sleepers(mem, s, t, 2, wake, limit_ms);
  /* Time to fall asleep: the test holds either way, but this is the case
   * that lost a wake-up. */
  pp_test_sleep_ms(200);
  t0 = pp__now_us();
  PP_TEST_OK(pp__wake_signal(wake));
  join_sleepers(t, 2);
  print_message("woke: %d and %d after %lld ms\n", s[0].rc, s[1].rc,
                (long long)((pp__now_us() - t0) / 1000));
  assert_int_equal(s[0].rc, 1);
  assert_int_equal(s[1].rc, 1);
  assert_true(pp__now_us() - t0 < limit_ms * 1000 / 2);
  pp__wake_free(wake);
  apr_pool_destroy(mem);
}

/* A thread took its ticket and has not begun to wait (it is looking at its
 * ring) when the signal comes, and another thread, asleep, takes the
 * signal from the system: the first one's wait still returns at once. */
static void test_wake_signal_before_the_wait_is_not_lost(void **state) {
  apr_pool_t *mem = NULL;
  apr_thread_t *t[1];
  sleeper_t s[1];
  pp__wake_t *wake = NULL;
  uint64_t ticket;
  int64_t t0;
  (void)state;
  assert_int_equal(apr_pool_create(&mem, NULL), APR_SUCCESS);
  PP_TEST_OK(pp__wake_new(&wake));
  ticket = pp__wake_ticket(wake);
  start_sleepers(mem, s, t, 1, wake, PP_TEST_MS(10000));
  pp_test_sleep_ms(200);
  PP_TEST_OK(pp__wake_signal(wake));
  join_sleepers(t, 1);
  assert_int_equal(s[0].rc, 1);
  t0 = pp__now_us();
  assert_int_equal(pp__wake_wait(wake, ticket, NULL, PP_TEST_MS(5000)), 1);
  assert_true(pp__now_us() - t0 < PP_TEST_MS(2500) * 1000);
  pp__wake_free(wake);
  apr_pool_destroy(mem);
}

/* Several signals before a wait wake it once; with no signal after its
 * ticket a wait runs to its time limit and returns 0. */
static void test_wake_signals_do_not_count(void **state) {
  pp__wake_t *wake = NULL;
  (void)state;
  PP_TEST_OK(pp__wake_new(&wake));
  PP_TEST_OK(pp__wake_signal(wake));
  PP_TEST_OK(pp__wake_signal(wake));
  PP_TEST_OK(pp__wake_signal(wake));
  assert_int_equal(pp__wake_wait(wake, pp__wake_ticket(wake), NULL, 0), 1);
  assert_int_equal(pp__wake_wait(wake, pp__wake_ticket(wake), NULL, 100), 0);
  pp__wake_free(wake);
}

/* A wake object whose handle or descriptor was closed behind its back (by
 * a task, say): the wait fails with PP_EIO and a reason, at once, instead
 * of returning 0 (a timeout, after which the worker would wait again and
 * fail again at once) or 1.  On Windows the object is not freed: its
 * handle value may be another object's by now.  On POSIX the descriptor's
 * number is taken again by the null device first, so the free closes
 * that (LeakSanitizer counts the object otherwise). */
static void test_wake_wait_on_a_closed_object_is_an_error(void **state) {
#ifndef _WIN32
  int rfd;
#endif
  pp__wake_t *wake = NULL;
  int64_t t0;
  int rc;
  (void)state;
#ifdef _WIN32
  {
    HANDLE event = CreateEventW(NULL, FALSE, FALSE, NULL);
    assert_non_null(event);
    PP_TEST_OK(pp__win_wake_wrap(event, &wake));
    CloseHandle(event);
  }
#else
  {
    int fds[2];
    assert_int_equal(pipe(fds), 0);
    PP_TEST_OK(pp__posix_wake_wrap(fds[0], -1, &wake));
    rfd = fds[0];
    close(fds[0]);
    close(fds[1]);
  }
#endif
  t0 = pp__now_us();
  rc = pp__wake_wait(wake, pp__wake_ticket(wake), NULL, PP_TEST_MS(2000));
  print_message("a wait on a closed object: %s: %s\n", pp_err_name(rc),
                pp__os_reason());
  assert_int_equal(rc, PP_EIO);
  assert_true(pp__os_reason()[0] != '\0');
  assert_true(pp__now_us() - t0 < PP_TEST_MS(1000) * 1000);
#ifndef _WIN32
  {
    int null_fd = open("/dev/null", O_RDONLY);
    assert_true(null_fd >= 0);
    assert_true(dup2(null_fd, rfd) == rfd);
    close(null_fd);
    pp__wake_free(wake);
  }
#endif
}

#ifdef _WIN32
/* A handle to the event without SYNCHRONIZE (what a worker gets for its
 * parent's): a wait on it is refused, and that is an error too. */
static void test_wake_wait_without_the_right_is_an_error(void **state) {
  HANDLE event = CreateEventW(NULL, FALSE, FALSE, NULL), narrow = NULL;
  pp__wake_t *wake = NULL;
  (void)state;
  assert_non_null(event);
  assert_true(DuplicateHandle(GetCurrentProcess(), event, GetCurrentProcess(),
                              &narrow, EVENT_MODIFY_STATE, FALSE, 0));
  PP_TEST_OK(pp__win_wake_wrap(narrow, &wake));
  assert_int_equal(
      pp__wake_wait(wake, pp__wake_ticket(wake), NULL, PP_TEST_MS(2000)),
      PP_EIO);
  /* Signalling needs only EVENT_MODIFY_STATE. */
  PP_TEST_OK(pp__wake_signal(wake));
  assert_int_equal(WaitForSingleObject(event, 0), WAIT_OBJECT_0);
  pp__wake_free(wake);
  CloseHandle(event);
}
#endif

int main(int argc, char **argv) {
  int rc;
  if (pp_worker_main(argc, argv, pp_test_tasks, &rc))
    return rc;
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_wake_one_signal_wakes_every_sleeper),
      cmocka_unit_test(test_wake_signal_before_the_wait_is_not_lost),
      cmocka_unit_test(test_wake_signals_do_not_count),
      cmocka_unit_test(test_wake_wait_on_a_closed_object_is_an_error),
#ifdef _WIN32
      cmocka_unit_test(test_wake_wait_without_the_right_is_an_error),
#endif
  };
  if (apr_initialize() != APR_SUCCESS)
    return 1;
  rc = cmocka_run_group_tests(tests, NULL, NULL);
  apr_terminate();
  return rc;
}
