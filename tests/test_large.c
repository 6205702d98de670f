/*
 * test_large.c - a 3 GiB argument and a 3 GiB result in one call (label
 * `large`).
 *
 * Frames carry 64-bit lengths and channel I/O is cut into pieces of at most
 * 1 GiB, because several systems refuse or truncate single transfers above
 * 2 GiB.  Only a payload above that size shows that this works.  At the
 * peak the parent holds the argument and the result and the worker holds
 * one of each, so the test wants about 14 GiB free and skips otherwise.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "helpers.h"
#include "tasks.h"

#define GIB ((uint64_t)1 << 30)
#define NEEDED (14 * GIB)

static void test_large_3gib_roundtrip(void **state) {
  uint64_t avail = pp_test_mem_available();
  size_t len;
  pp_pool_options_t o;
  pp_pool_t *pool = NULL;
  pp_call_options_t co;
  pp_future_t *f = NULL;
  pp_result_t r;
  void *arg;
  (void)state;
  if (sizeof(size_t) < 8) {
    print_message("skipped: a 3 GiB buffer needs a 64-bit build\n");
    skip();
  }
  if (avail < NEEDED) {
    print_message("skipped: %.1f GiB of memory available, the test needs "
                  "%.0f GiB\n",
                  (double)avail / (double)GIB, (double)NEEDED / (double)GIB);
    skip();
  }
  /* 3 GiB and a few odd bytes, so no piece boundary is a round number. */
  len = (size_t)(3 * GIB + 13);
  arg = malloc(len);
  assert_non_null(arg);
  pp_test_fill(arg, len, PP_TEST_SEED_IN);

  memset(&o, 0, sizeof(o));
  o.workers = 1;
  PP_TEST_OK(pp_pool_create(&pool, &o));
  memset(&co, 0, sizeof(co));
  /* Borrowed, so the parent does not hold a second copy. */
  co.borrow_arg = 1;
  assert_int_equal(pp_pool_submit(pool, "big", arg, len, &co, &f), 0);
  assert_int_equal(pp_future_wait(f, -1), 0);
  assert_int_equal(pp_future_take(f, &r), 0);
  pp_future_free(f);
  free(arg);
  if (r.status != 0)
    fail_msg("big call failed: %s: %s", pp_err_name(r.status),
             r.message ? r.message : "");
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
      cmocka_unit_test(test_large_3gib_roundtrip),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
