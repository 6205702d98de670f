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

#include "helpers.h"
#include "tasks.h"

#define GIB ((uint64_t)1 << 30)
#define NEEDED (20 * GIB)

static void test_large_4gib_plus_one_roundtrip(void **state) {
  (void)state;
  pp_test_big_roundtrip(4 * GIB + 1, NEEDED, "4 GiB + 1 byte");
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
