/*
 * test_cq.c - completion queues (pp_cq_*): as_completed over futures of
 * any pools, at O(1) per future (issue 17, item 11).  Correctness only:
 * the cost is measured by bench/ (figure as_completed), not here.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include <apr_thread_proc.h>

#include "helpers.h"
#include "tasks.h"

#define LONG_MS (60000 * PP_TEST_TIME_SCALE)

static pp_future_t *submit(pp_pool_t *pool, const char *task, int64_t v) {
  pp_buf_t b = pp_test_pack_int(v);
  pp_future_t *f = NULL;
  PP_TEST_OK(pp_pool_submit(pool, task, b.data, b.len, NULL, &f));
  assert_non_null(f);
  pp_free((void *)b.data);
  return f;
}

static pp_future_t *submit_fail(pp_pool_t *pool, const char *text) {
  pp_future_t *f = NULL;
  PP_TEST_OK(pp_pool_submit(pool, "fail", text, strlen(text), NULL, &f));
  return f;
}

/* Returns the position of `f` in fs[0..n), failing the test if absent. */
static size_t find(pp_future_t *const *fs, size_t n, const pp_future_t *f) {
  size_t i;
  for (i = 0; i < n; i++)
    if (fs[i] == f)
      return i;
  fail_msg("pp_cq_next handed out a future that was never added");
  return n;
}

/* Futures of two pools, of calls that succeed, fail, are cancelled while
 * queued or running, and some that had finished before they were added:
 * every one comes out exactly once, finished, with its own outcome, and
 * then the queue says it is empty. */
static void test_cq_every_future_once_across_pools(void **state) {
  enum { N = 240 };
  pp_pool_t *a = pp_test_make_pool(2, 0, 0, NULL);
  pp_pool_t *b = pp_test_make_pool(1, 0, 0, NULL);
  pp_future_t *fs[N], *f;
  int kind[N], seen[N] = {0};
  pp_cq_t *cq;
  pp_result_t r;
  size_t i, at, out = 0;
  int rc;
  (void)state;
  PP_TEST_OK(pp_cq_create(&cq));
  for (i = 0; i < N; i++) {
    pp_pool_t *pool = i % 3 == 2 ? b : a;
    kind[i] = (int)(i % 6);
    switch (kind[i]) {
      case 0: /* ok */
      case 1:
        fs[i] = submit(pool, "square", (int64_t)i);
        break;
      case 2: /* a task failure */
        fs[i] = submit_fail(pool, "planned");
        break;
      case 3: /* cancelled: queued behind others, or running */
        fs[i] = submit(pool, "sleep_ms", 20);
        break;
      case 4: /* finished before it is added */
        fs[i] = submit(pool, "square", (int64_t)i);
        assert_int_equal(pp_future_wait(fs[i], LONG_MS), 0);
        break;
      default: /* a short sleep */
        fs[i] = submit(pool, "sleep_ms", (int64_t)(i % 5));
        break;
    }
    PP_TEST_OK(pp_cq_add(cq, fs[i]));
    if (kind[i] == 3)
      PP_TEST_OK(pp_future_cancel(fs[i]));
  }
  while ((rc = pp_cq_next(cq, LONG_MS, &f)) == 1) {
    at = find(fs, N, f);
    seen[at]++;
    out++;
    assert_int_equal(pp_future_state(f), PP_FUTURE_DONE);
    PP_TEST_OK(pp_future_take(f, &r));
    switch (kind[at]) {
      case 0:
      case 1:
      case 4:
        assert_int_equal(r.status, 0);
        assert_true(pp_test_int_result(&r) == (int64_t)(at * at));
        break;
      case 2:
        assert_int_equal(r.status, PP_ETASK);
        assert_non_null(strstr(r.message, "planned"));
        break;
      case 3:
        assert_int_equal(r.status, PP_ECANCELED);
        break;
      default:
        assert_int_equal(r.status, 0);
        assert_true(pp_test_int_result(&r) == (int64_t)(at % 5));
        break;
    }
    pp_results_free(&r, 1);
  }
  assert_int_equal(rc, 0);
  assert_null(f);
  assert_int_equal(out, N);
  for (i = 0; i < N; i++)
    assert_int_equal(seen[i], 1);
  /* Empty: at once, whatever the time limit. */
  assert_int_equal(pp_cq_next(cq, -1, &f), 0);
  for (i = 0; i < N; i++)
    pp_future_free(fs[i]);
  pp_cq_free(cq);
  assert_int_equal(pp_pool_destroy(a, PP_DESTROY_WAIT), 0);
  assert_int_equal(pp_pool_destroy(b, PP_DESTROY_WAIT), 0);
}

/* Futures come out in the order their calls finished, not the order they
 * were added: one worker runs the calls in the order submitted, and they
 * are added the other way round. */
static void test_cq_order_of_finishing(void **state) {
  static const int64_t ms[4] = {60, 0, 30, 5};
  pp_pool_t *pool = pp_test_make_pool(1, 0, 0, NULL);
  pp_future_t *fs[4], *f;
  pp_cq_t *cq;
  pp_result_t r;
  int i;
  (void)state;
  PP_TEST_OK(pp_cq_create(&cq));
  for (i = 0; i < 4; i++)
    fs[i] = submit(pool, "sleep_ms", ms[i]);
  for (i = 3; i >= 0; i--)
    PP_TEST_OK(pp_cq_add(cq, fs[i]));
  for (i = 0; i < 4; i++) {
    assert_int_equal(pp_cq_next(cq, LONG_MS, &f), 1);
    assert_ptr_equal(f, fs[i]);
    PP_TEST_OK(pp_future_take(f, &r));
    assert_true(pp_test_int_result(&r) == ms[i]);
    pp_results_free(&r, 1);
    pp_future_free(f);
  }
  assert_int_equal(pp_cq_next(cq, 0, &f), 0);
  pp_cq_free(cq);
  assert_int_equal(pp_pool_destroy(pool, PP_DESTROY_WAIT), 0);
}

/* A time limit with nothing finished: PP_ETIMEDOUT, the futures stay in
 * the queue and come out once they finish. */
static void test_cq_time_limits(void **state) {
  pp_pool_t *pool = pp_test_make_pool(1, 0, 0, NULL);
  pp_future_t *slow, *f = (pp_future_t *)&f;
  pp_cq_t *cq;
  (void)state;
  PP_TEST_OK(pp_cq_create(&cq));
  slow = submit(pool, "sleep_ms", LONG_MS);
  PP_TEST_OK(pp_cq_add(cq, slow));
  assert_int_equal(pp_cq_next(cq, 50, &f), PP_ETIMEDOUT);
  assert_null(f);
  assert_non_null(strstr(pp_last_error(), "50 ms"));
  assert_int_equal(pp_cq_next(cq, 0, &f), PP_ETIMEDOUT);
  PP_TEST_OK(pp_future_cancel(slow));
  assert_int_equal(pp_cq_next(cq, LONG_MS, &f), 1);
  assert_ptr_equal(f, slow);
  assert_int_equal(pp_future_status(f), PP_ECANCELED);
  assert_int_equal(pp_cq_next(cq, LONG_MS, &f), 0);
  pp_future_free(slow);
  pp_cq_free(cq);
  assert_int_equal(pp_pool_destroy(pool, PP_DESTROY_WAIT), 0);
}

/* Misuse and ownership: NULLs, a future in two queues, a future freed
 * while in a queue (it leaves it), a queue freed with futures in it (they
 * stay the caller's and run on), futures of a destroyed pool and of an
 * inline pool. */
static void test_cq_ownership(void **state) {
  pp_pool_t *pool = pp_test_make_pool(1, 0, 0, NULL);
  pp_pool_t *inl = pp_test_make_pool(1, PP_POOL_INLINE, 0, NULL);
  pp_future_t *f1, *f2, *f3, *f;
  pp_cq_t *cq, *other;
  pp_result_t r;
  (void)state;
  assert_int_equal(pp_cq_create(NULL), PP_EINVAL);
  PP_TEST_OK(pp_cq_create(&cq));
  PP_TEST_OK(pp_cq_create(&other));
  f1 = submit(pool, "sleep_ms", 200);
  f2 = submit(pool, "square", 3);
  assert_int_equal(pp_cq_add(NULL, f1), PP_EINVAL);
  assert_int_equal(pp_cq_add(cq, NULL), PP_EINVAL);
  assert_int_equal(pp_cq_next(NULL, 0, &f), PP_EINVAL);
  assert_int_equal(pp_cq_next(cq, 0, NULL), PP_EINVAL);
  PP_TEST_OK(pp_cq_add(cq, f1));
  assert_int_equal(pp_cq_add(cq, f1), PP_EINVAL);
  assert_non_null(strstr(pp_last_error(), "this completion queue already"));
  assert_int_equal(pp_cq_add(other, f1), PP_EINVAL);
  PP_TEST_OK(pp_cq_add(cq, f2));
  /* Freed while in the queue (and still running): it leaves it. */
  pp_future_free(f1);
  assert_int_equal(pp_cq_next(cq, LONG_MS, &f), 1);
  assert_ptr_equal(f, f2);
  assert_int_equal(pp_cq_next(cq, LONG_MS, &f), 0);
  /* Handed out: it may go into another queue. */
  PP_TEST_OK(pp_cq_add(other, f2));
  /* A finished future freed while ready in the queue leaves it too. */
  pp_future_free(f2);
  assert_int_equal(pp_cq_next(other, 0, &f), 0);

  /* An inline pool's call has finished when it is added. */
  f3 = submit(inl, "square", 5);
  PP_TEST_OK(pp_cq_add(cq, f3));
  assert_int_equal(pp_cq_next(cq, 0, &f), 1);
  assert_ptr_equal(f, f3);
  pp_future_free(f3);

  /* A queue freed with futures in it: they run on and stay valid. */
  f1 = submit(pool, "sleep_ms", 50);
  f2 = submit(pool, "square", 4);
  PP_TEST_OK(pp_cq_add(cq, f1));
  PP_TEST_OK(pp_cq_add(cq, f2));
  pp_cq_free(cq);
  assert_int_equal(pp_future_wait(f1, LONG_MS), 0);
  assert_int_equal(pp_future_wait(f2, LONG_MS), 0);
  PP_TEST_OK(pp_future_take(f2, &r));
  assert_true(pp_test_int_result(&r) == 16);
  pp_results_free(&r, 1);

  /* Futures outlive their pool, in a queue too. */
  assert_int_equal(pp_pool_destroy(pool, PP_DESTROY_WAIT), 0);
  PP_TEST_OK(pp_cq_add(other, f1));
  pp_future_free(f2);
  assert_int_equal(pp_cq_next(other, 0, &f), 1);
  assert_ptr_equal(f, f1);
  assert_int_equal(pp_future_status(f1), 0);
  /* In the queue when the queue goes, then freed: the last user of the
   * destroyed pool frees it. */
  PP_TEST_OK(pp_cq_add(other, f1));
  pp_cq_free(other);
  pp_future_free(f1);
  assert_int_equal(pp_pool_destroy(inl, PP_DESTROY_WAIT), 0);
}

/* Several threads take from one queue at once: each future goes to one of
 * them, and all of them learn that the queue is empty. */
typedef struct taker_s {
  pp_cq_t *cq;
  pp_future_t **got;
  size_t n;
  int last_rc;
} taker_t;

static void *APR_THREAD_FUNC take_all(apr_thread_t *t, void *data) {
  taker_t *k = data;
  pp_future_t *f;
  while ((k->last_rc = pp_cq_next(k->cq, LONG_MS, &f)) == 1)
    k->got[k->n++] = f;
  (void)t;
  return NULL;
}

static void test_cq_several_takers(void **state) {
  enum { N = 600, T = 3 };
  pp_pool_t *pool = pp_test_make_pool(2, 0, 0, NULL);
  pp_future_t *fs[N];
  taker_t k[T];
  apr_thread_t *th[T];
  apr_pool_t *mem;
  apr_status_t rv;
  pp_cq_t *cq;
  int seen[N] = {0};
  size_t i, j, total = 0;
  (void)state;
  assert_int_equal(apr_pool_create(&mem, NULL), APR_SUCCESS);
  PP_TEST_OK(pp_cq_create(&cq));
  for (i = 0; i < N; i++) {
    fs[i] = submit(pool, "square", (int64_t)i);
    PP_TEST_OK(pp_cq_add(cq, fs[i]));
  }
  for (j = 0; j < T; j++) {
    memset(&k[j], 0, sizeof(k[j]));
    k[j].cq = cq;
    k[j].got = calloc(N, sizeof(*k[j].got));
    assert_non_null(k[j].got);
    assert_int_equal(apr_thread_create(&th[j], NULL, take_all, &k[j], mem),
                     APR_SUCCESS);
  }
  for (j = 0; j < T; j++) {
    apr_thread_join(&rv, th[j]);
    assert_int_equal(k[j].last_rc, 0);
    for (i = 0; i < k[j].n; i++)
      seen[find(fs, N, k[j].got[i])]++;
    total += k[j].n;
    free(k[j].got);
  }
  assert_int_equal(total, N);
  for (i = 0; i < N; i++) {
    assert_int_equal(seen[i], 1);
    assert_int_equal(pp_future_status(fs[i]), 0);
    pp_future_free(fs[i]);
  }
  pp_cq_free(cq);
  apr_pool_destroy(mem);
  assert_int_equal(pp_pool_destroy(pool, PP_DESTROY_WAIT), 0);
}

int main(int argc, char **argv) {
  int rc;
  if (pp_worker_main(argc, argv, pp_test_tasks, &rc))
    return rc;
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_cq_every_future_once_across_pools),
      cmocka_unit_test(test_cq_order_of_finishing),
      cmocka_unit_test(test_cq_time_limits),
      cmocka_unit_test(test_cq_ownership),
      cmocka_unit_test(test_cq_several_takers),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
