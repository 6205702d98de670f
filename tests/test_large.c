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
  (void)state;
  /* 3 GiB and a few odd bytes, so no piece boundary is a round number. */
  pp_test_big_roundtrip(3 * GIB + 13, NEEDED, "3 GiB");
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
