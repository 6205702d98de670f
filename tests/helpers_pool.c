/*
 * helpers_pool.c - pools and calls shared by the test programs (see
 * helpers.h).  These run inside a CMocka test and fail it, with the
 * library's reason, when something does not work.
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

/* The library's own free-memory probe (an internal function, which the
 * static library the tests link shows). */
#include "../platform/platform.h"

#include "helpers.h"
#include "tasks.h"

#define GIB ((uint64_t)1 << 30)

void pp_test_pool_options(pp_pool_options_t *o, int workers, unsigned flags,
                          int64_t grace_ms, pp_test_log_t *log) {
  memset(o, 0, sizeof(*o));
  o->workers = workers;
  o->flags = flags;
  o->cancel_grace_ms = grace_ms;
  if (log != NULL) {
    o->log_cb = pp_test_log_cb;
    o->log_data = log;
  }
}

pp_pool_t *pp_test_make_pool(int workers, unsigned flags, int64_t grace_ms,
                             pp_test_log_t *log) {
  pp_pool_options_t o;
  pp_pool_t *pool = NULL;
  pp_test_pool_options(&o, workers, flags, grace_ms, log);
  PP_TEST_OK(pp_pool_create(&pool, &o));
  assert_non_null(pool);
  return pool;
}

int pp_test_setup_pool(void **state) {
  pp_pool_options_t o;
  pp_pool_t *pool = NULL;
  pp_test_pool_options(&o, 2, 0, 0, NULL);
  if (pp_pool_create(&pool, &o) != 0) {
    print_error("pp_pool_create: %s\n", pp_last_error());
    return -1;
  }
  *state = pool;
  return 0;
}

int pp_test_teardown_pool(void **state) {
  return pp_pool_destroy(*state, PP_DESTROY_CANCEL);
}

pp_result_t pp_test_big_call(pp_pool_t *pool, const void *arg, size_t len,
                             int64_t timeout_ms) {
  pp_call_options_t co;
  pp_future_t *f = NULL;
  pp_result_t r;
  memset(&co, 0, sizeof(co));
  /* Borrowed, so the parent does not hold a second copy. */
  co.borrow_arg = 1;
  assert_int_equal(pp_pool_submit(pool, "big", arg, len, &co, &f), 0);
  assert_int_equal(pp_future_wait(f, timeout_ms), 0);
  assert_int_equal(pp_future_take(f, &r), 0);
  pp_future_free(f);
  return r;
}

void pp_test_big_roundtrip(uint64_t want, uint64_t needed, const char *what) {
  uint64_t avail = pp__mem_available();
  pp_pool_t *pool;
  pp_result_t r;
  apr_time_t t0;
  size_t len;
  void *arg;
  /* A preprocessor test: MSVC's /W4 calls if (sizeof(size_t) < 8) a
   * constant condition (C4127). */
#if SIZE_MAX < UINT64_MAX
  print_message("skipped: a %s buffer needs a 64-bit build\n", what);
  skip();
#endif
  if (avail < needed) {
    print_message("skipped: %.1f GiB of memory available, the test needs "
                  "%.0f GiB\n",
                  (double)avail / (double)GIB, (double)needed / (double)GIB);
    skip();
  }
  len = (size_t)want;
  arg = malloc(len);
  assert_non_null(arg);
  pp_test_fill(arg, len, PP_TEST_SEED_IN);

  pool = pp_test_make_pool(1, 0, 0, NULL);
  t0 = apr_time_now();
  r = pp_test_big_call(pool, arg, len, -1);
  free(arg);
  if (r.status != 0)
    fail_msg("big call failed: %s: %s", pp_err_name(r.status),
             r.message ? r.message : "");
  print_message("%s each way in %.1f s\n", what,
                (double)(apr_time_now() - t0) / 1e6);
  assert_true(r.len == len);
  assert_true(pp_test_check(r.data, r.len, PP_TEST_SEED_OUT) == len);
  pp_results_free(&r, 1);
  assert_int_equal(pp_pool_destroy(pool, PP_DESTROY_WAIT), 0);
}
