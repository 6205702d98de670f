/*
 * test_host.c - the worker-host mode: the workers are the procpool-worker
 * program, which loads a task library (tasklib.c) by path, for programs
 * that cannot put the worker guard in their own main().
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

#ifndef PP_TEST_TASKLIB
#error "PP_TEST_TASKLIB must name the task library (set by CMake)"
#endif
#ifndef PP_TEST_NOARGV
#error "PP_TEST_NOARGV must name pp_test_noargv (set by CMake)"
#endif
#ifndef PP_TEST_WORKER_HOST
#error "PP_TEST_WORKER_HOST must name procpool-worker (set by CMake)"
#endif

static pp_pool_t *make_host_pool(int workers) {
  pp_pool_options_t o;
  pp_pool_t *pool = NULL;
  memset(&o, 0, sizeof(o));
  o.workers = workers;
  o.task_library = PP_TEST_TASKLIB;
  o.worker_exe = PP_TEST_WORKER_HOST;
  if (pp_pool_create(&pool, &o) != 0)
    fail_msg("pp_pool_create: %s", pp_last_error());
  return pool;
}

static void test_host_map_runs_library_tasks(void **state) {
  enum { N = 200 };
  pp_pool_t *pool = make_host_pool(2);
  pp_buf_t args[N];
  pp_result_t res[N];
  size_t i;
  (void)state;
  for (i = 0; i < N; i++)
    args[i] = pp_test_pack_int((int64_t)i);
  assert_int_equal(pp_pool_starmap(pool, "lib_square", args, N, res, NULL), 0);
  for (i = 0; i < N; i++)
    assert_true(pp_test_int_result(&res[i]) == (int64_t)(i * i));
  pp_results_free(res, N);
  pp_test_free_bufs(args, N);

  args[0].data = "Hello, host!";
  args[0].len = 12;
  assert_int_equal(pp_pool_map(pool, "lib_upper", args, 1, res, NULL), 0);
  assert_int_equal(res[0].len, 12);
  assert_memory_equal(res[0].data, "HELLO, HOST!", 12);
  pp_results_free(res, 1);

  args[0].data = "nope";
  args[0].len = 4;
  assert_int_equal(pp_pool_map(pool, "lib_fail", args, 1, res, NULL), PP_ETASK);
  assert_string_equal(res[0].message, "lib_fail: nope");
  pp_results_free(res, 1);
  assert_int_equal(pp_pool_destroy(pool, PP_DESTROY_WAIT), 0);
}

/* A task library's printf reaches the log callback as the call's output,
 * before the call's result, though the task does not flush: the library
 * and the worker share one C runtime, whose stdout the worker flushes at
 * the end of each call (README, "One C runtime"; a /MT library would have
 * a stdout of its own, and its line would come late or never). */
static void test_host_library_output_is_the_calls(void **state) {
  pp_test_log_t *log = pp_test_log_new();
  pp_pool_options_t o;
  pp_pool_t *pool = NULL;
  pp_buf_t arg = {"one", 3};
  pp_result_t r;
  pp_test_record_t rec;
  int64_t id = 0;
  (void)state;
  memset(&o, 0, sizeof(o));
  o.workers = 1;
  o.task_library = PP_TEST_TASKLIB;
  o.worker_exe = PP_TEST_WORKER_HOST;
  o.log_cb = pp_test_log_cb;
  o.log_data = log;
  PP_TEST_OK(pp_pool_create(&pool, &o));
  PP_TEST_OK(pp_pool_map(pool, "lib_print", &arg, 1, &r, NULL));
  assert_int_equal(pp_unpack(r.data, r.len, "i", &id), 0);
  pp_results_free(&r, 1);
  /* Already there when the map returned: no wait. */
  if (!pp_test_log_wait(log, "lib_print one", 0, &rec))
    fail_msg("the task library's line was not in the log when its call "
             "returned (%d records)",
             (int)pp_test_log_count(log));
  assert_int_equal(rec.source, PP_LOG_STDOUT);
  assert_true(rec.call_id == (uint64_t)id);
  assert_int_equal(pp_pool_destroy(pool, PP_DESTROY_WAIT), 0);
  pp_test_log_free(log);
}

/* The tasks ran in the host's workers, not in this process. */
static void test_host_tasks_run_in_workers(void **state) {
  pp_pool_t *pool = make_host_pool(1);
  pp_buf_t none = {NULL, 0};
  pp_result_t r;
  int64_t pid = 0;
  (void)state;
  assert_int_equal(pp_pool_map(pool, "lib_worker", &none, 1, &r, NULL), 0);
  assert_true(pp_test_int_result(&r) == 0);
  pp_results_free(&r, 1);
  assert_int_equal(pp_pool_worker_pids(pool, &pid, 1), 1);
  assert_true(pid != pp_test_self_pid());
  assert_int_equal(pp_pool_destroy(pool, PP_DESTROY_WAIT), 0);
  assert_false(pp_test_pid_alive(pid));
}

/* Names are checked against the library's table, not the test's own. */
static void test_host_names_come_from_the_library(void **state) {
  pp_pool_t *pool = make_host_pool(1);
  pp_buf_t b = pp_test_pack_int(3);
  pp_future_t *f = NULL;
  (void)state;
  assert_int_equal(pp_pool_submit(pool, "square", b.data, b.len, NULL, &f),
                   PP_ENOTASK);
  assert_null(f);
  pp_free((void *)b.data);
  assert_int_equal(pp_pool_destroy(pool, PP_DESTROY_WAIT), 0);
}

static void test_host_missing_library_is_edso(void **state) {
  pp_pool_options_t o;
  pp_pool_t *pool = NULL;
  (void)state;
  memset(&o, 0, sizeof(o));
  o.workers = 1;
  o.task_library = "/nonexistent/libprocpool-no-such-tasks.so";
  o.worker_exe = PP_TEST_WORKER_HOST;
  assert_int_equal(pp_pool_create(&pool, &o), PP_EDSO);
  assert_null(pool);
  assert_non_null(strstr(pp_last_error(), "libprocpool-no-such-tasks"));
}

/* A library without the PP_TASK_LIBRARY export is refused by name: the
 * test executable itself has no procpool_task_table. */
static void test_host_library_without_table_is_edso(void **state) {
  pp_pool_options_t o;
  pp_pool_t *pool = NULL;
  (void)state;
  memset(&o, 0, sizeof(o));
  o.workers = 1;
  o.task_library = PP_TEST_WORKER_HOST;
  o.worker_exe = PP_TEST_WORKER_HOST;
  assert_int_equal(pp_pool_create(&pool, &o), PP_EDSO);
  assert_null(pool);
}

#ifdef _WIN32
#define SEP "\\"
#define LIB_NAME "tasks.dll"
#else
#define SEP "/"
#define LIB_NAME "tasks.so"
#endif

/* Runs lib_square(7) in the pool and checks the answer. */
static void check_square(pp_pool_t *pool) {
  pp_buf_t b = pp_test_pack_int(7);
  pp_result_t r;
  PP_TEST_OK(pp_pool_map(pool, "lib_square", &b, 1, &r, NULL));
  assert_true(pp_test_int_result(&r) == 49);
  pp_results_free(&r, 1);
  pp_free((void *)b.data);
}

/* A task library in a folder whose name is not ASCII, named by a relative
 * path: the worker reads its arguments as UTF-8 (Windows: from the wide
 * command line, not the ANSI argv), and the parent makes the path absolute
 * (issue 8, item 7). */
static void test_host_library_in_a_unicode_folder(void **state) {
  /* "Zoë-日本" in UTF-8. */
  char dir[256], lib[512];
  pp_pool_options_t o;
  pp_pool_t *pool = NULL;
  (void)state;
  snprintf(dir, sizeof(dir), "pp-host-Zo\xc3\xab-\xe6\x97\xa5\xe6\x9c\xac-%lld",
           (long long)pp_test_self_pid());
  snprintf(lib, sizeof(lib), "%s" SEP LIB_NAME, dir);
  assert_int_equal(pp_test_make_dir(dir), 0);
  assert_int_equal(pp_test_copy_file(PP_TEST_TASKLIB, lib), 0);
#ifdef PP_TEST_PROCPOOL_DLL
  {
    /* Windows looks for a library's DLLs beside it first. */
    char dll[512];
    snprintf(dll, sizeof(dll), "%s" SEP "%s", dir, PP_TEST_PROCPOOL_DLL_NAME);
    assert_int_equal(pp_test_copy_file(PP_TEST_PROCPOOL_DLL, dll), 0);
  }
#endif
  memset(&o, 0, sizeof(o));
  o.workers = 1;
  o.task_library = lib;
  o.worker_exe = PP_TEST_WORKER_HOST;
  PP_TEST_OK(pp_pool_create(&pool, &o));
  check_square(pool);
  assert_int_equal(pp_pool_destroy(pool, PP_DESTROY_WAIT), 0);
  pp_test_remove_file(lib);
#ifdef PP_TEST_PROCPOOL_DLL
  {
    char dll[512];
    snprintf(dll, sizeof(dll), "%s" SEP "%s", dir, PP_TEST_PROCPOOL_DLL_NAME);
    pp_test_remove_file(dll);
  }
#endif
  pp_test_remove_dir(dir);
}

#ifdef _WIN32
#define HOST_NAME "host.exe"
#else
#define HOST_NAME "host"
#endif

/* The worker host named by PROCPOOL_WORKER_EXE, in a folder whose name is
 * not ASCII: the parent reads the variable in UTF-16 on Windows, not in the
 * ANSI code page, which has no CJK character (issue 18, item 14). */
static void test_host_worker_exe_env_in_a_unicode_folder(void **state) {
  /* "é-中" in UTF-8. */
  char dir[256], host[512];
  pp_pool_options_t o;
  pp_pool_t *pool = NULL;
  int rc;
  (void)state;
  snprintf(dir, sizeof(dir), "pp-hostenv-\xc3\xa9-\xe4\xb8\xad-%lld",
           (long long)pp_test_self_pid());
  snprintf(host, sizeof(host), "%s" SEP HOST_NAME, dir);
  assert_int_equal(pp_test_make_dir(dir), 0);
  assert_int_equal(pp_test_copy_file(PP_TEST_WORKER_HOST, host), 0);
#ifdef PP_TEST_PROCPOOL_DLL
  {
    /* The host loads procpool.dll from its own folder. */
    char dll[512];
    snprintf(dll, sizeof(dll), "%s" SEP "%s", dir, PP_TEST_PROCPOOL_DLL_NAME);
    assert_int_equal(pp_test_copy_file(PP_TEST_PROCPOOL_DLL, dll), 0);
  }
#endif
  pp_test_setenv("PROCPOOL_WORKER_EXE", host);
  memset(&o, 0, sizeof(o));
  o.workers = 1;
  o.task_library = PP_TEST_TASKLIB;
  rc = pp_pool_create(&pool, &o);
  pp_test_setenv("PROCPOOL_WORKER_EXE", NULL);
  if (rc != 0)
    fail_msg("pp_pool_create with PROCPOOL_WORKER_EXE=%s: %s", host,
             pp_last_error());
  check_square(pool);
  assert_int_equal(pp_pool_destroy(pool, PP_DESTROY_WAIT), 0);
  pp_test_remove_file(host);
#ifdef PP_TEST_PROCPOOL_DLL
  {
    char dll[512];
    snprintf(dll, sizeof(dll), "%s" SEP "%s", dir, PP_TEST_PROCPOOL_DLL_NAME);
    pp_test_remove_file(dll);
  }
#endif
  pp_test_remove_dir(dir);
}

/* A worker whose main() has no narrow argv (wmain) can still use the
 * guard: it passes argv NULL (issue 8, item 7). */
static void test_host_guard_without_argv(void **state) {
#ifdef _WIN32
  pp_pool_options_t o;
  pp_pool_t *pool = NULL;
  pp_buf_t b = pp_test_pack_int(6);
  pp_result_t r;
  (void)state;
  pp_test_pool_options(&o, 1, 0, 0, NULL);
  o.worker_exe = PP_TEST_NOARGV;
  PP_TEST_OK(pp_pool_create(&pool, &o));
  PP_TEST_OK(pp_pool_map(pool, "square", &b, 1, &r, NULL));
  assert_true(pp_test_int_result(&r) == 36);
  pp_results_free(&r, 1);
  pp_free((void *)b.data);
  assert_int_equal(pp_pool_destroy(pool, PP_DESTROY_WAIT), 0);
#else
  (void)state;
  print_message("skipped: POSIX programs always have an argv\n");
  skip();
#endif
}

/* A worker host that cannot load procpool.dll (copied without it) fails
 * to start with a message that says so, and no error box holds it up
 * (issue 8, items 4 and 6). */
static void test_host_missing_dll_is_named(void **state) {
#ifdef _WIN32
  char dir[256], host[512];
  pp_pool_options_t o;
  pp_pool_t *pool = NULL;
  (void)state;
  snprintf(dir, sizeof(dir), "pp-host-nodll-%lld",
           (long long)pp_test_self_pid());
  snprintf(host, sizeof(host), "%s" SEP "procpool-worker.exe", dir);
  assert_int_equal(pp_test_make_dir(dir), 0);
  assert_int_equal(pp_test_copy_file(PP_TEST_WORKER_HOST, host), 0);
  memset(&o, 0, sizeof(o));
  o.workers = 1;
  o.task_library = PP_TEST_TASKLIB;
  o.worker_exe = host;
  assert_int_equal(pp_pool_create(&pool, &o), PP_ESPAWN);
  print_message("create failed: %s\n", pp_last_error());
  assert_non_null(strstr(pp_last_error(), "a DLL it needs was not found"));
  assert_non_null(strstr(pp_last_error(), "0xC0000135"));
  assert_null(pool);
  pp_test_remove_file(host);
  pp_test_remove_dir(dir);
#else
  (void)state;
  print_message("skipped: the Windows loader's exit status\n");
  skip();
#endif
}

int main(int argc, char **argv) {
  int rc;
  if (pp_worker_main(argc, argv, pp_test_tasks, &rc))
    return rc;
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_host_map_runs_library_tasks),
      cmocka_unit_test(test_host_tasks_run_in_workers),
      cmocka_unit_test(test_host_library_output_is_the_calls),
      cmocka_unit_test(test_host_names_come_from_the_library),
      cmocka_unit_test(test_host_missing_library_is_edso),
      cmocka_unit_test(test_host_library_without_table_is_edso),
      cmocka_unit_test(test_host_library_in_a_unicode_folder),
      cmocka_unit_test(test_host_worker_exe_env_in_a_unicode_folder),
      cmocka_unit_test(test_host_guard_without_argv),
      cmocka_unit_test(test_host_missing_dll_is_named),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
