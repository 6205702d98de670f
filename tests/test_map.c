/*
 * test_map.c - pp_pool_map(), pp_pool_starmap() and pp_pool_map_unordered():
 * order, per-call status, argument checks before anything runs, stopping
 * at the first error, and chunking.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include <apr_time.h>

#include "helpers.h"
#include "tasks.h"

static pp_buf_t pack_act(const char *what, int64_t v) {
  pp_buf_t b;
  assert_int_equal(pp_pack(&b, "si", what, v), 0);
  return b;
}

static uint64_t submitted(pp_pool_t *pool) {
  pp_pool_stats_t st;
  assert_int_equal(pp_pool_stats(pool, &st), 0);
  return st.calls_submitted;
}

static void test_map_ordered_results_for_1000_calls(void **state) {
  pp_pool_t *pool = *state;
  enum { N = 1000 };
  pp_buf_t *args = calloc(N, sizeof(*args));
  pp_result_t *res = calloc(N, sizeof(*res));
  size_t i;
  assert_non_null(args);
  assert_non_null(res);
  for (i = 0; i < N; i++)
    args[i] = pp_test_pack_int((int64_t)i - 500);
  assert_int_equal(pp_pool_map(pool, "square", args, N, res, NULL), 0);
  for (i = 0; i < N; i++) {
    int64_t x = (int64_t)i - 500;
    assert_int_equal(res[i].status, 0);
    assert_null(res[i].message);
    assert_true(pp_test_int_result(&res[i]) == x * x);
  }
  pp_results_free(res, N);
  pp_test_free_bufs(args, N);
  free(res);
  free(args);
}

static void test_map_starmap_with_tuples(void **state) {
  pp_pool_t *pool = *state;
  enum { N = 100 };
  pp_buf_t args[N];
  pp_result_t res[N];
  size_t i;
  for (i = 0; i < N; i++)
    assert_int_equal(pp_pack(&args[i], "ii", (int64_t)i, (int64_t)(2 * i)), 0);
  assert_int_equal(pp_pool_starmap(pool, "add", args, N, res, NULL), 0);
  for (i = 0; i < N; i++)
    assert_true(pp_test_int_result(&res[i]) == (int64_t)(3 * i));
  pp_results_free(res, N);
  pp_test_free_bufs(args, N);
}

static void test_map_malformed_tuple_is_ebadargs(void **state) {
  pp_pool_t *pool = *state;
  enum { N = 10 };
  pp_buf_t args[N];
  pp_result_t res[N];
  uint64_t before = submitted(pool);
  size_t i;
  for (i = 0; i < N; i++)
    args[i] = pp_test_pack_int((int64_t)i);
  /* One argument in the middle is not a tuple: a truncated one. */
  args[6].len -= 3;
  memset(res, 0x5a, sizeof(res));
  assert_int_equal(pp_pool_starmap(pool, "square", args, N, res, NULL),
                   PP_EBADARGS);
  assert_non_null(strstr(pp_last_error(), "tuples[6]"));
  /* Nothing ran, and the results were zeroed. */
  assert_true(submitted(pool) == before);
  for (i = 0; i < N; i++) {
    assert_int_equal(res[i].status, 0);
    assert_null(res[i].data);
    assert_null(res[i].message);
  }
  args[6].len += 3;
  pp_test_free_bufs(args, N);
}

static void test_map_unknown_task_is_enotask(void **state) {
  pp_pool_t *pool = *state;
  pp_buf_t args[3];
  pp_result_t res[3];
  pp_future_t *f = (pp_future_t *)&args;
  uint64_t before = submitted(pool);
  size_t i;
  for (i = 0; i < 3; i++)
    args[i] = pp_test_pack_int((int64_t)i);
  memset(res, 0x5a, sizeof(res));
  assert_int_equal(pp_pool_map(pool, "sqaure", args, 3, res, NULL), PP_ENOTASK);
  assert_non_null(strstr(pp_last_error(), "sqaure"));
  for (i = 0; i < 3; i++)
    assert_null(res[i].data);
  assert_int_equal(pp_pool_starmap(pool, "sqaure", args, 3, res, NULL),
                   PP_ENOTASK);
  assert_int_equal(
      pp_pool_submit(pool, "sqaure", args[0].data, args[0].len, NULL, &f),
      PP_ENOTASK);
  assert_null(f);
  assert_non_null(strstr(pp_last_error(), "sqaure"));
  assert_true(submitted(pool) == before);
  pp_test_free_bufs(args, 3);
}

static void test_map_empty_map_is_ok(void **state) {
  pp_pool_t *pool = *state;
  assert_int_equal(pp_pool_map(pool, "square", NULL, 0, NULL, NULL), 0);
  assert_int_equal(pp_pool_starmap(pool, "square", NULL, 0, NULL, NULL), 0);
}

static void test_map_stop_on_error_cancels_the_rest(void **state) {
  pp_pool_t *pool = *state;
  enum { N = 20 };
  pp_buf_t args[N];
  pp_result_t res[N];
  pp_map_options_t mo;
  apr_time_t t0 = apr_time_now();
  size_t i;
  /* The first call fails at once; the others would sleep for 30 s. */
  args[0] = pack_act("fail", 0);
  for (i = 1; i < N; i++)
    args[i] = pack_act("sleep", PP_TEST_MS(30000));
  memset(&mo, 0, sizeof(mo));
  mo.flags = PP_MAP_STOP_ON_ERROR;
  mo.chunksize = 1;
  assert_int_equal(pp_pool_starmap(pool, "act", args, N, res, &mo), PP_ETASK);
  assert_int_equal(res[0].status, PP_ETASK);
  assert_string_equal(res[0].message, "act failed for 0");
  for (i = 1; i < N; i++) {
    assert_int_equal(res[i].status, PP_ECANCELED);
    assert_null(res[i].data);
    assert_non_null(res[i].message);
  }
  /* The sleeping calls were stopped, not waited out. */
  assert_true(apr_time_now() - t0 < apr_time_from_msec(PP_TEST_MS(25000)));
  pp_results_free(res, N);
  pp_test_free_bufs(args, N);
}

/* The failure that stops a map is what it returns, though the call it
 * cancelled comes first in input order. */
static void test_map_stop_on_error_returns_its_cause(void **state) {
  pp_pool_t *pool = *state;
  enum { N = 6 };
  pp_buf_t args[N];
  pp_result_t res[N];
  pp_map_options_t mo;
  size_t i;
  args[0] = pack_act("sleep", 30000);
  for (i = 1; i < N - 1; i++)
    args[i] = pack_act("square", (int64_t)i);
  args[N - 1] = pack_act("fail", N - 1);
  memset(&mo, 0, sizeof(mo));
  mo.flags = PP_MAP_STOP_ON_ERROR;
  mo.chunksize = 1;
  assert_int_equal(pp_pool_starmap(pool, "act", args, N, res, &mo), PP_ETASK);
  assert_int_equal(res[0].status, PP_ECANCELED);
  assert_int_equal(res[N - 1].status, PP_ETASK);
  pp_results_free(res, N);
  pp_test_free_bufs(args, N);
}

static void test_map_run_all_reports_each_status(void **state) {
  pp_pool_t *pool = *state;
  enum { N = 100 };
  pp_buf_t args[N];
  pp_result_t res[N];
  size_t i;
  for (i = 0; i < N; i++)
    args[i] = pack_act(i % 2 ? "fail" : "square", (int64_t)i);
  /* The return value is the status of the first failure in input order. */
  assert_int_equal(pp_pool_starmap(pool, "act", args, N, res, NULL), PP_ETASK);
  for (i = 0; i < N; i++) {
    if (i % 2 == 0) {
      assert_int_equal(res[i].status, 0);
      assert_true(pp_test_int_result(&res[i]) == (int64_t)(i * i));
    } else {
      char want[64];
      snprintf(want, sizeof(want), "act failed for %zu", i);
      assert_int_equal(res[i].status, PP_ETASK);
      assert_null(res[i].data);
      assert_string_equal(res[i].message, want);
    }
  }
  pp_results_free(res, N);
  pp_test_free_bufs(args, N);
}

typedef struct {
  int *seen;
  size_t n;
  int stop_after_first;
  int calls;
  int bad;
} unordered_t;

/* Counts deliveries per index; values are checked against the argument. */
static int count_result(void *data, size_t index, pp_result_t *r) {
  unordered_t *u = data;
  u->calls++;
  if (index >= u->n) {
    u->bad++;
  } else {
    u->seen[index]++;
    if (!u->stop_after_first &&
        (r->status != 0 || pp_test_int_result(r) != (int64_t)(index * index)))
      u->bad++;
  }
  pp_results_free(r, 1);
  return u->stop_after_first;
}

/* Runs an unordered map of args[0..n) through count_result, which asks to
 * stop at the first result if stop_after_first is set, and checks that it
 * returns `want` and that every index was delivered once, and only the
 * indexes that exist (with the square of the index, unless stopping). */
static void run_unordered(pp_pool_t *pool, const char *task,
                          const pp_buf_t *args, size_t n, int stop_after_first,
                          const pp_map_options_t *mo, int want) {
  int *seen = calloc(n, sizeof(*seen));
  unordered_t u;
  size_t i;
  assert_non_null(seen);
  memset(&u, 0, sizeof(u));
  u.seen = seen;
  u.n = n;
  u.stop_after_first = stop_after_first;
  assert_int_equal(
      pp_pool_map_unordered(pool, task, args, n, count_result, &u, mo), want);
  assert_int_equal(u.calls, n);
  assert_int_equal(u.bad, 0);
  for (i = 0; i < n; i++)
    assert_int_equal(seen[i], 1);
  free(seen);
}

static void test_map_unordered_delivers_each_index_once(void **state) {
  pp_pool_t *pool = *state;
  enum { N = 500 };
  pp_buf_t args[N];
  size_t i;
  for (i = 0; i < N; i++)
    args[i] = pp_test_pack_int((int64_t)i);
  run_unordered(pool, "square", args, N, 0, NULL, 0);
  pp_test_free_bufs(args, N);
}

/* A callback that asks to stop still gets every remaining result, once. */
static void test_map_unordered_callback_can_stop(void **state) {
  pp_pool_t *pool = *state;
  enum { N = 20 };
  pp_buf_t args[N];
  pp_map_options_t mo;
  size_t i;
  args[0] = pack_act("square", 3);
  for (i = 1; i < N; i++)
    args[i] = pack_act("sleep", 30000);
  memset(&mo, 0, sizeof(mo));
  mo.chunksize = 1;
  run_unordered(pool, "act", args, N, 1, &mo, PP_ECANCELED);
  pp_test_free_bufs(args, N);
}

static void test_map_chunksizes_all_give_the_same(void **state) {
  pp_pool_t *pool = *state;
  enum { N = 300 };
  static const size_t chunks[] = {1, 2, 7, 64, 1000};
  pp_buf_t args[N];
  pp_result_t res[N];
  size_t i, c;
  for (i = 0; i < N; i++)
    args[i] = pp_test_pack_int((int64_t)i);
  for (c = 0; c < sizeof(chunks) / sizeof(chunks[0]); c++) {
    pp_map_options_t mo;
    memset(&mo, 0, sizeof(mo));
    mo.chunksize = chunks[c];
    assert_int_equal(pp_pool_map(pool, "square", args, N, res, &mo), 0);
    for (i = 0; i < N; i++)
      assert_true(pp_test_int_result(&res[i]) == (int64_t)(i * i));
    pp_results_free(res, N);
  }
  pp_test_free_bufs(args, N);
}

/* A chunk size at the top of size_t (issue 17, item 2) is as good as one
 * larger than the map: a worker's room is chunk + 1 calls, which must not
 * wrap to 0 and leave every call queued for ever.  Each map is waited for
 * with a limit, so a stall fails the test instead of hanging it. */
typedef struct imap_feed_s {
  const pp_buf_t *args;
  size_t n, got;
  int64_t *sum;
  int64_t give_up; /* apr time */
} imap_feed_t;

static int imap_feed_next(void *data, pp_next_arg_t *next) {
  imap_feed_t *f = data;
  if (next->index >= f->n)
    return 0;
  next->arg = f->args[next->index];
  return 1;
}

static int imap_feed_result(void *data, size_t index, pp_result_t *r) {
  imap_feed_t *f = data;
  if (r->status == 0 && pp_test_int_result(r) == (int64_t)(index * index))
    f->got++;
  pp_free(r->data);
  free(r->message);
  return 0;
}

static int imap_feed_progress(void *data, const pp_progress_t *p) {
  imap_feed_t *f = data;
  (void)p;
  return apr_time_now() > f->give_up; /* stalled: stop the map */
}

static void test_map_huge_chunksize_does_not_stall(void **state) {
  pp_pool_t *pool = *state;
  enum { N = 200 };
  static const size_t chunks[] = {(size_t)-1, (size_t)-2, (size_t)-1 / 2};
  pp_buf_t args[N], tuples[N];
  pp_result_t res[N];
  size_t i, c;
  for (i = 0; i < N; i++) {
    args[i] = pp_test_pack_int((int64_t)i);
    assert_int_equal(pp_pack(&tuples[i], "ii", (int64_t)i, (int64_t)1), 0);
  }
  for (c = 0; c < sizeof(chunks) / sizeof(chunks[0]); c++) {
    pp_map_options_t mo;
    pp_map_t *m;
    imap_feed_t feed;
    memset(&mo, 0, sizeof(mo));
    mo.chunksize = chunks[c];
    assert_int_equal(pp_pool_map_async(pool, "square", args, N, res, &mo, &m),
                     0);
    assert_int_equal(pp_map_wait(m, 30000 * PP_TEST_TIME_SCALE), 0);
    for (i = 0; i < N; i++)
      assert_true(pp_test_int_result(&res[i]) == (int64_t)(i * i));
    pp_map_free(m);
    pp_results_free(res, N);
    assert_int_equal(
        pp_pool_starmap_async(pool, "add", tuples, N, res, &mo, &m), 0);
    assert_int_equal(pp_map_wait(m, 30000 * PP_TEST_TIME_SCALE), 0);
    for (i = 0; i < N; i++)
      assert_true(pp_test_int_result(&res[i]) == (int64_t)(i + 1));
    pp_map_free(m);
    pp_results_free(res, N);
    memset(&feed, 0, sizeof(feed));
    feed.args = args;
    feed.n = N;
    feed.give_up = apr_time_now() + apr_time_from_sec(30 * PP_TEST_TIME_SCALE);
    mo.progress = imap_feed_progress;
    mo.progress_data = &feed;
    assert_int_equal(pp_pool_imap(pool, "square", imap_feed_next, &feed,
                                  imap_feed_result, &feed, &mo),
                     0);
    assert_int_equal(feed.got, N);
  }
  pp_test_free_bufs(args, N);
  pp_test_free_bufs(tuples, N);
}

/* Sizes around the one-write frame limit and far above it. */
static void test_map_echo_keeps_bytes_of_any_size(void **state) {
  pp_pool_t *pool = *state;
  static const size_t sizes[] = {0,    1,    4000,  4071,    4072,
                                 4073, 4096, 65537, 3u << 20};
  enum { N = sizeof(sizes) / sizeof(sizes[0]) };
  pp_buf_t args[N];
  pp_result_t res[N];
  size_t i;
  for (i = 0; i < N; i++) {
    void *p = malloc(sizes[i] + 1);
    assert_non_null(p);
    pp_test_fill(p, sizes[i], i);
    args[i].data = p;
    args[i].len = sizes[i];
  }
  assert_int_equal(pp_pool_map(pool, "echo", args, N, res, NULL), 0);
  for (i = 0; i < N; i++) {
    assert_int_equal(res[i].len, sizes[i]);
    assert_int_equal(pp_test_check(res[i].data, res[i].len, i), sizes[i]);
    free((void *)args[i].data);
  }
  pp_results_free(res, N);
}

static void test_map_timeout_fails_only_slow_calls(void **state) {
  pp_pool_t *pool = *state;
  pp_buf_t args[4];
  pp_result_t res[4];
  pp_map_options_t mo;
  size_t i;
  args[0] = pack_act("square", 2);
  args[1] = pack_act("sleep", 60000);
  args[2] = pack_act("square", 3);
  args[3] = pack_act("sleep", 60000);
  memset(&mo, 0, sizeof(mo));
  mo.timeout_ms = 500;
  mo.chunksize = 1;
  assert_int_equal(pp_pool_map(pool, "act", args, 4, res, &mo), PP_ETIMEDOUT);
  assert_true(pp_test_int_result(&res[0]) == 4);
  assert_true(pp_test_int_result(&res[2]) == 9);
  assert_int_equal(res[1].status, PP_ETIMEDOUT);
  assert_int_equal(res[3].status, PP_ETIMEDOUT);
  assert_non_null(strstr(res[1].message, "timeout"));
  pp_results_free(res, 4);
  for (i = 0; i < 4; i++)
    pp_free((void *)args[i].data);
}

/* With chunksize 1 a worker is handed the next call while it runs one; a
 * call that waits there behind a long call while the other worker has
 * nothing to do is taken back and run by that worker, once.  Here worker A
 * runs a 60 s call, and the map must still finish on worker B, every call
 * exactly once, while A's call goes on. */
static void test_map_chunksize_1_moves_waiting_calls_to_idle_workers(
    void **state) {
  pp_pool_t *pool = *state;
  enum { N = 40 };
  pp_buf_t args[N];
  pp_result_t res[N];
  pp_map_options_t mo;
  pp_pool_stats_t before, after;
  pp_future_t *f = NULL;
  int64_t pids[2], long_pid;
  pp_buf_t sixty;
  pp_result_t r;
  pp_future_t *g = NULL;
  size_t i;
  PP_TEST_OK(pp_pack(&sixty, "i", (int64_t)60000));
  PP_TEST_OK(pp_pool_stats(pool, &before));
  PP_TEST_OK(pp_pool_submit(pool, "sleep_ms", sixty.data, sixty.len, NULL, &f));
  pp_free((void *)sixty.data);
  /* A call submitted now goes to the idle worker, not behind the long
   * one: it tells which worker that is. */
  PP_TEST_OK(pp_pool_submit(pool, "pid", NULL, 0, NULL, &g));
  assert_int_equal(pp_future_wait(g, PP_TEST_MS(30000)), 0);
  PP_TEST_OK(pp_future_take(g, &r));
  assert_int_equal(pp_pool_worker_pids(pool, pids, 2), 2);
  long_pid = pp_test_int_result(&r) == pids[0] ? pids[1] : pids[0];
  pp_results_free(&r, 1);
  pp_future_free(g);
  for (i = 0; i < N; i++) {
    args[i].data = NULL;
    args[i].len = 0;
  }
  memset(&mo, 0, sizeof(mo));
  mo.chunksize = 1;
  PP_TEST_OK(pp_pool_map(pool, "pid", args, N, res, &mo));
  for (i = 0; i < N; i++) {
    assert_int_equal(res[i].status, 0);
    assert_true(pp_test_int_result(&res[i]) != long_pid);
  }
  pp_results_free(res, N);
  /* The long call still runs: nothing waited for it. */
  assert_int_equal(pp_future_status(f), PP_EAGAIN);
  PP_TEST_OK(pp_future_cancel(f));
  assert_int_equal(pp_future_wait(f, PP_TEST_MS(30000)), 0);
  assert_int_equal(pp_future_status(f), PP_ECANCELED);
  pp_future_free(f);
  /* Each call finished once: none twice, none lost. */
  PP_TEST_OK(pp_pool_stats(pool, &after));
  assert_int_equal(after.calls_completed - before.calls_completed,
                   after.calls_submitted - before.calls_submitted);
}

int main(int argc, char **argv) {
  int rc;
  if (pp_worker_main(argc, argv, pp_test_tasks, &rc))
    return rc;
  const struct CMUnitTest tests[] = {
      PP_TEST_POOL_TEST(test_map_ordered_results_for_1000_calls),
      PP_TEST_POOL_TEST(test_map_starmap_with_tuples),
      PP_TEST_POOL_TEST(test_map_malformed_tuple_is_ebadargs),
      PP_TEST_POOL_TEST(test_map_unknown_task_is_enotask),
      PP_TEST_POOL_TEST(test_map_empty_map_is_ok),
      PP_TEST_POOL_TEST(test_map_stop_on_error_cancels_the_rest),
      PP_TEST_POOL_TEST(test_map_stop_on_error_returns_its_cause),
      PP_TEST_POOL_TEST(test_map_run_all_reports_each_status),
      PP_TEST_POOL_TEST(test_map_unordered_delivers_each_index_once),
      PP_TEST_POOL_TEST(test_map_unordered_callback_can_stop),
      PP_TEST_POOL_TEST(test_map_chunksizes_all_give_the_same),
      PP_TEST_POOL_TEST(test_map_huge_chunksize_does_not_stall),
      PP_TEST_POOL_TEST(test_map_echo_keeps_bytes_of_any_size),
      PP_TEST_POOL_TEST(test_map_timeout_fails_only_slow_calls),
      PP_TEST_POOL_TEST(test_map_chunksize_1_moves_waiting_calls_to_idle_workers),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
