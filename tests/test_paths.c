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
 *
 * Paths longer than Windows' MAX_PATH (260 characters; issue 18, item 6):
 * CreateProcessW starts nothing while the current directory is longer than
 * MAX_PATH - 2, and no program whose own path is MAX_PATH or longer.  A
 * copy of this program that descends into a directory of some 450
 * characters still starts workers, and a task there opens a file by a
 * relative name (so the worker runs in that same directory); and a copy of
 * this program in such a directory serves as a pool's worker_exe.  Wine
 * lets a program make so long a directory current; Windows only when the
 * program is long-path aware (this one is not: the case skips itself).
 */
#include <errno.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#ifdef _WIN32
#include <wchar.h>
#include <windows.h>
#else
#include <sys/stat.h>
#include <unistd.h>
#endif

#include "helpers.h"

#define CHILD_ARG "--paths-child"
#define LONG_CWD_ARG "--long-cwd-child"
/* 15 levels of 30 characters: some 465 characters below the build tree. */
#define LONG_LEVELS 15
#define LONG_NAME "long-directory-name-0123456789"
#define LONG_FILE "pp-long-cwd.txt"
/* The child's exit code for "this system does not allow it". */
#define SKIP_CODE 77
/* UTF-8: e with diaeresis (U+00EB) and a check mark (U+2713, outside every
 * Windows ANSI code page). */
#define DIR_NAME "procpool t\xc3\xabst \xe2\x9c\x93 dir"
#define EXE_NAME "t\xc3\xabst copy \xe2\x9c\x93"
#ifdef _WIN32
#define SEP "\\"
#else
#define SEP "/"
#endif

/* The workers' tasks: this program's own table, so that a copy of it is a
 * worker of the same build. */
static int square(pp_call_t *call, const void *arg, size_t len) {
  int64_t x;
  if (pp_unpack(arg, len, "i", &x) != 0)
    return pp_call_fail(call, "square wants one int64");
  return pp_call_replyf(call, "i", x * x);
}

/* 1 if LONG_FILE opens by its relative name in the worker's current
 * directory, else 0. */
static int here(pp_call_t *call, const void *arg, size_t len) {
  FILE *f = fopen(LONG_FILE, "r");
  (void)arg, (void)len;
  if (f != NULL)
    fclose(f);
  return pp_call_replyf(call, "i", (int64_t)(f != NULL));
}

static const pp_task_t tasks[] = {PP_TASK(square), PP_TASK(here), PP_TASK_END};

/* A map of square over 1..10 on `pool`: the sum, or -1. */
static int64_t sum_of_squares(pp_pool_t *pool) {
  pp_buf_t args[10];
  pp_result_t res[10];
  int64_t sum = 0;
  int i, rc;
  for (i = 0; i < 10; i++)
    args[i] = pp_test_pack_int(i + 1);
  rc = pp_pool_map(pool, "square", args, 10, res, NULL);
  for (i = 0; i < 10; i++)
    sum += pp_test_int_result(&res[i]);
  if (rc != 0)
    printf("map: %s: %s\n", pp_strerror(rc),
           res[0].message != NULL ? res[0].message : "");
  pp_results_free(res, 10);
  pp_test_free_bufs(args, 10);
  return rc == 0 ? sum : -1;
}

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

/* Into (down 1) or out of (down 0, removing it) LONG_NAME, relative to
 * the current directory; 0 or -1. */
static int long_step(int down) {
#ifdef _WIN32
  if (down)
    return (CreateDirectoryW(L"" LONG_NAME, NULL) ||
            GetLastError() == ERROR_ALREADY_EXISTS) &&
                   SetCurrentDirectoryW(L"" LONG_NAME)
               ? 0
               : -1;
  return SetCurrentDirectoryW(L"..") && RemoveDirectoryW(L"" LONG_NAME) ? 0
                                                                        : -1;
#else
  if (down)
    return (mkdir(LONG_NAME, 0755) == 0 || errno == EEXIST) &&
                   chdir(LONG_NAME) == 0
               ? 0
               : -1;
  return chdir("..") == 0 && rmdir(LONG_NAME) == 0 ? 0 : -1;
#endif
}

/* The length of the current directory's path, or -1. */
static long cwd_length(void) {
#ifdef _WIN32
  DWORD n = GetCurrentDirectoryW(0, NULL);
  return n > 0 ? (long)n - 1 : -1;
#else
  char buf[8192];
  return getcwd(buf, sizeof(buf)) != NULL ? (long)strlen(buf) : -1;
#endif
}

/* The long-directory copy's role: down LONG_LEVELS levels, a pool there, a
 * map and a task that opens LONG_FILE by its relative name; then back up,
 * removing what it made. */
static int long_cwd_main(void) {
  pp_pool_options_t o;
  pp_pool_t *pool = NULL;
  pp_future_t *f = NULL;
  pp_result_t r;
  int64_t sum = -1, found = -1;
  int levels = 0, rc = 1;
  FILE *file;
  while (levels < LONG_LEVELS && long_step(1) == 0)
    levels++;
  if (levels < LONG_LEVELS) {
    printf("long cwd child: cannot make a directory %ld characters long "
           "current on this system\n",
           cwd_length());
    rc = SKIP_CODE;
    goto cleanup;
  }
  printf("long cwd child: the current directory is %ld characters long\n",
         cwd_length());
  file = fopen(LONG_FILE, "w");
  if (file == NULL) {
    printf("long cwd child: cannot create %s\n", LONG_FILE);
    goto cleanup;
  }
  fclose(file);
  memset(&o, 0, sizeof(o));
  o.workers = 2;
  if (pp_pool_create(&pool, &o) != 0) {
    printf("long cwd child: pp_pool_create: %s\n", pp_last_error());
    goto cleanup;
  }
  sum = sum_of_squares(pool);
  if (pp_pool_submit(pool, "here", NULL, 0, NULL, &f) == 0 &&
      pp_future_wait(f, -1) == 0 && pp_future_take(f, &r) == 0) {
    found = r.status == 0 ? pp_test_int_result(&r) : -1;
    pp_results_free(&r, 1);
  }
  pp_future_free(f);
  pp_pool_destroy(pool, PP_DESTROY_WAIT);
  printf("long cwd child: sum %lld, file found %lld\n", (long long)sum,
         (long long)found);
  rc = sum == 385 && found == 1 ? 0 : 1;

cleanup:
  remove(LONG_FILE);
  while (levels > 0 && long_step(0) == 0)
    levels--;
  return rc;
}

static void test_paths_long_current_directory(void **state) {
  char self[4096], out[2048];
  int code;
  (void)state;
#ifdef _WIN32
  if (GetModuleFileNameA(NULL, self, sizeof(self)) == 0)
    fail_msg("GetModuleFileNameA");
#else
  snprintf(self, sizeof(self), "%s", "/proc/self/exe");
  {
    ssize_t n = readlink("/proc/self/exe", self, sizeof(self) - 1);
    if (n > 0)
      self[n] = '\0';
  }
#endif
  code = pp_test_run(self, LONG_CWD_ARG, out, sizeof(out));
  print_message("exit code %d, output:\n%s", code, out);
  if (code == SKIP_CODE) {
    print_message("skipped: this system does not let a program make so "
                  "long a directory current\n");
    skip();
  }
  assert_int_equal(code, 0);
  assert_non_null(strstr(out, "sum 385, file found 1"));
}

/* A worker_exe whose path is longer than MAX_PATH: the pool starts it (by
 * its short name under Wine) or fails with a sentence, and does not hang.
 * POSIX has no such limit: skipped there. */
static void test_paths_long_worker_exe(void **state) {
  (void)state;
#ifndef _WIN32
  print_message("skipped: MAX_PATH is a Windows limit\n");
  skip();
#else
  WCHAR self[MAX_PATH], dir[2048], exe[2100];
  char exe8[4200];
  pp_pool_options_t o;
  pp_pool_t *pool = NULL;
  int levels = 0, i, rc;
  int64_t sum = -1;
  assert_true(GetModuleFileNameW(NULL, self, MAX_PATH) > 0);
  /* "\\?\" and the build tree, then the levels. */
  wcscpy(dir, L"\\\\?\\");
  assert_true(GetCurrentDirectoryW(1000, dir + 4) > 0);
  for (i = 0; i < LONG_LEVELS; i++) {
    wcscat(dir, L"\\" LONG_NAME);
    if (!CreateDirectoryW(dir, NULL) && GetLastError() != ERROR_ALREADY_EXISTS)
      break;
    levels++;
  }
  swprintf(exe, sizeof(exe) / sizeof(WCHAR), L"%ls\\worker copy.exe", dir);
  if (levels == LONG_LEVELS && CopyFileW(self, exe, FALSE)) {
    /* Given as a plain path (no "\\?\"), as a user would. */
    WideCharToMultiByte(CP_UTF8, 0, exe + 4, -1, exe8, sizeof(exe8), NULL,
                        NULL);
    print_message("worker_exe is %lu characters long\n",
                  (unsigned long)strlen(exe8));
    memset(&o, 0, sizeof(o));
    o.workers = 2;
    o.worker_exe = exe8;
    o.start_timeout_ms = PP_TEST_MS(30000);
    rc = pp_pool_create(&pool, &o);
    print_message("pp_pool_create: %s%s%s\n", pp_err_name(rc),
                  rc != 0 ? ": " : "", rc != 0 ? pp_last_error() : "");
    if (rc == 0) {
      sum = sum_of_squares(pool);
      pp_pool_destroy(pool, PP_DESTROY_WAIT);
    }
    DeleteFileW(exe);
  } else {
    rc = -1000;
  }
  for (; levels > 0; levels--) {
    RemoveDirectoryW(dir);
    *wcsrchr(dir, L'\\') = L'\0';
  }
  assert_true(rc != -1000); /* the copy was made */
  assert_int_equal(rc, 0);
  assert_int_equal(sum, 385);
#endif
}

int main(int argc, char **argv) {
  int rc;
  if (pp_worker_main(argc, argv, tasks, &rc))
    return rc;
  if (argc > 1 && strcmp(argv[1], CHILD_ARG) == 0)
    return child_main();
  if (argc > 1 && strcmp(argv[1], LONG_CWD_ARG) == 0)
    return long_cwd_main();
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_paths_unicode_dir_with_spaces),
      cmocka_unit_test(test_paths_long_current_directory),
      cmocka_unit_test(test_paths_long_worker_exe),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
