/*
 * test_large4g.c - an argument and a result of 4 GiB + 1 byte in one call
 * (label `large`).
 *
 * test_large moves 3 GiB, past the 2 GiB limit of single transfers on
 * several systems.  This one crosses 4 GiB, where a length kept in 32 bits
 * anywhere on the way (a frame header, a DWORD transfer size, an int in a
 * loop) would wrap: 2^32 + 1 bytes would arrive as 1.  At the peak the
 * parent and the worker each hold an argument and a result, about 16 GiB,
 * so the test skips with less than 20 GiB free.  CTest runs it with
 * RUN_SERIAL, never next to test_large.
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

#define GIB ((uint64_t)1 << 30)
#define NEEDED (20 * GIB)

static void test_large_4gib_plus_one_roundtrip(void **state) {
  uint64_t avail = pp_test_mem_available();
  uint64_t want = 4 * GIB + 1;
  size_t len;
  pp_pool_options_t o;
  pp_pool_t *pool = NULL;
  pp_call_options_t co;
  pp_future_t *f = NULL;
  pp_result_t r;
  apr_time_t t0;
  void *arg;
  (void)state;
  if (sizeof(size_t) < 8) {
    print_message("skipped: a 4 GiB buffer needs a 64-bit build\n");
    skip();
  }
  if (avail < NEEDED) {
    print_message("skipped: %.1f GiB of memory available, the test needs "
                  "%.0f GiB\n",
                  (double)avail / (double)GIB, (double)NEEDED / (double)GIB);
    skip();
  }
  len = (size_t)want;
  arg = malloc(len);
  assert_non_null(arg);
  pp_test_fill(arg, len, PP_TEST_SEED_IN);

  memset(&o, 0, sizeof(o));
  o.workers = 1;
  PP_TEST_OK(pp_pool_create(&pool, &o));
  memset(&co, 0, sizeof(co));
  /* Borrowed, so the parent does not hold a second copy. */
  co.borrow_arg = 1;
  t0 = apr_time_now();
  assert_int_equal(pp_pool_submit(pool, "big", arg, len, &co, &f), 0);
  assert_int_equal(pp_future_wait(f, -1), 0);
  assert_int_equal(pp_future_take(f, &r), 0);
  pp_future_free(f);
  free(arg);
  if (r.status != 0)
    fail_msg("big call failed: %s: %s", pp_err_name(r.status),
             r.message ? r.message : "");
  print_message("4 GiB + 1 byte each way in %.1f s\n",
                (double)(apr_time_now() - t0) / 1e6);
  assert_true(r.len == len);
  assert_true(pp_test_check(r.data, r.len, PP_TEST_SEED_OUT) == len);
  pp_results_free(&r, 1);
  assert_int_equal(pp_pool_destroy(pool, PP_DESTROY_WAIT), 0);
}

int main(int argc, char **argv) {
  int rc;
  if (pp_worker_main(argc, argv, pp_test_tasks, &rc))
    return rc;
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_large_4gib_plus_one_roundtrip),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
