/*
 * test_shared.c - large arguments and results without copies (issue 9):
 * memory from pp_shared_alloc() reaches a worker as the same memory, a
 * slice of it as that slice, and large results come back in memory that
 * pp_free() releases.
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

#define MIB ((size_t)1 << 20)

static pp_result_t call(pp_pool_t *pool, const char *task, const void *arg,
                        size_t len) {
  pp_call_options_t co;
  pp_future_t *f = NULL;
  pp_result_t r;
  memset(&co, 0, sizeof(co));
  co.borrow_arg = 1;
  PP_TEST_OK(pp_pool_submit(pool, task, arg, len, &co, &f));
  assert_int_equal(pp_future_wait(f, PP_TEST_MS(60000)), 0);
  assert_int_equal(pp_future_take(f, &r), 0);
  pp_future_free(f);
  return r;
}

/* The worker sees the caller's memory itself: a change the caller makes
 * after the call started shows in the worker.  (The header says not to do
 * this; here it proves that nothing was copied.) */
static void test_shared_worker_sees_the_same_memory(void **state) {
  pp_test_log_t *log = pp_test_log_new();
  pp_pool_t *pool = pp_test_make_pool(1, 0, 0, log);
  unsigned char *buf = pp_shared_alloc(4 * MIB);
  pp_call_options_t co;
  pp_future_t *f = NULL;
  pp_result_t r;
  (void)state;
  assert_non_null(buf);
  memset(buf, 'a', 4 * MIB);
  memset(&co, 0, sizeof(co));
  co.borrow_arg = 1;
  PP_TEST_OK(pp_pool_submit(pool, "late_peek", buf, 4 * MIB, &co, &f));
  /* Changed once the task has looked at it. */
  assert_true(pp_test_log_wait(log, "late_peek: started", 30000, NULL));
  buf[0] = 'Z';
  assert_int_equal(pp_future_wait(f, PP_TEST_MS(60000)), 0);
  assert_int_equal(pp_future_take(f, &r), 0);
  assert_int_equal(r.status, 0);
  assert_true(pp_test_int_result(&r) == 'Z');
  pp_results_free(&r, 1);
  pp_future_free(f);
  pp_free(buf);
  assert_int_equal(pp_pool_destroy(pool, PP_DESTROY_WAIT), 0);
  pp_test_log_free(log);
}

/* A slice of shared memory is that slice; a large result is whole. */
static void test_shared_slices_and_results(void **state) {
  pp_pool_t *pool = *state;
  unsigned char *buf = pp_shared_alloc(8 * MIB);
  pp_buf_t args[3];
  pp_result_t res[3];
  int i;
  assert_non_null(buf);
  for (i = 0; i < 3; i++) {
    args[i].data = buf + (size_t)i * 2 * MIB + 3;
    args[i].len = 2 * MIB - 7;
    pp_test_fill((void *)args[i].data, args[i].len, PP_TEST_SEED_IN);
  }
  PP_TEST_OK(pp_pool_map(pool, "big", args, 3, res, NULL));
  for (i = 0; i < 3; i++) {
    assert_int_equal(res[i].len, 2 * MIB - 7);
    assert_true(pp_test_check(res[i].data, res[i].len, PP_TEST_SEED_OUT) ==
                res[i].len);
  }
  pp_results_free(res, 3);
  /* A result freed with pp_free() one at a time works as well. */
  {
    pp_result_t r = call(pool, "big", args[0].data, args[0].len);
    assert_int_equal(r.status, 0);
    pp_free(r.data);
    free(r.message);
  }
  pp_free(buf);
}

/* Large arguments are copied into spare mappings, and large results are
 * written into spares the parent sends along (blob.c): over many rounds of
 * changing sizes every result is exact, a result the caller still holds is
 * never handed out again, and calls running side by side never share a
 * spare. */
static void test_shared_spares_are_reused_safely(void **state) {
  static const size_t sizes[] = {3 * MIB, MIB + 5, 3 * MIB, 6 * MIB,
                                 3 * MIB - 1};
  pp_pool_t *pool = *state;
  pp_result_t kept, res[6];
  pp_buf_t args[6];
  unsigned char *arg;
  int round, i;
  arg = malloc(6 * MIB);
  assert_non_null(arg);
  pp_test_fill(arg, 3 * MIB, 1000);
  kept = call(pool, "echo", arg, 3 * MIB);
  assert_int_equal(kept.status, 0);
  for (round = 0; round < 20; round++) {
    size_t len = sizes[round % 5];
    pp_result_t r;
    pp_test_fill(arg, len, (uint64_t)round);
    r = call(pool, "echo", arg, len);
    assert_int_equal(r.status, 0);
    assert_int_equal(r.len, len);
    assert_true(pp_test_check(r.data, len, (uint64_t)round) == len);
    pp_results_free(&r, 1);
  }
  for (i = 0; i < 6; i++) {
    args[i].len = sizes[i % 5] - (size_t)i;
    args[i].data = malloc(args[i].len);
    assert_non_null(args[i].data);
    pp_test_fill((void *)args[i].data, args[i].len, 2000 + (uint64_t)i);
  }
  PP_TEST_OK(pp_pool_map(pool, "echo", args, 6, res, NULL));
  for (i = 0; i < 6; i++) {
    assert_int_equal(res[i].len, args[i].len);
    assert_true(pp_test_check(res[i].data, res[i].len, 2000 + (uint64_t)i) ==
                res[i].len);
    free((void *)args[i].data);
  }
  pp_results_free(res, 6);
  /* The first result was in use all along: untouched. */
  assert_true(pp_test_check(kept.data, kept.len, 1000) == kept.len);
  pp_results_free(&kept, 1);
  free(arg);
}

/* A task that answers with its large argument, or a slice of it, sends
 * nothing back: the result is a view of the argument's mapping.  For
 * shared memory that is the caller's own memory (the very address); a
 * copied argument's copy becomes the result.  Each pointer is freed on its
 * own, in either order, and the memory stays valid until both are. */
static void test_shared_results_that_are_the_argument(void **state) {
  pp_pool_t *pool = *state;
  size_t len = 6 * MIB;
  unsigned char *buf = pp_shared_alloc(len), *heap = malloc(len);
  pp_result_t r, s;
  assert_non_null(buf);
  assert_non_null(heap);
  pp_test_fill(buf, len, 31);
  r = call(pool, "echo", buf, len);
  assert_int_equal(r.status, 0);
  assert_ptr_equal(r.data, buf);
  assert_int_equal(r.len, len);
  s = call(pool, "middle", buf + 1, len - 2);
  assert_int_equal(s.status, 0);
  assert_ptr_equal(s.data, buf + 1 + (len - 2) / 4);
  assert_int_equal(s.len, (len - 2) / 2);
  /* The caller's pointer goes first; both results still read right. */
  pp_free(buf);
  assert_true(pp_test_check(r.data, r.len, 31) == len);
  pp_results_free(&r, 1);
  pp_test_fill(heap, len, 31);
  assert_int_equal(memcmp(s.data, heap + 1 + (len - 2) / 4, s.len), 0);
  pp_results_free(&s, 1);
  /* A copied argument: the result is the copy, the caller's buffer is
   * untouched and stays the caller's. */
  r = call(pool, "middle", heap, len);
  assert_int_equal(r.status, 0);
  assert_int_equal(r.len, len / 2);
  assert_true(r.data != heap + len / 4);
  assert_int_equal(memcmp(r.data, heap + len / 4, len / 2), 0);
  pp_results_free(&r, 1);
  free(heap);
}

/* A worker keeps the mappings of the large results it made (worker.c)
 * and uses them again when they come back: freed results as reply hints,
 * results passed on as the next call's argument.  Over rounds of both,
 * with changing sizes, every result is exact, and a result the caller
 * still holds is never written. */
static void test_shared_own_results_come_back(void **state) {
  static const size_t sizes[] = {3 * MIB, 3 * MIB, 2 * MIB + 3, 5 * MIB,
                                 3 * MIB - 1};
  pp_pool_t *pool = *state;
  pp_result_t held, r;
  unsigned char *first;
  size_t i, len = 5 * MIB;
  int round, add;
  first = pp_shared_alloc(len);
  assert_non_null(first);
  for (i = 0; i < len; i++)
    first[i] = (unsigned char)(i * 7);
  held = call(pool, "bump", first, len);
  assert_int_equal(held.status, 0);
  r = call(pool, "bump", first, len);
  assert_int_equal(r.status, 0);
  add = 1; /* r.data[i] is i * 7 + add */
  for (round = 0; round < 20; round++) {
    /* The previous result goes in as it is (it is shared memory), and is
     * freed, a spare for a later result, once the call is over. */
    size_t next = sizes[round % 5] < r.len ? sizes[round % 5] : r.len;
    pp_result_t s = call(pool, "bump", r.data, next);
    assert_int_equal(s.status, 0);
    assert_int_equal(s.len, next);
    add++;
    for (i = 0; i < next; i++)
      if (((unsigned char *)s.data)[i] != (unsigned char)(i * 7 + (size_t)add))
        break;
    assert_int_equal(i, next);
    pp_results_free(&r, 1);
    r = s;
    if (r.len < 3 * MIB) {
      /* A fresh start from the first buffer, at full length. */
      pp_results_free(&r, 1);
      r = call(pool, "bump", first, len);
      assert_int_equal(r.status, 0);
      add = 1;
    }
  }
  pp_results_free(&r, 1);
  /* The first result was held all along: untouched. */
  for (i = 0; i < len; i++)
    if (((unsigned char *)held.data)[i] != (unsigned char)(i * 7 + 1))
      break;
  assert_int_equal(i, len);
  pp_results_free(&held, 1);
  pp_free(first);
}

/* Submits `task` on shared memory of `len` bytes filled with 'a', and once
 * the call runs, frees that memory and allocates again at the same size,
 * filled with 'b' (issue 17, item 9).  Returns the call's result and the
 * new allocation in *again. */
static pp_result_t free_while_running(pp_pool_t *pool, const char *task,
                                      size_t len, unsigned char **again) {
  unsigned char *buf = pp_shared_alloc(len);
  pp_call_options_t co;
  pp_future_t *f = NULL;
  pp_result_t r;
  int i, state = PP_FUTURE_QUEUED;
  assert_non_null(buf);
  memset(buf, 'a', len);
  memset(&co, 0, sizeof(co));
  co.borrow_arg = 1;
  PP_TEST_OK(pp_pool_submit(pool, task, buf, len, &co, &f));
  for (i = 0; i < PP_TEST_MS(6000) && state == PP_FUTURE_QUEUED; i++) {
    state = pp_future_state(f);
    if (state == PP_FUTURE_QUEUED)
      pp_test_sleep_ms(5);
  }
  assert_int_equal(state, PP_FUTURE_RUNNING);
  /* Against the header's advice, but it must not give a wrong answer. */
  pp_free(buf);
  *again = pp_shared_alloc(len);
  assert_non_null(*again);
  memset(*again, 'b', len);
  /* late_peek waits for a change of its first byte, which never comes
   * here (the call holds the old memory), for PP_TEST_MS(10000): wait
   * longer than that, on the same scale. */
  assert_int_equal(pp_future_wait(f, PP_TEST_MS(60000)), 0);
  assert_int_equal(pp_future_take(f, &r), 0);
  pp_future_free(f);
  return r;
}

/* The result of a call whose argument was freed while it ran: the answer
 * about the argument's own bytes ('a'), or PP_EINVAL; never the new
 * allocation's bytes, nor a view of them. */
static void check_old_bytes(const pp_result_t *r, const unsigned char *again,
                            size_t len, int view) {
  const unsigned char *d = r->data;
  size_t i;
  if (r->status != 0) {
    assert_int_equal(r->status, PP_EINVAL);
    return;
  }
  if (!view) {
    assert_true(pp_test_int_result(r) == 'a');
    return;
  }
  assert_int_equal(r->len, len);
  assert_true(d + len <= again || d >= again + len);
  for (i = 0; i < len && d[i] == 'a'; i++)
    ;
  assert_int_equal(i, len);
}

/* A call whose shared argument is freed while it runs, with the memory
 * allocated again meanwhile, answers about its own bytes (the call holds
 * the memory until it ends), never with the new allocation: neither a
 * worker that reads the argument late nor a result that is a view of it
 * sees the new bytes, and the new allocation stays the caller's alone. */
static void test_shared_freed_while_the_call_runs(void **state) {
  static const char *const tasks[] = {"late_echo", "late_peek"};
  pp_pool_t *pool = *state;
  size_t len = 4 * MIB, i;
  unsigned char *again = NULL;
  pp_result_t r;
  int t;
  for (t = 0; t < 2; t++) {
    r = free_while_running(pool, tasks[t], len, &again);
    print_message("%s of a freed argument: %s, %s\n", tasks[t],
                  pp_err_name(r.status),
                  r.data == again ? "a view of the new allocation"
                                  : "not the new allocation");
    check_old_bytes(&r, again, len, t == 0);
    for (i = 0; i < len && again[i] == 'b'; i++)
      ;
    assert_int_equal(i, len);
    pp_results_free(&r, 1);
    pp_free(again);
  }
}

static void test_shared_bad_sizes(void **state) {
  (void)state;
  assert_null(pp_shared_alloc(0));
  assert_non_null(strstr(pp_last_error(), "len is 0"));
  assert_null(pp_shared_alloc(SIZE_MAX));
}

int main(int argc, char **argv) {
  int rc;
  if (pp_worker_main(argc, argv, pp_test_tasks, &rc))
    return rc;
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_shared_worker_sees_the_same_memory),
      PP_TEST_POOL_TEST(test_shared_slices_and_results),
      PP_TEST_POOL_TEST(test_shared_spares_are_reused_safely),
      PP_TEST_POOL_TEST(test_shared_results_that_are_the_argument),
      PP_TEST_POOL_TEST(test_shared_own_results_come_back),
      PP_TEST_POOL_TEST(test_shared_freed_while_the_call_runs),
      cmocka_unit_test(test_shared_bad_sizes),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
