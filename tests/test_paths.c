/*
 * test_paths.c - a program installed under a path with spaces and
 * non-ASCII characters can still start its workers (issue 3).
 *
 * Workers are the program itself, started again by its own path, so that
 * path travels from the system (readlink of /proc/self/exe,
 * GetModuleFileNameW) through procpool's UTF-8 strings into posix_spawn or
 * a quoted CreateProcessW command line.  A space that is not quoted, or a
 * conversion through the ANSI code page, would break it.  The test copies
 * itself into "procpool tëst ✓ dir" under its working directory (the build
 * tree) as "tëst copy ✓", runs the copy with --paths-child, and the copy
 * runs a small map on a pool and reports the sum.
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

#define CHILD_ARG "--paths-child"
/* UTF-8: e with diaeresis (U+00EB) and a check mark (U+2713, outside every
 * Windows ANSI code page). */
#define DIR_NAME "procpool t\xc3\xabst \xe2\x9c\x93 dir"
#define EXE_NAME "t\xc3\xabst copy \xe2\x9c\x93"
#ifdef _WIN32
#define SEP "\\"
#else
#define SEP "/"
#endif

/* The copy's role: a pool, a map, the sum of squares 1..10 on stdout. */
static int child_main(void) {
  pp_pool_options_t o;
  pp_pool_t *pool = NULL;
  pp_buf_t args[10];
  pp_result_t res[10];
  int64_t sum = 0, pids[2] = {0, 0};
  int i, rc;
  memset(&o, 0, sizeof(o));
  o.workers = 2;
  if (pp_pool_create(&pool, &o) != 0) {
    printf("paths child: pp_pool_create: %s\n", pp_last_error());
    return 1;
  }
  pp_pool_worker_pids(pool, pids, 2);
  for (i = 0; i < 10; i++)
    args[i] = pp_test_pack_int(i + 1);
  rc = pp_pool_map(pool, "square", args, 10, res, NULL);
  for (i = 0; i < 10; i++)
    sum += pp_test_int_result(&res[i]);
  pp_results_free(res, 10);
  pp_test_free_bufs(args, 10);
  pp_pool_destroy(pool, PP_DESTROY_WAIT);
  if (rc != 0) {
    printf("paths child: map: %s\n", pp_strerror(rc));
    return 1;
  }
  printf("paths child ok %lld (workers %lld %lld)\n", (long long)sum,
         (long long)pids[0], (long long)pids[1]);
  return 0;
}

static void test_paths_unicode_dir_with_spaces(void **state) {
  char cwd[2048], dir[4096], exe[4096], out[1024];
  int code;
  (void)state;
  assert_int_equal(pp_test_getcwd(cwd, sizeof(cwd)), 0);
  snprintf(dir, sizeof(dir), "%s%s%s", cwd, SEP, DIR_NAME);
  assert_int_equal(pp_test_copy_self(dir, EXE_NAME, exe, sizeof(exe)), 0);
  print_message("running %s\n", exe);
  code = pp_test_run(exe, CHILD_ARG, out, sizeof(out));
  print_message("exit code %d, output: %s", code, out);
  /* Removed before the checks, so that a failure leaves nothing behind. */
  pp_test_remove_file(exe);
  pp_test_remove_dir(dir);
  assert_int_equal(code, 0);
  assert_non_null(strstr(out, "paths child ok 385"));
}

int main(int argc, char **argv) {
  int rc;
  if (pp_worker_main(argc, argv, pp_test_tasks, &rc))
    return rc;
  if (argc > 1 && strcmp(argv[1], CHILD_ARG) == 0)
    return child_main();
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_paths_unicode_dir_with_spaces),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
