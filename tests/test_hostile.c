/*
 * test_hostile.c - what an ordinary but hostile user does to a pool, and
 * what the pool must answer (issue 7): many threads creating pools, tasks
 * that return odd numbers or fail to reply, absurd sizes and timeouts,
 * recycling every call, destroying a pool under a running map, a SIGCHLD
 * handler that reaps everything, and a program started with its standard
 * streams closed.
 */
#if defined(__linux__)
#ifndef _GNU_SOURCE
#define _GNU_SOURCE
#endif
#elif !defined(_WIN32) && !defined(_POSIX_C_SOURCE)
#define _POSIX_C_SOURCE 200809L
#endif

#include <limits.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#ifdef _WIN32
#include <io.h>
#else
#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <sys/wait.h>
#include <termios.h>
#include <unistd.h>
#endif

#include <cmocka.h>

#include <apr_thread_proc.h>
#include <apr_time.h>

/* The internal count of live pools, which the static library shows. */
#include "internal.h"

#include "helpers.h"
#include "tasks.h"

static const char *self_exe;

static pp_result_t run(pp_pool_t *pool, const char *task, const void *arg,
                       size_t len, const pp_call_options_t *co) {
  pp_future_t *f = NULL;
  pp_result_t r;
  PP_TEST_OK(pp_pool_submit(pool, task, arg, len, co, &f));
  assert_int_equal(pp_future_wait(f, PP_TEST_MS(60000)), 0);
  assert_int_equal(pp_future_take(f, &r), 0);
  pp_future_free(f);
  return r;
}

static pp_result_t run_int(pp_pool_t *pool, const char *task, int64_t v) {
  pp_buf_t b = pp_test_pack_int(v);
  pp_result_t r = run(pool, task, b.data, b.len, NULL);
  pp_free((void *)b.data);
  return r;
}

/* ---- item 2: pools from many threads ---- */

typedef struct {
  int rounds;
  int failures;
  char why[256];
} churn_t;

static void *APR_THREAD_FUNC churn(apr_thread_t *thread, void *data) {
  churn_t *c = data;
  int i;
  for (i = 0; i < c->rounds; i++) {
    pp_pool_options_t o;
    pp_pool_t *pool = NULL;
    memset(&o, 0, sizeof(o));
    o.workers = 1;
    if (pp_pool_create(&pool, &o) != 0) {
      c->failures++;
      snprintf(c->why, sizeof(c->why), "%s", pp_last_error());
      continue;
    }
    if (pp_pool_destroy(pool, PP_DESTROY_WAIT) != 0)
      c->failures++;
  }
  (void)thread;
  return NULL;
}

/* Three threads create and destroy pools while a long-lived pool runs a
 * map; APR is set up once and never torn down under a live pool. */
static void test_hostile_pools_from_many_threads(void **state) {
  pp_pool_t *pool = pp_test_make_pool(2, 0, 0, NULL);
  apr_pool_t *mem = NULL;
  apr_thread_t *t[3];
  churn_t c[3];
  pp_buf_t args[200];
  pp_result_t res[200];
  apr_status_t rv;
  int i;
  (void)state;
  assert_int_equal(apr_pool_create(&mem, NULL), APR_SUCCESS);
  memset(c, 0, sizeof(c));
  for (i = 0; i < 3; i++) {
    c[i].rounds = 15;
    assert_int_equal(apr_thread_create(&t[i], NULL, churn, &c[i], mem),
                     APR_SUCCESS);
  }
  for (i = 0; i < 200; i++)
    args[i] = pp_test_pack_int(i);
  PP_TEST_OK(pp_pool_map(pool, "square", args, 200, res, NULL));
  for (i = 0; i < 200; i++)
    assert_true(pp_test_int_result(&res[i]) == (int64_t)i * i);
  for (i = 0; i < 3; i++) {
    apr_thread_join(&rv, t[i]);
    if (c[i].failures != 0)
      fail_msg("thread %d: %d failures, last: %s", i, c[i].failures, c[i].why);
  }
  pp_results_free(res, 200);
  pp_test_free_bufs(args, 200);
  apr_pool_destroy(mem);
  assert_int_equal(pp_pool_destroy(pool, PP_DESTROY_WAIT), 0);
}

/* ---- item 3: a plain negative return ---- */

static void test_hostile_plain_return_is_etask(void **state) {
  pp_pool_t *pool = *state;
  static const int64_t values[] = {-5, -15, -1, 7, -100000};
  size_t i;
  for (i = 0; i < sizeof(values) / sizeof(values[0]); i++) {
    pp_buf_t b = pp_test_pack_int(values[i]);
    pp_future_t *f = NULL;
    pp_result_t r;
    char want[64];
    PP_TEST_OK(pp_pool_submit(pool, "ret", b.data, b.len, NULL, &f));
    assert_int_equal(pp_future_wait(f, PP_TEST_MS(60000)), 0);
    /* Finished is finished: never "not yet" (PP_EAGAIN is -15). */
    assert_int_equal(pp_future_status(f), PP_ETASK);
    assert_int_equal(pp_future_take(f, &r), 0);
    assert_int_equal(r.status, PP_ETASK);
    snprintf(want, sizeof(want), "returned %lld", (long long)values[i]);
    assert_non_null(r.message);
    if (strstr(r.message, want) == NULL)
      fail_msg("message '%s' does not say '%s'", r.message, want);
    assert_int_equal(r.exit_code, 0);
    pp_results_free(&r, 1);
    pp_future_free(f);
    pp_free((void *)b.data);
  }
  /* No worker died for any of it. */
  {
    pp_pool_stats_t st;
    PP_TEST_OK(pp_pool_stats(pool, &st));
    assert_int_equal(st.workers_died, 0);
  }
}

/* ---- item 16: a reply that fails ---- */

static void test_hostile_failed_reply_fails_the_call(void **state) {
  pp_pool_t *pool = *state;
  pp_result_t r = run_int(pool, "bad_reply", 0);
  assert_int_equal(r.status, PP_EINVAL);
  assert_non_null(r.message);
  assert_non_null(strstr(r.message, "bad tuple format letter 'q'"));
  assert_null(r.data);
  pp_results_free(&r, 1);

  r = run_int(pool, "bad_reply", 1);
  assert_int_equal(r.status, PP_EINVAL);
  assert_non_null(strstr(r.message, "NULL"));
  pp_results_free(&r, 1);

  r = run_int(pool, "bad_reply", 2);
  assert_int_equal(r.status, PP_EINVAL);
  assert_non_null(strstr(r.message, "larger than memory"));
  pp_results_free(&r, 1);

  /* A good reply after a failed one counts. */
  r = run_int(pool, "bad_reply", 3);
  assert_int_equal(r.status, 0);
  assert_true(pp_test_int_result(&r) == 42);
  pp_results_free(&r, 1);
}

/* ---- item 8: absurd worker counts ---- */

static void test_hostile_worker_count_is_capped(void **state) {
  static const int counts[] = {INT_MAX, PP_POOL_MAX_WORKERS + 1, -1, INT_MIN};
  size_t i;
  (void)state;
  for (i = 0; i < sizeof(counts) / sizeof(counts[0]); i++) {
    pp_pool_options_t o;
    pp_pool_t *pool = (pp_pool_t *)&o;
    memset(&o, 0, sizeof(o));
    o.workers = counts[i];
    assert_int_equal(pp_pool_create(&pool, &o), PP_EINVAL);
    assert_null(pool);
    assert_non_null(strstr(pp_last_error(), "4096"));
  }
}

/* ---- item 12: recycling counts calls, not chunks ---- */

static void test_hostile_max_calls_one_is_one_call(void **state) {
  pp_pool_options_t o;
  pp_pool_t *pool = NULL;
  pp_buf_t args[64];
  pp_result_t res[64];
  pp_map_options_t mo;
  int64_t pids[64];
  int i, j, distinct = 0;
  (void)state;
  pp_test_pool_options(&o, 2, 0, 0, NULL);
  o.max_calls_per_worker = 1;
  PP_TEST_OK(pp_pool_create(&pool, &o));
  for (i = 0; i < 64; i++)
    args[i] = pp_test_pack_int(0);
  /* Chunks of 8 would be pipelined to one worker without the limit. */
  memset(&mo, 0, sizeof(mo));
  mo.chunksize = 8;
  /* Not "pid": Windows gives an ended worker's pid to a later one. */
  PP_TEST_OK(pp_pool_map(pool, "proc_token", args, 64, res, &mo));
  for (i = 0; i < 64; i++) {
    pids[i] = pp_test_int_result(&res[i]);
    for (j = 0; j < i && pids[j] != pids[i]; j++)
      ;
    distinct += j == i;
  }
  print_message("64 calls ran in %d processes\n", distinct);
  assert_int_equal(distinct, 64);
  pp_results_free(res, 64);
  pp_test_free_bufs(args, 64);
  assert_int_equal(pp_pool_destroy(pool, PP_DESTROY_WAIT), 0);
}

/* ---- item 13: destroy while another thread maps ---- */

typedef struct {
  pp_pool_t *pool;
  int rc;
  int cancelled;
} mapper_t;

static void *APR_THREAD_FUNC long_map(apr_thread_t *thread, void *data) {
  mapper_t *m = data;
  pp_buf_t args[40];
  pp_result_t res[40];
  int i;
  for (i = 0; i < 40; i++)
    args[i] = pp_test_pack_int(200);
  m->rc = pp_pool_map(m->pool, "sleep_ms", args, 40, res, NULL);
  for (i = 0; i < 40; i++)
    m->cancelled += res[i].status == PP_ECANCELED;
  pp_results_free(res, 40);
  pp_test_free_bufs(args, 40);
  (void)thread;
  return NULL;
}

static void test_hostile_destroy_under_a_map_frees_the_pool(void **state) {
  apr_pool_t *mem = NULL;
  apr_thread_t *t;
  apr_status_t rv;
  mapper_t m;
  int before = pp__pool_count(), round;
  (void)state;
  assert_int_equal(apr_pool_create(&mem, NULL), APR_SUCCESS);
  for (round = 0; round < 3; round++) {
    memset(&m, 0, sizeof(m));
    m.pool = pp_test_make_pool(2, 0, 100, NULL);
    assert_int_equal(apr_thread_create(&t, NULL, long_map, &m, mem),
                     APR_SUCCESS);
    /* The destroy comes once the map has queued its calls (a destroy
     * before the map started would only make it fail PP_ECLOSED). */
    {
      pp_pool_stats_t st;
      apr_time_t end = apr_time_now() + apr_time_from_msec(PP_TEST_MS(30000));
      do {
        pp_test_sleep_ms(5);
        assert_int_equal(pp_pool_stats(m.pool, &st), 0);
      } while (st.calls_submitted < 40 && apr_time_now() < end);
      assert_true(st.calls_submitted == 40);
    }
    assert_int_equal(pp_pool_destroy(m.pool, PP_DESTROY_CANCEL), 0);
    apr_thread_join(&rv, t);
    assert_int_equal(m.rc, PP_ECANCELED);
    assert_true(m.cancelled > 0);
  }
  /* The map's thread was the last to hold the pool, and freed it. */
  assert_int_equal(pp__pool_count(), before);
  apr_pool_destroy(mem);
}

/* ---- item 14: timeouts too long to count ---- */

static void test_hostile_huge_timeouts_mean_none(void **state) {
  pp_pool_options_t o;
  pp_pool_t *pool = NULL;
  pp_call_options_t co;
  pp_map_options_t mo;
  pp_buf_t b = pp_test_pack_int(150), args[4];
  pp_future_t *f = NULL;
  pp_result_t r, res[4];
  int i;
  (void)state;
  pp_test_pool_options(&o, 2, 0, INT64_MAX, NULL);
  o.call_timeout_ms = INT64_MAX;
  o.start_timeout_ms = INT64_MAX;
  PP_TEST_OK(pp_pool_create(&pool, &o));
  memset(&co, 0, sizeof(co));
  co.timeout_ms = INT64_MAX;
  r = run(pool, "sleep_ms", b.data, b.len, &co);
  assert_int_equal(r.status, 0);
  pp_results_free(&r, 1);
  co.timeout_ms = INT64_MAX / 2;
  r = run(pool, "sleep_ms", b.data, b.len, &co);
  assert_int_equal(r.status, 0);
  pp_results_free(&r, 1);
  /* The pool's own INT64_MAX default. */
  r = run(pool, "sleep_ms", b.data, b.len, NULL);
  assert_int_equal(r.status, 0);
  pp_results_free(&r, 1);
  /* Waiting "forever" ends when the call does. */
  PP_TEST_OK(pp_pool_submit(pool, "sleep_ms", b.data, b.len, NULL, &f));
  assert_int_equal(pp_future_wait(f, INT64_MAX), 0);
  assert_int_equal(pp_future_status(f), 0);
  pp_future_free(f);
  memset(&mo, 0, sizeof(mo));
  mo.timeout_ms = INT64_MAX;
  for (i = 0; i < 4; i++)
    args[i] = pp_test_pack_int(50);
  PP_TEST_OK(pp_pool_map(pool, "sleep_ms", args, 4, res, &mo));
  pp_results_free(res, 4);
  pp_test_free_bufs(args, 4);
  /* A cancel with an endless grace period still reaches the task, which
   * stops by itself. */
  {
    pp_buf_t long_sleep = pp_test_pack_int(60000);
    PP_TEST_OK(pp_pool_submit(pool, "sleep_ms", long_sleep.data, long_sleep.len,
                              NULL, &f));
    pp_test_sleep_ms(200);
    PP_TEST_OK(pp_future_cancel(f));
    assert_int_equal(pp_future_wait(f, PP_TEST_MS(30000)), 0);
    assert_int_equal(pp_future_status(f), PP_ECANCELED);
    pp_future_free(f);
    pp_free((void *)long_sleep.data);
  }
  pp_free((void *)b.data);
  assert_int_equal(pp_pool_destroy(pool, PP_DESTROY_WAIT), 0);
}

/* ---- item 17: a SIGCHLD handler that reaps every child ---- */

#ifndef _WIN32
static void reap_all(int sig) {
  int saved = errno;
  (void)sig;
  while (waitpid(-1, NULL, WNOHANG) > 0)
    ;
  errno = saved;
}
#endif

static void test_hostile_sigchld_reaper_keeps_the_contract(void **state) {
#ifdef _WIN32
  (void)state;
  print_message("skipped: Windows has no SIGCHLD\n");
  skip();
#else
  struct sigaction sa, old;
  pp_pool_t *pool;
  pp_result_t r;
  (void)state;
  memset(&sa, 0, sizeof(sa));
  sa.sa_handler = reap_all;
  sa.sa_flags = SA_RESTART;
  sigemptyset(&sa.sa_mask);
  sigaction(SIGCHLD, &sa, &old);
  pool = pp_test_make_pool(2, 0, 0, NULL);
  r = run(pool, "segv", NULL, 0, NULL);
  assert_int_equal(r.status, PP_EWORKERDIED);
  print_message("with a reaping SIGCHLD handler: %s\n", r.message);
  /* Either the pool reaped it first (and has the signal), or the handler
   * did and the message says what is still known. */
  if (r.term_signal != SIGSEGV)
    assert_non_null(strstr(r.message, "collected elsewhere"));
  assert_non_null(strstr(r.message, "'segv'"));
  pp_results_free(&r, 1);
  r = run_int(pool, "square", 9);
  assert_int_equal(r.status, 0);
  assert_true(pp_test_int_result(&r) == 81);
  pp_results_free(&r, 1);
  assert_int_equal(pp_pool_destroy(pool, PP_DESTROY_WAIT), 0);
  sigaction(SIGCHLD, &old, NULL);
#endif
}

/* ---- item 7: standard streams closed ---- */

/* In a child: closes stdin and stderr (and stdout if asked), then runs
 * calls whose workers print to stdout and stderr.  Exits 0 if every call
 * succeeded and their lines reached the log callback. */
static int closed_stdio_main(int close_stdout) {
  pp_test_log_t *log = pp_test_log_new();
  pp_pool_options_t o;
  pp_pool_t *pool = NULL;
  pp_buf_t args[20];
  pp_result_t res[20];
  int i, rc, ok = 1;
  char tag[32];
#ifdef _WIN32
  _close(0);
  _close(2);
  if (close_stdout)
    _close(1);
#else
  close(0);
  close(2);
  if (close_stdout)
    close(1);
#endif
  pp_test_pool_options(&o, 2, 0, 0, log);
  if (pp_pool_create(&pool, &o) != 0)
    return 10;
  for (i = 0; i < 20; i++) {
    snprintf(tag, sizeof(tag), "c%d", i);
    pp_pack(&args[i], "s", tag);
  }
  rc = pp_pool_map(pool, "print", args, 20, res, NULL);
  for (i = 0; i < 20 && rc == 0; i++) {
    char line[64];
    snprintf(line, sizeof(line), "err c%d", i);
    ok &= pp_test_log_wait(log, line, 10000, NULL);
    snprintf(line, sizeof(line), "out c%d", i);
    ok &= pp_test_log_wait(log, line, 10000, NULL);
  }
  pp_results_free(res, 20);
  pp_test_free_bufs(args, 20);
  if (pp_pool_destroy(pool, PP_DESTROY_WAIT) != 0)
    return 11;
  pp_test_log_free(log);
  if (!close_stdout)
    printf("closed-stdio: ok\n");
  return rc != 0 ? 12 : ok ? 0 : 13;
}

static void test_hostile_closed_stdio(void **state) {
  char out[256];
  int code;
  (void)state;
  code = pp_test_run_limit(self_exe, "--closed-stdio", 60000, out, sizeof(out));
  print_message("stdin and stderr closed: exit %d, said '%s'\n", code, out);
  assert_int_equal(code, 0);
  assert_non_null(strstr(out, "closed-stdio: ok"));
  code = pp_test_run_limit(self_exe, "--closed-stdio-all", 60000, out,
                           sizeof(out));
  print_message("all three closed: exit %d\n", code);
  assert_int_equal(code, 0);
}

/* ---- item 11: inherited output on a terminal with `stty tostop` ---- */

/* In a child: becomes a session leader whose controlling terminal is the
 * pseudo-terminal `slave`, with TOSTOP set (background writes stop the
 * writer), and runs calls whose workers print to it.  Exits 0 if they all
 * finished. */
static int tostop_main(const char *slave) {
#ifdef _WIN32
  (void)slave;
  return 2;
#else
  struct termios t;
  pp_pool_options_t o;
  pp_pool_t *pool = NULL;
  pp_buf_t args[4];
  pp_result_t res[4];
  int fd, i, rc;
  if (setsid() < 0)
    return 20;
  fd = open(slave, O_RDWR);
  if (fd < 0 || tcgetattr(fd, &t) != 0)
    return 21;
  t.c_lflag |= TOSTOP;
  if (tcsetattr(fd, TCSANOW, &t) != 0)
    return 22;
  dup2(fd, 1);
  dup2(fd, 2);
  pp_test_pool_options(&o, 2, PP_POOL_INHERIT_OUTPUT, 0, NULL);
  if (pp_pool_create(&pool, &o) != 0)
    return 23;
  for (i = 0; i < 4; i++)
    pp_pack(&args[i], "s", "tty");
  rc = pp_pool_map(pool, "print", args, 4, res, NULL);
  pp_results_free(res, 4);
  pp_test_free_bufs(args, 4);
  pp_pool_destroy(pool, PP_DESTROY_CANCEL);
  return rc == 0 ? 0 : 24;
#endif
}

static void test_hostile_inherit_output_on_a_tostop_terminal(void **state) {
#ifdef _WIN32
  (void)state;
  print_message("skipped: Windows consoles do not stop background writers\n");
  skip();
#else
  char arg[256], out[64];
  int master, code;
  (void)state;
  master = posix_openpt(O_RDWR | O_NOCTTY);
  assert_true(master >= 0);
  assert_int_equal(grantpt(master), 0);
  assert_int_equal(unlockpt(master), 0);
  snprintf(arg, sizeof(arg), "--tostop %s", ptsname(master));
  /* The little the workers print fits in the terminal's buffer, so the
   * master need not be read. */
  code = pp_test_run_limit(self_exe, arg, 30000, out, sizeof(out));
  print_message("child on a tostop terminal: exit %d\n", code);
  close(master);
  assert_int_equal(code, 0);
#endif
}

/* Runs `task` (no argument) on the pool and waits for it at most 30 s
 * (scaled): a wait that runs out is the hang these tests look for. */
static int call_within(pp_pool_t *pool, const char *task, pp_result_t *r) {
  pp_future_t *f = NULL;
  int rc;
  PP_TEST_OK(pp_pool_submit(pool, task, NULL, 0, NULL, &f));
  rc = pp_future_wait(f, 30000 * PP_TEST_TIME_SCALE);
  if (rc == 0)
    assert_int_equal(pp_future_take(f, r), 0);
  pp_future_free(f);
  return rc;
}

/* A task that zeroes the memory its worker shares with the parent also
 * clears the flag that says the parent sleeps (issue 17, item 3): the
 * worker then does not wake the parent for the call's result.  Nothing
 * read from shared memory is trusted for liveness either: the parent
 * never sleeps long while a worker holds calls, and the call ends, with
 * its result or a clean PP_EPROTO, and the pool goes on. */
static void test_hostile_zeroed_shared_memory_does_not_hang(void **state) {
  pp_pool_t *pool = pp_test_make_pool(1, 0, 0, NULL);
  pp_result_t r;
  int round;
  (void)state;
  for (round = 0; round < 3; round++) {
    memset(&r, 0, sizeof(r));
    if (call_within(pool, "zero_shared", &r) != 0)
      fail_msg("round %d: the call of a task that zeroed its worker's shared "
               "memory did not end",
               round);
    if (r.status != 0 && r.status != PP_EPROTO)
      fail_msg("round %d: %s: %s", round, pp_err_name(r.status),
               r.message ? r.message : "");
    pp_results_free(&r, 1);
    assert_int_equal(call_within(pool, "pid", &r), 0);
    assert_int_equal(r.status, 0);
    pp_results_free(&r, 1);
  }
  assert_int_equal(pp_pool_destroy(pool, PP_DESTROY_WAIT), 0);
}

/* A worker whose wake-up was lost (here: its "asleep" flag cleared, so
 * the parent does not signal it) still finds the call the parent gave it
 * (issue 17, item 18): no sleep with calls in flight is unbounded. */
static void test_hostile_lost_wakeup_of_a_worker_does_not_hang(void **state) {
  pp_pool_t *pool = pp_test_make_pool(1, 0, 0, NULL);
  pp_result_t r;
  int round;
  (void)state;
  for (round = 0; round < 3; round++) {
    assert_int_equal(call_within(pool, "unflag_later", &r), 0);
    assert_int_equal(r.status, 0);
    pp_results_free(&r, 1);
    pp_test_sleep_ms(600);
    if (call_within(pool, "pid", &r) != 0)
      fail_msg("round %d: a call to a worker that was not woken did not end",
               round);
    assert_int_equal(r.status, 0);
    pp_results_free(&r, 1);
  }
  assert_int_equal(pp_pool_destroy(pool, PP_DESTROY_WAIT), 0);
}

/* A task that closes stdout and stderr for good leaves the read ends of
 * the worker's output pipes at their end, which stays "readable": the
 * worker's watch thread must stop looking at them, not spin on them
 * (it used to take a whole core until the worker ended). */
static void test_hostile_closed_output_does_not_spin(void **state) {
  pp_pool_t *pool;
  pp_buf_t arg;
  pp_result_t r[1];
  int64_t pid;
  double before, after;
  (void)state;
#if !defined(__linux__)
  print_message("skipped: reads a worker's CPU time from /proc\n");
  skip();
#endif
  pool = pp_test_make_pool(1, 0, 0, NULL);
  assert_int_equal(pp_pool_worker_pids(pool, &pid, 1), 1);
  assert_int_equal(pp_pack(&arg, "si", "close_stdio", (int64_t)1), 0);
  PP_TEST_OK(pp_pool_map(pool, "act", &arg, 1, r, NULL));
  pp_results_free(r, 1);
  pp_test_sleep_ms(200);
  before = pp_test_cpu_seconds(pid);
  pp_test_sleep_ms(2000);
  after = pp_test_cpu_seconds(pid);
  print_message("an idle worker whose task closed stdout and stderr used "
                "%.2f s of CPU in 2 s\n",
                after - before);
  assert_true(before >= 0 && after >= 0);
  assert_true(after - before < 0.3);
  pp_test_free_bufs(&arg, 1);
  /* It still serves calls. */
  assert_int_equal(pp_pack(&arg, "si", "square", (int64_t)7), 0);
  PP_TEST_OK(pp_pool_map(pool, "act", &arg, 1, r, NULL));
  assert_int_equal(pp_test_int_result(&r[0]), 49);
  pp_results_free(r, 1);
  pp_test_free_bufs(&arg, 1);
  PP_TEST_OK(pp_pool_destroy(pool, PP_DESTROY_WAIT));
}

int main(int argc, char **argv) {
  int rc;
  if (pp_worker_main(argc, argv, pp_test_tasks, &rc))
    return rc;
  self_exe = argv[0];
  if (argc > 1 && strcmp(argv[1], "--closed-stdio") == 0)
    return closed_stdio_main(0);
  if (argc > 1 && strcmp(argv[1], "--closed-stdio-all") == 0)
    return closed_stdio_main(1);
  if (argc > 1 && strncmp(argv[1], "--tostop ", 9) == 0)
    return tostop_main(argv[1] + 9);
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_hostile_pools_from_many_threads),
      PP_TEST_POOL_TEST(test_hostile_plain_return_is_etask),
      PP_TEST_POOL_TEST(test_hostile_failed_reply_fails_the_call),
      cmocka_unit_test(test_hostile_worker_count_is_capped),
      cmocka_unit_test(test_hostile_max_calls_one_is_one_call),
      cmocka_unit_test(test_hostile_destroy_under_a_map_frees_the_pool),
      cmocka_unit_test(test_hostile_huge_timeouts_mean_none),
      cmocka_unit_test(test_hostile_sigchld_reaper_keeps_the_contract),
      cmocka_unit_test(test_hostile_closed_stdio),
      cmocka_unit_test(test_hostile_zeroed_shared_memory_does_not_hang),
      cmocka_unit_test(test_hostile_lost_wakeup_of_a_worker_does_not_hang),
      cmocka_unit_test(test_hostile_inherit_output_on_a_tostop_terminal),
      cmocka_unit_test(test_hostile_closed_output_does_not_spin),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
