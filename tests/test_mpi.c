/*
 * test_mpi.c - the MPI backend: run under `mpirun -n 3` (tests/mpi_run.sh)
 * and alone (then the pool falls back to a local one and says so).
 *
 * One MPI pool per job, so every test of the group shares the pool that
 * the group's setup creates.  Everything after the worker guard runs on
 * rank 0 only: the other ranks serve inside pp_worker_main().
 *
 *   test_mpi            the group
 *   test_mpi --rank-death
 *                       rank 0 kills a serving rank (SIGKILL) while it
 *                       holds calls: they must fail PP_EWORKERDIED and the
 *                       rest of the map finish on the other rank (needs
 *                       mpirun --enable-recovery and
 *                       PROCPOOL_MPI_DEADLINE_MS).
 *   test_mpi --mismatch rank 2 has another task table: the MPI pool
 *                       fails with PP_ESPAWN naming it.
 *   test_mpi --rank-stop early|late, test_mpi --faults WHICH
 *                       mpi_modes.c: a rank stopped and continued;
 *                       allocations that fail on rank 0 or on a serving
 *                       rank.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <cmocka.h>

#include <signal.h>
#include <unistd.h>

#include "helpers.h"
#include "mpi_modes.h"
#include "procpool_mpi.h"
#include "tasks.h"

/* The shared table and one task more: the pid of the worker's parent,
 * which on a serving rank is that rank's process. */
static pp_task_t table[64];

static int parent_pid(pp_call_t *call, const void *arg, size_t len) {
  (void)arg, (void)len;
  return pp_call_replyf(call, "i", (int64_t)getppid());
}

/* With `mismatch`, rank 2 has one task more than the others: as if it ran
 * another build of the program. */
static void make_table(int mismatch) {
  const char *rank = getenv("OMPI_COMM_WORLD_RANK");
  size_t n = 0;
  while (pp_test_tasks[n].name != NULL && n < 61) {
    table[n] = pp_test_tasks[n];
    n++;
  }
  table[n].name = "parent_pid";
  table[n].fn = parent_pid;
  if (mismatch && rank != NULL && strcmp(rank, "2") == 0) {
    table[n + 1].name = "extra";
    table[n + 1].fn = parent_pid;
  }
}

/* --mismatch: a rank with another task table makes the MPI pool fail to
 * start, with PP_ESPAWN and a reason that names it. */
static int mismatch(void) {
  pp_pool_options_t o;
  pp_pool_t *p = NULL;
  int rc;
  memset(&o, 0, sizeof(o));
  o.backend = PP_BACKEND_MPI;
  rc = pp_pool_create(&p, &o);
  printf("mismatch: %s: %s\n", pp_err_name(rc), pp_last_error());
  if (p != NULL)
    pp_pool_destroy(p, PP_DESTROY_WAIT);
  return rc == PP_ESPAWN && strstr(pp_last_error(), "rank 2") != NULL ? 0 : 1;
}

static pp_pool_t *pool;
static int under_mpirun;
static char log_text[8192];

static void capture(void *data, const pp_log_record_t *rec) {
  size_t used = strlen(log_text);
  (void)data;
  snprintf(log_text + used, sizeof(log_text) - used, "[r%d w%d] %.*s\n",
           rec->rank, rec->worker, (int)rec->len, rec->line);
}

static int group_setup(void **state) {
  pp_pool_options_t o;
  const char *size = getenv("OMPI_COMM_WORLD_SIZE");
  (void)state;
  under_mpirun = size != NULL && atoi(size) > 1;
  memset(&o, 0, sizeof(o));
  o.backend = PP_BACKEND_MPI;
  o.log_cb = capture;
  return pp_pool_create(&pool, &o);
}

static int group_teardown(void **state) {
  (void)state;
  return pp_pool_destroy(pool, PP_DESTROY_WAIT);
}

/* Under mpirun the pool is an MPI one (no fallback line); alone it is a
 * local one and the log says why. */
static void test_mpi_backend_or_fallback(void **state) {
  (void)state;
  assert_true(pp_pool_workers(pool) >= 1);
  if (under_mpirun) {
    assert_null(strstr(log_text, "runs its calls locally"));
  } else {
    assert_non_null(strstr(log_text, "not launched by mpirun"));
    assert_non_null(strstr(log_text, "runs its calls locally"));
  }
}

/* A starmap's results equal those of a local pool. */
static void test_mpi_starmap_equals_local(void **state) {
  enum { N = 3000 };
  pp_pool_options_t o;
  pp_pool_t *local;
  pp_buf_t *args = calloc(N, sizeof(*args));
  pp_result_t *a = calloc(N, sizeof(*a)), *b = calloc(N, sizeof(*b));
  size_t i;
  (void)state;
  assert_non_null(args);
  for (i = 0; i < N; i++)
    PP_TEST_OK(pp_pack(&args[i], "ii", (int64_t)i, (int64_t)(7 * i)));
  memset(&o, 0, sizeof(o));
  o.backend = PP_BACKEND_LOCAL;
  o.workers = 2;
  PP_TEST_OK(pp_pool_create(&local, &o));
  PP_TEST_OK(pp_pool_starmap(local, "add", args, N, a, NULL));
  PP_TEST_OK(pp_pool_destroy(local, PP_DESTROY_WAIT));
  PP_TEST_OK(pp_pool_starmap(pool, "add", args, N, b, NULL));
  for (i = 0; i < N; i++) {
    assert_int_equal(b[i].status, 0);
    assert_int_equal(pp_test_int_result(&b[i]), pp_test_int_result(&a[i]));
    assert_int_equal(pp_test_int_result(&b[i]), (int64_t)(8 * i));
  }
  pp_results_free(a, N);
  pp_results_free(b, N);
  pp_test_free_bufs(args, N);
  free(args);
  free(a);
  free(b);
}

/* A task that crashes fails its call alone; the pool (and the job) go
 * on. */
static void test_mpi_crash_fails_only_that_call(void **state) {
  pp_future_t *crash, *ok[8];
  pp_result_t r;
  pp_buf_t arg = pp_test_pack_int(20);
  int i;
  (void)state;
  PP_TEST_OK(pp_pool_submit(pool, "segv", NULL, 0, NULL, &crash));
  for (i = 0; i < 8; i++)
    PP_TEST_OK(pp_pool_submit(pool, "square", arg.data, arg.len, NULL, &ok[i]));
  PP_TEST_OK(pp_future_wait(crash, -1));
  PP_TEST_OK(pp_future_take(crash, &r));
  assert_int_equal(r.status, PP_EWORKERDIED);
  assert_non_null(r.message);
  assert_int_equal(r.term_signal, SIGSEGV);
  pp_results_free(&r, 1);
  pp_future_free(crash);
  for (i = 0; i < 8; i++) {
    PP_TEST_OK(pp_future_wait(ok[i], -1));
    PP_TEST_OK(pp_future_take(ok[i], &r));
    assert_int_equal(r.status, 0);
    assert_int_equal(pp_test_int_result(&r), 400);
    pp_results_free(&r, 1);
    pp_future_free(ok[i]);
  }
  pp_test_free_bufs(&arg, 1);
}

/* A timeout fails that call alone. */
static void test_mpi_timeout_fails_only_that_call(void **state) {
  pp_call_options_t co;
  pp_future_t *slow, *fast;
  pp_result_t r;
  pp_buf_t long_sleep = pp_test_pack_int(20000), two = pp_test_pack_int(2);
  (void)state;
  memset(&co, 0, sizeof(co));
  co.timeout_ms = 300;
  PP_TEST_OK(pp_pool_submit(pool, "sleep_ms", long_sleep.data, long_sleep.len,
                            &co, &slow));
  PP_TEST_OK(pp_pool_submit(pool, "square", two.data, two.len, NULL, &fast));
  PP_TEST_OK(pp_future_wait(slow, 15000));
  PP_TEST_OK(pp_future_take(slow, &r));
  assert_int_equal(r.status, PP_ETIMEDOUT);
  pp_results_free(&r, 1);
  PP_TEST_OK(pp_future_wait(fast, 15000));
  PP_TEST_OK(pp_future_take(fast, &r));
  assert_int_equal(pp_test_int_result(&r), 4);
  pp_results_free(&r, 1);
  pp_future_free(slow);
  pp_future_free(fast);
  pp_test_free_bufs(&long_sleep, 1);
  pp_test_free_bufs(&two, 1);
}

/* A running call is cancelled on its rank. */
static void test_mpi_cancel_running_call(void **state) {
  pp_future_t *f;
  pp_result_t r;
  pp_buf_t long_sleep = pp_test_pack_int(30000);
  int i;
  (void)state;
  PP_TEST_OK(pp_pool_submit(pool, "sleep_ms", long_sleep.data, long_sleep.len,
                            NULL, &f));
  for (i = 0; i < 500 && pp_future_state(f) != PP_FUTURE_RUNNING; i++)
    pp_test_sleep_ms(10);
  assert_int_equal(pp_future_state(f), PP_FUTURE_RUNNING);
  pp_test_sleep_ms(200);
  PP_TEST_OK(pp_future_cancel(f));
  PP_TEST_OK(pp_future_wait(f, 15000));
  PP_TEST_OK(pp_future_take(f, &r));
  assert_int_equal(r.status, PP_ECANCELED);
  assert_int_equal(pp_future_state(f), PP_FUTURE_DONE);
  pp_results_free(&r, 1);
  pp_future_free(f);
  pp_test_free_bufs(&long_sleep, 1);
}

/* Large arguments and results travel as messages of their own. */
static void test_mpi_large_argument_and_result(void **state) {
  size_t n = 3 * 1024 * 1024 + 5, i;
  unsigned char *big = malloc(n);
  pp_future_t *f;
  pp_result_t r;
  (void)state;
  assert_non_null(big);
  for (i = 0; i < n; i++)
    big[i] = (unsigned char)(i * 31 + 7);
  PP_TEST_OK(pp_pool_submit(pool, "bump", big, n, NULL, &f));
  PP_TEST_OK(pp_future_wait(f, -1));
  PP_TEST_OK(pp_future_take(f, &r));
  assert_int_equal(r.status, 0);
  assert_int_equal(r.len, n);
  for (i = 0; i < n; i++)
    if (((unsigned char *)r.data)[i] != (unsigned char)(big[i] + 1))
      fail_msg("byte %zu differs", i);
  pp_results_free(&r, 1);
  pp_future_free(f);
  free(big);
}

/* Completion callbacks and an async map work over MPI as locally. */
static int callbacks_seen;

static void count_cb(void *data, pp_future_t *f) {
  (void)data;
  if (pp_future_status(f) == 0)
    callbacks_seen++;
}

static void test_mpi_callbacks_and_async_map(void **state) {
  enum { N = 200 };
  pp_call_options_t co;
  pp_future_t *fs[16];
  pp_buf_t args[N];
  pp_result_t res[N];
  pp_map_t *m;
  size_t i;
  (void)state;
  memset(&co, 0, sizeof(co));
  co.on_done = count_cb;
  for (i = 0; i < 16; i++) {
    args[i] = pp_test_pack_int((int64_t)i);
    PP_TEST_OK(
        pp_pool_submit(pool, "square", args[i].data, args[i].len, &co, &fs[i]));
  }
  PP_TEST_OK(pp_future_wait_many(fs, 16, PP_WAIT_ALL_COMPLETED, -1, NULL));
  for (i = 0; i < 16; i++)
    pp_future_free(fs[i]);
  pp_test_free_bufs(args, 16);
  for (i = 0; i < N; i++)
    args[i] = pp_test_pack_int((int64_t)i);
  PP_TEST_OK(pp_pool_map_async(pool, "square", args, N, res, NULL, &m));
  PP_TEST_OK(pp_map_wait(m, -1));
  pp_map_free(m);
  for (i = 0; i < N; i++)
    assert_int_equal(pp_test_int_result(&res[i]), (int64_t)(i * i));
  pp_results_free(res, N);
  pp_test_free_bufs(args, N);
  /* The callbacks have all run by the time the pool is idle. */
  for (i = 0; i < 200 && callbacks_seen < 16; i++)
    pp_test_sleep_ms(10);
  assert_int_equal(callbacks_seen, 16);
}

/* An unordered map and a streaming map (imap) over the ranks: every index
 * once, the right values, imap's in order. */
typedef struct seen_s {
  size_t n, count, next;
  unsigned char *seen;
  int bad;
  pp_buf_t arg;
} seen_t;

static int take_any(void *data, size_t index, pp_result_t *r) {
  seen_t *s = data;
  if (index >= s->n || s->seen[index] || r->status != 0 ||
      pp_test_int_result(r) != (int64_t)(index * index))
    s->bad = 1;
  else
    s->seen[index] = 1;
  s->count++;
  pp_results_free(r, 1);
  return 0;
}

static int take_in_order(void *data, size_t index, pp_result_t *r) {
  seen_t *s = data;
  if (index != s->next++)
    s->bad = 1;
  return take_any(data, index, r);
}

static int produce(void *data, pp_next_arg_t *next) {
  seen_t *s = data;
  if (next->index >= s->n)
    return 0;
  pp_free((void *)s->arg.data);
  s->arg = pp_test_pack_int((int64_t)next->index);
  next->arg = s->arg;
  return 1;
}

static void test_mpi_unordered_and_streaming_maps(void **state) {
  enum { N = 5000 };
  pp_buf_t *args = calloc(N, sizeof(*args));
  seen_t s;
  pp_map_options_t mo;
  size_t i;
  (void)state;
  assert_non_null(args);
  for (i = 0; i < N; i++)
    args[i] = pp_test_pack_int((int64_t)i);
  memset(&s, 0, sizeof(s));
  s.n = N;
  s.seen = calloc(N, 1);
  PP_TEST_OK(
      pp_pool_map_unordered(pool, "square", args, N, take_any, &s, NULL));
  assert_false(s.bad);
  assert_int_equal(s.count, N);
  memset(s.seen, 0, N);
  s.count = 0;
  memset(&mo, 0, sizeof(mo));
  mo.max_in_flight = 300;
  PP_TEST_OK(pp_pool_imap(pool, "square", produce, &s, take_in_order, &s, &mo));
  assert_false(s.bad);
  assert_int_equal(s.count, N);
  pp_free((void *)s.arg.data);
  free(s.seen);
  pp_test_free_bufs(args, N);
  free(args);
}

/* Output of tasks on the ranks reaches rank 0's log callback, tagged with
 * the rank. */
static void test_mpi_task_output_reaches_rank0(void **state) {
  pp_future_t *f;
  const char *text = "out rank-tag";
  pp_buf_t arg;
  const char *at;
  int i;
  (void)state;
  PP_TEST_OK(pp_pack(&arg, "s", "rank-tag"));
  PP_TEST_OK(pp_pool_submit(pool, "print", arg.data, arg.len, NULL, &f));
  PP_TEST_OK(pp_future_wait(f, -1));
  pp_future_free(f);
  pp_test_free_bufs(&arg, 1);
  for (i = 0; i < 300 && strstr(log_text, text) == NULL; i++)
    pp_test_sleep_ms(10);
  at = strstr(log_text, text);
  assert_non_null(at);
  /* Tagged with the serving rank it ran on (1 or 2 under -n 3), not 0. */
  if (under_mpirun) {
    while (at > log_text && at[-1] != '\n')
      at--;
    assert_true(strncmp(at, "[r1 ", 4) == 0 || strncmp(at, "[r2 ", 4) == 0);
  }
}

/* An idle MPI pool costs little CPU: a serving rank and rank 0 each use
 * under 10 % of a core while nothing runs (Open MPI's blocking waits would
 * use all of one). */
static void test_mpi_idle_ranks_are_quiet(void **state) {
  pp_future_t *f;
  pp_result_t r;
  int64_t rank_pid;
  double r0, s0, r1, s1;
  (void)state;
  if (!under_mpirun)
    skip();
  PP_TEST_OK(pp_pool_submit(pool, "parent_pid", NULL, 0, NULL, &f));
  PP_TEST_OK(pp_future_wait(f, -1));
  PP_TEST_OK(pp_future_take(f, &r));
  rank_pid = pp_test_int_result(&r);
  pp_results_free(&r, 1);
  pp_future_free(f);
  pp_test_sleep_ms(300);
  r0 = pp_test_cpu_seconds(rank_pid);
  s0 = pp_test_cpu_seconds(pp_test_self_pid());
  pp_test_sleep_ms(3000);
  r1 = pp_test_cpu_seconds(rank_pid);
  s1 = pp_test_cpu_seconds(pp_test_self_pid());
  print_message("idle for 3 s: serving rank %.2f s of CPU, rank 0 %.2f s\n",
                r1 - r0, s1 - s0);
  assert_true(r0 >= 0 && r1 >= 0);
  assert_true(r1 - r0 < 0.3);
  assert_true(s1 - s0 < 0.3);
}

/* ---- the second group: pools of its own, one after the other ---- */

/* An MPI pool made while another runs is a local one, and says so; after
 * the first is destroyed, the next MPI pool uses the ranks again. */
static void test_mpi_pools_one_at_a_time(void **state) {
  pp_pool_options_t o;
  pp_pool_t *a, *b;
  pp_buf_t arg = pp_test_pack_int(9);
  pp_future_t *f;
  pp_result_t r;
  (void)state;
  memset(&o, 0, sizeof(o));
  o.backend = PP_BACKEND_MPI;
  o.log_cb = capture;
  log_text[0] = '\0';
  PP_TEST_OK(pp_pool_create(&a, &o));
  if (under_mpirun)
    assert_null(strstr(log_text, "runs its calls locally"));
  PP_TEST_OK(pp_pool_create(&b, &o));
  if (under_mpirun)
    assert_non_null(strstr(log_text, "one at a time"));
  PP_TEST_OK(pp_pool_submit(b, "square", arg.data, arg.len, NULL, &f));
  PP_TEST_OK(pp_future_wait(f, -1));
  PP_TEST_OK(pp_future_take(f, &r));
  assert_int_equal(pp_test_int_result(&r), 81);
  pp_results_free(&r, 1);
  pp_future_free(f);
  PP_TEST_OK(pp_pool_destroy(b, PP_DESTROY_WAIT));
  PP_TEST_OK(pp_pool_destroy(a, PP_DESTROY_WAIT));
  /* And again, after both are gone: on the ranks. */
  log_text[0] = '\0';
  PP_TEST_OK(pp_pool_create(&a, &o));
  if (under_mpirun)
    assert_null(strstr(log_text, "runs its calls locally"));
  PP_TEST_OK(pp_pool_submit(a, "square", arg.data, arg.len, NULL, &f));
  PP_TEST_OK(pp_future_wait(f, -1));
  PP_TEST_OK(pp_future_take(f, &r));
  assert_int_equal(pp_test_int_result(&r), 81);
  pp_results_free(&r, 1);
  pp_future_free(f);
  PP_TEST_OK(pp_pool_destroy(a, PP_DESTROY_WAIT));
  pp_test_free_bufs(&arg, 1);
}

/* A cancelling destroy ends the calls on the ranks at once. */
static void test_mpi_destroy_cancel(void **state) {
  enum { N = 40 };
  pp_pool_options_t o;
  pp_pool_t *p;
  pp_buf_t args[N];
  pp_result_t res[N];
  pp_map_t *m;
  int64_t t0;
  size_t i, cancelled = 0;
  (void)state;
  memset(&o, 0, sizeof(o));
  o.backend = PP_BACKEND_MPI;
  PP_TEST_OK(pp_pool_create(&p, &o));
  for (i = 0; i < N; i++)
    args[i] = pp_test_pack_int(20000);
  PP_TEST_OK(pp_pool_map_async(p, "sleep_ms", args, N, res, NULL, &m));
  pp_test_sleep_ms(500);
  t0 = (int64_t)time(NULL);
  PP_TEST_OK(pp_pool_destroy(p, PP_DESTROY_CANCEL));
  assert_int_equal(pp_map_wait(m, 15000), PP_ECANCELED);
  assert_true((int64_t)time(NULL) - t0 < 10);
  for (i = 0; i < N; i++)
    cancelled += res[i].status == PP_ECANCELED;
  assert_int_equal(cancelled, N);
  pp_map_free(m);
  pp_results_free(res, N);
  pp_test_free_bufs(args, N);
}

/* --rank-death: a serving rank killed from outside loses its calls, the
 * others finish theirs, rank 0 does not hang. */
static int rank_death(void) {
  enum { N = 40 };
  pp_pool_options_t o;
  pp_buf_t args[N];
  pp_result_t res[N];
  pp_future_t *who;
  pp_result_t r;
  int64_t victim;
  size_t i, ok = 0, died = 0;
  memset(&o, 0, sizeof(o));
  o.backend = PP_BACKEND_MPI;
  if (pp_pool_create(&pool, &o) != 0)
    return 2;
  /* Some rank's pid, from a worker of its local pool. */
  if (pp_pool_submit(pool, "parent_pid", NULL, 0, NULL, &who) != 0 ||
      pp_future_wait(who, -1) != 0 || pp_future_take(who, &r) != 0)
    return 3;
  victim = pp_test_int_result(&r);
  pp_results_free(&r, 1);
  pp_future_free(who);
  for (i = 0; i < N; i++)
    args[i] = pp_test_pack_int(300);
  {
    pp_map_t *m;
    if (pp_pool_map_async(pool, "sleep_ms", args, N, res, NULL, &m) != 0)
      return 4;
    pp_test_sleep_ms(500);
    printf("killing rank process %lld\n", (long long)victim);
    fflush(stdout);
    kill((pid_t)victim, SIGKILL);
    pp_map_wait(m, -1);
    pp_map_free(m);
  }
  for (i = 0; i < N; i++) {
    if (res[i].status == 0)
      ok++;
    else if (res[i].status == PP_EWORKERDIED)
      died++;
    if (res[i].status != 0 && i < 3)
      printf("call %zu: %s\n", i, res[i].message);
  }
  printf("rank death: %zu calls ok, %zu lost with the rank, of %d\n", ok, died,
         N);
  pp_results_free(res, N);
  pp_test_free_bufs(args, N);
  pp_pool_destroy(pool, PP_DESTROY_WAIT);
  return ok > 0 && died > 0 && ok + died == N ? 0 : 1;
}

int main(int argc, char **argv) {
  int rc;
  make_table(argc > 1 && strcmp(argv[1], "--mismatch") == 0);
  pp_mpi_enable();
  if (pp_worker_main(argc, argv, table, &rc))
    return rc;
  if (argc > 1 && strcmp(argv[1], "--rank-death") == 0)
    return rank_death();
  if (argc > 1 && strcmp(argv[1], "--mismatch") == 0)
    return mismatch();
  if (argc > 2 && strcmp(argv[1], "--rank-stop") == 0)
    return pp_test_mpi_rank_stop(argv[2]);
  if (argc > 2 && strcmp(argv[1], "--faults") == 0)
    return pp_test_mpi_faults(argv[2]);
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_mpi_backend_or_fallback),
      cmocka_unit_test(test_mpi_starmap_equals_local),
      cmocka_unit_test(test_mpi_crash_fails_only_that_call),
      cmocka_unit_test(test_mpi_timeout_fails_only_that_call),
      cmocka_unit_test(test_mpi_cancel_running_call),
      cmocka_unit_test(test_mpi_large_argument_and_result),
      cmocka_unit_test(test_mpi_callbacks_and_async_map),
      cmocka_unit_test(test_mpi_unordered_and_streaming_maps),
      cmocka_unit_test(test_mpi_task_output_reaches_rank0),
      cmocka_unit_test(test_mpi_idle_ranks_are_quiet),
  };
  const struct CMUnitTest own_pools[] = {
      cmocka_unit_test(test_mpi_pools_one_at_a_time),
      cmocka_unit_test(test_mpi_destroy_cancel),
  };
  rc = cmocka_run_group_tests(tests, group_setup, group_teardown);
  return rc | cmocka_run_group_tests(own_pools, NULL, NULL);
}
