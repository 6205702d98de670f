/*
 * test_inline.c - the inline (debug) mode: PP_POOL_INLINE and the
 * environment variable PROCPOOL_INLINE=1 run every call in the calling
 * process, through the same encoding, with the same results as workers.
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

static int64_t run_pid(pp_pool_t *pool) {
  pp_buf_t none = {NULL, 0};
  pp_result_t r;
  int64_t pid;
  assert_int_equal(pp_pool_map(pool, "pid", &none, 1, &r, NULL), 0);
  pid = pp_test_int_result(&r);
  pp_results_free(&r, 1);
  return pid;
}

static void test_inline_flag_runs_in_process(void **state) {
  pp_pool_t *pool = pp_test_make_pool(2, PP_POOL_INLINE, 0, NULL);
  int64_t pids[2];
  (void)state;
  assert_int_equal(pp_pool_workers(pool), 1);
  assert_int_equal(pp_pool_worker_pids(pool, pids, 2), 0);
  assert_true(run_pid(pool) == pp_test_self_pid());
  assert_int_equal(pp_pool_destroy(pool, PP_DESTROY_WAIT), 0);
}

static void test_inline_environment_variable(void **state) {
  pp_pool_t *pool;
  (void)state;
  pp_test_setenv("PROCPOOL_INLINE", "1");
  pool = pp_test_make_pool(2, 0, 0, NULL);
  pp_test_setenv("PROCPOOL_INLINE", NULL);
  assert_true(run_pid(pool) == pp_test_self_pid());
  assert_int_equal(pp_pool_destroy(pool, PP_DESTROY_WAIT), 0);

  /* "0" means off. */
  pp_test_setenv("PROCPOOL_INLINE", "0");
  pool = pp_test_make_pool(2, 0, 0, NULL);
  pp_test_setenv("PROCPOOL_INLINE", NULL);
  assert_true(run_pid(pool) != pp_test_self_pid());
  assert_int_equal(pp_pool_destroy(pool, PP_DESTROY_WAIT), 0);
}

/* Runs the same maps in a pool and returns their results, for comparing
 * the two modes. */
enum { NSQ = 200, NACT = 40, NECHO = 5 };
typedef struct {
  pp_result_t sq[NSQ], act[NACT], echo[NECHO];
  int rc_sq, rc_act, rc_echo;
} outcome_t;

static void run_all(pp_pool_t *pool, outcome_t *out) {
  static const size_t sizes[NECHO] = {0, 1, 4096, 70000, 1u << 20};
  pp_buf_t sq[NSQ], act[NACT], echo[NECHO];
  size_t i;
  for (i = 0; i < NSQ; i++)
    sq[i] = pp_test_pack_int((int64_t)i * 7 - 300);
  for (i = 0; i < NACT; i++)
    assert_int_equal(
        pp_pack(&act[i], "si", i % 3 ? "square" : "fail", (int64_t)i), 0);
  for (i = 0; i < NECHO; i++) {
    void *p = malloc(sizes[i] + 1);
    assert_non_null(p);
    pp_test_fill(p, sizes[i], 99);
    echo[i].data = p;
    echo[i].len = sizes[i];
  }
  out->rc_sq = pp_pool_map(pool, "square", sq, NSQ, out->sq, NULL);
  out->rc_act = pp_pool_starmap(pool, "act", act, NACT, out->act, NULL);
  out->rc_echo = pp_pool_map(pool, "echo", echo, NECHO, out->echo, NULL);
  pp_test_free_bufs(sq, NSQ);
  pp_test_free_bufs(act, NACT);
  for (i = 0; i < NECHO; i++)
    free((void *)echo[i].data);
}

static void same_results(const pp_result_t *a, const pp_result_t *b, size_t n) {
  size_t i;
  for (i = 0; i < n; i++) {
    assert_int_equal(a[i].status, b[i].status);
    assert_int_equal(a[i].len, b[i].len);
    if (a[i].len > 0)
      assert_memory_equal(a[i].data, b[i].data, a[i].len);
    if (a[i].message != NULL || b[i].message != NULL) {
      assert_non_null(a[i].message);
      assert_non_null(b[i].message);
      assert_string_equal(a[i].message, b[i].message);
    }
  }
}

static void test_inline_results_match_worker_mode(void **state) {
  outcome_t *in = calloc(1, sizeof(*in)), *out = calloc(1, sizeof(*out));
  pp_pool_t *pool;
  (void)state;
  assert_non_null(in);
  assert_non_null(out);
  pool = pp_test_make_pool(2, PP_POOL_INLINE, 0, NULL);
  run_all(pool, in);
  assert_int_equal(pp_pool_destroy(pool, PP_DESTROY_WAIT), 0);
  pool = pp_test_make_pool(2, 0, 0, NULL);
  run_all(pool, out);
  assert_int_equal(pp_pool_destroy(pool, PP_DESTROY_WAIT), 0);

  assert_int_equal(in->rc_sq, 0);
  assert_int_equal(in->rc_act, PP_ETASK);
  assert_int_equal(in->rc_echo, 0);
  assert_int_equal(in->rc_sq, out->rc_sq);
  assert_int_equal(in->rc_act, out->rc_act);
  assert_int_equal(in->rc_echo, out->rc_echo);
  same_results(in->sq, out->sq, NSQ);
  same_results(in->act, out->act, NACT);
  same_results(in->echo, out->echo, NECHO);
  assert_string_equal(in->act[0].message, "act failed for 0");
  pp_results_free(in->sq, NSQ);
  pp_results_free(in->act, NACT);
  pp_results_free(in->echo, NECHO);
  pp_results_free(out->sq, NSQ);
  pp_results_free(out->act, NACT);
  pp_results_free(out->echo, NECHO);
  free(in);
  free(out);
}

static void test_inline_futures_and_unknown_tasks(void **state) {
  pp_pool_t *pool = pp_test_make_pool(2, PP_POOL_INLINE, 0, NULL);
  pp_buf_t b = pp_test_pack_int(9);
  pp_future_t *f = NULL;
  pp_result_t r;
  (void)state;
  assert_int_equal(pp_pool_submit(pool, "square", b.data, b.len, NULL, &f), 0);
  /* The call ran inside submit. */
  assert_int_equal(pp_future_status(f), 0);
  assert_int_equal(pp_future_wait(f, 0), 0);
  assert_int_equal(pp_future_cancel(f), 0);
  assert_int_equal(pp_future_take(f, &r), 0);
  assert_true(pp_test_int_result(&r) == 81);
  pp_results_free(&r, 1);
  pp_future_free(f);
  assert_int_equal(pp_pool_submit(pool, "nope", b.data, b.len, NULL, &f),
                   PP_ENOTASK);
  pp_free((void *)b.data);
  assert_int_equal(pp_pool_destroy(pool, PP_DESTROY_WAIT), 0);
}

static void test_inline_pp_log_reaches_callback(void **state) {
  pp_test_log_t *log = pp_test_log_new();
  pp_pool_t *pool = pp_test_make_pool(2, PP_POOL_INLINE, 0, log);
  pp_test_record_t rec;
  pp_buf_t b;
  pp_result_t r;
  int64_t id = 0, worker = -2;
  (void)state;
  assert_int_equal(pp_pack(&b, "s", "inline"), 0);
  assert_int_equal(pp_pool_map(pool, "print", &b, 1, &r, NULL), 0);
  assert_int_equal(pp_unpack(r.data, r.len, "ii", &id, &worker), 0);
  assert_int_equal(id, 1);
  /* The caller's process is not a worker. */
  assert_int_equal(worker, -1);
  assert_true(pp_test_log_wait(log, "log inline", 0, &rec));
  assert_int_equal(rec.source, PP_LOG_TASK);
  assert_int_equal(rec.level, 5);
  assert_int_equal(rec.worker, 0);
  assert_true(rec.call_id == 1);
  assert_true(pp_test_log_wait(log, "multi inline b", 0, &rec));
  assert_true(rec.call_id == 1);
  pp_results_free(&r, 1);
  pp_free((void *)b.data);
  assert_int_equal(pp_pool_destroy(pool, PP_DESTROY_WAIT), 0);
  pp_test_log_free(log);
}

/* The initializer runs once in inline mode too, so that tasks which rely on
 * it behave as they do in workers. */
static void test_inline_initializer_runs(void **state) {
  pp_pool_options_t o;
  pp_pool_t *pool = NULL;
  pp_buf_t init = pp_test_pack_int(4242), none = {NULL, 0};
  pp_result_t r;
  (void)state;
  memset(&o, 0, sizeof(o));
  o.flags = PP_POOL_INLINE;
  o.initializer = "init_set";
  o.init_arg = init.data;
  o.init_arg_len = init.len;
  PP_TEST_OK(pp_pool_create(&pool, &o));
  assert_int_equal(pp_pool_map(pool, "init_get", &none, 1, &r, NULL), 0);
  assert_true(pp_test_int_result(&r) == 4242);
  pp_results_free(&r, 1);
  assert_int_equal(pp_pool_destroy(pool, PP_DESTROY_WAIT), 0);

  o.initializer = "fail";
  o.init_arg = "inline boom";
  o.init_arg_len = 11;
  assert_int_equal(pp_pool_create(&pool, &o), PP_ETASK);
  assert_null(pool);
  assert_non_null(strstr(pp_last_error(), "fail: inline boom"));
  pp_free((void *)init.data);
}

static void test_inline_threads_task(void **state) {
  pp_pool_t *pool = pp_test_make_pool(2, PP_POOL_INLINE, 0, NULL);
  pp_buf_t none = {NULL, 0};
  pp_result_t r;
  (void)state;
  assert_int_equal(pp_pool_map(pool, "threads", &none, 1, &r, NULL), 0);
  assert_true(pp_test_int_result(&r) == PP_TEST_THREADS_SUM);
  pp_results_free(&r, 1);
  assert_int_equal(pp_pool_destroy(pool, PP_DESTROY_WAIT), 0);
}

/* Counts what an unordered inline map delivers: [0] successes, [1]
 * cancelled calls; asks to stop at the first result. */
static int stop_after_first(void *data, size_t index, pp_result_t *r) {
  int *counts = data;
  (void)index;
  if (r->status == 0)
    counts[0]++;
  else if (r->status == PP_ECANCELED)
    counts[1]++;
  pp_results_free(r, 1);
  return 1;
}

/* Inline calls run as they are queued, so stopping must keep the rest of
 * the map from running at all, as it does with workers. */
static void test_inline_stop_on_error_stops(void **state) {
  enum { N = 50 };
  pp_pool_t *pool = pp_test_make_pool(2, PP_POOL_INLINE, 0, NULL);
  pp_map_options_t mo;
  pp_buf_t args[N];
  pp_result_t r[N];
  int i, counts[2] = {0, 0};
  (void)state;
  for (i = 0; i < N; i++)
    assert_int_equal(
        pp_pack(&args[i], "si", i == 0 ? "fail" : "square", (int64_t)i), 0);
  memset(&mo, 0, sizeof(mo));
  mo.flags = PP_MAP_STOP_ON_ERROR;
  assert_int_equal(pp_pool_starmap(pool, "act", args, N, r, &mo), PP_ETASK);
  assert_int_equal(r[0].status, PP_ETASK);
  for (i = 1; i < N; i++)
    assert_int_equal(r[i].status, PP_ECANCELED);
  pp_results_free(r, N);
  /* A callback asking to stop has the same effect. */
  assert_int_equal(pp_pool_map_unordered(pool, "act", args + 1, N - 1,
                                         stop_after_first, counts, NULL),
                   PP_ECANCELED);
  assert_int_equal(counts[0], 1);
  assert_int_equal(counts[1], N - 2);
  pp_test_free_bufs(args, N);
  assert_int_equal(pp_pool_destroy(pool, PP_DESTROY_WAIT), 0);
}

int main(int argc, char **argv) {
  int rc;
  if (pp_worker_main(argc, argv, pp_test_tasks, &rc))
    return rc;
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_inline_flag_runs_in_process),
      cmocka_unit_test(test_inline_environment_variable),
      cmocka_unit_test(test_inline_results_match_worker_mode),
      cmocka_unit_test(test_inline_futures_and_unknown_tasks),
      cmocka_unit_test(test_inline_pp_log_reaches_callback),
      cmocka_unit_test(test_inline_initializer_runs),
      cmocka_unit_test(test_inline_threads_task),
      cmocka_unit_test(test_inline_stop_on_error_stops),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
