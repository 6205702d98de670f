/*
 * test_once.c - exactly once (issue 17): every call gets one outcome, and
 * a call that reports OK started exactly once, also when a timeout, a
 * cancel or a worker's death falls at the worst moment.  Starts are
 * counted by the calls themselves, in a file mapping the test reads
 * (helpers.h, pp_test_tally_*), so the test does not take the pool's word
 * for it.
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
#include <apr_time.h>

#include "helpers.h"
#include "tasks.h"

/* Calls of the race tests; PROCPOOL_ONCE_CALLS lowers it for slow legs. */
static size_t once_calls(size_t dflt) {
  const char *v = getenv("PROCPOOL_ONCE_CALLS");
  size_t n = v ? (size_t)strtoull(v, NULL, 10) : 0;
  return n > 0 ? n : dflt;
}

/* ---- threads that keep the CPUs busy ---- */

/* The parent's I/O thread must be late now and then for the races below
 * to happen; threads that spin beside it make the scheduler delay it, as
 * a loaded CI machine does. */
typedef struct hog_s {
  uint32_t stop; /* pp_test_counter_* */
  apr_thread_t *threads[4];
  int n;
  apr_pool_t *mem;
} hog_t;

static void *APR_THREAD_FUNC hog_main(apr_thread_t *t, void *data) {
  hog_t *h = data;
  (void)t;
  while (pp_test_counter_get(&h->stop) == 0)
    ;
  apr_thread_exit(t, APR_SUCCESS);
  return NULL;
}

static void hog_start(hog_t *h, int n) {
  int i;
  memset(h, 0, sizeof(*h));
  assert_int_equal(apr_pool_create(&h->mem, NULL), APR_SUCCESS);
  for (i = 0; i < n && i < 4; i++) {
    assert_int_equal(
        apr_thread_create(&h->threads[i], NULL, hog_main, h, h->mem),
        APR_SUCCESS);
    h->n++;
  }
}

static void hog_stop(hog_t *h) {
  apr_status_t rv;
  int i;
  pp_test_counter_inc(&h->stop);
  for (i = 0; i < h->n; i++)
    apr_thread_join(&rv, h->threads[i]);
  apr_pool_destroy(h->mem);
}

/* Checks the outcome of every call against its count of starts: an OK
 * call started exactly once (and answered its own index), a failed one at
 * most once.  Returns how many calls failed. */
static size_t check_once(const pp_test_tally_t *t, const pp_result_t *res,
                         size_t n, size_t *timed_out) {
  size_t i, failed = 0, twice = 0, lost = 0;
  *timed_out = 0;
  for (i = 0; i < n; i++) {
    uint32_t starts = pp_test_tally_get(t, i);
    if (res[i].status == 0) {
      if (starts != 1)
        twice++;
      if (pp_test_int_result(&res[i]) != (int64_t)i)
        fail_msg("call %llu answered %lld", (unsigned long long)i,
                 (long long)pp_test_int_result(&res[i]));
    } else {
      failed++;
      if (res[i].status == PP_ETIMEDOUT)
        (*timed_out)++;
      if (starts > 1)
        twice++;
      if (res[i].message == NULL || res[i].message[0] == '\0')
        fail_msg("call %llu failed (%s) with no message", (unsigned long long)i,
                 pp_err_name(res[i].status));
      if (res[i].status != PP_ETIMEDOUT && res[i].status != PP_EWORKERDIED &&
          res[i].status != PP_ECANCELED)
        fail_msg("call %llu: unexpected %s: %s", (unsigned long long)i,
                 pp_err_name(res[i].status), res[i].message);
    }
    if (starts == 0 && res[i].status == 0)
      lost++;
  }
  if (twice > 0 || lost > 0) {
    for (i = 0; i < n; i++) {
      uint32_t starts = pp_test_tally_get(t, i);
      if ((res[i].status == 0 && starts != 1) || starts > 1)
        print_message("call %llu: %s after %u starts: %s\n",
                      (unsigned long long)i, pp_err_name(res[i].status), starts,
                      res[i].message ? res[i].message : "");
    }
    fail_msg("%llu calls started twice or reported OK without one start, "
             "%llu OK without a start",
             (unsigned long long)twice, (unsigned long long)lost);
  }
  return failed;
}

/* Item 1: a call's timeout fires just as it ends.  Its worker has then
 * published the result and started the next call; the kill that follows
 * must fail that next call (it had started), never put it back in the
 * queue to run again elsewhere.  Calls of 1.5-2.5 ms under a 2 ms timeout,
 * four to a worker, with the parent kept busy, make the moment common. */
static void test_once_timeout_as_the_call_ends(void **state) {
  size_t n = once_calls(3000), i, failed, timed_out;
  pp_test_tally_t *t = pp_test_tally_new("timeout", n);
  pp_buf_t *args = calloc(n, sizeof(*args));
  pp_result_t *res = calloc(n, sizeof(*res));
  pp_map_options_t mo;
  pp_pool_t *pool;
  hog_t hog;
  (void)state;
  assert_non_null(t);
  assert_non_null(args);
  assert_non_null(res);
  for (i = 0; i < n; i++)
    args[i] = pp_test_tally_arg(t, i, 1500 + (int64_t)(i * 7919 % 1000));
  pool = pp_test_make_pool(2, 0, 0, NULL);
  memset(&mo, 0, sizeof(mo));
  mo.timeout_ms = 2;
  mo.chunksize = 4;
  hog_start(&hog, 3);
  (void)pp_pool_map(pool, "tally", args, n, res, &mo);
  hog_stop(&hog);
  failed = check_once(t, res, n, &timed_out);
  print_message("%llu calls: %llu ok, %llu failed (%llu timed out)\n",
                (unsigned long long)n, (unsigned long long)(n - failed),
                (unsigned long long)failed, (unsigned long long)timed_out);
  assert_int_equal(pp_pool_destroy(pool, PP_DESTROY_WAIT), 0);
  pp_results_free(res, n);
  pp_test_free_bufs(args, n);
  free(res);
  free(args);
  pp_test_tally_free(t, 1);
}

/* A completion callback that counts its runs. */
static void count_done(void *data, pp_future_t *f) {
  (void)f;
  pp_test_counter_inc(data);
}

/* Item 8: a call handed to a worker that is busy with another is pending
 * all the same: cancelling it takes it back from the worker's ring, and it
 * ends cancelled at once, without running and without waiting for the
 * call ahead of it (which here runs until it is cancelled itself).  The
 * same with a completion callback on it. */
static void test_once_cancel_takes_a_waiting_call_back(void **state) {
  pp_test_tally_t *t = pp_test_tally_new("cancel", 2);
  pp_buf_t busy = pp_test_pack_int(600000), arg[2];
  pp_future_t *head, *waiting[2];
  pp_pool_t *pool;
  int i;
  uint32_t done = 0;
  (void)state;
  assert_non_null(t);
  pool = pp_test_make_pool(1, 0, 0, NULL);
  PP_TEST_OK(
      pp_pool_submit(pool, "sleep_ms", busy.data, busy.len, NULL, &head));
  for (i = 0; i < 2; i++) {
    arg[i] = pp_test_tally_arg(t, (size_t)i, 0);
    PP_TEST_OK(pp_pool_submit(pool, "tally", arg[i].data, arg[i].len, NULL,
                              &waiting[i]));
  }
  PP_TEST_OK(pp_future_on_done(waiting[0], count_done, &done));
  /* The head runs; the first call waits in the worker's ring behind it (a
   * worker holds one call more than its chunk of one), the second in the
   * pool's queue. */
  while (pp_future_state(head) != PP_FUTURE_RUNNING)
    pp_test_sleep_ms(1);
  for (i = 0; i < 2; i++) {
    PP_TEST_OK(pp_future_cancel(waiting[i]));
    assert_int_equal(pp_future_wait(waiting[i], 60000 * PP_TEST_TIME_SCALE), 0);
    assert_int_equal(pp_future_status(waiting[i]), PP_ECANCELED);
  }
  /* The head still runs: nothing waited for it. */
  assert_int_equal(pp_future_state(head), PP_FUTURE_RUNNING);
  for (i = 0; i < 200 && pp_test_counter_get(&done) == 0; i++)
    pp_test_sleep_ms(50 * PP_TEST_TIME_SCALE);
  assert_int_equal(pp_test_counter_get(&done), 1);
  assert_int_equal(pp_future_state(head), PP_FUTURE_RUNNING);
  for (i = 0; i < 2; i++)
    assert_int_equal(pp_test_tally_get(t, (size_t)i), 0);
  PP_TEST_OK(pp_future_cancel(head));
  assert_int_equal(pp_future_wait(head, 60000 * PP_TEST_TIME_SCALE), 0);
  assert_int_equal(pp_future_status(head), PP_ECANCELED);
  pp_future_free(head);
  for (i = 0; i < 2; i++) {
    pp_future_free(waiting[i]);
    pp_free((void *)arg[i].data);
  }
  pp_free((void *)busy.data);
  assert_int_equal(pp_pool_destroy(pool, PP_DESTROY_WAIT), 0);
  for (i = 0; i < 2; i++)
    assert_int_equal(pp_test_tally_get(t, (size_t)i), 0);
  pp_test_tally_free(t, 1);
}

/* A call that ends every worker it reaches before its task starts (here:
 * its argument cannot be mapped in the worker, whose address space an
 * initializer limited) fails with the worker's death; it is not handed to
 * one worker after another for ever (the worker counts a call as started
 * once it has begun to set it up).  Linux, and not under AddressSanitizer,
 * which needs far more address space than the limit leaves. */
static void test_once_call_that_kills_every_worker_fails(void **state) {
#if defined(__linux__) && !defined(PP_TEST_ASAN)
  enum { BIG = 256 << 20 };
  pp_pool_options_t o;
  pp_pool_t *pool = NULL;
  pp_buf_t limit = pp_test_pack_int(64 << 20), small = pp_test_pack_int(7);
  pp_future_t *f;
  pp_result_t r;
  void *big = pp_shared_alloc(BIG);
  (void)state;
  assert_non_null(big);
  memset(big, 1, 4096);
  pp_test_pool_options(&o, 2, 0, 0, NULL);
  o.initializer = "limit_as";
  o.init_arg = limit.data;
  o.init_arg_len = limit.len;
  PP_TEST_OK(pp_pool_create(&pool, &o));
  PP_TEST_OK(pp_pool_submit(pool, "length", big, BIG, NULL, &f));
  if (pp_future_wait(f, 60000 * PP_TEST_TIME_SCALE) != 0)
    fail_msg("a call whose argument no worker can map did not end");
  assert_int_equal(pp_future_take(f, &r), 0);
  print_message("%s: %s\n", pp_err_name(r.status), r.message);
  assert_int_equal(r.status, PP_EWORKERDIED);
  pp_results_free(&r, 1);
  pp_future_free(f);
  /* The pool goes on. */
  PP_TEST_OK(pp_pool_submit(pool, "square", small.data, small.len, NULL, &f));
  assert_int_equal(pp_future_wait(f, 60000 * PP_TEST_TIME_SCALE), 0);
  assert_int_equal(pp_future_take(f, &r), 0);
  assert_int_equal(pp_test_int_result(&r), 49);
  pp_results_free(&r, 1);
  pp_future_free(f);
  assert_int_equal(pp_pool_destroy(pool, PP_DESTROY_WAIT), 0);
  pp_free(big);
  pp_free((void *)limit.data);
  pp_free((void *)small.data);
#else
  (void)state;
  print_message("skipped: needs Linux's RLIMIT_AS, without AddressSanitizer\n");
#endif
}

int main(int argc, char **argv) {
  int rc;
  if (pp_worker_main(argc, argv, pp_test_tasks, &rc))
    return rc;
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_once_timeout_as_the_call_ends),
      cmocka_unit_test(test_once_cancel_takes_a_waiting_call_back),
      cmocka_unit_test(test_once_call_that_kills_every_worker_fails),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
