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

#ifdef _WIN32
#include <windows.h>
#endif

#include "helpers.h"
#include "tasks.h"

#define ROUNDS 100
#define MAX_FDS 1024

#ifndef _WIN32
static void print_fds(const char *what, const int *fds, int n) {
  char buf[2048];
  size_t used = 0;
  int i;
  buf[0] = '\0';
  for (i = 0; i < n && used < sizeof(buf); i++)
    used += (size_t)snprintf(buf + used, sizeof(buf) - used, " %d", fds[i]);
  print_message("%s:%s\n", what, buf);
}
#endif

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
#ifdef _WIN32
/* Windows: the parent holds an inheritable handle to a file when the pool
 * starts; no worker may have it (handles keep their values when they are
 * inherited, so the task looks at that value).  Run in this process
 * (inline), the same task must find it, which shows that it looks right. */
static void worker_lacks_inheritable_handle(void) {
  SECURITY_ATTRIBUTES sa = {sizeof(sa), NULL, TRUE};
  char cwd[1024], path[1200];
  WCHAR wpath[1200];
  pp_pool_options_t o;
  pp_pool_t *pool = NULL, *inl = NULL;
  pp_buf_t args[4];
  pp_result_t res[4];
  HANDLE h;
  int i;
  assert_int_equal(pp_test_getcwd(cwd, sizeof(cwd)), 0);
  snprintf(path, sizeof(path), "%s\\pp-fds-%lld.tmp", cwd,
           (long long)pp_test_self_pid());
  MultiByteToWideChar(CP_UTF8, 0, path, -1, wpath, 1200);
  h = CreateFileW(wpath, GENERIC_WRITE, 0, &sa, CREATE_ALWAYS,
                  FILE_FLAG_DELETE_ON_CLOSE, NULL);
  assert_true(h != INVALID_HANDLE_VALUE);
  for (i = 0; i < 4; i++)
    PP_TEST_OK(pp_pack(&args[i], "is", (int64_t)(intptr_t)h, path));
  pp_test_pool_options(&o, 1, PP_POOL_INLINE, 0, NULL);
  PP_TEST_OK(pp_pool_create(&inl, &o));
  PP_TEST_OK(pp_pool_map(inl, "holds_handle", args, 1, res, NULL));
  assert_true(pp_test_int_result(&res[0]) == 1);
  pp_results_free(res, 1);
  assert_int_equal(pp_pool_destroy(inl, PP_DESTROY_WAIT), 0);
  /* Two workers, so the second starts while the first one's pipes are
   * open in the parent. */
  pp_test_pool_options(&o, 2, 0, 0, NULL);
  PP_TEST_OK(pp_pool_create(&pool, &o));
  PP_TEST_OK(pp_pool_map(pool, "holds_handle", args, 4, res, NULL));
  for (i = 0; i < 4; i++)
    assert_true(pp_test_int_result(&res[i]) == 0);
  pp_results_free(res, 4);
  pp_test_free_bufs(args, 4);
  assert_int_equal(pp_pool_destroy(pool, PP_DESTROY_WAIT), 0);
  CloseHandle(h);
}
#endif

static void test_fds_worker_holds_only_its_own(void **state) {
#ifdef _WIN32
  (void)state;
  worker_lacks_inheritable_handle();
#else
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
#endif
}

#ifdef _WIN32
/* ---- the inheritance race (issue 8, item 5) ---- */

/* Child mode: exits with the number of pipe handles this process holds. */
static int count_pipes(void) {
  static uint64_t vals[4096];
  int n = pp_test_handle_list(vals, 4096), i, pipes = 0;
  for (i = 0; i < n && i < 4096; i++)
    if (GetFileType((HANDLE)(uintptr_t)vals[i]) == FILE_TYPE_PIPE)
      pipes++;
  return n < 0 ? 255 : pipes;
}

/* Starts this program with every inheritable handle, as system(), _popen
 * or a careless library does, and returns how many pipes it found. */
static int spawn_probe(void) {
  WCHAR self[1024], line[1100];
  STARTUPINFOW si;
  PROCESS_INFORMATION pi;
  DWORD code = 254;
  GetModuleFileNameW(NULL, self, 1024);
  _snwprintf(line, 1100, L"\"%ls\" --count-pipes", self);
  memset(&si, 0, sizeof(si));
  si.cb = sizeof(si);
  if (!CreateProcessW(self, line, NULL, NULL, TRUE, CREATE_NO_WINDOW, NULL,
                      NULL, &si, &pi))
    return -1;
  WaitForSingleObject(pi.hProcess, INFINITE);
  GetExitCodeProcess(pi.hProcess, &code);
  CloseHandle(pi.hThread);
  CloseHandle(pi.hProcess);
  return (int)code;
}

typedef struct {
  volatile LONG stop;
  int spawned, worst;
} prober_t;

static DWORD WINAPI prober_main(LPVOID arg) {
  prober_t *p = arg;
  while (!InterlockedCompareExchange(&p->stop, 0, 0)) {
    int n = spawn_probe();
    p->spawned++;
    if (n > p->worst || n < 0)
      p->worst = n < 0 ? 999 : n;
  }
  return 0;
}
#endif

/* Another thread of the application keeps starting processes that inherit
 * every inheritable handle while the pool replaces its workers after every
 * call: none of them may get a copy of a worker's pipes, which would keep
 * them open (the worker's pipes are opened by name in the worker). */
static void test_fds_no_pipe_reaches_other_children(void **state) {
#ifdef _WIN32
  enum { N = 30 };
  prober_t p;
  pp_pool_options_t o;
  pp_pool_t *pool = NULL;
  pp_buf_t args[N];
  pp_result_t res[N];
  HANDLE thread;
  int i, baseline;
  (void)state;
  baseline = spawn_probe();
  print_message("a child inherits %d pipe handles without a pool\n",
                baseline);
  assert_true(baseline >= 0 && baseline < 200);
  memset(&p, 0, sizeof(p));
  p.worst = baseline;
  pp_test_pool_options(&o, 2, 0, 0, NULL);
  o.max_calls_per_worker = 1;
  PP_TEST_OK(pp_pool_create(&pool, &o));
  thread = CreateThread(NULL, 0, prober_main, &p, 0, NULL);
  assert_non_null(thread);
  for (i = 0; i < N; i++)
    args[i] = pp_test_pack_int(i);
  PP_TEST_OK(pp_pool_map(pool, "square", args, N, res, NULL));
  pp_results_free(res, N);
  pp_test_free_bufs(args, N);
  InterlockedExchange(&p.stop, 1);
  WaitForSingleObject(thread, INFINITE);
  CloseHandle(thread);
  assert_int_equal(pp_pool_destroy(pool, PP_DESTROY_WAIT), 0);
  print_message("%d children started during %d worker starts; the most "
                "pipes one had: %d\n", p.spawned, N + 2, p.worst);
  assert_true(p.spawned > 0);
  assert_int_equal(p.worst, baseline);
#else
  (void)state;
  print_message("skipped: POSIX workers get their descriptors in "
                "posix_spawn's file actions, which no other process sees\n");
  skip();
#endif
}

int main(int argc, char **argv) {
  int rc;
#ifdef _WIN32
  if (argc > 1 && strcmp(argv[1], "--count-pipes") == 0)
    return count_pipes();
#endif
  if (pp_worker_main(argc, argv, pp_test_tasks, &rc))
    return rc;
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_fds_hundred_pools_leave_same_set),
      cmocka_unit_test(test_fds_worker_holds_only_its_own),
      cmocka_unit_test(test_fds_no_pipe_reaches_other_children),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
