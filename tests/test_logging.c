/*
 * test_logging.c - worker stdout, stderr and pp_log() messages reach the
 * parent's log callback as whole lines, tagged with the worker number and
 * the id of the call that was running.
 *
 * Output lines travel on their own streams, apart from the results, so a
 * line may arrive after its call's result: the tests wait for lines with a
 * generous deadline instead of expecting them at once.
 */
#ifdef _WIN32
/* First: it sets the Windows version the platform layer is built for. */
#include "../platform/win32/internal.h"
#include <io.h>
#endif

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

#define WAIT_MS PP_TEST_MS(20000)

static pp_pool_t *make_pool(int workers, pp_test_log_t *log,
                            const char *init_tag) {
  pp_pool_options_t o;
  pp_pool_t *pool = NULL;
  pp_buf_t init = {NULL, 0};
  pp_test_pool_options(&o, workers, 0, 0, log);
  if (init_tag != NULL) {
    assert_int_equal(pp_pack(&init, "s", init_tag), 0);
    o.initializer = "print";
    o.init_arg = init.data;
    o.init_arg_len = init.len;
  }
  PP_TEST_OK(pp_pool_create(&pool, &o));
  pp_free((void *)init.data);
  return pool;
}

/* Waits for a line and checks where it came from. */
static void expect_line(pp_test_log_t *log, const char *line,
                        pp_log_source_t source, int level, int worker,
                        uint64_t call_id) {
  pp_test_record_t rec;
  if (!pp_test_log_wait(log, line, WAIT_MS, &rec))
    fail_msg("no log line \"%s\" arrived", line);
  assert_int_equal(rec.source, source);
  assert_int_equal(rec.level, level);
  assert_int_equal(rec.worker, worker);
  if (rec.call_id != call_id)
    fail_msg("line \"%s\" (source %d) came under call %llu, not %llu", line,
             (int)rec.source, (unsigned long long)rec.call_id,
             (unsigned long long)call_id);
  assert_int_equal(rec.len, strlen(rec.line));
  assert_int_equal(pp_test_log_count_line(log, line), 1);
}

static void test_logging_lines_reach_callback_tagged(void **state) {
  enum { N = 10 };
  pp_test_log_t *log = pp_test_log_new();
  pp_pool_t *pool = make_pool(2, log, NULL);
  pp_future_t *f[N];
  int i;
  size_t r;
  (void)state;
  for (i = 0; i < N; i++) {
    char tag[16];
    pp_buf_t b;
    snprintf(tag, sizeof(tag), "t%d", i);
    assert_int_equal(pp_pack(&b, "s", tag), 0);
    assert_int_equal(pp_pool_submit(pool, "print", b.data, b.len, NULL, &f[i]),
                     0);
    pp_free((void *)b.data);
  }
  for (i = 0; i < N; i++) {
    pp_result_t res;
    int64_t call_id = 0, worker = -1;
    char line[64];
    assert_int_equal(pp_future_wait(f[i], -1), 0);
    assert_int_equal(pp_future_take(f[i], &res), 0);
    assert_int_equal(res.status, 0);
    assert_int_equal(pp_unpack(res.data, res.len, "ii", &call_id, &worker), 0);
    pp_results_free(&res, 1);
    pp_future_free(f[i]);
    /* Call ids are given in submit order, from 1, in each pool. */
    assert_int_equal(call_id, i + 1);
    assert_in_range(worker, 0, 1);

    snprintf(line, sizeof(line), "out t%d", i);
    expect_line(log, line, PP_LOG_STDOUT, 0, (int)worker, (uint64_t)call_id);
    snprintf(line, sizeof(line), "err t%d", i);
    expect_line(log, line, PP_LOG_STDERR, 0, (int)worker, (uint64_t)call_id);
    snprintf(line, sizeof(line), "log t%d", i);
    expect_line(log, line, PP_LOG_TASK, 5, (int)worker, (uint64_t)call_id);
    /* One pp_log() with a newline inside gives two records. */
    snprintf(line, sizeof(line), "multi t%d a", i);
    expect_line(log, line, PP_LOG_TASK, 6, (int)worker, (uint64_t)call_id);
    snprintf(line, sizeof(line), "multi t%d b", i);
    expect_line(log, line, PP_LOG_TASK, 6, (int)worker, (uint64_t)call_id);
  }
  assert_int_equal(pp_pool_destroy(pool, PP_DESTROY_WAIT), 0);
  /* No record ever holds a newline or the call markers' NUL. */
  for (r = 0; r < pp_test_log_count(log); r++) {
    pp_test_record_t rec;
    assert_true(pp_test_log_get(log, r, &rec));
    assert_null(strchr(rec.line, '\n'));
    assert_int_equal(strlen(rec.line), rec.len);
  }
  pp_test_log_free(log);
}

/* Output written by an initializer belongs to no call (id 0), and each
 * worker's lines carry its own number. */
static void test_logging_initializer_output_has_worker_numbers(void **state) {
  pp_test_log_t *log = pp_test_log_new();
  pp_pool_t *pool = make_pool(2, log, "init");
  int seen[2] = {0, 0};
  size_t r;
  (void)state;
  assert_true(pp_test_log_wait(log, "log init", WAIT_MS, NULL));
  /* Both workers ran it: wait until both of their lines are in. */
  for (r = 0; r < (size_t)(WAIT_MS / 10) &&
              pp_test_log_count_line(log, "log init") < 2;
       r++)
    pp_test_sleep_ms(10);
  for (r = 0; r < pp_test_log_count(log); r++) {
    pp_test_record_t rec;
    assert_true(pp_test_log_get(log, r, &rec));
    if (strcmp(rec.line, "log init") != 0)
      continue;
    assert_true(rec.call_id == 0);
    assert_in_range(rec.worker, 0, 1);
    seen[rec.worker]++;
  }
  assert_int_equal(seen[0], 1);
  assert_int_equal(seen[1], 1);
  assert_int_equal(pp_pool_destroy(pool, PP_DESTROY_WAIT), 0);
  pp_test_log_free(log);
}

/* Two workers print thousands of lines at once, without flushing each;
 * every line must still arrive whole and exactly once. */
static void test_logging_lines_are_never_mixed(void **state) {
  enum { LINES = 3000 };
  static const char *tags[2] = {"alpha", "beta"};
  pp_test_log_t *log = pp_test_log_new();
  pp_pool_t *pool = make_pool(2, log, NULL);
  pp_buf_t args[2];
  pp_result_t res[2];
  pp_map_options_t mo;
  unsigned char *seen = calloc(2 * LINES, 1);
  size_t r, total = 0;
  int t, waited;
  (void)state;
  assert_non_null(seen);
  for (t = 0; t < 2; t++)
    assert_int_equal(pp_pack(&args[t], "si", tags[t], (int64_t)LINES), 0);
  memset(&mo, 0, sizeof(mo));
  mo.chunksize = 1;
  assert_int_equal(pp_pool_starmap(pool, "spam", args, 2, res, &mo), 0);
  pp_results_free(res, 2);
  pp_test_free_bufs(args, 2);
  for (waited = 0; waited < WAIT_MS / 10 && pp_test_log_count(log) < 2 * LINES;
       waited++)
    pp_test_sleep_ms(10);

  for (r = 0; r < pp_test_log_count(log); r++) {
    pp_test_record_t rec;
    char want[256], tag[16];
    long long n = -1;
    assert_true(pp_test_log_get(log, r, &rec));
    assert_int_equal(rec.source, PP_LOG_STDOUT);
    assert_int_equal(sscanf(rec.line, "%15s %lld", tag, &n), 2);
    t = strcmp(tag, "alpha") == 0 ? 0 : strcmp(tag, "beta") == 0 ? 1 : -1;
    assert_true(t >= 0);
    assert_in_range(n, 0, LINES - 1);
    pp_test_spam_line(want, sizeof(want), tag, n);
    assert_string_equal(rec.line, want);
    seen[t * LINES + n]++;
    total++;
  }
  assert_int_equal(total, 2 * LINES);
  for (r = 0; r < 2 * LINES; r++)
    assert_int_equal(seen[r], 1);
  free(seen);
  assert_int_equal(pp_pool_destroy(pool, PP_DESTROY_WAIT), 0);
  pp_test_log_free(log);
}

static void test_logging_default_callback_does_not_crash(void **state) {
  pp_pool_t *pool = make_pool(1, NULL, NULL);
  pp_future_t *f = NULL;
  pp_log_record_t rec;
  pp_buf_t b;
  pp_result_t res;
  int s;
  (void)state;
  assert_int_equal(pp_pack(&b, "s", "default"), 0);
  assert_int_equal(pp_pool_submit(pool, "print", b.data, b.len, NULL, &f), 0);
  assert_int_equal(pp_future_wait(f, -1), 0);
  assert_int_equal(pp_future_take(f, &res), 0);
  assert_int_equal(res.status, 0);
  pp_results_free(&res, 1);
  pp_future_free(f);
  pp_free((void *)b.data);
  assert_int_equal(pp_pool_destroy(pool, PP_DESTROY_WAIT), 0);

  /* Called directly, with every source and an empty line. */
  memset(&rec, 0, sizeof(rec));
  for (s = PP_LOG_STDOUT; s <= PP_LOG_TASK; s++) {
    rec.source = (pp_log_source_t)s;
    rec.worker = s;
    rec.call_id = 77;
    rec.line = s == PP_LOG_TASK ? "" : "direct line";
    rec.len = strlen(rec.line);
    pp_log_stderr(NULL, &rec);
  }
  pp_log_stderr(NULL, NULL);
  /* Outside a worker pp_log() writes to stderr. */
  pp_log(1, "pp_log from the parent, %d", 42);
}

/* With PP_POOL_INHERIT_OUTPUT the workers' stdout and stderr are the
 * test's own (ctest shows them); only pp_log() messages reach the callback,
 * still tagged. */
static void test_logging_inherited_output_skips_capture(void **state) {
  pp_test_log_t *log = pp_test_log_new();
  pp_pool_options_t o;
  pp_pool_t *pool = NULL;
  pp_buf_t b;
  pp_result_t res;
  int64_t call_id = 0, worker = -1;
  size_t r;
  (void)state;
  memset(&o, 0, sizeof(o));
  o.workers = 2;
  o.flags = PP_POOL_INHERIT_OUTPUT;
  o.log_cb = pp_test_log_cb;
  o.log_data = log;
  PP_TEST_OK(pp_pool_create(&pool, &o));
  assert_int_equal(pp_pack(&b, "s", "inherited"), 0);
  assert_int_equal(pp_pool_map(pool, "print", &b, 1, &res, NULL), 0);
  assert_int_equal(pp_unpack(res.data, res.len, "ii", &call_id, &worker), 0);
  pp_results_free(&res, 1);
  pp_free((void *)b.data);
  expect_line(log, "log inherited", PP_LOG_TASK, 5, (int)worker,
              (uint64_t)call_id);
  assert_int_equal(pp_pool_destroy(pool, PP_DESTROY_WAIT), 0);
  for (r = 0; r < pp_test_log_count(log); r++) {
    pp_test_record_t rec;
    assert_true(pp_test_log_get(log, r, &rec));
    assert_int_equal(rec.source, PP_LOG_TASK);
  }
  pp_test_log_free(log);
}

/* Waits for the reply of one call and returns its id (the task replies
 * with an "i" of its call id or some number). */
static int64_t call_int(pp_pool_t *pool, const char *task, pp_buf_t arg) {
  pp_future_t *f = NULL;
  pp_result_t r;
  int64_t v;
  PP_TEST_OK(pp_pool_submit(pool, task, arg.data, arg.len, NULL, &f));
  assert_int_equal(pp_future_wait(f, WAIT_MS), 0);
  assert_int_equal(pp_future_take(f, &r), 0);
  if (r.status != 0)
    fail_msg("%s failed: %s", task, r.message);
  v = pp_test_int_result(&r);
  pp_results_free(&r, 1);
  pp_future_free(f);
  return v;
}

/* A line longer than PP_LOG_LINE_MAX arrives in pieces, each but the last
 * marked `more`, that put together give the line (issue 7, item 15). */
static void test_logging_long_line_in_marked_pieces(void **state) {
  enum { LEN = 3 * PP_LOG_LINE_MAX + 3392 };
  pp_test_log_t *log = pp_test_log_new();
  pp_pool_t *pool = make_pool(1, log, NULL);
  pp_buf_t b = pp_test_pack_int(LEN);
  char *whole = malloc(LEN + 1);
  size_t i, n, got = 0, pieces = 0;
  (void)state;
  assert_non_null(whole);
  assert_true(call_int(pool, "longline", b) == LEN);
  assert_true(pp_test_log_wait(log, "longline end", WAIT_MS, NULL));
  n = pp_test_log_count(log);
  for (i = 0; i < n; i++) {
    pp_test_record_t r;
    assert_true(pp_test_log_get(log, i, &r));
    if (r.source != PP_LOG_STDOUT || strcmp(r.line, "longline end") == 0)
      continue;
    assert_true(got + r.len <= LEN);
    memcpy(whole + got, r.line, r.len);
    got += r.len;
    pieces++;
    /* Full pieces go on; the last one ends the line. */
    assert_int_equal(r.more, got < LEN);
    assert_int_equal(r.len, got < LEN ? PP_LOG_LINE_MAX : 3392);
  }
  assert_int_equal(got, LEN);
  assert_int_equal(pieces, 4);
  for (i = 0; i < LEN; i++)
    if (whole[i] != 'a' + (char)(i % 26))
      fail_msg("byte %llu of the long line is wrong", (unsigned long long)i);
  free(whole);
  pp_free((void *)b.data);
  assert_int_equal(pp_pool_destroy(pool, PP_DESTROY_WAIT), 0);
  pp_test_log_free(log);
}

/* A call's output is all delivered by the time its result is, also when
 * it ends without a newline and the worker then stays quiet (issue 17,
 * item 17): the part of a line a call leaves is not held back for the
 * next call's output, which may never come. */
static void
test_logging_output_without_newline_comes_with_result(void **state) {
  enum { LEN = 1 << 20 };
  pp_test_log_t *log = pp_test_log_new();
  pp_pool_t *pool = make_pool(1, log, NULL);
  pp_buf_t b = pp_test_pack_int(LEN);
  size_t i, n, got = 0;
  int round;
  (void)state;
  for (round = 0; round < 3; round++) {
    size_t before = pp_test_log_count(log);
    got = 0;
    assert_true(call_int(pool, "noeol", b) == LEN);
    /* No waiting: the lines are delivered before the result. */
    n = pp_test_log_count(log);
    for (i = before; i < n; i++) {
      pp_test_record_t r;
      assert_true(pp_test_log_get(log, i, &r));
      if (r.source == PP_LOG_STDOUT)
        got += r.len;
    }
    if (got != LEN)
      fail_msg("round %d: %llu of %d bytes of the call's output came with "
               "its result",
               round, (unsigned long long)got, LEN);
  }
  pp_free((void *)b.data);
  assert_int_equal(pp_pool_destroy(pool, PP_DESTROY_WAIT), 0);
  pp_test_log_free(log);
}

/* Output that looks like procpool's call marker, but lacks the worker's
 * secret key, is text: it cannot retag the lines after it.  NUL bytes in a
 * line are kept and counted (issue 7, item 15). */
static void test_logging_spoofed_marker_is_text(void **state) {
  pp_test_log_t *log = pp_test_log_new();
  pp_pool_t *pool = make_pool(1, log, NULL);
  pp_test_record_t rec;
  pp_buf_t b;
  int64_t id;
  size_t i, n, fake = 0;
  int t;
  (void)state;
  PP_TEST_OK(pp_pack(&b, "s", "s1"));
  id = call_int(pool, "spoof", b);
  assert_true(pp_test_log_wait(log, "after s1", WAIT_MS, &rec));
  /* The made-up id was 1000000. */
  assert_true(rec.call_id == (uint64_t)id);
  /* "x", NUL, "y s1": strcmp sees "x", the length tells the truth.  The
   * line after "after s1" may come in a later write (a worker flushes
   * while its task runs), so the records are looked at until it is there. */
  for (t = 0; t < WAIT_MS / 10 && fake != 3; t++) {
    if (t > 0)
      pp_test_sleep_ms(10);
    n = pp_test_log_count(log);
    for (i = 0; i < n; i++) {
      pp_test_record_t r;
      assert_true(pp_test_log_get(log, i, &r));
      if (r.len == 6 && memcmp(r.line, "x\0y s1", 6) == 0) {
        assert_true(r.call_id == (uint64_t)id);
        fake |= 1;
      }
      if (r.len == 35 && r.line[0] == '\0' &&
          memcmp(r.line + 1, "PP00000000000f4240", 18) == 0)
        fake |= 2;
    }
  }
  assert_int_equal(fake, 3);
  pp_free((void *)b.data);
  assert_int_equal(pp_pool_destroy(pool, PP_DESTROY_WAIT), 0);
  pp_test_log_free(log);
}

/* Crashes are reported without waiting for a forked child that holds the
 * worker's stdout and stderr (it used to cost a second per stream). */
static void test_logging_held_output_does_not_delay_crashes(void **state) {
#ifdef _WIN32
  (void)state;
  print_message("skipped: needs fork()\n");
  skip();
#else
  enum { N = 5 };
  pp_test_log_t *log = pp_test_log_new();
  pp_pool_t *pool = make_pool(2, log, NULL);
  int64_t holders[N];
  apr_time_t t0 = apr_time_now();
  double secs, base;
  size_t i, n, found = 0;
  (void)state;
  /* The same crashes without held output first: what they cost on this
   * machine, under this load. */
  for (i = 0; i < N; i++) {
    pp_future_t *f = NULL;
    PP_TEST_OK(pp_pool_submit(pool, "segv", NULL, 0, NULL, &f));
    assert_int_equal(pp_future_wait(f, WAIT_MS), 0);
    assert_int_equal(pp_future_status(f), PP_EWORKERDIED);
    pp_future_free(f);
  }
  base = (double)(apr_time_now() - t0) / 1e6;
  t0 = apr_time_now();
  for (i = 0; i < N; i++) {
    pp_future_t *f = NULL;
    pp_buf_t b;
    PP_TEST_OK(pp_pack(&b, "iis", (int64_t)0, (int64_t)30000, "segv"));
    PP_TEST_OK(pp_pool_submit(pool, "fork_hold", b.data, b.len, NULL, &f));
    assert_int_equal(pp_future_wait(f, WAIT_MS), 0);
    assert_int_equal(pp_future_status(f), PP_EWORKERDIED);
    pp_future_free(f);
    pp_free((void *)b.data);
  }
  secs = (double)(apr_time_now() - t0) / 1e6;
  print_message("%d crashes with held output took %.2f s, without %.2f s\n", N,
                secs, base);
  n = pp_test_log_count(log);
  for (i = 0; i < n && found < N; i++) {
    pp_test_record_t r;
    long long pid;
    if (pp_test_log_get(log, i, &r) &&
        sscanf(r.line, "fork_hold: holder %lld", &pid) == 1)
      holders[found++] = pid;
  }
  for (i = 0; i < found; i++)
    pp_test_kill(holders[i]);
  assert_int_equal(found, N);
  /* Two streams waited for a second each made every crash take 2 s
   * longer. */
  assert_true(secs < base + N * 1.0);
  assert_int_equal(pp_pool_destroy(pool, PP_DESTROY_WAIT), 0);
  pp_test_log_free(log);
#endif
}

/* A line a task prints reaches the parent while the task still runs, with
 * no flush by the task (issue 8, item 1): line buffering on POSIX, a
 * periodic flush on Windows, where the C runtimes have no line buffering
 * and the Universal CRT ends a worker that asks for it with size 0. */
static void test_logging_stdout_streams_while_task_runs(void **state) {
  pp_test_log_t *log = pp_test_log_new();
  pp_pool_t *pool = make_pool(1, log, NULL);
  pp_test_record_t rec;
  pp_future_t *f = NULL;
  pp_result_t r;
  pp_buf_t b;
  (void)state;
  PP_TEST_OK(pp_pack(&b, "s", "t1"));
  PP_TEST_OK(pp_pool_submit(pool, "stream", b.data, b.len, NULL, &f));
  assert_true(pp_test_log_wait(log, "stream t1", WAIT_MS, &rec));
  assert_int_equal(rec.source, PP_LOG_STDOUT);
  assert_true(rec.call_id != 0);
  /* Still running: the line did not wait for the call's end. */
  assert_int_equal(pp_future_status(f), PP_EAGAIN);
  PP_TEST_OK(pp_future_cancel(f));
  assert_int_equal(pp_future_wait(f, WAIT_MS), 0);
  assert_int_equal(pp_future_take(f, &r), 0);
  assert_int_equal(r.status, PP_ECANCELED);
  pp_results_free(&r, 1);
  pp_future_free(f);
  pp_free((void *)b.data);
  assert_int_equal(pp_pool_destroy(pool, PP_DESTROY_WAIT), 0);
  pp_test_log_free(log);
}

/* A call that crashes keeps what it printed and did not flush, even with
 * the stream's lock held (no other thread can flush it): the worker's
 * crash handler writes out the stream's buffer before the worker ends,
 * and the line comes under the call's id.  Under Wine the line never
 * waits in the buffer (its C runtime writes stdout through at once), so
 * the Windows salvage is tested on a file stream below. */
static void test_logging_crash_keeps_buffered_output(void **state) {
  pp_test_log_t *log = pp_test_log_new();
  pp_pool_t *pool = make_pool(1, log, NULL);
  pp_future_t *f = NULL;
  pp_result_t r;
  pp_buf_t b;
  int i;
  (void)state;
  for (i = 0; i < 3; i++) {
    char tag[16], line[64];
    snprintf(tag, sizeof(tag), "c%d", i);
    snprintf(line, sizeof(line), "last words %s", tag);
    PP_TEST_OK(pp_pack(&b, "s", tag));
    PP_TEST_OK(pp_pool_submit(pool, "last_words", b.data, b.len, NULL, &f));
    assert_int_equal(pp_future_wait(f, WAIT_MS), 0);
    assert_int_equal(pp_future_take(f, &r), 0);
    assert_int_equal(r.status, PP_EWORKERDIED);
    /* Call ids are given in submit order, from 1. */
    expect_line(log, line, PP_LOG_STDOUT, 0, 0, (uint64_t)i + 1);
    pp_results_free(&r, 1);
    pp_future_free(f);
    pp_free((void *)b.data);
  }
  assert_int_equal(pp_pool_destroy(pool, PP_DESTROY_WAIT), 0);
  pp_test_log_free(log);
}

/* Windows streams a worker's stdout through the C runtime's own buffer
 * (pp__stdio_stream), so its crash handler writes out that buffer, found
 * through the runtime's fields (msvcrt.dll's FILE, the Universal CRT's
 * _get_stream_buffer_pointers), and empties it, so that the runtime's own
 * flush at the end cannot write the bytes twice (issue 18, item 13).  A
 * worker's crash cannot show it under Wine, whose runtime writes stdout
 * through at once; a file stream does wait in the buffer there. */
static void test_logging_salvage_writes_the_runtime_buffer(void **state) {
  (void)state;
#ifndef _WIN32
  print_message("skipped: POSIX streams stdout line by line and salvages "
                "only the worker's own buffers\n");
  skip();
#else
  static const char path[] = "test_logging_salvage.out";
  char text[64];
  size_t n;
  FILE *f = fopen(path, "wb");
  assert_non_null(f);
  assert_int_equal(setvbuf(f, NULL, _IOFBF, 4096), 0);
  assert_true(fputs("salvaged", f) >= 0);
  /* Still in the buffer: nothing has reached the file. */
  assert_int_equal(_filelengthi64(_fileno(f)), 0);
  pp__stdio_salvage(f, NULL);
  assert_int_equal(_filelengthi64(_fileno(f)), 8);
  /* Emptied: the runtime's flush writes nothing again, and the stream
   * goes on as before. */
  assert_int_equal(fflush(f), 0);
  assert_int_equal(_filelengthi64(_fileno(f)), 8);
  assert_true(fputs(", and more", f) >= 0);
  assert_int_equal(fclose(f), 0);
  f = fopen(path, "rb");
  assert_non_null(f);
  n = fread(text, 1, sizeof(text) - 1, f);
  text[n] = '\0';
  fclose(f);
  remove(path);
  assert_string_equal(text, "salvaged, and more");
#endif
}

int main(int argc, char **argv) {
  int rc;
  if (pp_worker_main(argc, argv, pp_test_tasks, &rc))
    return rc;
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_logging_lines_reach_callback_tagged),
      cmocka_unit_test(test_logging_initializer_output_has_worker_numbers),
      cmocka_unit_test(test_logging_lines_are_never_mixed),
      cmocka_unit_test(test_logging_default_callback_does_not_crash),
      cmocka_unit_test(test_logging_inherited_output_skips_capture),
      cmocka_unit_test(test_logging_long_line_in_marked_pieces),
      cmocka_unit_test(test_logging_output_without_newline_comes_with_result),
      cmocka_unit_test(test_logging_spoofed_marker_is_text),
      cmocka_unit_test(test_logging_held_output_does_not_delay_crashes),
      cmocka_unit_test(test_logging_stdout_streams_while_task_runs),
      cmocka_unit_test(test_logging_crash_keeps_buffered_output),
      cmocka_unit_test(test_logging_salvage_writes_the_runtime_buffer),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
