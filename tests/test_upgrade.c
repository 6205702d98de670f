/*
 * test_upgrade.c - the program or task library is deleted or replaced on
 * disk while a pool runs, as an upgrade does (issue 7, item 9), and workers
 * that never say hello.
 *
 *   - Linux starts every worker from the file as it was at pp_pool_create()
 *     (held open), so deleting or replacing it changes nothing;
 *   - a worker of another build (Windows, where a running program can be
 *     renamed and replaced; a task library anywhere) is refused, and the
 *     pool's healthy workers keep serving;
 *   - a start that never says hello is bounded, and destroy does not wait
 *     for it.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#ifndef _WIN32
#include <sys/stat.h>
#endif

#include <cmocka.h>

#include <apr_time.h>

#include "helpers.h"
#include "tasks.h"

#if !defined(PP_TEST_TASKLIB) || !defined(PP_TEST_TASKLIB2) ||                 \
    !defined(PP_TEST_WORKER_HOST) || !defined(PP_TEST_OTHER_EXE) ||            \
    !defined(PP_TEST_SLEEPER) || !defined(PP_TEST_MUTE)
#error "the PP_TEST_* paths must be set by CMake"
#endif

#ifdef _WIN32
#define SEP "\\"
#define LIB_NAME "tasks.dll"
#else
#define SEP "/"
#define LIB_NAME "tasks.so"
#endif

static const char *self_exe;

/* A scratch folder of this process under the current directory. */
static void scratch_dir(const char *what, char *dir, size_t cap) {
  char cwd[1024];
  assert_int_equal(pp_test_getcwd(cwd, sizeof(cwd)), 0);
  snprintf(dir, cap, "%s" SEP "pp-upgrade-%s-%lld", cwd, what,
           (long long)pp_test_self_pid());
}

static pp_result_t run_int(pp_pool_t *pool, const char *task, int64_t v) {
  pp_buf_t b = pp_test_pack_int(v);
  pp_future_t *f = NULL;
  pp_result_t r;
  PP_TEST_OK(pp_pool_submit(pool, task, b.data, b.len, NULL, &f));
  assert_int_equal(pp_future_wait(f, PP_TEST_MS(60000)), 0);
  assert_int_equal(pp_future_take(f, &r), 0);
  pp_future_free(f);
  pp_free((void *)b.data);
  return r;
}

/* Waits until the pool has tried to start at least `n` workers. */
static void wait_started(pp_pool_t *pool, uint64_t n) {
  pp_pool_stats_t st;
  int64_t i;
  for (i = 0; i < PP_TEST_MS(3000); i++) {
    PP_TEST_OK(pp_pool_stats(pool, &st));
    if (st.workers_started >= n)
      return;
    pp_test_sleep_ms(10);
  }
  fail_msg("only %llu of %llu workers were started",
           (unsigned long long)st.workers_started, (unsigned long long)n);
}

/* ---- the program replaced under a running pool (a child run) ---- */

/* Runs in a copy of this program: a one-worker pool that replaces its
 * worker after every call; the copy is then renamed away and another
 * build put in its place, and three more calls run.  Prints what they
 * gave. */
static int replaced_main(const char *me, const char *other) {
  pp_pool_options_t o;
  pp_pool_t *pool = NULL;
  char old[4096];
  int i, ok = 0, refused = 0, other_status = 0;
  pp_test_pool_options(&o, 1, 0, 0, NULL);
  o.max_calls_per_worker = 1;
  if (pp_pool_create(&pool, &o) != 0) {
    printf("create: %s\n", pp_last_error());
    return 1;
  }
  for (i = 0; i < 2; i++) {
    pp_result_t r = run_int(pool, "square", i);
    ok += r.status == 0;
    pp_results_free(&r, 1);
  }
  snprintf(old, sizeof(old), "%s.old", me);
  if (pp_test_rename(me, old) != 0 || pp_test_copy_file(other, me) != 0) {
    printf("cannot replace %s\n", me);
    return 1;
  }
  for (i = 0; i < 3; i++) {
    pp_result_t r = run_int(pool, "square", i);
    ok += r.status == 0;
    if (r.status == PP_ESPAWN && strstr(r.message, "another build") != NULL)
      refused++;
    else if (r.status != 0)
      other_status = r.status;
    if (r.status != 0)
      printf("call: %s\n", r.message);
    pp_results_free(&r, 1);
  }
  pp_pool_destroy(pool, PP_DESTROY_WAIT);
  printf("replaced: ok %d refused %d other %d\n", ok, refused, other_status);
  return 0;
}

static void test_upgrade_program_replaced(void **state) {
  char dir[2048], prog[4096], old[4200], out[8192];
  int code, ok = -1, refused = -1, other = -1;
  const char *at;
  (void)state;
  scratch_dir("prog", dir, sizeof(dir));
  assert_int_equal(pp_test_copy_self(dir, "prog", prog, sizeof(prog)), 0);
  {
    char arg[8192];
    snprintf(arg, sizeof(arg), "--replaced \"%s\" \"%s\"", prog,
             PP_TEST_OTHER_EXE);
    /* pp_test_run passes one argument; the child splits it itself. */
    code = pp_test_run_limit(prog, arg, 120000, out, sizeof(out));
  }
  print_message("child: exit %d, said:\n%s", code, out);
  at = strstr(out, "replaced: ");
  assert_non_null(at);
  assert_int_equal(sscanf(at, "replaced: ok %d refused %d other %d", &ok,
                          &refused, &other),
                   3);
  assert_int_equal(code, 0);
  assert_int_equal(other, 0);
#if defined(__linux__)
  /* Workers start from the file held open since pp_pool_create(). */
  assert_int_equal(ok, 5);
  assert_int_equal(refused, 0);
#else
  /* The new file is another build: every start after the swap is refused,
   * and each call fails at once with that reason. */
  assert_int_equal(ok, 2);
  assert_int_equal(refused, 3);
#endif
  snprintf(old, sizeof(old), "%s.old", prog);
  pp_test_remove_file(prog);
  pp_test_remove_file(old);
  pp_test_remove_dir(dir);
}

/* ---- the program deleted under a running pool (Linux) ---- */

static int deleted_main(const char *me) {
  pp_pool_options_t o;
  pp_pool_t *pool = NULL;
  pp_buf_t args[20];
  pp_result_t res[20];
  int i, rc, ok = 0;
  pp_test_pool_options(&o, 2, 0, 0, NULL);
  o.max_calls_per_worker = 1;
  if (pp_pool_create(&pool, &o) != 0) {
    printf("create: %s\n", pp_last_error());
    return 1;
  }
  if (pp_test_remove_file(me) != 0) {
    printf("cannot delete %s\n", me);
    return 1;
  }
  for (i = 0; i < 20; i++)
    args[i] = pp_test_pack_int(i);
  rc = pp_pool_map(pool, "square", args, 20, res, NULL);
  for (i = 0; i < 20; i++)
    ok += res[i].status == 0 && pp_test_int_result(&res[i]) == (int64_t)i * i;
  if (rc != 0)
    printf("map: %s\n", res[0].message ? res[0].message : "");
  pp_results_free(res, 20);
  pp_test_free_bufs(args, 20);
  pp_pool_destroy(pool, PP_DESTROY_WAIT);
  printf("deleted: ok %d\n", ok);
  return 0;
}

/* Deletes itself first, then creates a pool and runs calls (issue 17,
 * item 15): Linux still runs the deleted program as /proc/self/exe. */
static int deleted_first_main(const char *me) {
  pp_pool_options_t o;
  pp_pool_t *pool = NULL;
  pp_buf_t args[20];
  pp_result_t res[20];
  int i, rc, ok = 0;
  if (pp_test_remove_file(me) != 0) {
    printf("cannot delete %s\n", me);
    return 1;
  }
  pp_test_pool_options(&o, 2, 0, 0, NULL);
  /* Every call starts a worker of its own, from the deleted file. */
  o.max_calls_per_worker = 1;
  rc = pp_pool_create(&pool, &o);
  if (rc != 0) {
    printf("create: %s: %s\n", pp_err_name(rc), pp_last_error());
    return 1;
  }
  for (i = 0; i < 20; i++)
    args[i] = pp_test_pack_int(i);
  rc = pp_pool_map(pool, "square", args, 20, res, NULL);
  for (i = 0; i < 20; i++)
    ok += res[i].status == 0 && pp_test_int_result(&res[i]) == (int64_t)i * i;
  if (rc != 0)
    printf("map: %s\n", res[0].message ? res[0].message : "");
  pp_results_free(res, 20);
  pp_test_free_bufs(args, 20);
  pp_pool_destroy(pool, PP_DESTROY_WAIT);
  printf("deleted first: ok %d\n", ok);
  return 0;
}

static void test_upgrade_program_deleted_before_create(void **state) {
  char dir[2048], prog[4096], out[4096], arg[4200];
  int code;
  (void)state;
#ifndef __linux__
  print_message("skipped: only Linux can start a deleted program again\n");
  skip();
#endif
  scratch_dir("delfirst", dir, sizeof(dir));
  assert_int_equal(pp_test_copy_self(dir, "prog", prog, sizeof(prog)), 0);
  snprintf(arg, sizeof(arg), "--deleted-first \"%s\"", prog);
  code = pp_test_run_limit(prog, arg, 120000, out, sizeof(out));
  print_message("child: exit %d, said: %s", code, out);
  pp_test_remove_file(prog); /* in case the child could not */
  pp_test_remove_dir(dir);
  assert_int_equal(code, 0);
  assert_non_null(strstr(out, "deleted first: ok 20"));
}

static void test_upgrade_program_deleted(void **state) {
  char dir[2048], prog[4096], out[4096], arg[4200];
  int code;
  (void)state;
#ifndef __linux__
  print_message("skipped: only Linux can start a deleted program again\n");
  skip();
#endif
  scratch_dir("del", dir, sizeof(dir));
  assert_int_equal(pp_test_copy_self(dir, "prog", prog, sizeof(prog)), 0);
  snprintf(arg, sizeof(arg), "--deleted \"%s\"", prog);
  code = pp_test_run_limit(prog, arg, 120000, out, sizeof(out));
  print_message("child: exit %d, said: %s", code, out);
  assert_int_equal(code, 0);
  assert_non_null(strstr(out, "deleted: ok 20"));
  pp_test_remove_file(prog);
  pp_test_remove_dir(dir);
}

/* ---- the task library replaced ---- */

static pp_pool_t *library_pool(const char *lib, int workers, uint64_t max) {
  pp_pool_options_t o;
  pp_pool_t *pool = NULL;
  memset(&o, 0, sizeof(o));
  o.workers = workers;
  o.task_library = lib;
  o.worker_exe = PP_TEST_WORKER_HOST;
  o.max_calls_per_worker = max;
  PP_TEST_OK(pp_pool_create(&pool, &o));
  return pool;
}

static void test_upgrade_library_replaced(void **state) {
  char dir[2048], lib[4096], old[4200];
  pp_pool_t *pool, *recycling;
  pp_buf_t args[40];
  pp_result_t res[40], r;
  int64_t pids[2];
  int i;
  (void)state;
  scratch_dir("lib", dir, sizeof(dir));
  assert_int_equal(pp_test_make_dir(dir), 0);
  snprintf(lib, sizeof(lib), "%s" SEP LIB_NAME, dir);
  snprintf(old, sizeof(old), "%s.old", lib);
  assert_int_equal(pp_test_copy_file(PP_TEST_TASKLIB, lib), 0);
#ifdef PP_TEST_PROCPOOL_DLL
  {
    /* Windows looks for a library's DLLs beside it first. */
    char dll[4096];
    snprintf(dll, sizeof(dll), "%s" SEP "%s", dir, PP_TEST_PROCPOOL_DLL_NAME);
    assert_int_equal(pp_test_copy_file(PP_TEST_PROCPOOL_DLL, dll), 0);
  }
#endif
  pool = library_pool(lib, 2, 0);
  recycling = library_pool(lib, 1, 1);
  r = run_int(recycling, "lib_square", 3);
  assert_int_equal(r.status, 0);
  pp_results_free(&r, 1);

  /* The upgrade: another build of the library under the same name. */
  assert_int_equal(pp_test_rename(lib, old), 0);
  assert_int_equal(pp_test_copy_file(PP_TEST_TASKLIB2, lib), 0);

  /* One worker of `pool` goes; its replacements (started once its slot
   * takes work) load the new build and are refused, while the other worker
   * serves every call. */
  assert_int_equal(pp_pool_worker_pids(pool, pids, 2), 2);
  assert_int_equal(pp_test_kill(pids[1]), 0);
  /* Ended for sure before any call is taken: a worker that dies while its
   * slot sends it calls fails the first one, as it should. */
  assert_true(pp_test_wait_gone(&pids[1], 1, 10000));
  for (i = 0; i < 40; i++)
    args[i] = pp_test_pack_int(i);
  PP_TEST_OK(pp_pool_map(pool, "lib_worker", args, 40, res, NULL));
  for (i = 0; i < 40; i++)
    /* The new build would answer 1000 + its index. */
    assert_true(pp_test_int_result(&res[i]) == 0);
  pp_results_free(res, 40);
  pp_test_free_bufs(args, 40);
  wait_started(pool, 4);

  /* A pool whose every worker is replaced after each call cannot serve
   * any more: its calls fail at once, saying why. */
  r = run_int(recycling, "lib_square", 4);
  print_message("recycling pool after the upgrade: %s\n", r.message);
  assert_int_equal(r.status, PP_ESPAWN);
  assert_non_null(strstr(r.message, "another build"));
  pp_results_free(&r, 1);

  assert_int_equal(pp_pool_destroy(pool, PP_DESTROY_WAIT), 0);
  assert_int_equal(pp_pool_destroy(recycling, PP_DESTROY_WAIT), 0);
  pp_test_remove_file(lib);
  pp_test_remove_file(old);
#ifdef PP_TEST_PROCPOOL_DLL
  {
    char dll[4096];
    snprintf(dll, sizeof(dll), "%s" SEP "%s", dir, PP_TEST_PROCPOOL_DLL_NAME);
    pp_test_remove_file(dll);
  }
#endif
  pp_test_remove_dir(dir);
}

/* ---- workers that never say hello ---- */

static void test_upgrade_silent_worker_is_bounded(void **state) {
  pp_pool_options_t o;
  pp_pool_t *pool = NULL;
  apr_time_t t0 = apr_time_now();
  (void)state;
  pp_test_pool_options(&o, 2, 0, 0, NULL);
  o.worker_exe = PP_TEST_SLEEPER;
  o.start_timeout_ms = 1000;
  assert_int_equal(pp_pool_create(&pool, &o), PP_ESPAWN);
  print_message("create failed after %.1f s: %s\n",
                (double)(apr_time_now() - t0) / 1e6, pp_last_error());
  assert_non_null(strstr(pp_last_error(), "did not say hello within 1000 ms"));
  assert_null(pool);
}

/* A worker that connects and then stays silent is bounded too, and the
 * message says that it was still running and quotes its last line on
 * stderr (issue 8, item 2). */
static void test_upgrade_connected_mute_worker_is_bounded(void **state) {
  pp_pool_options_t o;
  pp_pool_t *pool = NULL;
  char want[64];
  const char *msg;
  (void)state;
  pp_test_pool_options(&o, 1, 0, 0, NULL);
  o.worker_exe = PP_TEST_MUTE;
  /* Long enough for the mute worker to connect and print its line first,
   * also where processes start slowly. */
  o.start_timeout_ms = 1000 * PP_TEST_TIME_SCALE;
  assert_int_equal(pp_pool_create(&pool, &o), PP_ESPAWN);
  msg = pp_last_error();
  print_message("create failed: %s\n", msg);
  snprintf(want, sizeof(want), "did not say hello within %lld ms",
           (long long)o.start_timeout_ms);
  assert_non_null(strstr(msg, want));
  assert_non_null(strstr(msg, "it was still running and was killed"));
  assert_non_null(strstr(msg, "its last line on stderr: mute: connected"));
  assert_null(pool);
}

/* A worker's replacement that hangs before its hello (a wrapper script
 * that now runs something else) neither stops the healthy worker from
 * serving nor keeps destroy waiting for the start timeout. */
static void test_upgrade_hanging_start_does_not_hold_destroy(void **state) {
#ifdef _WIN32
  (void)state;
  print_message("skipped: the wrapper is a shell script\n");
  skip();
#else
  char dir[2048], script[4096], flag[4096], body[8192];
  pp_pool_options_t o;
  pp_pool_t *pool = NULL;
  pp_buf_t args[30];
  pp_result_t res[30];
  int64_t pids[2];
  apr_time_t t0;
  double secs;
  FILE *f;
  int i;
  (void)state;
  scratch_dir("wrap", dir, sizeof(dir));
  assert_int_equal(pp_test_make_dir(dir), 0);
  snprintf(script, sizeof(script), "%s/wrapper.sh", dir);
  snprintf(flag, sizeof(flag), "%s/stall", dir);
  snprintf(body, sizeof(body),
           "#!/bin/sh\n"
           "if [ -e '%s' ]; then exec sleep 600; fi\n"
           "exec '%s' \"$@\"\n",
           flag, self_exe);
  f = fopen(script, "w");
  assert_non_null(f);
  fputs(body, f);
  fclose(f);
  assert_int_equal(chmod(script, 0700), 0);
  pp_test_pool_options(&o, 2, 0, 0, NULL);
  o.worker_exe = script;
  o.start_timeout_ms = PP_TEST_MS(60000);
  PP_TEST_OK(pp_pool_create(&pool, &o));
  f = fopen(flag, "w");
  assert_non_null(f);
  fclose(f);
  assert_int_equal(pp_pool_worker_pids(pool, pids, 2), 2);
  assert_int_equal(pp_test_kill(pids[1]), 0);
  /* Ended for sure before any call is taken: a worker that dies while its
   * slot sends it calls fails the first one, as it should. */
  assert_true(pp_test_wait_gone(&pids[1], 1, 10000));
  for (i = 0; i < 30; i++)
    args[i] = pp_test_pack_int(i);
  PP_TEST_OK(pp_pool_map(pool, "square", args, 30, res, NULL));
  pp_results_free(res, 30);
  pp_test_free_bufs(args, 30);
  wait_started(pool, 3);
  t0 = apr_time_now();
  assert_int_equal(pp_pool_destroy(pool, PP_DESTROY_WAIT), 0);
  secs = (double)(apr_time_now() - t0) / 1e6;
  print_message("destroy took %.2f s while a start hung\n", secs);
  /* Destroy does not wait for the start timeout (60 s, scaled). */
  assert_true(secs < (double)PP_TEST_MS(10000) / 1000.0);
  pp_test_remove_file(flag);
  pp_test_remove_file(script);
  pp_test_remove_dir(dir);
#endif
}

/* Splits `"a" "b"` into its two quoted parts. */
static int two_args(const char *s, char *a, char *b, size_t cap) {
  const char *p = strchr(s, '"'), *q;
  if (p == NULL || (q = strchr(p + 1, '"')) == NULL ||
      (size_t)(q - p - 1) >= cap)
    return -1;
  memcpy(a, p + 1, (size_t)(q - p - 1));
  a[q - p - 1] = '\0';
  if (b == NULL)
    return 0;
  p = strchr(q + 1, '"');
  if (p == NULL || (q = strchr(p + 1, '"')) == NULL ||
      (size_t)(q - p - 1) >= cap)
    return -1;
  memcpy(b, p + 1, (size_t)(q - p - 1));
  b[q - p - 1] = '\0';
  return 0;
}

int main(int argc, char **argv) {
  char a[4096], b[4096];
  int rc;
  if (pp_worker_main(argc, argv, pp_test_tasks, &rc))
    return rc;
  self_exe = argv[0];
  /* Windows hands the whole quoted string over as separate arguments, POSIX
   * as one; both are joined back and split on the quotes. */
  if (argc > 1 && strncmp(argv[1], "--replaced", 10) == 0) {
    if (argc >= 4)
      return replaced_main(argv[2], argv[3]);
    return two_args(argv[1], a, b, sizeof(a)) == 0 ? replaced_main(a, b) : 2;
  }
  if (argc > 1 && strncmp(argv[1], "--deleted-first", 15) == 0) {
    if (argc >= 3)
      return deleted_first_main(argv[2]);
    return two_args(argv[1], a, NULL, sizeof(a)) == 0 ? deleted_first_main(a)
                                                      : 2;
  }
  if (argc > 1 && strncmp(argv[1], "--deleted", 9) == 0) {
    if (argc >= 3)
      return deleted_main(argv[2]);
    return two_args(argv[1], a, NULL, sizeof(a)) == 0 ? deleted_main(a) : 2;
  }
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_upgrade_program_replaced),
      cmocka_unit_test(test_upgrade_program_deleted),
      cmocka_unit_test(test_upgrade_program_deleted_before_create),
      cmocka_unit_test(test_upgrade_library_replaced),
      cmocka_unit_test(test_upgrade_silent_worker_is_bounded),
      cmocka_unit_test(test_upgrade_connected_mute_worker_is_bounded),
      cmocka_unit_test(test_upgrade_hanging_start_does_not_hold_destroy),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
