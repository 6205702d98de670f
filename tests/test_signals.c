/*
 * test_signals.c - signals cannot hurt the parent.
 *
 * (a) A worker that dies while the parent hands it a large argument (a
 *     512 MiB blob: copied into shared memory, its descriptor sent on the
 *     channel) must not kill the parent with SIGPIPE: the test keeps
 *     SIGPIPE at its default action (which ends the process) and kills the
 *     worker from another thread at a different moment each round.  The
 *     call then either failed with PP_EWORKERDIED (it had started) or ran
 *     again on the replacement (it had not), never lost, never hung, and
 *     the pool works on.  Windows has no SIGPIPE, but the same kill
 *     (TerminateProcess) must end the hand-over as cleanly.
 * (b) POSIX: after a SIGINT in the parent (a handler that sets a flag) and
 *     in every worker, as a terminal's Ctrl-C would send, the pool still
 *     works and its destroy reaps every worker and returns.  Workers run in
 *     process groups of their own, by design (docs/design.md, platform/posix/spawn.c), so that
 *     a Ctrl-C at the terminal reaches only the application, which decides
 *     what happens to its calls.
 */
#if !defined(_WIN32) && !defined(_POSIX_C_SOURCE)
#define _POSIX_C_SOURCE 200809L
#endif

#include <setjmp.h>
#include <signal.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#ifndef _WIN32
#include <errno.h>
#include <unistd.h>
#endif

#include <cmocka.h>

#include <apr_general.h>
#include <apr_thread_proc.h>
#include <apr_time.h>

#include "helpers.h"
#include "tasks.h"

#define BIG ((size_t)512 << 20)
#define ROUNDS 6
/* The cancel grace period of the pools here, in milliseconds. */
#define GRACE_MS 100

static void check_pool_works(pp_pool_t *pool) {
  pp_buf_t args[20];
  pp_result_t res[20];
  size_t i;
  for (i = 0; i < 20; i++)
    args[i] = pp_test_pack_int((int64_t)i);
  assert_int_equal(pp_pool_map(pool, "square", args, 20, res, NULL), 0);
  for (i = 0; i < 20; i++)
    assert_true(pp_test_int_result(&res[i]) == (int64_t)(i * i));
  pp_results_free(res, 20);
  pp_test_free_bufs(args, 20);
}

/* ---- (a) a worker killed during a large hand-over ---- */

typedef struct killer_s {
  int64_t pid;
  int64_t after_ms;
  int killed;
} killer_t;

static void *APR_THREAD_FUNC killer_main(apr_thread_t *thread, void *data) {
  killer_t *k = data;
  pp_test_sleep_ms(k->after_ms);
  k->killed = pp_test_kill(k->pid) == 0;
  (void)thread;
  return NULL;
}

static void test_signals_worker_killed_during_big_handover(void **state) {
  pp_pool_t *pool;
  apr_pool_t *mem = NULL;
  unsigned char *arg;
  int round, died = 0, again = 0;
  (void)state;
#ifndef _WIN32
  {
    /* SIGPIPE keeps the default action, so a write to the dead worker that
     * raised it would end this test at once. */
    struct sigaction old;
    assert_int_equal(sigaction(SIGPIPE, NULL, &old), 0);
    assert_true(old.sa_handler == SIG_DFL);
  }
#endif
  arg = malloc(BIG);
  assert_non_null(arg);
  /* Touched, so that the copy is not also paging in fresh memory. */
  memset(arg, 0x5a, BIG);
  /* The killer threads' memory outlives the pool, so APR is held here and
   * not only by the pool. */
  assert_int_equal(apr_initialize(), APR_SUCCESS);
  assert_int_equal(apr_pool_create(&mem, NULL), APR_SUCCESS);
  pool = pp_test_make_pool(1, 0, GRACE_MS, NULL);
  for (round = 0; round < ROUNDS; round++) {
    pp_call_options_t co;
    pp_future_t *f = NULL;
    apr_thread_t *t = NULL;
    apr_status_t rv;
    killer_t k;
    pp_result_t r;
    memset(&k, 0, sizeof(k));
    k.after_ms = round * 15;
    assert_int_equal(pp_pool_worker_pids(pool, &k.pid, 1), 1);
    memset(&co, 0, sizeof(co));
    co.borrow_arg = 1;
    assert_int_equal(pp_pool_submit(pool, "length", arg, BIG, &co, &f), 0);
    assert_int_equal(apr_thread_create(&t, NULL, killer_main, &k, mem),
                     APR_SUCCESS);
    assert_int_equal(pp_future_wait(f, PP_TEST_MS(120000)), 0);
    apr_thread_join(&rv, t);
    assert_int_equal(pp_future_take(f, &r), 0);
    pp_future_free(f);
    assert_true(k.killed);
    print_message("round %d: worker %lld killed %lld ms after the submit: "
                  "%s: %s\n",
                  round, (long long)k.pid, (long long)k.after_ms,
                  pp_err_name(r.status), r.message ? r.message : "");
    if (r.status == 0) {
      /* Killed before it took the call (or after it answered): the call
       * ran on the replacement, with the whole argument. */
      assert_true(pp_test_int_result(&r) == (int64_t)BIG);
      again++;
    } else {
      assert_int_equal(r.status, PP_EWORKERDIED);
      assert_null(r.data);
      died++;
    }
    pp_results_free(&r, 1);
    assert_true(pp_test_wait_gone(&k.pid, 1, 10000));
    check_pool_works(pool);
  }
  print_message("%d calls died with their worker, %d ran again\n", died,
                again);
  assert_int_equal(pp_pool_destroy(pool, PP_DESTROY_WAIT), 0);
  apr_pool_destroy(mem);
  apr_terminate();
  free(arg);
}

/* ---- (b) SIGINT in the parent and in the workers ---- */

#ifndef _WIN32
static volatile sig_atomic_t got_sigint;

static void on_sigint(int sig) {
  (void)sig;
  got_sigint++;
}

/* Returns 1 while the process exists at all, a zombie included: a worker
 * of ours that the pool has not reaped still exists. */
static int exists(int64_t pid) {
  return kill((pid_t)pid, 0) == 0 || errno != ESRCH;
}
#endif

static void test_signals_sigint_then_destroy_reaps(void **state) {
  (void)state;
#ifdef _WIN32
  print_message("skipped: Windows has no SIGINT for other processes and no "
                "process groups; a console Ctrl-C is a different mechanism\n");
  skip();
#else
  struct sigaction sa, old;
  pp_test_log_t *log = pp_test_log_new();
  pp_pool_t *pool = pp_test_make_pool(2, 0, GRACE_MS, log);
  pp_future_t *f = NULL;
  pp_result_t r;
  int64_t pids[8];
  size_t npids = 0, i;
  int n;

  /* Without SA_RESTART, so that a SIGINT that lands in one of the pool's
   * threads interrupts its system call with EINTR, which the pool has to
   * take in its stride. */
  memset(&sa, 0, sizeof(sa));
  sa.sa_handler = on_sigint;
  sigemptyset(&sa.sa_mask);
  assert_int_equal(sigaction(SIGINT, &sa, &old), 0);

  n = pp_pool_worker_pids(pool, pids, 2);
  assert_int_equal(n, 2);
  npids = 2;
  for (i = 0; i < npids; i++) {
    /* Each worker leads a process group of its own, not ours. */
    assert_true(getpgid((pid_t)pids[i]) != getpgid(0));
    assert_int_equal(getpgid((pid_t)pids[i]), (pid_t)pids[i]);
  }
  assert_int_equal(pp_pool_submit(pool, "hang", NULL, 0, NULL, &f), 0);
  assert_true(pp_test_log_wait(log, "hang: started", 30000, NULL));

  assert_int_equal(raise(SIGINT), 0);
  assert_int_equal(got_sigint, 1);
  /* Process-directed, so any thread may take them. */
  for (i = 0; i < 5; i++) {
    assert_int_equal(kill(getpid(), SIGINT), 0);
    pp_test_sleep_ms(2);
  }
  assert_true(got_sigint >= 2);
  /* What a Ctrl-C would send the workers if they were in our group: one
   * is busy, the other idle. */
  for (i = 0; i < npids; i++)
    assert_int_equal(kill((pid_t)pids[i], SIGINT), 0);
  assert_true(pp_test_wait_gone(pids, npids, 10000));

  assert_int_equal(pp_future_wait(f, PP_TEST_MS(30000)), 0);
  assert_int_equal(pp_future_take(f, &r), 0);
  print_message("the busy call: %s: %s\n", pp_err_name(r.status), r.message);
  assert_int_equal(r.status, PP_EWORKERDIED);
  assert_int_equal(r.term_signal, SIGINT);
  assert_non_null(strstr(r.message, "SIGINT"));
  pp_results_free(&r, 1);
  pp_future_free(f);

  /* The replacements work, and calls that come after an idle worker died
   * run on a fresh one instead of failing. */
  check_pool_works(pool);
  /* A slot that found its worker dead gave its calls to the other slot and
   * starts the replacement in the background. */
  for (i = 0;
       i < (size_t)PP_TEST_MS(1000) && pp_pool_worker_pids(pool, NULL, 0) < 2;
       i++)
    pp_test_sleep_ms(10);
  n = pp_pool_worker_pids(pool, pids + npids, 2);
  assert_int_equal(n, 2);
  npids += 2;

  assert_int_equal(pp_pool_destroy(pool, PP_DESTROY_WAIT), 0);
  for (i = 0; i < npids; i++)
    if (exists(pids[i]))
      fail_msg("worker %lld was left behind (not reaped)", (long long)pids[i]);
  assert_int_equal(sigaction(SIGINT, &old, NULL), 0);
  pp_test_log_free(log);
#endif
}

int main(int argc, char **argv) {
  int rc;
  if (pp_worker_main(argc, argv, pp_test_tasks, &rc))
    return rc;
#ifndef _WIN32
  /* Whatever ctest or a shell gave us: the test is about the default. */
  signal(SIGPIPE, SIG_DFL);
#endif
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_signals_worker_killed_during_big_handover),
      cmocka_unit_test(test_signals_sigint_then_destroy_reaps),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
