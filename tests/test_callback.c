/*
 * test_callback.c - completion callbacks (pp_future_on_done, the on_done
 * call option) and waits over futures of several pools.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include <apr_atomic.h>
#include <apr_portable.h>
#include <apr_time.h>

#include "helpers.h"
#include "tasks.h"

/* What one callback saw.  Written by the callback thread, read by the test
 * after pp_pool_destroy() (which joins that thread) unless said. */
typedef struct seen_s {
  volatile apr_uint32_t count;
  int status;    /* pp_future_status() inside the callback */
  int take_rc;   /* pp_future_take() inside the callback */
  int64_t value; /* the result, or INT64_MIN */
  char message[128];
  apr_os_thread_t thread;
  int order;       /* when it ran among its future's callbacks */
  int *next_order; /* shared counter for `order` */
} seen_t;

static void record(void *data, pp_future_t *f) {
  seen_t *s = data;
  pp_result_t r;
  s->thread = apr_os_thread_current();
  s->status = pp_future_status(f);
  s->take_rc = pp_future_take(f, &r);
  if (s->take_rc == 0) {
    s->value = r.status == 0 ? pp_test_int_result(&r) : INT64_MIN;
    snprintf(s->message, sizeof(s->message), "%s", r.message ? r.message : "");
    pp_results_free(&r, 1);
  }
  if (s->next_order != NULL)
    s->order = (*s->next_order)++;
  apr_atomic_inc32(&s->count);
}

static pp_future_t *submit_int(pp_pool_t *pool, const char *task, int64_t v,
                               const pp_call_options_t *co) {
  pp_buf_t b = pp_test_pack_int(v);
  pp_future_t *f = NULL;
  PP_TEST_OK(pp_pool_submit(pool, task, b.data, b.len, co, &f));
  assert_non_null(f);
  pp_free((void *)b.data);
  return f;
}

/* Callbacks on calls that cannot have finished when they are added (the
 * only worker hangs): each runs once, after its call is cancelled, in the
 * order added, on a thread that is neither the caller's nor under a lock
 * (pp_future_status and pp_future_take work inside). */
static void test_callback_runs_once_on_callback_thread(void **state) {
  pp_pool_t *pool = pp_test_make_pool(1, 0, 100, NULL);
  pp_future_t *f = NULL;
  seen_t s[3];
  int next = 0, i;
  apr_os_thread_t me = apr_os_thread_current();
  (void)state;
  memset(s, 0, sizeof(s));
  PP_TEST_OK(pp_pool_submit(pool, "hang", NULL, 0, NULL, &f));
  for (i = 0; i < 3; i++) {
    s[i].next_order = &next;
    PP_TEST_OK(pp_future_on_done(f, record, &s[i]));
  }
  for (i = 0; i < 3; i++)
    assert_int_equal(apr_atomic_read32(&s[i].count), 0);
  PP_TEST_OK(pp_future_cancel(f));
  assert_int_equal(pp_future_wait(f, 60000 * PP_TEST_TIME_SCALE), 0);
  assert_int_equal(pp_pool_destroy(pool, PP_DESTROY_WAIT), 0);
  for (i = 0; i < 3; i++) {
    assert_int_equal(apr_atomic_read32(&s[i].count), 1);
    assert_int_equal(s[i].order, i);
    assert_int_equal(s[i].status, PP_ECANCELED);
    assert_false(apr_os_thread_equal(s[i].thread, me));
    assert_true(apr_os_thread_equal(s[i].thread, s[0].thread));
  }
  /* The first take moved the outcome out; the later ones got the status. */
  assert_int_equal(s[0].take_rc, 0);
  assert_non_null(strstr(s[0].message, "cancel"));
  assert_int_equal(s[2].take_rc, 0);
  pp_future_free(f);
}

/* apply_async(callback, error_callback): the on_done option, one callback
 * for both, the status tells them apart. */
static void test_callback_apply_async(void **state) {
  enum { N = 40 };
  pp_pool_t *pool = pp_test_make_pool(2, 0, 0, NULL);
  pp_future_t *fs[N];
  seen_t s[N];
  pp_call_options_t co;
  char msg[32];
  apr_os_thread_t me = apr_os_thread_current();
  int i;
  (void)state;
  memset(s, 0, sizeof(s));
  for (i = 0; i < N; i++) {
    memset(&co, 0, sizeof(co));
    co.on_done = record;
    co.on_done_data = &s[i];
    if (i % 3 == 1) {
      snprintf(msg, sizeof(msg), "no %d", i);
      PP_TEST_OK(pp_pool_submit(pool, "fail", msg, strlen(msg), &co, &fs[i]));
    } else {
      fs[i] = submit_int(pool, "square", i, &co);
    }
  }
  assert_int_equal(pp_pool_destroy(pool, PP_DESTROY_WAIT), 0);
  for (i = 0; i < N; i++) {
    assert_int_equal(apr_atomic_read32(&s[i].count), 1);
    assert_int_equal(s[i].take_rc, 0);
    assert_false(apr_os_thread_equal(s[i].thread, me));
    if (i % 3 == 1) {
      assert_int_equal(s[i].status, PP_ETASK);
      snprintf(msg, sizeof(msg), "fail: no %d", i);
      assert_string_equal(s[i].message, msg);
    } else {
      assert_int_equal(s[i].status, 0);
      assert_true(s[i].value == (int64_t)i * i);
    }
    assert_int_equal(pp_future_status(fs[i]), s[i].status);
    pp_future_free(fs[i]);
  }
}

/* Added after the call finished: runs at once, in the calling thread. */
static void test_callback_after_finish_runs_at_once(void **state) {
  pp_pool_t *pool = pp_test_make_pool(1, 0, 0, NULL);
  pp_future_t *f = submit_int(pool, "square", 9, NULL);
  seen_t s;
  (void)state;
  memset(&s, 0, sizeof(s));
  assert_int_equal(pp_future_wait(f, 60000 * PP_TEST_TIME_SCALE), 0);
  PP_TEST_OK(pp_future_on_done(f, record, &s));
  assert_int_equal(apr_atomic_read32(&s.count), 1);
  assert_true(apr_os_thread_equal(s.thread, apr_os_thread_current()));
  assert_int_equal(s.status, 0);
  assert_true(s.value == 81);
  /* Bad arguments. */
  assert_int_equal(pp_future_on_done(NULL, record, &s), PP_EINVAL);
  assert_int_equal(pp_future_on_done(f, NULL, &s), PP_EINVAL);
  assert_non_null(strstr(pp_last_error(), "pp_future_on_done"));
  pp_future_free(f);
  assert_int_equal(pp_pool_destroy(pool, PP_DESTROY_WAIT), 0);
  assert_int_equal(apr_atomic_read32(&s.count), 1);
}

/* Inline mode: the call runs in the caller, its callback on the callback
 * thread, and destroy waits for it. */
static void test_callback_inline_mode(void **state) {
  pp_pool_t *pool = pp_test_make_pool(1, PP_POOL_INLINE, 0, NULL);
  pp_call_options_t co;
  pp_future_t *f;
  seen_t s;
  (void)state;
  memset(&s, 0, sizeof(s));
  memset(&co, 0, sizeof(co));
  co.on_done = record;
  co.on_done_data = &s;
  f = submit_int(pool, "square", 5, &co);
  assert_int_equal(pp_pool_destroy(pool, PP_DESTROY_WAIT), 0);
  assert_int_equal(apr_atomic_read32(&s.count), 1);
  assert_false(apr_os_thread_equal(s.thread, apr_os_thread_current()));
  assert_int_equal(s.status, 0);
  assert_true(s.value == 25);
  pp_future_free(f);
}

/* A cancelling destroy: every call ends PP_ECANCELED, and each callback
 * has run when pp_pool_destroy() returns. */
static void test_callback_destroy_cancel(void **state) {
  enum { N = 6 };
  pp_pool_t *pool = pp_test_make_pool(1, 0, 100, NULL);
  pp_future_t *fs[N];
  pp_call_options_t co;
  seen_t s[N];
  int i;
  (void)state;
  memset(s, 0, sizeof(s));
  for (i = 0; i < N; i++) {
    memset(&co, 0, sizeof(co));
    co.on_done = record;
    co.on_done_data = &s[i];
    fs[i] = submit_int(pool, "sleep_ms", 60000, &co);
  }
  assert_int_equal(pp_pool_destroy(pool, PP_DESTROY_CANCEL), 0);
  for (i = 0; i < N; i++) {
    assert_int_equal(apr_atomic_read32(&s[i].count), 1);
    assert_int_equal(s[i].status, PP_ECANCELED);
    pp_future_free(fs[i]);
  }
}

/* ---- chained calls from callbacks while workers crash ---- */

typedef struct chain_s {
  pp_pool_t *pool;
  volatile apr_uint32_t first_ok, first_died, first_other;
  volatile apr_uint32_t submitted, closed, submit_other;
  volatile apr_uint32_t second_ok, second_bad;
  volatile apr_uint32_t running; /* callbacks inside their body now */
} chain_t;

static void chain_second(void *data, pp_future_t *f) {
  chain_t *c = data;
  apr_atomic_inc32(&c->running);
  if (pp_future_status(f) == 0)
    apr_atomic_inc32(&c->second_ok);
  else
    apr_atomic_inc32(&c->second_bad);
  pp_future_free(f); /* the program's reference: it never kept it */
  apr_atomic_dec32(&c->running);
}

static void chain_first(void *data, pp_future_t *f) {
  chain_t *c = data;
  pp_call_options_t co;
  pp_future_t *next = NULL;
  pp_buf_t b = pp_test_pack_int(3);
  int st, rc;
  apr_atomic_inc32(&c->running);
  st = pp_future_status(f);
  if (st == 0)
    apr_atomic_inc32(&c->first_ok);
  else if (st == PP_EWORKERDIED)
    apr_atomic_inc32(&c->first_died);
  else
    apr_atomic_inc32(&c->first_other);
  pp_future_free(f);
  memset(&co, 0, sizeof(co));
  co.on_done = chain_second;
  co.on_done_data = c;
  rc = pp_pool_submit(c->pool, "square", b.data, b.len, &co, &next);
  pp_free((void *)b.data);
  if (rc == 0)
    apr_atomic_inc32(&c->submitted);
  else if (rc == PP_ECLOSED)
    apr_atomic_inc32(&c->closed);
  else
    apr_atomic_inc32(&c->submit_other);
  apr_atomic_dec32(&c->running);
}

/* Submits n first calls, waits until `until` follow-ups have finished, and
 * destroys the pool (PP_DESTROY_WAIT). */
static void chain_run(chain_t *c, int n, int until) {
  pp_call_options_t co;
  pp_future_t *f;
  int64_t waited = 0;
  int i;
  memset(&co, 0, sizeof(co));
  co.on_done = chain_first;
  co.on_done_data = c;
  for (i = 0; i < n; i++) {
    /* The program gives its reference to the callback, which frees it. */
    if (i % 7 == 0)
      PP_TEST_OK(pp_pool_submit(c->pool, "segv", NULL, 0, &co, &f));
    else
      f = submit_int(c->pool, "square", i, &co);
  }
  while ((int)apr_atomic_read32(&c->second_ok) +
             (int)apr_atomic_read32(&c->second_bad) <
         until) {
    assert_true(waited < 120000 * PP_TEST_TIME_SCALE);
    pp_test_sleep_ms(10);
    waited += 10;
  }
  assert_int_equal(pp_pool_destroy(c->pool, PP_DESTROY_WAIT), 0);
}

static void chain_check_quiet(chain_t *c) {
  apr_uint32_t ok = apr_atomic_read32(&c->second_ok);
  /* After destroy no callback runs, and none starts later. */
  assert_int_equal(apr_atomic_read32(&c->running), 0);
  pp_test_sleep_ms(50);
  assert_int_equal(apr_atomic_read32(&c->second_ok), ok);
  assert_int_equal(apr_atomic_read32(&c->running), 0);
}

static void test_callback_chain_while_crashing(void **state) {
  enum { N = 200 };
  chain_t c;
  (void)state;
  memset(&c, 0, sizeof(c));
  c.pool = pp_test_make_pool(2, 0, 0, NULL);
  chain_run(&c, N, N);
  chain_check_quiet(&c);
  assert_int_equal(c.first_died, (N + 6) / 7);
  assert_int_equal(c.first_ok, N - (N + 6) / 7);
  assert_int_equal(c.first_other, 0);
  assert_int_equal(c.submitted, N);
  assert_int_equal(c.closed, 0);
  assert_int_equal(c.submit_other, 0);
  assert_int_equal(c.second_ok, N);
  assert_int_equal(c.second_bad, 0);
}

/* The same, destroyed while the chain goes on (a quarter of the follow-ups
 * done): follow-ups submitted during the destroy fail with PP_ECLOSED, the
 * others finish, nothing hangs. */
static void test_callback_chain_destroyed_early(void **state) {
  enum { N = 200 };
  chain_t c;
  (void)state;
  memset(&c, 0, sizeof(c));
  c.pool = pp_test_make_pool(2, 0, 0, NULL);
  chain_run(&c, N, N / 4);
  chain_check_quiet(&c);
  assert_int_equal(c.first_ok + c.first_died, N);
  assert_int_equal(c.submit_other, 0);
  assert_int_equal(c.submitted + c.closed, N);
  assert_true(c.submitted >= N / 4);
  assert_int_equal(c.second_ok + c.second_bad, c.submitted);
  assert_int_equal(c.second_bad, 0);
}

/* The program frees its future before the call ends (that cancels it);
 * the callback still gets a valid future (ASan checks). */
static void test_callback_future_freed_by_program(void **state) {
  pp_pool_t *pool = pp_test_make_pool(1, 0, 100, NULL);
  pp_future_t *f = NULL;
  seen_t s;
  (void)state;
  memset(&s, 0, sizeof(s));
  PP_TEST_OK(pp_pool_submit(pool, "hang", NULL, 0, NULL, &f));
  PP_TEST_OK(pp_future_on_done(f, record, &s));
  pp_future_free(f);
  assert_int_equal(pp_pool_destroy(pool, PP_DESTROY_WAIT), 0);
  assert_int_equal(apr_atomic_read32(&s.count), 1);
  assert_int_equal(s.status, PP_ECANCELED);
  assert_int_equal(s.take_rc, 0);
}

/* ---- destroy from a callback ---- */

typedef struct self_destroy_s {
  pp_pool_t *pool;
  int rc;
  char why[256];
  volatile apr_uint32_t count;
} self_destroy_t;

static void destroy_own_pool(void *data, pp_future_t *f) {
  self_destroy_t *d = data;
  d->rc = pp_pool_destroy(d->pool, PP_DESTROY_WAIT);
  snprintf(d->why, sizeof(d->why), "%s", pp_last_error());
  /* The pool still works. */
  if (pp_future_status(f) == 0)
    apr_atomic_inc32(&d->count);
}

static void test_callback_cannot_destroy_own_pool(void **state) {
  self_destroy_t d;
  pp_call_options_t co;
  pp_future_t *f;
  (void)state;
  memset(&d, 0, sizeof(d));
  memset(&co, 0, sizeof(co));
  d.pool = pp_test_make_pool(1, 0, 0, NULL);
  co.on_done = destroy_own_pool;
  co.on_done_data = &d;
  f = submit_int(d.pool, "square", 2, &co);
  assert_int_equal(pp_future_wait(f, 60000 * PP_TEST_TIME_SCALE), 0);
  pp_future_free(f);
  /* The pool is still usable after the refused destroy. */
  f = submit_int(d.pool, "square", 4, NULL);
  assert_int_equal(pp_future_wait(f, 60000 * PP_TEST_TIME_SCALE), 0);
  assert_int_equal(pp_future_status(f), 0);
  pp_future_free(f);
  assert_int_equal(pp_pool_destroy(d.pool, PP_DESTROY_WAIT), 0);
  assert_int_equal(d.rc, PP_EINVAL);
  assert_non_null(strstr(d.why, "completion callback"));
  assert_int_equal(apr_atomic_read32(&d.count), 1);
}

/* ---- pools whose callbacks destroy each other (issue 17, item 10) ---- */

#define RING_MAX 3

typedef struct ring_s ring_t;
typedef struct ring_side_s {
  ring_t *ring;
  int i;
} ring_side_t;
struct ring_s {
  int n;
  pp_pool_t *pools[RING_MAX];
  ring_side_t sides[RING_MAX];
  int rc[RING_MAX]; /* pool i's callback: the destroy of pool i + 1 */
  char why[RING_MAX][512];
  uint32_t started, finished; /* pp_test_counter_*: they order rc and why */
};

/* Pool i's callback destroys pool i + 1 (mod n), once every callback of
 * the ring has started, so that they all destroy at once. */
static void destroy_next(void *data, pp_future_t *f) {
  ring_side_t *side = data;
  ring_t *r = side->ring;
  int k;
  (void)f;
  pp_test_counter_inc(&r->started);
  for (k = 0; k < 2000 && pp_test_counter_get(&r->started) < (unsigned)r->n;
       k++)
    pp_test_sleep_ms(5);
  r->rc[side->i] =
      pp_pool_destroy(r->pools[(side->i + 1) % r->n], PP_DESTROY_WAIT);
  snprintf(r->why[side->i], sizeof(r->why[side->i]), "%s",
           r->rc[side->i] ? pp_last_error() : "");
  pp_test_counter_inc(&r->finished);
}

/* A ring of n pools whose callbacks each destroy the next one.  The test
 * waits for the callbacks with a limit, so a deadlock fails it instead of
 * hanging it: one destroy, the one that would close the ring, is refused
 * with PP_EINVAL and a sentence, the others work, and the pool it was for
 * is left to the program, which destroys it; no worker is left. */
static void destroy_ring(int n) {
  ring_t *r = calloc(1, sizeof(*r));
  pp_call_options_t co;
  pp_future_t *fs[RING_MAX];
  int64_t pids[RING_MAX];
  int i, refused = -1, k;
  assert_non_null(r);
  r->n = n;
  for (i = 0; i < n; i++) {
    r->pools[i] = pp_test_make_pool(1, 0, 0, NULL);
    assert_int_equal(pp_pool_worker_pids(r->pools[i], &pids[i], 1), 1);
  }
  memset(&co, 0, sizeof(co));
  co.on_done = destroy_next;
  for (i = 0; i < n; i++) {
    r->sides[i].ring = r;
    r->sides[i].i = i;
    co.on_done_data = &r->sides[i];
    fs[i] = submit_int(r->pools[i], "square", i, &co);
  }
  for (k = 0; k < 600 * PP_TEST_TIME_SCALE &&
              pp_test_counter_get(&r->finished) < (unsigned)n;
       k++)
    pp_test_sleep_ms(50);
  if (pp_test_counter_get(&r->finished) < (unsigned)n)
    /* The threads stay stuck; the pools leak with them. */
    fail_msg("%d pools whose callbacks destroy each other: only %u of %d "
             "callbacks returned within %d s (deadlock)",
             n, pp_test_counter_get(&r->finished), n,
             (int)(30 * PP_TEST_TIME_SCALE));
  for (i = 0; i < n; i++) {
    print_message("pool %d's callback, destroying pool %d: %s %s\n", i,
                  (i + 1) % n, pp_err_name(r->rc[i]), r->why[i]);
    if (r->rc[i] == 0)
      continue;
    assert_int_equal(r->rc[i], PP_EINVAL);
    assert_int_equal(refused, -1);
    refused = i;
    assert_non_null(strstr(r->why[i], "destroy each other"));
  }
  assert_true(refused >= 0);
  for (i = 0; i < n; i++)
    pp_future_free(fs[i]);
  /* The refused pool still works, and goes now. */
  i = (refused + 1) % n;
  fs[0] = submit_int(r->pools[i], "square", 3, NULL);
  assert_int_equal(pp_future_wait(fs[0], 60000 * PP_TEST_TIME_SCALE), 0);
  assert_int_equal(pp_future_status(fs[0]), 0);
  pp_future_free(fs[0]);
  assert_int_equal(pp_pool_destroy(r->pools[i], PP_DESTROY_WAIT), 0);
  assert_true(pp_test_wait_gone(pids, (size_t)n, 30000));
  free(r);
}

static void test_callback_pools_destroy_each_other(void **state) {
  (void)state;
  destroy_ring(2);
  destroy_ring(3);
}

/* ---- as_completed over futures of two pools ---- */

static void test_callback_wait_many_two_pools(void **state) {
  static const int64_t ms[8] = {150, 10, 80, 0, 40, 120, 5, 60};
  pp_pool_t *a = pp_test_make_pool(2, 0, 0, NULL);
  pp_pool_t *b = pp_test_make_pool(1, 0, 0, NULL);
  pp_future_t *fs[8], *two[2];
  int seen[8] = {0};
  size_t i, at, left = 8;
  pp_result_t r;
  (void)state;
  for (i = 0; i < 8; i++)
    fs[i] = submit_int(i % 2 ? b : a, "sleep_ms", ms[i], NULL);
  while (left > 0) {
    assert_int_equal(pp_future_wait_many(fs, 8, PP_WAIT_FIRST_COMPLETED,
                                         60000 * PP_TEST_TIME_SCALE, &at),
                     0);
    assert_true(at < 8);
    assert_int_equal(pp_future_state(fs[at]), PP_FUTURE_DONE);
    PP_TEST_OK(pp_future_take(fs[at], &r));
    assert_true(pp_test_int_result(&r) == ms[at]);
    pp_results_free(&r, 1);
    pp_future_free(fs[at]);
    fs[at] = NULL;
    seen[at]++;
    left--;
  }
  for (i = 0; i < 8; i++)
    assert_int_equal(seen[i], 1);

  /* A time limit while both run, on either mode. */
  two[0] = submit_int(a, "sleep_ms", 60000, NULL);
  two[1] = submit_int(b, "sleep_ms", 60000, NULL);
  at = 99;
  assert_int_equal(
      pp_future_wait_many(two, 2, PP_WAIT_FIRST_COMPLETED, 50, &at),
      PP_ETIMEDOUT);
  assert_int_equal(at, 2);
  assert_non_null(strstr(pp_last_error(), "50 ms"));
  assert_int_equal(pp_future_wait_many(two, 2, PP_WAIT_ALL_COMPLETED, 0, &at),
                   PP_ETIMEDOUT);
  /* One ends (cancelled: a failure), from another thread's view. */
  PP_TEST_OK(pp_future_cancel(two[1]));
  assert_int_equal(pp_future_wait_many(two, 2, PP_WAIT_FIRST_FAILED,
                                       60000 * PP_TEST_TIME_SCALE, &at),
                   0);
  assert_int_equal(at, 1);
  assert_int_equal(pp_future_status(two[1]), PP_ECANCELED);
  assert_int_equal(pp_future_status(two[0]), PP_EAGAIN);
  PP_TEST_OK(pp_future_cancel(two[0]));
  assert_int_equal(pp_future_wait_many(two, 2, PP_WAIT_ALL_COMPLETED,
                                       60000 * PP_TEST_TIME_SCALE, &at),
                   0);
  assert_int_equal(at, 0);
  pp_future_free(two[0]);
  pp_future_free(two[1]);
  assert_int_equal(pp_pool_destroy(a, PP_DESTROY_WAIT), 0);
  assert_int_equal(pp_pool_destroy(b, PP_DESTROY_WAIT), 0);
}

int main(int argc, char **argv) {
  int rc;
  if (pp_worker_main(argc, argv, pp_test_tasks, &rc))
    return rc;
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_callback_runs_once_on_callback_thread),
      cmocka_unit_test(test_callback_apply_async),
      cmocka_unit_test(test_callback_after_finish_runs_at_once),
      cmocka_unit_test(test_callback_inline_mode),
      cmocka_unit_test(test_callback_destroy_cancel),
      cmocka_unit_test(test_callback_chain_while_crashing),
      cmocka_unit_test(test_callback_chain_destroyed_early),
      cmocka_unit_test(test_callback_future_freed_by_program),
      cmocka_unit_test(test_callback_cannot_destroy_own_pool),
      cmocka_unit_test(test_callback_pools_destroy_each_other),
      cmocka_unit_test(test_callback_wait_many_two_pools),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
