/*
 * test_progress.c - a map's progress reports (pp_map_options_t.progress)
 * and the ready display (pp_progress_bar): counts that only grow, a final
 * report with every call counted, reports no closer than the interval, a
 * callback that stops the map without losing a result, and what the bar
 * draws on a terminal and in a log.
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

#define N 24
#define INTERVAL_MS 40

/* Every report a map made. */
typedef struct reports_s {
  pp_progress_t r[1024];
  size_t n;
  size_t stop_after; /* return 1 once this many calls are done (0: never) */
} reports_t;

static int record(void *data, const pp_progress_t *p) {
  reports_t *rs = data;
  if (rs->n < sizeof(rs->r) / sizeof(rs->r[0]))
    rs->r[rs->n++] = *p;
  return rs->stop_after > 0 && p->done >= rs->stop_after;
}

/* N calls of "act": every sixth fails at once, the others sleep 25 ms, so
 * that the map lasts several intervals on two workers. */
static void make_args(pp_buf_t *args, size_t *failing) {
  size_t i;
  *failing = 0;
  for (i = 0; i < N; i++) {
    int fail = i % 6 == 5;
    assert_int_equal(pp_pack(&args[i], "si", fail ? "fail" : "sleep",
                             (int64_t)(fail ? (int64_t)i : 25)),
                     0);
    *failing += (size_t)fail;
  }
}

static void test_progress_reports_grow_and_end_with_every_call(void **state) {
  pp_pool_t *pool = *state;
  static reports_t rs;
  pp_buf_t args[N];
  pp_result_t res[N];
  pp_map_options_t mo;
  size_t i, failing;
  make_args(args, &failing);
  memset(&rs, 0, sizeof(rs));
  memset(&mo, 0, sizeof(mo));
  mo.chunksize = 1;
  mo.progress = record;
  mo.progress_data = &rs;
  mo.progress_interval_ms = INTERVAL_MS;
  assert_int_equal(pp_pool_starmap(pool, "act", args, N, res, &mo), PP_ETASK);
  /* Twelve rounds of 25 ms on two workers: reports came while it ran. */
  assert_true(rs.n >= 3);
  for (i = 0; i < rs.n; i++) {
    assert_int_equal(rs.r[i].total, N);
    assert_true(rs.r[i].done <= N);
    assert_true(rs.r[i].failed <= rs.r[i].done);
    assert_int_equal(rs.r[i].final, i == rs.n - 1);
    if (i > 0) {
      assert_true(rs.r[i].done >= rs.r[i - 1].done);
      assert_true(rs.r[i].failed >= rs.r[i - 1].failed);
      /* No closer than the interval (ms are truncated), but the last. */
      if (!rs.r[i].final)
        assert_true(rs.r[i].elapsed_ms - rs.r[i - 1].elapsed_ms >=
                    INTERVAL_MS - 1);
    }
  }
  assert_int_equal(rs.r[rs.n - 1].done, N);
  assert_int_equal(rs.r[rs.n - 1].failed, failing);
  for (i = 0; i < N; i++)
    assert_int_equal(res[i].status, i % 6 == 5 ? PP_ETASK : 0);
  pp_results_free(res, N);
  pp_test_free_bufs(args, N);
}

static void test_progress_callback_stops_the_map_keeping_results(
    void **state) {
  pp_pool_t *pool = *state;
  static reports_t rs;
  pp_buf_t args[N];
  pp_result_t res[N];
  pp_map_options_t mo;
  size_t i, ok = 0, cancelled = 0;
  for (i = 0; i < N; i++)
    assert_int_equal(pp_pack(&args[i], "si", "sleep", (int64_t)25), 0);
  memset(&rs, 0, sizeof(rs));
  rs.stop_after = 2;
  memset(&mo, 0, sizeof(mo));
  mo.chunksize = 1;
  mo.progress = record;
  mo.progress_data = &rs;
  mo.progress_interval_ms = 10;
  assert_int_equal(pp_pool_starmap(pool, "act", args, N, res, &mo),
                   PP_ECANCELED);
  /* Every call has its outcome: its value, or the cancel; none lost. */
  for (i = 0; i < N; i++) {
    if (res[i].status == 0) {
      assert_true(pp_test_int_result(&res[i]) == 25);
      ok++;
    } else {
      assert_int_equal(res[i].status, PP_ECANCELED);
      assert_non_null(res[i].message);
      cancelled++;
    }
  }
  assert_true(ok >= 2);
  assert_true(cancelled > 0);
  assert_int_equal(ok + cancelled, N);
  /* The final report still came, with every call counted. */
  assert_int_equal(rs.r[rs.n - 1].final, 1);
  assert_int_equal(rs.r[rs.n - 1].done, N);
  pp_results_free(res, N);
  pp_test_free_bufs(args, N);
}

/* A scratch file in the test's folder (tmpfile() writes to the root of the
 * drive on Windows, which a user may not write to). */
static FILE *scratch(void) {
  FILE *f = fopen("test_progress.out", "w+");
  assert_non_null(f);
  return f;
}

/* Reads what a scratch file holds. */
static void slurp(FILE *f, char *buf, size_t cap) {
  size_t n;
  rewind(f);
  n = fread(buf, 1, cap - 1, f);
  buf[n] = '\0';
}

static void test_progress_bar_draws_a_bar_and_plain_lines(void **state) {
  pp_progress_bar_t bar;
  pp_progress_t p;
  char text[1024];
  FILE *f = scratch();
  (void)state;

  /* The redrawn bar: back to the line's start, half full, and a newline
   * only at the end. */
  memset(&bar, 0, sizeof(bar));
  bar.out = f;
  bar.mode = PP_PROGRESS_BAR;
  memset(&p, 0, sizeof(p));
  p.done = 500;
  p.total = 1000;
  p.failed = 3;
  p.elapsed_ms = 2000;
  assert_int_equal(pp_progress_bar(&bar, &p), 0);
  slurp(f, text, sizeof(text));
  assert_non_null(strstr(text, "\r[##########..........]"));
  assert_non_null(strstr(text, " 50%  500/1000  250/s  ETA 0:02  3 failed"));
  assert_null(strchr(text, '\n'));
  p.done = 1000;
  p.final = 1;
  p.elapsed_ms = 4000;
  assert_int_equal(pp_progress_bar(&bar, &p), 0);
  slurp(f, text, sizeof(text));
  assert_non_null(strstr(text, "[####################] 100%  1000/1000"));
  assert_non_null(strstr(text, "in 0:04"));
  assert_int_equal(text[strlen(text) - 1], '\n');
  fclose(f);

  /* Plain lines: none before the interval, one after it, and the last. */
  f = scratch();
  memset(&bar, 0, sizeof(bar));
  bar.out = f;
  bar.mode = PP_PROGRESS_LINES;
  bar.line_interval_ms = 1000;
  memset(&p, 0, sizeof(p));
  p.total = 10;
  p.done = 1;
  p.elapsed_ms = 500;
  pp_progress_bar(&bar, &p);
  p.done = 5;
  p.elapsed_ms = 1200;
  pp_progress_bar(&bar, &p);
  p.done = 6;
  p.elapsed_ms = 1500;
  pp_progress_bar(&bar, &p);
  p.done = 10;
  p.elapsed_ms = 2500;
  p.final = 1;
  pp_progress_bar(&bar, &p);
  slurp(f, text, sizeof(text));
  assert_string_equal(text, "procpool:  50%  5/10  4/s  ETA 0:01\n"
                            "procpool: 100%  10/10  4/s  in 0:02\n");
  fclose(f);

  /* Quiet draws nothing. */
  f = scratch();
  memset(&bar, 0, sizeof(bar));
  bar.out = f;
  bar.mode = PP_PROGRESS_QUIET;
  pp_progress_bar(&bar, &p);
  slurp(f, text, sizeof(text));
  assert_string_equal(text, "");
  fclose(f);
  remove("test_progress.out");
}

/* The one-option bar and the inline mode report too; PROCPOOL_PROGRESS=0
 * silences the bar (its output would go to the test's stderr). */
static void test_progress_inline_mode_and_the_bar_flag(void **state) {
  static reports_t rs;
  pp_pool_t *pool = pp_test_make_pool(1, PP_POOL_INLINE, 0, NULL);
  pp_buf_t args[N];
  pp_result_t res[N];
  pp_map_options_t mo;
  size_t i;
  (void)state;
  for (i = 0; i < N; i++)
    args[i] = pp_test_pack_int((int64_t)i);
  memset(&rs, 0, sizeof(rs));
  memset(&mo, 0, sizeof(mo));
  mo.progress = record;
  mo.progress_data = &rs;
  assert_int_equal(pp_pool_map(pool, "square", args, N, res, &mo), 0);
  assert_true(rs.n >= 1);
  assert_int_equal(rs.r[rs.n - 1].final, 1);
  assert_int_equal(rs.r[rs.n - 1].done, N);
  pp_results_free(res, N);
  pp_test_setenv("PROCPOOL_PROGRESS", "0");
  memset(&mo, 0, sizeof(mo));
  mo.flags = PP_MAP_PROGRESS_BAR;
  assert_int_equal(pp_pool_map(pool, "square", args, N, res, &mo), 0);
  assert_true(pp_test_int_result(&res[N - 1]) == (N - 1) * (N - 1));
  pp_results_free(res, N);
  pp_test_setenv("PROCPOOL_PROGRESS", NULL);
  /* An unknown flag is still refused. */
  mo.flags = 1u << 30;
  assert_int_equal(pp_pool_map(pool, "square", args, N, res, &mo), PP_EINVAL);
  pp_test_free_bufs(args, N);
  assert_int_equal(pp_pool_destroy(pool, PP_DESTROY_WAIT), 0);
}

int main(int argc, char **argv) {
  int rc;
  if (pp_worker_main(argc, argv, pp_test_tasks, &rc))
    return rc;
  const struct CMUnitTest tests[] = {
      PP_TEST_POOL_TEST(test_progress_reports_grow_and_end_with_every_call),
      PP_TEST_POOL_TEST(test_progress_callback_stops_the_map_keeping_results),
      cmocka_unit_test(test_progress_bar_draws_a_bar_and_plain_lines),
      cmocka_unit_test(test_progress_inline_mode_and_the_bar_flag),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
