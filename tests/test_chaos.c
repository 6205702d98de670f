/*
 * test_chaos.c - the failure contract under a storm (label `chaos`): while
 * a thread of the test kills and stops random workers of a 4-worker pool,
 * the test runs calls of 1-3 ms through every way in: maps, starmaps,
 * unordered maps, futures with and without completion callbacks, async
 * maps and imap (ordered and not), with per-call timeouts of 2-5 ms, close
 * to the calls' own length, and with cancels of futures and maps.
 *
 * Every call adds 1 to a counter of its own, in a file that the test and
 * every worker map (the "chaos" task, tasks_chaos.c), before it does
 * anything else; so the test knows how often each call really started,
 * whatever the pool reported.  It then checks the contract:
 *
 *   - every call got exactly one outcome;
 *   - a call that reports PP_OK started exactly once, with its own value;
 *   - a call that failed started at most once, and failed for a reason
 *     the storm can give: PP_EWORKERDIED (killed by SIGKILL), PP_ETIMEDOUT
 *     (only a call with a timeout), PP_ECANCELED (only a call that was
 *     cancelled, or whose map was stopped), each with a message that says
 *     so;
 *   - a map returns the status of its first failed call;
 *   - after the storm the pool still serves, and pp_pool_destroy() leaves
 *     no child process behind and no descriptor open.
 *
 * The storm picks its targets from pp_pool_worker_pids() and, where the
 * system lists them, from all children of this process, which includes
 * workers that are still starting; every few seconds it kills every worker
 * as soon as it appears, for a while (a kill storm against starting
 * workers).  Stops last 1-15 ms, then the worker is continued; Windows has
 * no stop, so there the storm only kills (TerminateProcess).  Signals go
 * through pp_test_signal_child(), which never hits a pid that another
 * program got in the meantime.
 *
 * The test is seeded: PROCPOOL_CHAOS_SEED replays the storm's choices and
 * the calls (not the schedule).  PROCPOOL_CHAOS_CALLS sets the number of
 * calls (slow legs run fewer), PROCPOOL_CHAOS_SECONDS the most time the
 * storm may take (the work then stops early and says so);
 * PROCPOOL_CHAOS_BURSTS=0 leaves out the bursts (to look at the rest
 * alone).  It prints the
 * seed first, and at the end the counts: calls, kills, stops, outcomes by
 * status, and every breach of the contract it found (the first ones in
 * full).
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

#include <apr_atomic.h>
#include <apr_general.h>
#include <apr_thread_mutex.h>
#include <apr_time.h>

#include "helpers.h"
#include "tasks.h"

#define DEFAULT_CALLS 30000
#define DEFAULT_SECONDS 45
#define WORKERS 4
#define CLEAN_CALLS 200
#define MAX_FDS 1024
#define MAX_PIDS 256

/* How a call was made. */
enum {
  A_MAP,
  A_STARMAP,
  A_UNORDERED,
  A_FUTURE,
  A_FUTURE_CB,
  A_ASYNC,
  A_IMAP,
  A_CLEAN,
  A_COUNT
};
static const char *const api_names[A_COUNT] = {
    "map",       "starmap", "map_unordered", "future", "future+callback",
    "map_async", "imap",    "clean map"};

/* The breaches of the contract the test tells apart. */
enum {
  V_RERUN_OK,   /* reported PP_OK, started more than once */
  V_RERUN_FAIL, /* failed, started more than once */
  V_STATUS,     /* a status the storm cannot explain */
  V_REASON,     /* a timeout without one, a cancel without one, a message
                   or signal that does not fit */
  V_VALUE,      /* PP_OK with another call's value */
  V_TWICE,      /* two outcomes */
  V_NONE,       /* no outcome */
  V_UNMADE,     /* a call that the test never handed over started */
  V_MAP,        /* a map's status or result count is wrong */
  V_HUNG,       /* a wait ran out */
  V_CALLBACK,   /* a completion callback did not run exactly once */
  V_AFTER,      /* the pool did not serve after the storm */
  V_COUNT
};
static const char *const v_names[V_COUNT] = {
    "PP_OK but started more than once",
    "failed and started more than once",
    "unexpected status",
    "status without its cause or with a wrong message",
    "PP_OK with a wrong value",
    "two outcomes",
    "no outcome",
    "a call never handed over started",
    "a map's status or count is wrong",
    "a wait ran out",
    "a completion callback did not run once",
    "the pool did not serve after the storm"};

typedef struct call_s {
  unsigned char api;
  unsigned char timed;  /* it had a timeout */
  unsigned char cancel; /* it (or its map) was cancelled or stopped */
  unsigned char unmade; /* an imap stopped before it read this one */
  unsigned char seen;   /* outcomes reported */
  int status;
} call_t;

typedef struct chaos_s {
  size_t n, used; /* counters in the file; keys handed out */
  call_t *calls;
  uint32_t *starts;
  char path[1024];
  uint64_t rng;
  apr_thread_mutex_t *lock; /* callbacks report from the callback thread */
  size_t by_status[-PP_ERRNO_MIN + 1];
  size_t by_api[A_COUNT];
  size_t batches, violations;
  size_t v_count[V_COUNT];
  char v_first[V_COUNT][2][512]; /* the first two of each kind */
} chaos_t;

/* splitmix64: small, and the same sequence on every system. */
static unsigned pick(uint64_t *state, unsigned n) {
  uint64_t z = (*state += 0x9E3779B97F4A7C15ull);
  z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
  z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
  return (unsigned)((z ^ (z >> 31)) % n);
}

static int64_t env_int(const char *name, int64_t fallback) {
  const char *v = getenv(name);
  long long n = v != NULL ? strtoll(v, NULL, 0) : 0;
  return n > 0 ? (int64_t)n : fallback;
}

/* Records a breach of the contract; ch->lock held. */
static void note(chaos_t *ch, int kind, const char *fmt, ...) PP_PRINTF(3, 4);
static void note(chaos_t *ch, int kind, const char *fmt, ...) {
  va_list ap;
  if (ch->v_count[kind] < 2) {
    va_start(ap, fmt);
    vsnprintf(ch->v_first[kind][ch->v_count[kind]], sizeof(ch->v_first[0][0]),
              fmt, ap);
    va_end(ap);
  }
  ch->v_count[kind]++;
  ch->violations++;
}

#define NOTE(ch, ...)                                                          \
  do {                                                                         \
    apr_thread_mutex_lock((ch)->lock);                                         \
    note((ch), __VA_ARGS__);                                                   \
    apr_thread_mutex_unlock((ch)->lock);                                       \
  } while (0)

/* Checks one outcome the moment it is reported (its starts are checked at
 * the end, when no worker is left that could still start it). */
static void record(chaos_t *ch, size_t key, const pp_result_t *r) {
  const char *msg = r->message != NULL ? r->message : "";
  const char *api;
  call_t *c;
  int64_t v;
  apr_thread_mutex_lock(ch->lock);
  c = &ch->calls[key];
  api = api_names[c->api];
  c->status = r->status;
  if (c->seen++ > 0)
    note(ch, V_TWICE, "call %zu (%s) reported again: %s: %s", key, api,
         pp_err_name(r->status), msg);
  if (r->status <= 0 && r->status > PP_ERRNO_MIN)
    ch->by_status[-r->status]++;
  if (r->status == PP_OK) {
    if (pp_unpack(r->data, r->len, "i", &v) != 0 || v != (int64_t)key * 7 + 1)
      note(ch, V_VALUE, "call %zu (%s): PP_OK with another value", key, api);
  } else if (r->status == PP_EWORKERDIED) {
    /* The storm's SIGKILL, or the pool's own kill. */
    if (strstr(msg, "worker") == NULL
#ifndef _WIN32
        || r->term_signal != SIGKILL
#endif
    )
      note(ch, V_REASON, "call %zu (%s): PP_EWORKERDIED, signal %d: %s", key,
           api, r->term_signal, msg);
  } else if (r->status == PP_ETIMEDOUT) {
    if (!c->timed || strstr(msg, "timeout") == NULL)
      note(ch, V_REASON, "call %zu (%s, %s timeout): PP_ETIMEDOUT: %s", key,
           api, c->timed ? "with a" : "no", msg);
  } else if (r->status == PP_ECANCELED) {
    if (!c->cancel || strstr(msg, "cancel") == NULL)
      note(ch, V_REASON, "call %zu (%s, %s): PP_ECANCELED: %s", key, api,
           c->cancel ? "cancelled" : "never cancelled", msg);
  } else {
    note(ch, V_STATUS, "call %zu (%s): %s: %s", key, api,
         pp_err_name(r->status), msg);
  }
  apr_thread_mutex_unlock(ch->lock);
}

/* ---- one batch of calls ---- */

typedef struct batch_s {
  chaos_t *ch;
  size_t m, first; /* calls first .. first + m - 1 */
  pp_buf_t *args;
  size_t stop_at;   /* the callback returns 1 at this count; m = never */
  size_t delivered; /* results handed to the callback */
  size_t read;      /* arguments the imap read */
} batch_t;

/* Hands out m keys with their arguments: calls of 1-3 ms. */
static int batch_make(chaos_t *ch, batch_t *b, size_t m, int api, int timed) {
  size_t i;
  memset(b, 0, sizeof(*b));
  if (m == 0)
    return 0;
  b->ch = ch;
  b->m = b->stop_at = m;
  b->first = ch->used;
  b->args = calloc(m, sizeof(*b->args));
  assert_non_null(b->args);
  for (i = 0; i < m; i++) {
    call_t *c = &ch->calls[b->first + i];
    c->api = (unsigned char)api;
    c->timed = (unsigned char)timed;
    PP_TEST_OK(pp_pack(&b->args[i], "siii", ch->path, (int64_t)ch->n,
                       (int64_t)(b->first + i),
                       (int64_t)(1000 + pick(&ch->rng, 2001))));
  }
  ch->used += m;
  ch->by_api[api] += m;
  ch->batches++;
  return 1;
}

static void batch_free(batch_t *b) {
  pp_test_free_bufs(b->args, b->m);
  free(b->args);
}

static void batch_cancel_all(batch_t *b) {
  size_t i;
  apr_thread_mutex_lock(b->ch->lock);
  for (i = 0; i < b->m; i++)
    b->ch->calls[b->first + i].cancel = 1;
  apr_thread_mutex_unlock(b->ch->lock);
}

/* A map's status is that of its first failed call in input order. */
static void check_map_status(batch_t *b, int rc, const pp_result_t *res,
                             const char *what) {
  size_t i;
  int want = 0;
  for (i = 0; i < b->m && want == 0; i++)
    want = res[i].status;
  if (rc != want)
    NOTE(b->ch, V_MAP, "%s returned %s, its first failed call %s", what,
         pp_err_name(rc), pp_err_name(want));
}

/* Timeouts close to the calls' 1-3 ms: 2-5 ms, or (one in four) none. */
static int64_t draw_timeout(chaos_t *ch) {
  return pick(&ch->rng, 4) == 0 ? -1 : 2 + (int64_t)pick(&ch->rng, 4);
}

static void draw_map_options(chaos_t *ch, pp_map_options_t *mo) {
  static const size_t chunks[] = {0, 1, 1, 2, 4, 8};
  memset(mo, 0, sizeof(*mo));
  mo->timeout_ms = draw_timeout(ch);
  mo->chunksize = chunks[pick(&ch->rng, 6)];
}

static void run_map(chaos_t *ch, pp_pool_t *pool, int api, size_t m) {
  pp_map_options_t mo;
  pp_result_t *res;
  batch_t b;
  size_t i;
  int rc;
  draw_map_options(ch, &mo);
  if (api == A_CLEAN)
    mo.timeout_ms = -1;
  if (!batch_make(ch, &b, m, api, mo.timeout_ms > 0))
    return;
  res = calloc(b.m, sizeof(*res));
  assert_non_null(res);
  rc = api == A_STARMAP ? pp_pool_starmap(pool, "chaos", b.args, b.m, res, &mo)
                        : pp_pool_map(pool, "chaos", b.args, b.m, res, &mo);
  for (i = 0; i < b.m; i++)
    record(ch, b.first + i, &res[i]);
  check_map_status(&b, rc, res, api_names[api]);
  if (api == A_CLEAN && rc != 0)
    NOTE(ch, V_AFTER, "the clean map after the storm returned %s",
         pp_err_name(rc));
  pp_results_free(res, b.m);
  free(res);
  batch_free(&b);
}

/* Unordered map and imap results; returning 1 at stop_at stops the map. */
static int on_result(void *data, size_t index, pp_result_t *r) {
  batch_t *b = data;
  if (index < b->m)
    record(b->ch, b->first + index, r);
  else
    NOTE(b->ch, V_MAP, "a result for index %zu of a map of %zu", index, b->m);
  pp_results_free(r, 1);
  return ++b->delivered == b->stop_at;
}

static int producer(void *data, pp_next_arg_t *next) {
  batch_t *b = data;
  if (next->index >= b->m)
    return 0;
  next->arg = b->args[next->index];
  b->read = next->index + 1;
  return 1;
}

static void run_streaming(chaos_t *ch, pp_pool_t *pool, int api, size_t m) {
  pp_map_options_t mo;
  batch_t b;
  size_t i;
  int rc;
  draw_map_options(ch, &mo);
  if (!batch_make(ch, &b, m, api, mo.timeout_ms > 0))
    return;
  if (pick(&ch->rng, 5) == 0) {
    /* The callback stops the map at a random result: every call may then
     * end PP_ECANCELED, and an imap reads no more arguments. */
    b.stop_at = 1 + pick(&ch->rng, (unsigned)b.m);
    batch_cancel_all(&b);
  }
  if (api == A_IMAP) {
    mo.max_in_flight = 4 + pick(&ch->rng, 61);
    if (pick(&ch->rng, 2))
      mo.flags |= PP_MAP_UNORDERED;
    rc = pp_pool_imap(pool, "chaos", producer, &b, on_result, &b, &mo);
    for (i = b.read; i < b.m; i++)
      ch->calls[b.first + i].unmade = 1;
  } else {
    b.read = b.m;
    rc = pp_pool_map_unordered(pool, "chaos", b.args, b.m, on_result, &b, &mo);
  }
  if (b.delivered != b.read || (b.read < b.m && b.stop_at == b.m) ||
      (rc == 0 && ch->calls[b.first].cancel))
    NOTE(ch, V_MAP, "%s of %zu calls read %zu, delivered %zu, returned %s",
         api_names[api], b.m, b.read, b.delivered, pp_err_name(rc));
  batch_free(&b);
}

/* ---- futures ---- */

typedef struct future_ctx_s {
  chaos_t *ch;
  size_t key;
  volatile apr_uint32_t done;
} future_ctx_t;

static void on_done(void *data, pp_future_t *f) {
  future_ctx_t *x = data;
  pp_result_t r;
  if (pp_future_take(f, &r) == 0) {
    record(x->ch, x->key, &r);
    pp_results_free(&r, 1);
  }
  apr_atomic_inc32(&x->done);
}

static void run_futures(chaos_t *ch, pp_pool_t *pool, size_t m) {
  pp_future_t **f;
  future_ctx_t *x;
  batch_t b;
  size_t i;
  int cancel = pick(&ch->rng, 3) == 0;
  int64_t bound = 120000 * PP_TEST_TIME_SCALE;
  if (!batch_make(ch, &b, m, A_FUTURE, 0))
    return;
  f = calloc(b.m, sizeof(*f));
  x = calloc(b.m, sizeof(*x));
  assert_true(f != NULL && x != NULL);
  for (i = 0; i < b.m; i++) {
    pp_call_options_t co;
    call_t *c = &ch->calls[b.first + i];
    memset(&co, 0, sizeof(co));
    co.timeout_ms = draw_timeout(ch);
    c->timed = co.timeout_ms > 0;
    x[i].ch = ch;
    x[i].key = b.first + i;
    if (pick(&ch->rng, 2)) {
      c->api = A_FUTURE_CB;
      ch->by_api[A_FUTURE]--;
      ch->by_api[A_FUTURE_CB]++;
      co.on_done = on_done;
      co.on_done_data = &x[i];
    }
    PP_TEST_OK(pp_pool_submit(pool, "chaos", b.args[i].data, b.args[i].len, &co,
                              &f[i]));
  }
  for (i = 0; cancel && i < b.m; i++) {
    if (i == 0)
      pp_test_sleep_ms(pick(&ch->rng, 5));
    if (pick(&ch->rng, 3) != 0)
      continue;
    apr_thread_mutex_lock(ch->lock);
    ch->calls[b.first + i].cancel = 1;
    apr_thread_mutex_unlock(ch->lock);
    assert_int_equal(pp_future_cancel(f[i]), 0);
  }
  for (i = 0; i < b.m; i++) {
    pp_result_t r;
    if (pp_future_wait(f[i], bound) != 0) {
      NOTE(ch, V_HUNG, "call %zu (future) not finished after %lld ms",
           b.first + i, (long long)bound);
    } else if (ch->calls[b.first + i].api == A_FUTURE_CB) {
      /* The callback runs after the call has finished, on its thread. */
      apr_time_t end = apr_time_now() + apr_time_from_msec(bound);
      while (apr_atomic_read32(&x[i].done) == 0 && apr_time_now() < end)
        pp_test_sleep_ms(1);
      if (apr_atomic_read32(&x[i].done) != 1)
        NOTE(ch, V_CALLBACK, "call %zu: its completion callback ran %u times",
             b.first + i, (unsigned)apr_atomic_read32(&x[i].done));
    } else {
      assert_int_equal(pp_future_take(f[i], &r), 0);
      record(ch, b.first + i, &r);
      pp_results_free(&r, 1);
    }
  }
  for (i = 0; i < b.m; i++)
    pp_future_free(f[i]);
  free(f);
  free(x);
  batch_free(&b);
}

/* ---- async maps ---- */

static void run_async(chaos_t *ch, pp_pool_t *pool, size_t m) {
  pp_map_options_t mo;
  pp_result_t *res;
  pp_map_t *map = NULL;
  batch_t b;
  size_t i;
  int rc, cancel = pick(&ch->rng, 4) == 0, star = pick(&ch->rng, 2);
  int64_t bound = 120000 * PP_TEST_TIME_SCALE;
  draw_map_options(ch, &mo);
  if (!batch_make(ch, &b, m, A_ASYNC, mo.timeout_ms > 0))
    return;
  res = calloc(b.m, sizeof(*res));
  assert_non_null(res);
  if (star)
    PP_TEST_OK(
        pp_pool_starmap_async(pool, "chaos", b.args, b.m, res, &mo, &map));
  else
    PP_TEST_OK(pp_pool_map_async(pool, "chaos", b.args, b.m, res, &mo, &map));
  if (cancel) {
    pp_test_sleep_ms(pick(&ch->rng, 6));
    batch_cancel_all(&b);
    assert_int_equal(pp_map_cancel(map), 0);
  }
  /* PP_ETIMEDOUT is also the status of a map whose first failed call
   * timed out: pp_map_status() tells whether it has ended. */
  rc = pp_map_wait(map, bound);
  if (pp_map_status(map) == PP_EAGAIN)
    NOTE(ch, V_HUNG, "an async map of %zu calls not finished after %lld ms",
         b.m, (long long)bound);
  pp_map_free(map); /* cancels and waits for a map that has not ended */
  for (i = 0; i < b.m; i++)
    record(ch, b.first + i, &res[i]);
  if (!cancel)
    check_map_status(&b, rc, res, "map_async");
  pp_results_free(res, b.m);
  free(res);
  batch_free(&b);
}

/* ---- the test ---- */

static int fd_set_now(uint64_t *vals) {
  static int fds[MAX_FDS];
  int n = pp_test_fd_list(0, fds, MAX_FDS), i;
  if (n < 0)
    return pp_test_handle_list(vals, MAX_FDS);
  for (i = 0; i < n && i < MAX_FDS; i++)
    vals[i] = (uint64_t)fds[i];
  return n;
}

/* After the storm, every call's starts against its outcome. */
static void check_starts(chaos_t *ch, size_t *unstarted) {
  size_t k;
  for (k = 0; k < ch->used; k++) {
    call_t *c = &ch->calls[k];
    const char *api = api_names[c->api];
    unsigned s = (unsigned)pp_test_counter_get(&ch->starts[k]);
    *unstarted += s == 0;
    if (c->unmade && (s > 0 || c->seen > 0))
      note(ch, V_UNMADE,
           "call %zu (%s) was never read: %u starts, %u "
           "outcomes",
           k, api, s, (unsigned)c->seen);
    else if (c->unmade)
      continue;
    else if (c->seen == 0)
      note(ch, V_NONE, "call %zu (%s) got no outcome (%u starts)", k, api, s);
    else if (c->status == PP_OK && s != 1)
      note(ch, s > 1 ? V_RERUN_OK : V_NONE,
           "call %zu (%s) reported PP_OK and started %u times", k, api, s);
    else if (c->status != PP_OK && s > 1)
      note(ch, V_RERUN_FAIL, "call %zu (%s) reported %s and started %u times",
           k, api, pp_err_name(c->status), s);
  }
}

static void print_line(const char *fmt, ...) PP_PRINTF(1, 2);
static void print_line(const char *fmt, ...) {
  char line[1024];
  va_list ap;
  /* CMocka's print functions check formats as Microsoft's printf under
   * mingw, which has no %zu; the C99 vsnprintf of the tests has. */
  va_start(ap, fmt);
  vsnprintf(line, sizeof(line), fmt, ap);
  va_end(ap);
  print_message("chaos: %s\n", line);
}

static void print_summary(chaos_t *ch, const pp_test_storm_stats_t *ss,
                          size_t unstarted) {
  char line[1024];
  size_t used;
  int s;
  print_line("storm: %zu kills, %zu stops%s, %zu bursts that killed every "
             "worker as it started (%zu kills)",
             ss->kills, ss->stops, ss->can_stop ? "" : " (none here)",
             ss->bursts, ss->burst_kills);
  used = (size_t)snprintf(line, sizeof(line), "calls by way:");
  for (s = 0; s < A_COUNT && used < sizeof(line); s++)
    used += (size_t)snprintf(line + used, sizeof(line) - used, " %s %zu",
                             api_names[s], ch->by_api[s]);
  print_line("%s", line);
  used = (size_t)snprintf(line, sizeof(line), "outcomes:");
  for (s = 0; s > PP_ERRNO_MIN && used < sizeof(line); s--)
    if (ch->by_status[-s] > 0)
      used += (size_t)snprintf(line + used, sizeof(line) - used, " %s %zu",
                               pp_err_name(s), ch->by_status[-s]);
  print_line("%s; %zu calls never started", line, unstarted);
  print_line("%zu breaches of the contract", ch->violations);
  for (s = 0; s < V_COUNT; s++) {
    size_t i;
    if (ch->v_count[s] == 0)
      continue;
    print_line("  %zu x %s, e.g.", ch->v_count[s], v_names[s]);
    for (i = 0; i < ch->v_count[s] && i < 2; i++)
      print_line("    %s", ch->v_first[s][i]);
  }
}

static void test_chaos_storm(void **state) {
  static uint64_t before[MAX_FDS], after[MAX_FDS];
  static chaos_t ch;
  pp_test_storm_stats_t ss;
  pp_test_storm_t *storm;
  pp_pool_options_t o;
  pp_pool_t *pool = NULL;
  apr_pool_t *mem = NULL;
  int64_t pids[MAX_PIDS], kids[MAX_PIDS], seconds;
  uint64_t seed;
  apr_time_t t0, deadline;
  size_t unstarted = 0, i;
  int nb, na, npids, nkids;
  (void)state;

  memset(&ch, 0, sizeof(ch));
  seed = (uint64_t)env_int("PROCPOOL_CHAOS_SEED",
                           (int64_t)(((uint64_t)apr_time_now() ^
                                      ((uint64_t)pp_test_self_pid() << 40)) &
                                     INT64_MAX));
  ch.n = (size_t)env_int("PROCPOOL_CHAOS_CALLS", DEFAULT_CALLS) + CLEAN_CALLS;
  seconds = env_int("PROCPOOL_CHAOS_SECONDS", DEFAULT_SECONDS);
  print_line("seed 0x%llx (PROCPOOL_CHAOS_SEED), %zu calls, at most %lld s "
             "of storm, %d workers",
             (unsigned long long)seed, ch.n - CLEAN_CALLS, (long long)seconds,
             WORKERS);
  ch.rng = seed;

  assert_int_equal(apr_initialize(), APR_SUCCESS);
  assert_int_equal(apr_pool_create(&mem, NULL), APR_SUCCESS);
  assert_int_equal(
      apr_thread_mutex_create(&ch.lock, APR_THREAD_MUTEX_DEFAULT, mem),
      APR_SUCCESS);
  ch.calls = calloc(ch.n, sizeof(*ch.calls));
  assert_non_null(ch.calls);
  assert_int_equal(pp_test_getcwd(ch.path, sizeof(ch.path) - 64), 0);
  snprintf(ch.path + strlen(ch.path), 64, "/pp-chaos-%lld.bin",
           (long long)pp_test_self_pid());
  ch.starts = pp_test_counters_map(ch.path, ch.n, 1);
  assert_non_null(ch.starts);

  /* One pool first, so that what the first pool of a process sets up for
   * good is in both descriptor sets. */
  pp_test_pool_options(&o, 1, 0, 0, NULL);
  PP_TEST_OK(pp_pool_create(&pool, &o));
  assert_int_equal(pp_pool_destroy(pool, PP_DESTROY_WAIT), 0);
  nb = fd_set_now(before);
  assert_true(nb <= MAX_FDS);

  /* A grace of 3 ms, so that cancels of running calls end in kills too. */
  pp_test_pool_options(&o, WORKERS, 0, 3, NULL);
  PP_TEST_OK(pp_pool_create(&pool, &o));
  storm = pp_test_storm_start(pool, seed ^ 0x5707a1u,
                              getenv("PROCPOOL_CHAOS_BURSTS") == NULL ||
                                  atoi(getenv("PROCPOOL_CHAOS_BURSTS")) != 0);
  assert_non_null(storm);
  t0 = apr_time_now();
  deadline = t0 + apr_time_from_sec(seconds);
  while (ch.used + CLEAN_CALLS < ch.n && apr_time_now() < deadline) {
    size_t m = 16 + pick(&ch.rng, 113);
    if (m > ch.n - CLEAN_CALLS - ch.used)
      m = ch.n - CLEAN_CALLS - ch.used;
    switch (pick(&ch.rng, 7)) {
      case 0:
        run_map(&ch, pool, A_MAP, m);
        break;
      case 1:
        run_map(&ch, pool, A_STARMAP, m);
        break;
      case 2:
        run_streaming(&ch, pool, A_UNORDERED, m);
        break;
      case 3:
      case 4:
        run_futures(&ch, pool, m);
        break;
      case 5:
        run_async(&ch, pool, m);
        break;
      default:
        run_streaming(&ch, pool, A_IMAP, m);
        break;
    }
  }
  pp_test_storm_stop(storm, &ss);
  print_line("%zu calls in %zu batches in %.1f s%s", ch.used, ch.batches,
             (double)(apr_time_now() - t0) / 1e6,
             ch.used + CLEAN_CALLS < ch.n ? " (the time limit came first)"
                                          : "");

  run_map(&ch, pool, A_CLEAN, CLEAN_CALLS);
  npids = pp_pool_worker_pids(pool, pids, MAX_PIDS);
  assert_true(npids >= 0 && npids <= MAX_PIDS);
  assert_int_equal(pp_pool_destroy(pool, PP_DESTROY_WAIT), 0);
  nkids = pp_test_children(kids, MAX_PIDS);
  na = fd_set_now(after);

  check_starts(&ch, &unstarted);
  print_summary(&ch, &ss, unstarted);
  pp_test_counters_unmap(ch.starts, ch.n);
  pp_test_remove_file(ch.path);
  free(ch.calls);
  apr_pool_destroy(mem);
  apr_terminate();

  for (i = 0; i < V_COUNT && ch.v_count[i] == 0; i++)
    ;
  if (ch.violations > 0)
    fail_msg("%llu breaches of the contract (seed 0x%llx); the first: %s",
             (unsigned long long)ch.violations, (unsigned long long)seed,
             ch.v_first[i][0]);
  /* No worker left: not one child of this process (where they can be
   * listed; elsewhere none of the pool's last workers). */
  if (nkids > 0)
    fail_msg("%d child processes left after pp_pool_destroy", nkids);
  if (nkids < 0)
    assert_true(pp_test_wait_gone(pids, (size_t)npids, 0));
  assert_true(na <= MAX_FDS);
  if (nb >= 0) {
    int same = na == nb;
    for (i = 0; same && i < (size_t)nb; i++)
      same = before[i] == after[i];
    if (!same)
      fail_msg("the pool changed the set of open descriptors: %d before, %d "
               "after",
               nb, na);
  }
}

int main(int argc, char **argv) {
  int rc;
  if (pp_worker_main(argc, argv, pp_test_tasks, &rc))
    return rc;
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_chaos_storm),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
