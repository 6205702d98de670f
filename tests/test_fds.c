/*
 * test_fds.c - descriptors: a pool gives back every descriptor it opened,
 * and a worker holds nothing of its parent's but what is its own.
 *
 * Counting descriptors is not enough: a pool that leaked one and closed one
 * of the application's would keep the count.  So the test compares the set
 * of descriptor numbers before and after, from /proc/self/fd, and reads
 * /proc/<pid>/fd of a busy worker.  Those parts need Linux; Windows
 * compares the set of its handle values instead, and skips the look into
 * a worker, with the reason.
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

#define ROUNDS 100
#define MAX_FDS 1024

static void print_fds(const char *what, const int *fds, int n) {
  char buf[2048];
  size_t used = 0;
  int i;
  buf[0] = '\0';
  for (i = 0; i < n && used < sizeof(buf); i++)
    used += (size_t)snprintf(buf + used, sizeof(buf) - used, " %d", fds[i]);
  print_message("%s:%s\n", what, buf);
}

static void one_pool_round(int round) {
  pp_pool_options_t o;
  pp_pool_t *pool = NULL;
  pp_buf_t b = pp_test_pack_int(round);
  pp_future_t *f = NULL;
  pp_result_t r;
  memset(&o, 0, sizeof(o));
  o.workers = 2;
  PP_TEST_OK(pp_pool_create(&pool, &o));
  assert_int_equal(pp_pool_submit(pool, "square", b.data, b.len, NULL, &f), 0);
  assert_int_equal(pp_future_wait(f, -1), 0);
  assert_int_equal(pp_future_take(f, &r), 0);
  assert_true(pp_test_int_result(&r) == (int64_t)round * round);
  pp_results_free(&r, 1);
  pp_future_free(f);
  pp_free((void *)b.data);
  assert_int_equal(pp_pool_destroy(pool, PP_DESTROY_WAIT), 0);
}

/* Compares two sorted lists and prints what only one of them has. */
static int same_set(const char *what, const uint64_t *a, int na,
                    const uint64_t *b, int nb) {
  int i = 0, j = 0, same = na == nb;
  print_message("%s: %d before, %d after\n", what, na, nb);
  while (i < na || j < nb) {
    if (j >= nb || (i < na && a[i] < b[j])) {
      print_message("  only before: %llu\n", (unsigned long long)a[i++]);
      same = 0;
    } else if (i >= na || b[j] < a[i]) {
      print_message("  only after: %llu\n", (unsigned long long)b[j++]);
      same = 0;
    } else {
      i++, j++;
    }
  }
  return same;
}

static void test_fds_hundred_pools_leave_same_set(void **state) {
  static int fds[MAX_FDS];
  static uint64_t before[MAX_FDS], after[MAX_FDS];
  int nb, na, i, round, handles = 0;
  (void)state;
  /* One pool first, so that what the first pool of a process sets up for
   * good (APR's global pool) is in both sets. */
  one_pool_round(0);
  nb = pp_test_fd_list(0, fds, MAX_FDS);
  if (nb < 0) {
    nb = pp_test_handle_list(before, MAX_FDS);
    handles = 1;
  } else {
    for (i = 0; i < nb && i < MAX_FDS; i++)
      before[i] = (uint64_t)fds[i];
  }
  if (nb < 0) {
    print_message("skipped: this system cannot list descriptors or "
                  "handles\n");
    skip();
  }
  assert_true(nb <= MAX_FDS);
  for (round = 1; round <= ROUNDS; round++)
    one_pool_round(round);
  if (handles) {
    na = pp_test_handle_list(after, MAX_FDS);
  } else {
    na = pp_test_fd_list(0, fds, MAX_FDS);
    for (i = 0; i < na && i < MAX_FDS; i++)
      after[i] = (uint64_t)fds[i];
  }
  assert_true(na <= MAX_FDS);
  if (!same_set(handles ? "handles" : "descriptors", before, nb, after, na))
    fail_msg("%d pools changed the set of open %s", ROUNDS,
             handles ? "handles" : "descriptors");
}

/* A worker must hold its standard streams and its channel and nothing
 * else: no descriptor of the parent's (another worker's channel, the
 * application's files), which it could keep open after the parent closed
 * it. */
static void test_fds_worker_holds_only_its_own(void **state) {
  pp_test_log_t *log;
  pp_pool_options_t o;
  pp_pool_t *pool = NULL;
  pp_future_t *f = NULL;
  int64_t pid = 0;
  int fds[64], n, i;
  char target[256];
  (void)state;
  if (pp_test_fd_list(0, fds, 64) < 0) {
    print_message("skipped: listing another process' descriptors needs "
                  "Linux's /proc/<pid>/fd\n");
    skip();
  }
  log = pp_test_log_new();
  memset(&o, 0, sizeof(o));
  /* Two workers, so the one looked at was started while the other's
   * channel was open in the parent. */
  o.workers = 2;
  o.cancel_grace_ms = 100; /* hang ignores the cancel of the destroy */
  o.log_cb = pp_test_log_cb;
  o.log_data = log;
  PP_TEST_OK(pp_pool_create(&pool, &o));
  assert_int_equal(pp_pool_submit(pool, "hang", NULL, 0, NULL, &f), 0);
  assert_true(pp_test_log_wait(log, "hang: started", 30000, NULL));
  {
    int64_t pids[2];
    pp_test_record_t rec;
    assert_int_equal(pp_pool_worker_pids(pool, pids, 2), 2);
    assert_true(pp_test_log_wait(log, "hang: started", 0, &rec));
    pid = pids[rec.worker];
  }
  n = pp_test_fd_list(pid, fds, 64);
  print_fds("descriptors of the busy worker", fds, n);
  for (i = 0; i < n && i < 64; i++) {
    pp_test_fd_target(pid, fds[i], target, sizeof(target));
    print_message("  %d -> %s\n", fds[i], target);
  }
  /* 0 the null device; 1 and 2 its output, 3 the channel, 7 and 8 the
   * read ends of its output (sockets); 5 and 6 the wake objects (eventfds).
   * The shared memory (4) is mapped and its descriptor closed. */
  {
    static const int want[] = {0, 1, 2, 3, 5, 6, 7, 8};
    assert_int_equal(n, 8);
    for (i = 0; i < 8; i++)
      assert_int_equal(fds[i], want[i]);
  }
  assert_int_equal(pp_test_fd_target(pid, 0, target, sizeof(target)), 0);
  assert_string_equal(target, "/dev/null");
  for (i = 1; i < 9; i++) {
    if (i == 4)
      continue;
    assert_int_equal(pp_test_fd_target(pid, i, target, sizeof(target)), 0);
    if (i == 5 || i == 6)
      assert_string_equal(target, "anon_inode:[eventfd]");
    else
      assert_true(strncmp(target, "socket:", 7) == 0);
  }
  assert_int_equal(pp_pool_destroy(pool, PP_DESTROY_CANCEL), 0);
  pp_future_free(f);
  pp_test_log_free(log);
}

int main(int argc, char **argv) {
  int rc;
  if (pp_worker_main(argc, argv, pp_test_tasks, &rc))
    return rc;
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_fds_hundred_pools_leave_same_set),
      cmocka_unit_test(test_fds_worker_holds_only_its_own),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
