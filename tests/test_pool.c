/*
 * test_pool.c - creating and destroying pools, start-up failures, argument
 * checks, status names, and what a pool leaves behind (processes,
 * descriptors) when it is gone.
 */
#if !defined(_WIN32) && !defined(_POSIX_C_SOURCE)
#define _POSIX_C_SOURCE 200809L
#endif

#include <errno.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#ifndef _WIN32
#include <unistd.h>
#endif

#include <cmocka.h>

#include <apr_time.h>

#include "helpers.h"
#include "tasks.h"

/* argv[0] of the test, for the parent-death test, which starts the test
 * binary again in a helper role. */
static const char *self_exe;

static int64_t run_int(pp_pool_t *pool, const char *task, int64_t arg) {
  pp_buf_t b = pp_test_pack_int(arg);
  pp_future_t *f = NULL;
  pp_result_t r;
  int64_t v;
  assert_int_equal(pp_pool_submit(pool, task, b.data, b.len, NULL, &f), 0);
  assert_int_equal(pp_future_wait(f, -1), 0);
  assert_int_equal(pp_future_take(f, &r), 0);
  assert_int_equal(r.status, 0);
  v = pp_test_int_result(&r);
  pp_results_free(&r, 1);
  pp_future_free(f);
  pp_free((void *)b.data);
  return v;
}

/* Submits n calls with the tuple "i" arguments v[0..n), packed into args:
 * the first n_sleep to "sleep_ms", the others to "square". */
static void submit_ints(pp_pool_t *pool, const int64_t *v, int n, int n_sleep,
                        pp_buf_t *args, pp_future_t **f) {
  int i;
  for (i = 0; i < n; i++) {
    args[i] = pp_test_pack_int(v[i]);
    assert_int_equal(pp_pool_submit(pool, i < n_sleep ? "sleep_ms" : "square",
                                    args[i].data, args[i].len, NULL, &f[i]),
                     0);
  }
}

/* Takes and frees the futures f[0..n), which have all finished with
 * `status`: with the values want[0..n) if that is 0, else with no data and
 * a message. */
static void take_all(pp_future_t **f, int n, int status,
                     const int64_t *want) {
  int i;
  for (i = 0; i < n; i++) {
    pp_result_t r;
    assert_int_equal(pp_future_status(f[i]), status);
    assert_int_equal(pp_future_take(f[i], &r), 0);
    assert_int_equal(r.status, status);
    if (status == 0) {
      assert_true(pp_test_int_result(&r) == want[i]);
    } else {
      assert_null(r.data);
      assert_non_null(r.message);
    }
    pp_results_free(&r, 1);
    pp_future_free(f[i]);
  }
}

/* Checks that pp_pool_create(o) fails with `status`, leaves the pool NULL
 * and says `why` in pp_last_error(). */
static void create_fails(const pp_pool_options_t *o, int status,
                         const char *why) {
  pp_pool_t *pool = NULL;
  assert_int_equal(pp_pool_create(&pool, o), status);
  assert_null(pool);
  assert_non_null(strstr(pp_last_error(), why));
}

static void test_pool_default_size_is_cpu_count(void **state) {
  pp_pool_t *pool = NULL;
  int64_t pids[1024];
  int n = pp_test_cpu_count();
  (void)state;
  /* NULL options mean defaults, as documented. */
  PP_TEST_OK(pp_pool_create(&pool, NULL));
  assert_int_equal(pp_pool_workers(pool), n);
  assert_int_equal(pp_pool_worker_pids(pool, pids, 1024), n);
  assert_int_equal(run_int(pool, "square", 12), 144);
  assert_int_equal(pp_pool_destroy(pool, PP_DESTROY_WAIT), 0);
}

static void test_pool_explicit_worker_count(void **state) {
  pp_pool_t *pool = pp_test_make_pool(3, 0, 0, NULL);
  int64_t pids[8], one = 0;
  int i, j;
  pp_pool_stats_t st;
  (void)state;
  assert_int_equal(pp_pool_workers(pool), 3);
  assert_int_equal(pp_pool_worker_pids(pool, pids, 8), 3);
  for (i = 0; i < 3; i++) {
    assert_true(pids[i] > 0);
    assert_true(pids[i] != pp_test_self_pid());
    assert_true(pp_test_pid_alive(pids[i]));
    for (j = 0; j < i; j++)
      assert_true(pids[i] != pids[j]);
  }
  /* A short array gets what fits; the count is still the whole. */
  assert_int_equal(pp_pool_worker_pids(pool, &one, 1), 3);
  assert_true(one == pids[0]);
  assert_int_equal(pp_pool_worker_pids(pool, NULL, 0), 3);

  assert_int_equal(pp_pool_stats(pool, &st), 0);
  assert_int_equal(st.workers_started, 3);
  assert_int_equal(st.workers_died, 0);
  assert_int_equal(run_int(pool, "square", -9), 81);
  assert_int_equal(pp_pool_stats(pool, &st), 0);
  assert_int_equal(st.calls_submitted, 1);
  assert_int_equal(st.calls_completed, 1);
  assert_int_equal(pp_pool_destroy(pool, PP_DESTROY_WAIT), 0);
}

static void test_pool_destroy_wait_waits_for_running(void **state) {
  pp_pool_t *pool = pp_test_make_pool(2, 0, 0, NULL);
  pp_buf_t args[4];
  pp_future_t *f[4];
  static const int64_t v[4] = {300, 300, 5, 6};
  static const int64_t want[4] = {300, 300, 25, 36};
  (void)state;
  submit_ints(pool, v, 4, 2, args, f);
  assert_int_equal(pp_pool_destroy(pool, PP_DESTROY_WAIT), 0);
  /* Every call ran to its end, and the futures outlive the pool. */
  take_all(f, 4, 0, want);
  pp_test_free_bufs(args, 4);
}

static void test_pool_destroy_cancel_cancels_pending(void **state) {
  pp_pool_t *pool = pp_test_make_pool(1, 0, 0, NULL);
  pp_buf_t args[4];
  pp_future_t *f[4];
  apr_time_t t0;
  int64_t v[4] = {30000, 1, 2, 3};
  (void)state;
  v[0] = PP_TEST_MS(30000);
  submit_ints(pool, v, 4, 1, args, f);
  /* Give the first call time to start, so a running call is cancelled too
   * (if it has not started it is cancelled as pending: same outcome). */
  pp_test_sleep_ms(200);
  t0 = apr_time_now();
  assert_int_equal(pp_pool_destroy(pool, PP_DESTROY_CANCEL), 0);
  /* Not a speed test: the 30 s sleep must have been cut short, not waited
   * out. */
  assert_true(apr_time_now() - t0 < apr_time_from_msec(PP_TEST_MS(20000)));
  take_all(f, 4, PP_ECANCELED, NULL);
  pp_test_free_bufs(args, 4);
}

static void test_pool_no_worker_left_after_destroy(void **state) {
  pp_pool_t *pool = pp_test_make_pool(3, 0, 0, NULL);
  int64_t pids[3];
  int i;
  (void)state;
  assert_int_equal(pp_pool_worker_pids(pool, pids, 3), 3);
  assert_int_equal(run_int(pool, "square", 3), 9);
  assert_int_equal(pp_pool_destroy(pool, PP_DESTROY_WAIT), 0);
  /* Destroy waits for the workers to exit, so they are gone at once. */
  for (i = 0; i < 3; i++)
    assert_false(pp_test_pid_alive(pids[i]));
}

static void test_pool_no_fd_leak(void **state) {
  int before, after, round;
  (void)state;
  if (pp_test_fd_count() < 0) {
    print_message("descriptor counting is not supported here\n");
    skip();
  }
  before = pp_test_fd_count();
  for (round = 0; round < 3; round++) {
    pp_pool_t *pool = pp_test_make_pool(2, 0, 0, NULL);
    assert_int_equal(run_int(pool, "square", round), round * round);
    assert_int_equal(pp_pool_destroy(pool, PP_DESTROY_WAIT), 0);
  }
  after = pp_test_fd_count();
  assert_int_equal(before, after);
}

/* Sets pp_last_error() to a known text, so a check can tell that the next
 * failure wrote its own message. */
static void reset_error(void) {
  assert_int_equal(pp_tuple_count(NULL, 0), PP_EBADARGS);
}
#define SENTINEL "not a procpool tuple"

#define ASSERT_EINVAL(expr)                                                    \
  do {                                                                         \
    reset_error();                                                             \
    assert_int_equal((expr), PP_EINVAL);                                       \
    assert_true(strlen(pp_last_error()) > 0);                                  \
    assert_string_not_equal(pp_last_error(), SENTINEL);                        \
  } while (0)

static int never_called(void *data, size_t index, pp_result_t *r) {
  (void)data, (void)index, (void)r;
  fail_msg("the map callback must not run for refused arguments");
  return 0;
}

static void test_pool_bad_args_are_einval(void **state) {
  pp_pool_options_t o;
  pp_pool_t *pool = NULL;
  pp_future_t *f = NULL;
  pp_pool_stats_t st;
  pp_result_t r[2];
  pp_buf_t args[2] = {{NULL, 0}, {NULL, 4}};
  pp_map_options_t mo;
  int64_t pid;
  (void)state;

  ASSERT_EINVAL(pp_pool_create(NULL, NULL));
  memset(&o, 0, sizeof(o));
  o.workers = -1;
  ASSERT_EINVAL(pp_pool_create(&pool, &o));
  assert_null(pool);
  memset(&o, 0, sizeof(o));
  o.flags = 1u << 7;
  ASSERT_EINVAL(pp_pool_create(&pool, &o));
  memset(&o, 0, sizeof(o));
  o.call_timeout_ms = -5;
  ASSERT_EINVAL(pp_pool_create(&pool, &o));
  memset(&o, 0, sizeof(o));
  o.cancel_grace_ms = -5;
  ASSERT_EINVAL(pp_pool_create(&pool, &o));
  memset(&o, 0, sizeof(o));
  o.initializer = "init_set";
  o.init_arg_len = 4;
  ASSERT_EINVAL(pp_pool_create(&pool, &o));
  assert_null(pool);

  ASSERT_EINVAL(pp_pool_workers(NULL));
  ASSERT_EINVAL(pp_pool_stats(NULL, &st));
  ASSERT_EINVAL(pp_pool_worker_pids(NULL, &pid, 1));
  ASSERT_EINVAL(pp_future_wait(NULL, 0));
  ASSERT_EINVAL(pp_future_status(NULL));
  ASSERT_EINVAL(pp_future_take(NULL, r));
  ASSERT_EINVAL(pp_future_cancel(NULL));
  ASSERT_EINVAL(pp_pool_submit(NULL, "square", NULL, 0, NULL, &f));
  ASSERT_EINVAL(pp_pool_map(NULL, "square", args, 1, r, NULL));
  ASSERT_EINVAL(pp_pool_starmap(NULL, "square", NULL, 0, r, NULL));
  ASSERT_EINVAL(pp_call_reply(NULL, "x", 1));
  ASSERT_EINVAL(pp_call_replyf(NULL, "i", (int64_t)1));
  /* NULL is ignored where the header says so. */
  assert_int_equal(pp_pool_destroy(NULL, PP_DESTROY_WAIT), 0);
  pp_future_free(NULL);
  pp_results_free(NULL, 3);
  pp_free(NULL);
  assert_null(pp_call_reply_alloc(NULL, 4));
  assert_int_equal(pp_call_fail(NULL, "x"), PP_ETASK);
  assert_true(pp_call_id(NULL) == 0);
  /* Outside a worker there is no call to cancel and no worker index. */
  assert_int_equal(pp_call_cancelled(), 0);
  assert_int_equal(pp_worker_index(), -1);

  pool = pp_test_make_pool(1, 0, 0, NULL);
  ASSERT_EINVAL(pp_pool_stats(pool, NULL));
  ASSERT_EINVAL(pp_pool_worker_pids(pool, NULL, 2));
  ASSERT_EINVAL(pp_pool_submit(pool, NULL, NULL, 0, NULL, &f));
  ASSERT_EINVAL(pp_pool_submit(pool, "square", NULL, 0, NULL, NULL));
  ASSERT_EINVAL(pp_pool_submit(pool, "square", NULL, 8, NULL, &f));
  assert_null(f);
  ASSERT_EINVAL(pp_pool_map(pool, NULL, args, 1, r, NULL));
  ASSERT_EINVAL(pp_pool_map(pool, "square", NULL, 1, r, NULL));
  ASSERT_EINVAL(pp_pool_map(pool, "square", args, 1, NULL, NULL));
  /* args[1] claims 4 bytes at NULL. */
  ASSERT_EINVAL(pp_pool_map(pool, "square", args, 2, r, NULL));
  memset(&mo, 0, sizeof(mo));
  mo.flags = 1u << 9;
  ASSERT_EINVAL(pp_pool_map(pool, "square", args, 1, r, &mo));
  ASSERT_EINVAL(pp_pool_starmap(pool, "square", NULL, 1, r, NULL));
  ASSERT_EINVAL(
      pp_pool_map_unordered(pool, "square", args, 1, NULL, NULL, NULL));
  ASSERT_EINVAL(
      pp_pool_map_unordered(NULL, "square", args, 1, never_called, NULL, NULL));
  ASSERT_EINVAL(pp_future_take((pp_future_t *)NULL, NULL));
  /* An unknown destroy mode leaves the pool as it was. */
  ASSERT_EINVAL(pp_pool_destroy(pool, (pp_destroy_mode_t)7));
  assert_int_equal(run_int(pool, "square", 4), 16);
  {
    pp_pool_stats_t s2;
    assert_int_equal(pp_pool_stats(pool, &s2), 0);
    /* Nothing that was refused reached the queue. */
    assert_int_equal(s2.calls_submitted, 1);
  }
  assert_int_equal(pp_pool_destroy(pool, PP_DESTROY_WAIT), 0);
}

static void test_pool_nested_create_without_flag_is_enested(void **state) {
  pp_pool_t *pool = pp_test_make_pool(1, 0, 0, NULL);
  pp_future_t *f = NULL;
  pp_result_t r;
  int64_t sum = 0, plain = 0, g1 = 0, g2 = 0;
  (void)state;
  assert_int_equal(pp_pool_submit(pool, "nested", NULL, 0, NULL, &f), 0);
  assert_int_equal(pp_future_wait(f, -1), 0);
  assert_int_equal(pp_future_take(f, &r), 0);
  assert_int_equal(r.status, 0);
  assert_int_equal(pp_unpack(r.data, r.len, "iiii", &sum, &plain, &g1, &g2), 0);
  assert_int_equal(plain, PP_ENESTED);
  assert_int_equal(sum, 385);
  pp_results_free(&r, 1);
  pp_future_free(f);
  assert_int_equal(pp_pool_destroy(pool, PP_DESTROY_WAIT), 0);
}

static void test_pool_unknown_initializer_is_enotask(void **state) {
  pp_pool_options_t o;
  (void)state;
  pp_test_pool_options(&o, 1, 0, 0, NULL);
  o.initializer = "no_such_task";
  create_fails(&o, PP_ENOTASK, "no_such_task");
}

static void test_pool_initializer_runs_in_every_worker(void **state) {
  pp_pool_options_t o;
  pp_pool_t *pool = NULL;
  pp_buf_t init = pp_test_pack_int(42);
  pp_buf_t args[8];
  pp_result_t res[8];
  int i;
  (void)state;
  memset(&o, 0, sizeof(o));
  o.workers = 2;
  o.initializer = "init_set";
  o.init_arg = init.data;
  o.init_arg_len = init.len;
  /* Every call gets a fresh worker, so the initializer runs again each
   * time; the pool keeps its own copy of init_arg, freed here at once. */
  o.max_calls_per_worker = 1;
  PP_TEST_OK(pp_pool_create(&pool, &o));
  pp_free((void *)init.data);
  memset(args, 0, sizeof(args));
  assert_int_equal(pp_pool_map(pool, "init_get", args, 8, res, NULL), 0);
  for (i = 0; i < 8; i++)
    assert_int_equal(pp_test_int_result(&res[i]), 42);
  pp_results_free(res, 8);
  assert_int_equal(pp_pool_destroy(pool, PP_DESTROY_WAIT), 0);
}

static void test_pool_max_calls_replaces_workers(void **state) {
  pp_pool_options_t o;
  pp_pool_t *pool = NULL;
  int64_t pids[3];
  pp_pool_stats_t st;
  (void)state;
  memset(&o, 0, sizeof(o));
  o.workers = 1;
  o.max_calls_per_worker = 1;
  PP_TEST_OK(pp_pool_create(&pool, &o));
  pids[0] = run_int(pool, "pid", 0);
  pids[1] = run_int(pool, "pid", 0);
  pids[2] = run_int(pool, "pid", 0);
  assert_true(pids[0] != pids[1] && pids[1] != pids[2] && pids[0] != pids[2]);
  assert_int_equal(pp_pool_stats(pool, &st), 0);
  /* A retired worker did not die during a call. */
  assert_int_equal(st.workers_died, 0);
  assert_true(st.workers_started >= 3);
  assert_int_equal(pp_pool_destroy(pool, PP_DESTROY_WAIT), 0);
  assert_true(pp_test_wait_gone(pids, 3, 0));
}

static void test_pool_failing_initializer_is_etask(void **state) {
  pp_pool_options_t o;
  int before = pp_test_fd_count();
  (void)state;
  pp_test_pool_options(&o, 2, 0, 0, NULL);
  o.initializer = "fail";
  o.init_arg = "boom";
  o.init_arg_len = 4;
  /* The task's own message reaches the caller. */
  create_fails(&o, PP_ETASK, "fail: boom");
  assert_int_equal(pp_test_fd_count(), before);
}

static void test_pool_bad_worker_exe_is_espawn(void **state) {
  static const char *path = "/nonexistent/procpool-no-such-worker";
  pp_pool_options_t o;
  int before = pp_test_fd_count();
  (void)state;
  pp_test_pool_options(&o, 2, 0, 0, NULL);
  o.worker_exe = path;
  create_fails(&o, PP_ESPAWN, path);
#ifdef _WIN32
  /* FormatMessage's text follows the path. */
  assert_true(strlen(strstr(pp_last_error(), path)) > strlen(path) + 5);
#else
  assert_non_null(strstr(pp_last_error(), strerror(ENOENT)));
#endif
  assert_int_equal(pp_test_fd_count(), before);
}

/* A program that runs but is not a worker ends before its hello. */
static void test_pool_non_worker_exe_is_espawn(void **state) {
  (void)state;
#ifdef _WIN32
  skip();
#else
  pp_pool_options_t o;
  if (access("/bin/true", X_OK) != 0)
    skip();
  pp_test_pool_options(&o, 1, 0, 0, NULL);
  o.worker_exe = "/bin/true";
  create_fails(&o, PP_ESPAWN, "exited with code 0");
#endif
}

/* pp_last_error() is the public edge's (error.h): calls that fail inside a
 * pool (a crash, a task's error, a broken worker that is replaced) are told
 * in their results, and public calls that succeed leave the text of the
 * last failed public call alone. */
static void test_pool_last_error_is_written_at_the_edge_only(void **state) {
  static const char *tasks[] = {"segv", "fail", "garble", "square"};
  pp_future_t *f[4];
  pp_buf_t arg = pp_test_pack_int(7);
  pp_result_t r;
  pp_pool_t *pool;
  size_t i;
  (void)state;
  pool = pp_test_make_pool(2, 0, 0, NULL);
  reset_error();
  for (i = 0; i < 4; i++)
    assert_int_equal(
        pp_pool_submit(pool, tasks[i], arg.data, arg.len, NULL, &f[i]), 0);
  for (i = 0; i < 4; i++) {
    assert_int_equal(pp_future_wait(f[i], -1), 0);
    assert_int_equal(pp_future_take(f[i], &r), 0);
    if (i == 3) {
      assert_int_equal(r.status, 0);
      assert_true(pp_test_int_result(&r) == 49);
    } else {
      assert_int_not_equal(r.status, 0);
      assert_true(strlen(r.message) > 0);
    }
    pp_results_free(&r, 1);
    pp_future_free(f[i]);
  }
  assert_int_equal(pp_pool_destroy(pool, PP_DESTROY_WAIT), 0);
  pp_test_free_bufs(&arg, 1);
  assert_string_equal(pp_last_error(), SENTINEL);
}

static void test_pool_status_names_and_messages(void **state) {
  (void)state;
  assert_string_equal(pp_strerror(0), "success");
  assert_string_equal(pp_err_name(0), "PP_OK");
#define CHECK_CODE(name, value, text)                                          \
  assert_int_equal(PP_##name, value);                                          \
  assert_string_equal(pp_strerror(PP_##name), text);                           \
  assert_string_equal(pp_err_name(PP_##name), "PP_" #name);                    \
  assert_in_range(-(PP_##name), 1, -(PP_ERRNO_MIN)-1);
  PP_ERRNO_MAP(CHECK_CODE)
#undef CHECK_CODE
  assert_string_equal(pp_strerror(-999), "unknown error");
  assert_string_equal(pp_strerror(5), "unknown error");
  assert_string_equal(pp_err_name(PP_ERRNO_MIN), "PP_UNKNOWN");
  assert_int_equal(pp_version(), PP_VERSION_HEX);
  assert_string_equal(pp_version_string(), "0.2.0");
  assert_true(PP_VERSION_AT_LEAST(0, 1, 0));
}

/* The helper role of the parent-death test: create a pool, report its
 * workers' pids on stdout, then wait to be killed. */
static int orphan_parent_main(void) {
  pp_pool_t *pool = NULL;
  pp_pool_options_t o;
  int64_t pids[2];
  memset(&o, 0, sizeof(o));
  o.workers = 2;
  if (pp_pool_create(&pool, &o) != 0 || pp_pool_worker_pids(pool, pids, 2) != 2)
    return 1;
  printf("%lld %lld\n", (long long)pids[0], (long long)pids[1]);
  fflush(stdout);
  for (;;)
    pp_test_sleep_ms(1000);
}

/* Workers must not outlive a parent that is killed without any chance to
 * clean up. */
static void test_pool_workers_die_with_parent(void **state) {
  pp_test_child_t *child;
  char line[128];
  long long a = 0, b = 0;
  int64_t pids[2];
  (void)state;
  child = pp_test_child_start(self_exe, "--orphan-parent", line, sizeof(line));
  assert_non_null(child);
  assert_int_equal(sscanf(line, "%lld %lld", &a, &b), 2);
  pids[0] = a;
  pids[1] = b;
  assert_true(pp_test_pid_alive(pids[0]) && pp_test_pid_alive(pids[1]));
  pp_test_child_kill(child);
  /* The contract is "within a second"; allow more on a loaded machine. */
  assert_true(pp_test_wait_gone(pids, 2, 10000));
}

int main(int argc, char **argv) {
  int rc;
  if (pp_worker_main(argc, argv, pp_test_tasks, &rc))
    return rc;
  self_exe = argv[0];
  if (argc > 1 && strcmp(argv[1], "--orphan-parent") == 0)
    return orphan_parent_main();
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_pool_default_size_is_cpu_count),
      cmocka_unit_test(test_pool_explicit_worker_count),
      cmocka_unit_test(test_pool_destroy_wait_waits_for_running),
      cmocka_unit_test(test_pool_destroy_cancel_cancels_pending),
      cmocka_unit_test(test_pool_no_worker_left_after_destroy),
      cmocka_unit_test(test_pool_no_fd_leak),
      cmocka_unit_test(test_pool_bad_args_are_einval),
      cmocka_unit_test(test_pool_nested_create_without_flag_is_enested),
      cmocka_unit_test(test_pool_unknown_initializer_is_enotask),
      cmocka_unit_test(test_pool_initializer_runs_in_every_worker),
      cmocka_unit_test(test_pool_max_calls_replaces_workers),
      cmocka_unit_test(test_pool_failing_initializer_is_etask),
      cmocka_unit_test(test_pool_bad_worker_exe_is_espawn),
      cmocka_unit_test(test_pool_non_worker_exe_is_espawn),
      cmocka_unit_test(test_pool_last_error_is_written_at_the_edge_only),
      cmocka_unit_test(test_pool_status_names_and_messages),
      cmocka_unit_test(test_pool_workers_die_with_parent),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
