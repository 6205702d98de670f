/*
 * test_fault.c - failures of the machine at one chosen place, injected by
 * the fault option (PROCPOOL_FAULT builds, src/fault.h; every case is
 * skipped elsewhere):
 *   - epoll_ctl failing as a worker starts (pp__poller_add_proc), at the
 *     pool's creation and at a restart: no hang, the live worker is
 *     killed and reaped (issue 17 item 4);
 *   - every allocation and every platform call of pp_pool_create failing
 *     in turn, the I/O thread's included: a status, never an abort, and
 *     the next create works (items 5, 13);
 *   - apr_initialize and the blob table's lock failing once: not kept for
 *     the life of the process (item 13);
 *   - the parent out of memory for a call's result: that call fails with
 *     PP_ENOMEM saying so, and the worker is kept (item 16);
 *   - and, in every build (POSIX), a process out of descriptors: its
 *     pp_pool_create fails with PP_ESPAWN, a status its header lists, and
 *     works once descriptors are free again (item 16).
 * Each case runs in a child process (this program again) with the fault's
 * environment variables set and a time limit, so that a hang or an abort
 * fails the case instead of the test program.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#if defined(__unix__) || defined(__APPLE__)
#include <errno.h>
#include <fcntl.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>
#endif

#if defined(_WIN32)
#include <windows.h>
#endif

#include "helpers.h"
#include "internal.h"
#include "tasks.h"

static const char *self_exe;

/* ---- in the child ---- */

/* No descriptor left (every one up to a lowered RLIMIT_NOFILE is open):
 * pp_pool_create fails with PP_ESPAWN and the OS reason, and works again
 * once they are closed. */
static int emfile(void) {
#if defined(__unix__) || defined(__APPLE__)
  struct rlimit rl;
  static int fds[512];
  int n = 0, rc, i;
  pp_pool_options_t o;
  pp_pool_t *pool = NULL;
  if (getrlimit(RLIMIT_NOFILE, &rl) != 0)
    return 80;
  if (rl.rlim_max != RLIM_INFINITY && rl.rlim_max < 256)
    return 81;
  rl.rlim_cur = 256; /* room for the pool's up-front check */
  if (setrlimit(RLIMIT_NOFILE, &rl) != 0)
    return 82;
  while (n < 512 && (fds[n] = open("/dev/null", O_RDONLY)) >= 0)
    n++;
  if (n == 512 || errno != EMFILE)
    return 83;
  memset(&o, 0, sizeof(o));
  o.workers = 2;
  rc = pp_pool_create(&pool, &o);
  for (i = 0; i < n; i++)
    close(fds[i]);
  printf("with no descriptor left: %s: %s\n", pp_err_name(rc), pp_last_error());
  if (rc != PP_ESPAWN || strstr(pp_last_error(), "open files") == NULL)
    return 84;
  rc = pp_pool_create(&pool, &o);
  if (rc != 0)
    return 85;
  pp_pool_destroy(pool, PP_DESTROY_WAIT);
  printf("emfile: ok\n");
  return 0;
#else
  return 0;
#endif
}

#if defined(PP_FAULT)

/* Exits the child with `code` after saying why. */
static int child_fail(int code, const char *what) {
  printf("FAILED (%d): %s: %s\n", code, what, pp_last_error());
  fflush(stdout);
  return code;
}

/* 1 if no worker is left: none alive as our child, none unreaped. */
static int no_children(void) {
#if defined(__unix__) || defined(__APPLE__)
  int wstatus;
  pid_t r = waitpid(-1, &wstatus, WNOHANG);
  return r < 0 && errno == ECHILD;
#else
  return 1;
#endif
}

/* Runs `n` calls of "add" (i + i) and returns how many were right, or -1
 * if a call that failed has no PP_E* status and message, or one that said
 * OK has a wrong result. */
static int run_adds(pp_pool_t *pool, int n) {
  pp_buf_t args[64];
  pp_result_t res[64];
  int i, right = 0;
  if (n > 64)
    n = 64;
  for (i = 0; i < n; i++) {
    int rc = pp_pack(&args[i], "ii", (int64_t)i, (int64_t)i);
    if (rc != 0) {
      /* pp_pack allocates too: a fault may end here, cleanly. */
      pp_test_free_bufs(args, (size_t)i);
      return rc == PP_ENOMEM ? 0 : -1;
    }
  }
  pp_pool_starmap(pool, "add", args, (size_t)n, res, NULL);
  for (i = 0; i < n; i++) {
    if (res[i].status == 0 && pp_test_int_result(&res[i]) == 2 * i)
      right++;
    else if (res[i].status == 0 || res[i].status <= PP_ERRNO_MIN ||
             res[i].message == NULL || res[i].message[0] == '\0')
      right = -1000;
  }
  if (right < 0)
    right = -1;
  pp_results_free(res, (size_t)n);
  pp_test_free_bufs(args, (size_t)n);
  return right;
}

static pp_pool_t *make_logged(int workers, pp_log_cb log, int *rc) {
  pp_pool_options_t o;
  pp_pool_t *pool = NULL;
  memset(&o, 0, sizeof(o));
  o.workers = workers;
  o.log_cb = log;
  *rc = pp_pool_create(&pool, &o);
  return pool;
}

static pp_pool_t *make(int workers, int *rc) {
  return make_logged(workers, NULL, rc);
}

/* Counts the lines the pool logs and shows none. */
static size_t lines_logged;
static void count_lines(void *data, const pp_log_record_t *record) {
  (void)data;
  (void)record;
  lines_logged++;
}

/* epoll_ctl fails for every worker start (PROCPOOL_FAULT_SITE=
 * pp__poller_add_proc, TIMES=0): the create fails, says why, and leaves
 * no worker. */
static int add_proc_always(void) {
  int rc;
  pp_pool_t *pool = make(2, &rc);
  if (pool != NULL || rc >= 0)
    return child_fail(10, "pp_pool_create succeeded");
  if (strstr(pp_last_error(), "pp__poller_add_proc") == NULL)
    return child_fail(11, "the message does not name the failure");
  if (!no_children())
    return child_fail(12, "a worker was left");
  printf("add-proc-always: %s: %s\n", pp_err_name(rc), pp_last_error());
  return 0;
}

/* It fails once: the create retries that worker and succeeds. */
static int add_proc_once(void) {
  int rc;
  pp_pool_t *pool = make(2, &rc);
  if (pool == NULL)
    return child_fail(20, "pp_pool_create");
  if (run_adds(pool, 20) != 20)
    return child_fail(21, "calls");
  if (pp_pool_destroy(pool, PP_DESTROY_WAIT) != 0)
    return child_fail(22, "pp_pool_destroy");
  if (!no_children())
    return child_fail(23, "a worker was left");
  printf("add-proc-once: ok\n");
  return 0;
}

/* The first two starts work (PROCPOOL_FAULT_AT=3, TIMES=0); every restart
 * fails.  A worker killed from outside is restarted in vain, while its
 * pool goes on with the other and can be destroyed. */
static int add_proc_restart(void) {
  int64_t pids[2];
  int rc;
  pp_pool_t *pool = make(2, &rc);
  if (pool == NULL)
    return child_fail(30, "pp_pool_create");
  if (pp_pool_worker_pids(pool, pids, 2) != 2 || pp_test_kill(pids[0]) != 0)
    return child_fail(31, "killing a worker");
  if (!pp_test_wait_gone(pids, 1, 30000))
    return child_fail(32, "the killed worker is still there");
  /* Its restarts fail meanwhile (and back off); the other worker serves. */
  if (run_adds(pool, 40) != 40)
    return child_fail(33, "calls");
  pp_test_sleep_ms(500); /* a few more restarts fail */
  if (run_adds(pool, 40) != 40)
    return child_fail(34, "calls");
  if (pp_pool_destroy(pool, PP_DESTROY_WAIT) != 0)
    return child_fail(35, "pp_pool_destroy");
  if (!no_children())
    return child_fail(36, "a worker was left");
  printf("add-proc-restart: ok\n");
  return 0;
}

/* Sets PROCPOOL_FAULT_AT (0: count only) and starts counting anew. */
static void fault_at(unsigned n) {
  char v[32];
  snprintf(v, sizeof(v), "%u", n);
  pp_test_setenv("PROCPOOL_FAULT_AT", v);
  pp__fault_reset();
}

/* Fails the Nth fallible call (of the kind PROCPOOL_FAULT_SITE names) of
 * a pool's life, create, four calls, destroy, for N = 1, 2, ... until none
 * fires: a create either works or fails with a status and a sentence,
 * never aborts, and the next create works; calls end OK or with a status
 * and a message; no worker is left. */
static int create_walk(void) {
  unsigned n, fired = 0;
#if defined(__unix__) || defined(__APPLE__)
  /* stdin is a pipe of our own, which a failure path must not close (the
   * pool would put /dev/null in its place). */
  struct stat in0, now;
  int p[2];
  if (pipe(p) != 0 || dup2(p[0], 0) != 0 || fstat(0, &in0) != 0)
    return child_fail(47, "a pipe for stdin");
  close(p[0]);
#endif
  for (n = 1;; n++) {
    int rc, rc2;
    pp_pool_t *pool;
#if defined(__unix__) || defined(__APPLE__)
    if (fstat(0, &now) != 0 || now.st_dev != in0.st_dev ||
        now.st_ino != in0.st_ino) {
      printf("after fault %u:\n", n - 1);
      return child_fail(48, "stdin was closed");
    }
#endif
    fault_at(n); /* no thread of the library runs here */
    pool = make(1, &rc);
    if (pool == NULL) {
      if (rc >= 0 || rc <= PP_ERRNO_MIN || pp_last_error()[0] == '\0')
        return child_fail(40, "a failed pp_pool_create without a status");
      if (pp__fault_fired() == 0)
        return child_fail(41, "pp_pool_create failed with no fault");
      /* The one fault of this round has been injected. */
      pool = make(1, &rc2);
      if (pool == NULL) {
        printf("after fault %u (%s: %s):\n", n, pp_err_name(rc),
               pp_last_error());
        return child_fail(42, "the next pp_pool_create");
      }
    }
    if (run_adds(pool, 4) < 0)
      return child_fail(43, "calls");
    if (pp_pool_destroy(pool, PP_DESTROY_WAIT) != 0)
      return child_fail(44, "pp_pool_destroy");
    if (!no_children())
      return child_fail(45, "a worker was left");
    if (pp__fault_fired() == 0)
      break;
    fired++;
  }
  printf("create-walk: %u faults\n", fired);
  return fired > 0 ? 0 : child_fail(46, "no fault fired");
}

/* apr_initialize fails once (PROCPOOL_FAULT_SITE=apr_initialize): that
 * create fails, the next one works. */
static int apr_once(void) {
  int rc;
  pp_pool_t *pool = make(1, &rc);
  if (pool != NULL)
    return child_fail(50, "the first pp_pool_create worked");
  printf("first create: %s: %s\n", pp_err_name(rc), pp_last_error());
  pool = make(1, &rc);
  if (pool == NULL)
    return child_fail(51, "the second pp_pool_create");
  if (run_adds(pool, 4) != 4)
    return child_fail(52, "calls");
  pp_pool_destroy(pool, PP_DESTROY_WAIT);
  printf("apr-once: ok\n");
  return 0;
}

/* The blob table's lock (the first pp__mutex_new of the process) cannot
 * be made once: later shared memory is shared memory all the same. */
static int blob_once(void) {
  size_t len = 1 << 20;
  void *a = pp_shared_alloc(len), *b = pp_shared_alloc(len);
  pp__shm_t *shm;
  uint64_t offset;
  if (a == NULL || b == NULL)
    return child_fail(60, "pp_shared_alloc");
  if (pp__fault_fired() != 1)
    return child_fail(61, "the fault did not fire");
  if (!pp__blob_hold(b, len, &shm, &offset))
    return child_fail(62, "pp_shared_alloc after the fault gave memory "
                          "that is not shared");
  pp__blob_release(shm);
  pp_free(a);
  pp_free(b);
  printf("blob-once: ok\n");
  return 0;
}

/* The parent cannot allocate a result (PROCPOOL_FAULT_SITE=
 * pp__record_outcome, the copy of a result from the ring): that call
 * fails with PP_ENOMEM, saying the parent was out of memory, and its
 * worker serves the next calls. */
static int result_enomem(void) {
  int64_t before, after;
  pp_pool_stats_t st;
  pp_result_t res[1];
  pp_buf_t arg;
  int rc;
  pp_pool_t *pool = make(1, &rc);
  if (pool == NULL)
    return child_fail(70, "pp_pool_create");
  if (pp_pool_worker_pids(pool, &before, 1) != 1)
    return child_fail(71, "pp_pool_worker_pids");
  if (pp_pack(&arg, "ii", (int64_t)1, (int64_t)2) != 0)
    return child_fail(72, "pp_pack");
  /* The first result read (PROCPOOL_FAULT_AT=1) is this call's. */
  pp_pool_starmap(pool, "add", &arg, 1, res, NULL);
  printf("the call: %s: %s\n", pp_err_name(res[0].status),
         res[0].message ? res[0].message : "");
  if (res[0].status != PP_ENOMEM)
    return child_fail(73, "the call did not fail with PP_ENOMEM");
  if (res[0].message == NULL || strstr(res[0].message, "parent") == NULL)
    return child_fail(74, "the message does not say the parent ran out");
  pp_results_free(res, 1);
  pp_test_free_bufs(&arg, 1);
  if (run_adds(pool, 10) != 10)
    return child_fail(75, "calls after it");
  if (pp_pool_worker_pids(pool, &after, 1) != 1 || after != before)
    return child_fail(76, "the worker was replaced");
  pp_pool_stats(pool, &st);
  if (st.workers_started != 1 || st.workers_died != 0)
    return child_fail(77, "a worker died");
  pp_pool_destroy(pool, PP_DESTROY_WAIT);
  printf("result-enomem: ok\n");
  return 0;
}

/* Every allocation of the parent fails once the pool runs: a map still
 * ends, every call with PP_ENOMEM or its result, and the pool can be
 * destroyed.  (A call that could not be handed out for want of memory was
 * finished without waking its map.) */
static int alloc_exhausted(void) {
  pp_buf_t args[8];
  pp_result_t res[8];
  int rc, i, ok = 0;
  pp_pool_t *pool = make(1, &rc);
  if (pool == NULL)
    return child_fail(90, "pp_pool_create");
  memset(args, 0, sizeof(args));
  pp__fault_arm(1, 0);
  rc = pp_pool_map(pool, "init_get", args, 8, res, NULL);
  pp__fault_arm(0, 0);
  if (rc != 0 && rc != PP_ENOMEM)
    return child_fail(91, "the map's status");
  for (i = 0; i < 8; i++) {
    if (res[i].status == 0)
      ok++;
    else if (res[i].status != PP_ENOMEM)
      return child_fail(92, "a call's status");
  }
  printf("alloc-exhausted: map %s, %d of 8 OK\n", pp_err_name(rc), ok);
  pp_results_free(res, 8);
  if (pp_pool_destroy(pool, PP_DESTROY_WAIT) != 0)
    return child_fail(93, "pp_pool_destroy");
  if (!no_children())
    return child_fail(94, "a worker was left");
  return 0;
}

/* A worker cannot read its own output pipes (every read of them fails,
 * PROCPOOL_FAULT_IN=worker): a task that prints more than a pipe holds
 * would block for ever; the worker says why and exits instead, and the
 * call fails with PP_EWORKERDIED. */
static int output_unreadable(void) {
  pp_future_t *f = NULL;
  pp_result_t r;
  pp_buf_t arg;
  int rc;
  pp_pool_t *pool = make_logged(1, count_lines, &rc);
  if (pool == NULL)
    return child_fail(100, "pp_pool_create");
  if (pp_pack(&arg, "si", "x", (int64_t)20000) != 0 ||
      pp_pool_submit(pool, "spam", arg.data, arg.len, NULL, &f) != 0 ||
      pp_future_wait(f, -1) != 0 || pp_future_take(f, &r) != 0)
    return child_fail(101, "the call");
  printf("the call: %s (exit code %d): %s; %zu lines logged\n",
         pp_err_name(r.status), r.exit_code, r.message ? r.message : "",
         lines_logged);
  if (r.status != PP_EWORKERDIED || r.exit_code != 70)
    return child_fail(102, "the call did not fail with PP_EWORKERDIED");
  pp_results_free(&r, 1);
  pp_future_free(f);
  pp_test_free_bufs(&arg, 1);
  pp_pool_destroy(pool, PP_DESTROY_CANCEL);
  printf("output-unreadable: ok\n");
  return 0;
}

/* No worker can map a large argument (PROCPOOL_FAULT_IN=worker, every
 * pp__shm_recv fails): the call that brings one fails, instead of going
 * from worker to worker, each dying on it, for ever; small calls still
 * run. */
static int blob_unmappable(void) {
  size_t len = 300 * 1024;
  unsigned char *big = malloc(len);
  pp_future_t *f = NULL;
  pp_result_t r;
  int rc;
  pp_pool_t *pool = make(2, &rc);
  if (pool == NULL || big == NULL)
    return child_fail(110, "pp_pool_create");
  pp_test_fill(big, len, PP_TEST_SEED_IN);
  if (pp_pool_submit(pool, "big", big, len, NULL, &f) != 0 ||
      pp_future_wait(f, -1) != 0 || pp_future_take(f, &r) != 0)
    return child_fail(111, "the call");
  printf("the call: %s: %s\n", pp_err_name(r.status),
         r.message ? r.message : "");
  if (r.status != PP_EWORKERDIED)
    return child_fail(112, "the call did not fail with PP_EWORKERDIED");
  pp_results_free(&r, 1);
  pp_future_free(f);
  free(big);
  if (run_adds(pool, 20) != 20)
    return child_fail(113, "small calls");
  pp_pool_destroy(pool, PP_DESTROY_WAIT);
  printf("blob-unmappable: ok\n");
  return 0;
}

/* A worker has no memory for a task's error message (every
 * pp__strdup_printf fails there): the call still fails with a sentence. */
static int empty_message(void) {
  pp_result_t r[1];
  pp_buf_t arg = {"boom", 4};
  int rc;
  pp_pool_t *pool = make(1, &rc);
  if (pool == NULL)
    return child_fail(120, "pp_pool_create");
  pp_pool_map(pool, "fail", &arg, 1, r, NULL);
  printf("the call: %s: '%s'\n", pp_err_name(r[0].status),
         r[0].message ? r[0].message : "(null)");
  if (r[0].status != PP_ETASK || r[0].message == NULL ||
      r[0].message[0] == '\0')
    return child_fail(121, "a failed call without a message");
  pp_results_free(r, 1);
  pp_pool_destroy(pool, PP_DESTROY_WAIT);
  printf("empty-message: ok\n");
  return 0;
}

#if defined(_WIN32)
/* Counts the lines the pool logs about its job object, and prints them. */
static volatile long job_lines;
static void count_job_lines(void *data, const pp_log_record_t *record) {
  (void)data;
  if (strstr(record->line, "job object") != NULL) {
    job_lines++;
    printf("logged: %s\n", record->line);
  }
}

/* 1 if every worker of `pool` is in a job (in ours: this process is in
 * none, which the caller checks), 0 if none is, -1 otherwise. */
static int workers_in_job(pp_pool_t *pool, int workers) {
  int64_t pids[8];
  int i, n = pp_pool_worker_pids(pool, pids, 8), in = 0;
  for (i = 0; i < n && i < workers; i++) {
    HANDLE h = OpenProcess(PROCESS_QUERY_INFORMATION, FALSE, (DWORD)pids[i]);
    BOOL yes = FALSE;
    if (h == NULL || !IsProcessInJob(h, NULL, &yes))
      yes = 2;
    if (h != NULL)
      CloseHandle(h);
    if (yes == 2)
      return -1;
    in += yes != FALSE;
  }
  return n != workers ? -1 : in == workers ? 1 : in == 0 ? 0 : -1;
}

/* Windows: the system refuses the pool's job object in every way
 * (PROCPOOL_FAULT_SITE=pp__win_job, TIMES=0: the job list, the
 * assignment, the assignment after a breakaway).  The workers run outside
 * it, their calls run, and one line says so, for the process' first pool
 * only. */
static int job_refused(void) {
  BOOL self_in = FALSE;
  int rc, pass;
  IsProcessInJob(GetCurrentProcess(), NULL, &self_in);
  for (pass = 0; pass < 2; pass++) {
    pp_pool_t *pool = make_logged(2, count_job_lines, &rc);
    if (pool == NULL)
      return child_fail(130, "pp_pool_create");
    if (run_adds(pool, 20) != 20)
      return child_fail(131, "calls");
    if (!self_in && workers_in_job(pool, 2) != 0)
      return child_fail(132, "a worker is in a job");
    if (pp_pool_destroy(pool, PP_DESTROY_WAIT) != 0)
      return child_fail(133, "pp_pool_destroy");
    printf("pool %d: %ld line(s) about the job\n", pass + 1, job_lines);
    if (job_lines != 1)
      return child_fail(134, "not one line about the job object");
  }
  printf("job-refused: ok\n");
  return 0;
}

/* Only the job list is refused (TIMES=1): the workers are put into the
 * job after their creation, as before Windows 10, and nothing is logged. */
static int job_list_refused(void) {
  BOOL self_in = FALSE;
  int rc;
  pp_pool_t *pool = make_logged(2, count_job_lines, &rc);
  IsProcessInJob(GetCurrentProcess(), NULL, &self_in);
  if (pool == NULL)
    return child_fail(140, "pp_pool_create");
  if (run_adds(pool, 20) != 20)
    return child_fail(141, "calls");
  if (pp__fault_fired() != 1)
    return child_fail(142, "the fault did not fire once");
  if (workers_in_job(pool, 2) != 1)
    return child_fail(143, "a worker is not in the job");
  if (pp_pool_destroy(pool, PP_DESTROY_WAIT) != 0)
    return child_fail(144, "pp_pool_destroy");
  if (job_lines != 0)
    return child_fail(145, "a line about the job object");
  printf("job-list-refused: ok\n");
  return 0;
}
#else
static int job_refused(void) {
  return 0;
}
static int job_list_refused(void) {
  return 0;
}
#endif

#endif /* PP_FAULT */

/* ---- the tests ---- */

#if defined(PP_FAULT)
#define CHILD(f) f
#else
#define CHILD(f) NULL
#endif

/* The cases: a name, the child's scenario and what it runs, and the
 * fault's variables (`in` NULL: no fault, the case runs in every build). */
typedef struct fault_case_s {
  const char *name, *scenario;
  int (*run)(void);
  const char *in, *site, *at, *times;
} fault_case_t;

static const fault_case_t cases[] = {
    {"epoll_ctl fails at every worker start", "--add-proc-always",
     CHILD(add_proc_always), "parent", "pp__poller_add_proc", "1", "0"},
    {"epoll_ctl fails once at create", "--add-proc-once", CHILD(add_proc_once),
     "parent", "pp__poller_add_proc", "1", "1"},
    {"epoll_ctl fails at every restart", "--add-proc-restart",
     CHILD(add_proc_restart), "parent", "pp__poller_add_proc", "3", "0"},
    {"every allocation of a pool's life", "--create-walk", CHILD(create_walk),
     "parent", "alloc", NULL, NULL},
    {"every platform call of a pool's life", "--create-walk",
     CHILD(create_walk), "parent", "os", NULL, NULL},
    {"apr_initialize fails once", "--apr-once", CHILD(apr_once), "parent",
     "apr_initialize", "1", "1"},
    {"the blob table's lock fails once", "--blob-once", CHILD(blob_once),
     "parent", "pp__mutex_new", "1", "1"},
    {"the parent is out of memory for a result", "--result-enomem",
     CHILD(result_enomem), "parent", "pp__record_outcome", "1", "1"},
    {"the parent runs out of memory while a map runs", "--alloc-exhausted",
     CHILD(alloc_exhausted), "parent", "alloc", "0", "0"},
    {"a worker cannot read its own output", "--output-unreadable",
     CHILD(output_unreadable), "worker", "pp__chan_read_some", "1", "0"},
    {"no worker can map an argument", "--blob-unmappable",
     CHILD(blob_unmappable), "worker", "pp__shm_recv", "1", "0"},
    {"a worker has no memory for a message", "--empty-message",
     CHILD(empty_message), "worker", "pp__strdup_printf", "1", "0"},
    {"out of descriptors is PP_ESPAWN", "--emfile", emfile, NULL, NULL, NULL,
     NULL},
    /* Windows only (the scenarios that begin "--win-"). */
    {"the job object is refused every way", "--win-job-refused",
     CHILD(job_refused), "parent", "pp__win_job", "1", "0"},
    {"the job list is refused", "--win-job-list-refused",
     CHILD(job_list_refused), "parent", "pp__win_job", "1", "1"},
};
#define NCASES (sizeof(cases) / sizeof(cases[0]))

/* Runs this program as `<self> <scenario>` with the case's fault variables
 * set (and unset after), within a time limit, and checks that it exits 0:
 * a hang or an abort fails the case, not the test program. */
static void run_case(void **state) {
  const fault_case_t *c = *state;
  char out[4096];
  int code;
#if defined(_WIN32)
  if (c->in == NULL) {
    print_message("skipped: Windows has no descriptor limit\n");
    skip();
  }
#else
  if (strncmp(c->scenario, "--win-", 6) == 0) {
    print_message("skipped: Windows' job object\n");
    skip();
  }
#endif
  if (c->in != NULL && c->run == NULL) {
    print_message("skipped: procpool was built without PROCPOOL_FAULT\n");
    skip();
  }
  if (c->in != NULL) {
    pp_test_setenv("PROCPOOL_FAULT_IN", c->in);
    pp_test_setenv("PROCPOOL_FAULT_SITE", c->site);
    pp_test_setenv("PROCPOOL_FAULT_AT", c->at);
    pp_test_setenv("PROCPOOL_FAULT_TIMES", c->times);
  }
  code = pp_test_run_limit(self_exe, c->scenario, 60000 * PP_TEST_TIME_SCALE,
                           out, sizeof(out));
  pp_test_setenv("PROCPOOL_FAULT_IN", NULL);
  pp_test_setenv("PROCPOOL_FAULT_SITE", NULL);
  pp_test_setenv("PROCPOOL_FAULT_AT", NULL);
  pp_test_setenv("PROCPOOL_FAULT_TIMES", NULL);
  print_message("%s (in %s, site %s, at %s, times %s): exit %d%s\n%s",
                c->scenario, c->in ? c->in : "-", c->site ? c->site : "any",
                c->at ? c->at : "-", c->times ? c->times : "1", code,
                code == -2 ? " (did not end in time: a hang)" : "", out);
  assert_int_equal(code, 0);
}

int main(int argc, char **argv) {
  struct CMUnitTest tests[NCASES];
  size_t i;
  int rc;
  if (pp_worker_main(argc, argv, pp_test_tasks, &rc))
    return rc;
  self_exe = argv[0];
  for (i = 0; argc > 1 && i < NCASES; i++)
    if (strcmp(argv[1], cases[i].scenario) == 0)
      return cases[i].run != NULL ? cases[i].run() : 2;
  if (argc > 1)
    return 2;
  memset(tests, 0, sizeof(tests));
  for (i = 0; i < NCASES; i++) {
    tests[i].name = cases[i].name;
    tests[i].test_func = run_case;
    tests[i].initial_state = (void *)&cases[i];
  }
  return cmocka_run_group_tests(tests, NULL, NULL);
}
