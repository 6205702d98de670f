/*
 * chaos_calls.c - the calls of the chaos test (see chaos.h): batches of
 * calls of 1-3 ms with timeouts of 2-5 ms (one in four without), through
 * every way into a pool, some cancelled or stopped, each outcome checked
 * the moment it is reported.
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
#include <apr_time.h>

#include "chaos.h"
#include "helpers.h"

const char *const chaos_api_names[A_COUNT] = {
    "map",       "starmap", "map_unordered", "future", "future+callback",
    "map_async", "imap",    "clean map"};

const char *const chaos_v_names[V_COUNT] = {
    "PP_OK but started more than once",
    "PP_OK but never started",
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

/* splitmix64: small, and the same sequence on every system. */
unsigned chaos_pick(uint64_t *state, unsigned n) {
  uint64_t z = (*state += 0x9E3779B97F4A7C15ull);
  z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
  z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
  return (unsigned)((z ^ (z >> 31)) % n);
}

/* Records a breach of the contract; ch->lock held. */
void chaos_note(chaos_t *ch, int kind, const char *fmt, ...) {
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
    chaos_note((ch), __VA_ARGS__);                                             \
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
  api = chaos_api_names[c->api];
  c->status = r->status;
  if (c->seen++ > 0)
    chaos_note(ch, V_TWICE, "call %zu (%s) reported again: %s: %s", key, api,
               pp_err_name(r->status), msg);
  if (r->status <= 0 && r->status > PP_ERRNO_MIN)
    ch->by_status[-r->status]++;
  if (r->status == PP_OK) {
    if (pp_unpack(r->data, r->len, "i", &v) != 0 || v != (int64_t)key * 7 + 1)
      chaos_note(ch, V_VALUE, "call %zu (%s): PP_OK with another value", key,
                 api);
  } else if (r->status == PP_EWORKERDIED) {
    /* The storm's SIGKILL, or the pool's own kill. */
    if (strstr(msg, "worker") == NULL
#ifndef _WIN32
        || r->term_signal != SIGKILL
#endif
    )
      chaos_note(ch, V_REASON, "call %zu (%s): PP_EWORKERDIED, signal %d: %s",
                 key, api, r->term_signal, msg);
  } else if (r->status == PP_ETIMEDOUT) {
    if (!c->timed || strstr(msg, "timeout") == NULL)
      chaos_note(ch, V_REASON, "call %zu (%s, %s timeout): PP_ETIMEDOUT: %s",
                 key, api, c->timed ? "with a" : "no", msg);
  } else if (r->status == PP_ECANCELED) {
    if (!c->cancel || strstr(msg, "cancel") == NULL)
      chaos_note(ch, V_REASON, "call %zu (%s, %s): PP_ECANCELED: %s", key, api,
                 c->cancel ? "cancelled" : "never cancelled", msg);
  } else {
    chaos_note(ch, V_STATUS, "call %zu (%s): %s: %s", key, api,
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
                       (int64_t)(1000 + chaos_pick(&ch->rng, 2001))));
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

/* A map's status is that of its first failed call in input order, among
 * the first `count` calls of the batch (those it read); their outcomes have
 * been recorded. */
static void check_map_status(batch_t *b, int rc, size_t count,
                             const char *what) {
  size_t i;
  int want = 0;
  apr_thread_mutex_lock(b->ch->lock);
  for (i = 0; i < count && want == 0; i++)
    want = b->ch->calls[b->first + i].status;
  apr_thread_mutex_unlock(b->ch->lock);
  if (rc != want)
    NOTE(b->ch, V_MAP,
         "%s of %zu calls (%zu read) returned %s, its first "
         "failed call %s",
         what, b->m, count, pp_err_name(rc), pp_err_name(want));
}

/* Timeouts close to the calls' 1-3 ms: 2-5 ms, or (one in four) none. */
static int64_t draw_timeout(chaos_t *ch) {
  return chaos_pick(&ch->rng, 4) == 0 ? -1
                                      : 2 + (int64_t)chaos_pick(&ch->rng, 4);
}

static void draw_map_options(chaos_t *ch, pp_map_options_t *mo) {
  static const size_t chunks[] = {0, 1, 1, 2, 4, 8};
  memset(mo, 0, sizeof(*mo));
  mo->timeout_ms = draw_timeout(ch);
  mo->chunksize = chunks[chaos_pick(&ch->rng, 6)];
}

void chaos_run_map(chaos_t *ch, pp_pool_t *pool, int api, size_t m) {
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
  check_map_status(&b, rc, b.m, chaos_api_names[api]);
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

void chaos_run_streaming(chaos_t *ch, pp_pool_t *pool, int api, size_t m) {
  pp_map_options_t mo;
  batch_t b;
  size_t i;
  int rc;
  draw_map_options(ch, &mo);
  if (!batch_make(ch, &b, m, api, mo.timeout_ms > 0))
    return;
  if (chaos_pick(&ch->rng, 5) == 0) {
    /* The callback stops the map at a random result: every call may then
     * end PP_ECANCELED, and an imap reads no more arguments. */
    b.stop_at = 1 + chaos_pick(&ch->rng, (unsigned)b.m);
    batch_cancel_all(&b);
  }
  if (api == A_IMAP) {
    mo.max_in_flight = 4 + chaos_pick(&ch->rng, 61);
    if (chaos_pick(&ch->rng, 2))
      mo.flags |= PP_MAP_UNORDERED;
    rc = pp_pool_imap(pool, "chaos", producer, &b, on_result, &b, &mo);
    for (i = b.read; i < b.m; i++)
      ch->calls[b.first + i].unmade = 1;
  } else {
    b.read = b.m;
    rc = pp_pool_map_unordered(pool, "chaos", b.args, b.m, on_result, &b, &mo);
  }
  if (b.delivered != b.read || (b.read < b.m && b.stop_at == b.m))
    NOTE(ch, V_MAP, "%s of %zu calls read %zu, delivered %zu, returned %s (%s)",
         chaos_api_names[api], b.m, b.read, b.delivered, pp_err_name(rc),
         b.stop_at == b.m ? "never stopped by its callback"
                          : "stopped by its callback");
  else
    /* A stopped map still returns its first failed call in input order:
     * PP_OK when every call it read ran and succeeded before the stop
     * cancelled anything (the stop may come at its last result). */
    check_map_status(&b, rc, b.read, chaos_api_names[api]);
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

void chaos_run_futures(chaos_t *ch, pp_pool_t *pool, size_t m) {
  pp_future_t **f;
  future_ctx_t *x;
  batch_t b;
  size_t i;
  int cancel = chaos_pick(&ch->rng, 3) == 0;
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
    if (chaos_pick(&ch->rng, 2)) {
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
      pp_test_sleep_ms(chaos_pick(&ch->rng, 5));
    if (chaos_pick(&ch->rng, 3) != 0)
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

void chaos_run_async(chaos_t *ch, pp_pool_t *pool, size_t m) {
  pp_map_options_t mo;
  pp_result_t *res;
  pp_map_t *map = NULL;
  batch_t b;
  size_t i;
  int rc, cancel = chaos_pick(&ch->rng, 4) == 0, star = chaos_pick(&ch->rng, 2);
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
    pp_test_sleep_ms(chaos_pick(&ch->rng, 6));
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
    check_map_status(&b, rc, b.m, "map_async");
  pp_results_free(res, b.m);
  free(res);
  batch_free(&b);
}
