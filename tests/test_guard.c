/*
 * test_guard.c - a program without the worker guard (noguard.c) gets a clear
 * error instead of a storm of processes (issue 7, item 6).
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

#ifndef PP_TEST_NOGUARD
#error "PP_TEST_NOGUARD must name the noguard program (set by CMake)"
#endif

static void test_guard_missing_guard_is_reported(void **state) {
  char out[4096];
  int code;
  (void)state;
  pp_test_setenv("PP_TEST_NOGUARD_GEN", NULL);
  code = pp_test_run_limit(PP_TEST_NOGUARD, "", 120000, out, sizeof(out));
  print_message("noguard: exit %d, said: %s", code, out);
  /* No generation got as far as the test's own cap... */
  assert_null(strstr(out, "storm"));
  /* ...because the workers refused, and the parent says why. */
  assert_int_equal(code, 1);
  assert_non_null(strstr(out, "create: PP_ESPAWN"));
  assert_non_null(strstr(out, "pp_worker_main"));
}

int main(int argc, char **argv) {
  int rc;
  if (pp_worker_main(argc, argv, pp_test_tasks, &rc))
    return rc;
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_guard_missing_guard_is_reported),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
