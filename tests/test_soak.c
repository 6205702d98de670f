/*
 * test_soak.c - a crash storm (label `soak`): 100 000 calls over a 2-worker
 * pool, of which one in ten fails, in every way a call can fail: the task
 * reports an error, the worker segfaults, aborts or exits, or the call runs
 * past its own timeout and its worker is killed.
 *
 * Which call fails, and how, comes from a seeded generator, so a failure of
 * this test can be replayed.  The calls run as a series of unordered maps
 * (a crash there also sends the calls pipelined behind it back to the
 * queue), with the timed-out calls submitted as futures with a per-call
 * timeout in between.  The test checks that every success carries the right
 * value and every failure the right status and reason, that each call is
 * reported exactly once, that the pool's statistics add up, and that the
 * pool then runs a clean map as if nothing had happened.
 *
 * Under Wine a process start costs about 50 ms, so ci/test-windows.sh sets
 * PROCPOOL_SOAK_CALLS to run fewer calls; the test prints the scale used.
 */
#include <setjmp.h>
#include <signal.h>
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

#define DEFAULT_CALLS 100000
#define BATCH 1000
#define SEED 0x50a4c0ffee123457ull
/* Short, so that the 0.2 % of calls that time out cost little. */
#define TIMEOUT_MS 50

/* How a call ends.  Shares in 1/10000: 0.2 % time out, and the other 9.8 %
 * of failures are split about evenly between the four other kinds. */
enum { K_OK, K_FAIL, K_SEGV, K_ABORT, K_EXIT, K_TIMEOUT, K_COUNT };
static const char *const kind_names[K_COUNT] = {
    "ok", "task error", "segfault", "abort", "exit(3)", "timeout"};

static int kind_of(uint64_t r) {
  unsigned v = (unsigned)(r % 10000);
  if (v < 20)
    return K_TIMEOUT;
  if (v < 270)
    return K_FAIL;
  if (v < 520)
    return K_SEGV;
  if (v < 760)
    return K_ABORT;
  if (v < 1000)
    return K_EXIT;
  return K_OK;
}

/* splitmix64: small, and the same sequence on every system. */
static uint64_t next_random(uint64_t *state) {
  uint64_t z = (*state += 0x9E3779B97F4A7C15ull);
  z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
  z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
  return z ^ (z >> 31);
}

/* What a dead worker's call reports.  Windows has no signals: a crash is
 * an exception code, and abort() exits with code 3. */
#ifdef _WIN32
#define SEGV_SIGNAL ((int)0xC0000005u)
#define ABORT_EXIT_CODE 3
#define ABORT_SIGNAL 0
#else
#define SEGV_SIGNAL SIGSEGV
#define ABORT_EXIT_CODE -1
#define ABORT_SIGNAL SIGABRT
#endif

typedef struct soak_s {
  size_t n;
  unsigned char *kind; /* per call */
  unsigned char *seen; /* how many times each call was reported */
  pp_buf_t *args;      /* per call: ("act", value) tuples */
  size_t *batch_index; /* the current map's positions -> call numbers */
  size_t counts[K_COUNT];
  size_t wrong; /* results that did not match their kind */
  char first_wrong[512];
  size_t log_lines;
} soak_t;

static void note_wrong(soak_t *s, size_t i, const pp_result_t *r,
                       const char *what) {
  if (s->wrong++ == 0)
    snprintf(s->first_wrong, sizeof(s->first_wrong),
             "call %zu (%s): %s; got %s, exit %d, signal %d: %s", i,
             kind_names[s->kind[i]], what, pp_err_name(r->status), r->exit_code,
             r->term_signal, r->message ? r->message : "-");
}

/* Checks one outcome against what its call was meant to do. */
static void check_result(soak_t *s, size_t i, const pp_result_t *r) {
  char want[64];
  int k = s->kind[i];
  s->seen[i]++;
  s->counts[k]++;
  if (k != K_OK && r->data != NULL)
    note_wrong(s, i, r, "a failure carries data");
  switch (k) {
    case K_OK:
      if (r->status != 0 || pp_test_int_result(r) != (int64_t)(i * i))
        note_wrong(s, i, r, "wanted the square");
      break;
    case K_FAIL:
      snprintf(want, sizeof(want), "act failed for %zu", i);
      if (r->status != PP_ETASK || r->message == NULL ||
          strcmp(r->message, want) != 0)
        note_wrong(s, i, r, "wanted PP_ETASK with the task's message");
      break;
    case K_SEGV:
      if (r->status != PP_EWORKERDIED || r->exit_code != -1 ||
          r->term_signal != SEGV_SIGNAL || r->message == NULL ||
          strstr(r->message, "'act'") == NULL)
        note_wrong(s, i, r, "wanted PP_EWORKERDIED by a segfault");
      break;
    case K_ABORT:
      if (r->status != PP_EWORKERDIED || r->exit_code != ABORT_EXIT_CODE ||
          r->term_signal != ABORT_SIGNAL || r->message == NULL)
        note_wrong(s, i, r, "wanted PP_EWORKERDIED by abort()");
      break;
    case K_EXIT:
      if (r->status != PP_EWORKERDIED || r->exit_code != 3 ||
          r->term_signal != 0 || r->message == NULL ||
          strstr(r->message, "exited with code 3") == NULL)
        note_wrong(s, i, r, "wanted PP_EWORKERDIED with exit code 3");
      break;
    case K_TIMEOUT:
      snprintf(want, sizeof(want), "timeout of %d ms", TIMEOUT_MS);
      if (r->status != PP_ETIMEDOUT || r->message == NULL ||
          strstr(r->message, want) == NULL)
        note_wrong(s, i, r, "wanted PP_ETIMEDOUT");
      break;
  }
}

/* The unordered map's callback: runs in the test's thread, so it only
 * records; the asserts come after the map. */
static int on_result(void *data, size_t index, pp_result_t *r) {
  soak_t *s = data;
  check_result(s, s->batch_index[index], r);
  pp_results_free(r, 1);
  return 0;
}

/* Dead workers write nothing, but a line of theirs would be 10 000 lines
 * here; they are counted and the first few shown. */
static void quiet_log(void *data, const pp_log_record_t *record) {
  soak_t *s = data;
  if (s->log_lines++ < 5)
    fprintf(stderr, "[soak w%d] %s\n", record->worker, record->line);
}

static const char *action(int kind) {
  switch (kind) {
    case K_FAIL:
      return "fail";
    case K_SEGV:
      return "segv";
    case K_ABORT:
      return "abort";
    case K_EXIT:
      return "exit";
    case K_TIMEOUT:
      return "sleep";
    default:
      return "square";
  }
}

static size_t soak_calls(void) {
  const char *v = getenv("PROCPOOL_SOAK_CALLS");
  long long n = v != NULL ? atoll(v) : 0;
  return n > 0 ? (size_t)n : DEFAULT_CALLS;
}

static pp_pool_stats_t stats_of(pp_pool_t *pool) {
  pp_pool_stats_t st;
  assert_int_equal(pp_pool_stats(pool, &st), 0);
  return st;
}

/* A clean map after the storm: the pool must be as good as new. */
static void check_clean_map(pp_pool_t *pool) {
  enum { M = 1000 };
  static pp_buf_t args[M];
  static pp_result_t res[M];
  size_t i;
  for (i = 0; i < M; i++)
    args[i] = pp_test_pack_int((int64_t)i + 7);
  assert_int_equal(pp_pool_map(pool, "square", args, M, res, NULL), 0);
  for (i = 0; i < M; i++)
    assert_true(pp_test_int_result(&res[i]) == (int64_t)((i + 7) * (i + 7)));
  pp_results_free(res, M);
  pp_test_free_bufs(args, M);
}

static void test_soak_crash_storm(void **state) {
  soak_t s;
  pp_pool_options_t o;
  pp_pool_t *pool = NULL;
  pp_map_options_t mo;
  pp_call_options_t co;
  pp_pool_stats_t st;
  pp_future_t **tf;
  pp_buf_t *batch;
  size_t *tidx, ntf = 0, lo, i, deaths, expected[K_COUNT];
  uint64_t rng = SEED;
  apr_time_t t0 = apr_time_now();
  double secs;
  char line[512];
  int k;
  (void)state;

  memset(&s, 0, sizeof(s));
  memset(expected, 0, sizeof(expected));
  s.n = soak_calls();
  /* CMocka's print functions check formats as Microsoft's printf under
   * mingw, which has no %zu; the C99 snprintf of the tests has. */
  snprintf(line, sizeof(line), "soak: %zu calls%s, seed 0x%llx", s.n,
           getenv("PROCPOOL_SOAK_CALLS") ? " (PROCPOOL_SOAK_CALLS)"
                                         : " (full scale)",
           (unsigned long long)SEED);
  print_message("%s\n", line);
  s.kind = calloc(s.n, 1);
  s.seen = calloc(s.n, 1);
  s.args = calloc(s.n, sizeof(*s.args));
  s.batch_index = calloc(BATCH, sizeof(*s.batch_index));
  batch = calloc(BATCH, sizeof(*batch));
  tf = calloc(s.n, sizeof(*tf));
  tidx = calloc(s.n, sizeof(*tidx));
  assert_true(s.kind && s.seen && s.args && s.batch_index && batch && tf &&
              tidx);
  for (i = 0; i < s.n; i++) {
    int kind = kind_of(next_random(&rng));
    int64_t value = kind == K_EXIT ? 3 : kind == K_TIMEOUT ? 10000 : (int64_t)i;
    s.kind[i] = (unsigned char)kind;
    expected[kind]++;
    assert_int_equal(pp_pack(&s.args[i], "si", action(kind), value), 0);
  }

  memset(&o, 0, sizeof(o));
  o.workers = 2;
  o.log_cb = quiet_log;
  o.log_data = &s;
  PP_TEST_OK(pp_pool_create(&pool, &o));
  memset(&mo, 0, sizeof(mo));
  mo.timeout_ms = -1; /* none: only the sleeping calls have a timeout */
  memset(&co, 0, sizeof(co));
  co.timeout_ms = TIMEOUT_MS;

  for (lo = 0; lo < s.n; lo += BATCH) {
    size_t hi = lo + BATCH < s.n ? lo + BATCH : s.n, m = 0;
    int rc, want_rc = 0;
    for (i = lo; i < hi; i++) {
      if (s.kind[i] == K_TIMEOUT) {
        /* Queued ahead of this batch's map, so they run amid the storm. */
        assert_int_equal(pp_pool_submit(pool, "act", s.args[i].data,
                                        s.args[i].len, &co, &tf[ntf]),
                         0);
        tidx[ntf++] = i;
        continue;
      }
      if (want_rc == 0 && s.kind[i] != K_OK)
        want_rc = s.kind[i] == K_FAIL ? PP_ETASK : PP_EWORKERDIED;
      s.batch_index[m] = i;
      batch[m++] = s.args[i];
    }
    rc = pp_pool_map_unordered(pool, "act", batch, m, on_result, &s, &mo);
    /* The map reports the first failure in input order. */
    assert_int_equal(rc, want_rc);
  }
  for (i = 0; i < ntf; i++) {
    pp_result_t r;
    assert_int_equal(pp_future_wait(tf[i], PP_TEST_MS(120000)), 0);
    assert_int_equal(pp_future_take(tf[i], &r), 0);
    check_result(&s, tidx[i], &r);
    pp_results_free(&r, 1);
    pp_future_free(tf[i]);
  }
  secs = (double)(apr_time_now() - t0) / 1e6;

  /* Replacements start in the background after the last death. */
  deaths = s.counts[K_SEGV] + s.counts[K_ABORT] + s.counts[K_EXIT] +
           s.counts[K_TIMEOUT];
  for (i = 0; i < (size_t)PP_TEST_MS(3000) &&
              stats_of(pool).workers_started < 2 + deaths;
       i++)
    pp_test_sleep_ms(10);
  st = stats_of(pool);
  snprintf(line, sizeof(line),
           "soak: %zu calls in %.1f s: ok %zu, task error %zu, segfault %zu, "
           "abort %zu, exit(3) %zu, timeout %zu",
           s.n, secs, s.counts[K_OK], s.counts[K_FAIL], s.counts[K_SEGV],
           s.counts[K_ABORT], s.counts[K_EXIT], s.counts[K_TIMEOUT]);
  print_message("%s\n", line);
  snprintf(line, sizeof(line),
           "soak: workers started %llu, died %llu; calls submitted %llu, "
           "completed %llu; %zu worker output lines",
           (unsigned long long)st.workers_started,
           (unsigned long long)st.workers_died,
           (unsigned long long)st.calls_submitted,
           (unsigned long long)st.calls_completed, s.log_lines);
  print_message("%s\n", line);

  if (s.wrong > 0)
    fail_msg("%llu wrong results; the first: %s", (unsigned long long)s.wrong,
             s.first_wrong);
  for (i = 0; i < s.n; i++)
    if (s.seen[i] != 1)
      fail_msg("call %llu (%s) was reported %d times", (unsigned long long)i,
               kind_names[s.kind[i]], s.seen[i]);
  for (k = 0; k < K_COUNT; k++) {
    assert_int_equal(s.counts[k], expected[k]);
    /* Every kind took part, at any scale worth running. */
    if (s.n >= 5000)
      assert_true(s.counts[k] > 0);
  }
  assert_int_equal(st.calls_submitted, s.n);
  assert_int_equal(st.calls_completed, s.n);
  assert_int_equal(st.workers_died, deaths);
  /* Every death is replaced; so is a worker that a timeout's kill reached
   * just after its call had finished (no call fails then). */
  assert_true(st.workers_started >= 2 + deaths);
  assert_true(st.workers_started <= 2 + deaths + s.counts[K_TIMEOUT]);
  assert_int_equal(pp_pool_worker_pids(pool, NULL, 0), 2);

  check_clean_map(pool);
  st = stats_of(pool);
  assert_int_equal(st.workers_died, deaths);
  assert_int_equal(st.calls_completed, s.n + 1000);
  assert_int_equal(pp_pool_destroy(pool, PP_DESTROY_WAIT), 0);

  pp_test_free_bufs(s.args, s.n);
  free(s.args);
  free(s.kind);
  free(s.seen);
  free(s.batch_index);
  free(batch);
  free(tf);
  free(tidx);
}

int main(int argc, char **argv) {
  int rc;
  if (pp_worker_main(argc, argv, pp_test_tasks, &rc))
    return rc;
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_soak_crash_storm),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
