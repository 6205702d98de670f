/*
 * fault_run.c - the program ci/fault.sh runs once per injected fault, in a
 * build with PROCPOOL_FAULT (src/fault.h; the environment variables
 * PROCPOOL_FAULT_* choose the fault).  It is also its own worker.
 *
 * One run does what an application does with a pool: create it (with an
 * initializer), a starmap, a map that reads what the initializer left, a
 * future with a large argument and result (over 256 KiB, so both travel as
 * blobs) and a completion callback, an imap, a call that runs past its
 * timeout and one that is cancelled while it runs (each kills its worker,
 * which is replaced), and a destroy.  It checks the failure contract on
 * every outcome:
 *   - a call that says OK has the right result;
 *   - a failure is a known PP_E* status with a message;
 *   - a pool whose creation failed to a fault injected once in this
 *     process can be created at the next try (nothing failed is cached);
 *   - after the destroy no worker is left (alive or unreaped) and no
 *     descriptor is left open;
 *   - the completion callback ran once if it was registered.
 * The bound on its time and the check for leaks are ci/fault.sh's
 * (timeout, AddressSanitizer).  Exits 0 if the contract held, 1 if not
 * (with why on stderr), and prints one line "fault-run: ..." with what it
 * saw.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#if defined(__unix__) || defined(__APPLE__)
#include <errno.h>
#include <sys/wait.h>
#endif

#include "fault.h"
#include "helpers.h"
#include "procpool.h"
#include "tasks.h"

/* The large future's argument: over PP__SPARE_MIN (256 KiB), a blob. */
#define BIG_LEN (300 * 1024)
#define STARMAP_N 48
#define INIT_N 16
#define IMAP_N 300
#define INIT_VALUE 7

static int broken;        /* the contract did not hold */
static int persistent;    /* faults fail every call from the Nth on */
static char seen[2048];   /* "what:status ..." for the summary line */
static int callback_runs; /* the completion callback's count */

static void note(const char *what, int status) {
  size_t used = strlen(seen);
  snprintf(seen + used, sizeof(seen) - used, "%s%s:%s", used ? " " : "", what,
           pp_err_name(status));
}

static void violated(const char *fmt, const char *a, long long b) {
  fprintf(stderr, "fault-run: CONTRACT BROKEN: ");
  fprintf(stderr, fmt, a, b);
  fprintf(stderr, "\n");
  broken = 1;
}

/* A failure must be a status of the list... */
static int check_status(const char *what, int status) {
  if (status >= 0 || status <= PP_ERRNO_MIN ||
      strcmp(pp_err_name(status), "PP_UNKNOWN") == 0) {
    violated("%s: status %lld is no PP_E* code", what, status);
    return 0;
  }
  return 1;
}

/* ... with a sentence. */
static void check_failure(const char *what, int status, const char *message) {
  /* A failure may lack its sentence while memory stays short (the header
   * allows it), which only a persistent fault makes. */
  if (check_status(what, status) && (message == NULL || message[0] == '\0') &&
      !persistent)
    violated("%s: status %lld without a message", what, status);
}

/* Checks one call's outcome: an int64 result `want`, or a clean failure.
 * Returns the status. */
static int check_int(const char *what, const pp_result_t *r, int64_t want) {
  if (r->status == 0) {
    int64_t got = pp_test_int_result(r);
    if (got != want)
      violated("%s: OK with a wrong result %lld", what, (long long)got);
  } else {
    check_failure(what, r->status, r->message);
  }
  return r->status;
}

/* Counts the statuses of a map's calls into the summary (OK and the
 * first failure's name). */
static void note_calls(const char *what, const pp_result_t *r, size_t n) {
  size_t i, ok = 0;
  int first_failure = 0;
  char label[64];
  for (i = 0; i < n; i++) {
    if (r[i].status == 0)
      ok++;
    else if (first_failure == 0)
      first_failure = r[i].status;
  }
  snprintf(label, sizeof(label), "%s[%zu/%zu]", what, ok, n);
  note(label, first_failure);
}

static pp_pool_t *make_pool(int *status) {
  pp_pool_options_t o;
  unsigned char init[64];
  pp_buf_t b;
  memset(&o, 0, sizeof(o));
  /* pp_pack allocates through the library, so it may fail here too. */
  *status = pp_pack(&b, "i", (int64_t)INIT_VALUE);
  if (*status != 0) {
    check_failure("pp_pack", *status, pp_last_error());
    return NULL;
  }
  if (b.len > sizeof(init)) {
    fprintf(stderr, "fault-run: a tuple of %zu bytes\n", b.len);
    exit(2);
  }
  memcpy(init, b.data, b.len);
  o.init_arg_len = b.len;
  pp_free((void *)b.data);
  o.workers = 2;
  o.cancel_grace_ms = 20; /* a cancelled call's worker goes soon */
  o.initializer = "init_set";
  o.init_arg = init;
  {
    pp_pool_t *pool = NULL;
    *status = pp_pool_create(&pool, &o);
    if (*status != 0) {
      check_failure("pp_pool_create", *status, pp_last_error());
      fprintf(stderr, "fault-run: pp_pool_create: %s: %s\n",
              pp_err_name(*status), pp_last_error());
    }
    return pool;
  }
}

static void run_starmap(pp_pool_t *pool) {
  pp_buf_t *tuples = calloc(STARMAP_N, sizeof(*tuples));
  pp_result_t *results = calloc(STARMAP_N, sizeof(*results));
  size_t i;
  int rc;
  if (tuples == NULL || results == NULL) {
    fprintf(stderr, "fault-run: out of memory\n");
    exit(2);
  }
  for (i = 0; i < STARMAP_N; i++) {
    rc = pp_pack(&tuples[i], "ii", (int64_t)i, (int64_t)(2 * i));
    if (rc != 0) {
      check_failure("pp_pack", rc, pp_last_error());
      note("starmap-pack", rc);
      pp_test_free_bufs(tuples, i);
      free(results);
      free(tuples);
      return;
    }
  }
  rc = pp_pool_starmap(pool, "add", tuples, STARMAP_N, results, NULL);
  if (rc != 0)
    check_status("pp_pool_starmap", rc);
  for (i = 0; i < STARMAP_N && rc != PP_EINVAL && rc != PP_ENOTASK; i++)
    check_int("starmap call", &results[i], (int64_t)(3 * i));
  note_calls("starmap", results, STARMAP_N);
  pp_results_free(results, STARMAP_N);
  pp_test_free_bufs(tuples, STARMAP_N);
  free(results);
  free(tuples);
}

/* Every worker that serves calls has run the initializer. */
static void run_init_map(pp_pool_t *pool) {
  pp_buf_t args[INIT_N];
  pp_result_t results[INIT_N];
  size_t i;
  int rc;
  memset(args, 0, sizeof(args));
  memset(results, 0, sizeof(results));
  rc = pp_pool_map(pool, "init_get", args, INIT_N, results, NULL);
  if (rc != 0)
    check_status("pp_pool_map", rc);
  for (i = 0; i < INIT_N; i++)
    check_int("a call after the initializer", &results[i], INIT_VALUE);
  note_calls("init", results, INIT_N);
  pp_results_free(results, INIT_N);
}

static void on_done(void *data, pp_future_t *future) {
  (void)data;
  (void)future;
  callback_runs++;
}

/* Returns 1 if the completion callback was registered. */
static int run_future(pp_pool_t *pool) {
  unsigned char *arg = malloc(BIG_LEN);
  pp_future_t *future = NULL;
  pp_result_t r;
  int rc, registered = 0;
  if (arg == NULL) {
    fprintf(stderr, "fault-run: out of memory\n");
    exit(2);
  }
  pp_test_fill(arg, BIG_LEN, PP_TEST_SEED_IN);
  rc = pp_pool_submit(pool, "big", arg, BIG_LEN, NULL, &future);
  if (rc != 0) {
    check_failure("pp_pool_submit", rc, pp_last_error());
    note("future", rc);
    free(arg);
    return 0;
  }
  rc = pp_future_on_done(future, on_done, NULL);
  if (rc == 0)
    registered = 1;
  else
    check_failure("pp_future_on_done", rc, pp_last_error());
  rc = pp_future_wait(future, -1);
  if (rc != 0)
    check_failure("pp_future_wait", rc, pp_last_error());
  memset(&r, 0, sizeof(r));
  rc = pp_future_take(future, &r);
  if (rc != 0) {
    check_failure("pp_future_take", rc, pp_last_error());
  } else if (r.status == 0) {
    if (r.len != BIG_LEN)
      violated("%s: OK with %lld bytes", "the large future", (long long)r.len);
    else if (pp_test_check(r.data, r.len, PP_TEST_SEED_OUT) != r.len)
      violated("%s: OK with wrong bytes at %lld", "the large future",
               (long long)pp_test_check(r.data, r.len, PP_TEST_SEED_OUT));
  } else {
    check_failure("the large future", r.status, r.message);
  }
  note("future", rc != 0 ? rc : r.status);
  pp_results_free(&r, 1);
  pp_future_free(future);
  free(arg);
  return registered;
}

typedef struct imap_state_s {
  size_t next;
  unsigned char buf[64];
  size_t ok, failed;
  int first_failure;
} imap_state_t;

/* Argument i is i % 64 bytes, which task "length" counts: no packing,
 * whose allocations would only make the walk longer. */
static int imap_producer(void *data, pp_next_arg_t *next) {
  imap_state_t *st = data;
  if (st->next == IMAP_N)
    return 0;
  memset(st->buf, 'x', sizeof(st->buf));
  next->arg.data = st->buf;
  next->arg.len = st->next++ % sizeof(st->buf);
  return 1;
}

static int imap_result(void *data, size_t index, pp_result_t *r) {
  imap_state_t *st = data;
  if (check_int("imap call", r, (int64_t)(index % sizeof(st->buf))) == 0) {
    st->ok++;
  } else {
    st->failed++;
    if (st->first_failure == 0)
      st->first_failure = r->status;
  }
  pp_results_free(r, 1);
  return 0;
}

static void run_imap(pp_pool_t *pool) {
  imap_state_t st;
  pp_map_options_t o;
  char label[64];
  int rc;
  memset(&st, 0, sizeof(st));
  memset(&o, 0, sizeof(o));
  o.max_in_flight = 64; /* several batches of arguments */
  rc = pp_pool_imap(pool, "length", imap_producer, &st, imap_result, &st, &o);
  if (rc != 0)
    check_status("pp_pool_imap", rc);
  snprintf(label, sizeof(label), "imap[%zu/%zu]", st.ok, st.ok + st.failed);
  note(label, rc != 0 ? rc : st.first_failure);
}

/* A call that sleeps 10 s, with a timeout of 30 ms (`cancel` 0) or
 * cancelled (1): it must fail, never report OK, and its worker is killed
 * and replaced. */
static void run_stopped_call(pp_pool_t *pool, int cancel) {
  const char *what = cancel ? "cancelled call" : "timed-out call";
  pp_call_options_t co;
  pp_future_t *f = NULL;
  pp_result_t r;
  pp_buf_t arg;
  int rc = pp_pack(&arg, "i", (int64_t)10000);
  if (rc != 0) {
    check_failure("pp_pack", rc, pp_last_error());
    note(cancel ? "cancel" : "timeout", rc);
    return;
  }
  memset(&co, 0, sizeof(co));
  co.timeout_ms = cancel ? 0 : 30;
  rc = pp_pool_submit(pool, "sleep_ms", arg.data, arg.len, &co, &f);
  if (rc != 0) {
    check_failure("pp_pool_submit", rc, pp_last_error());
    note(cancel ? "cancel" : "timeout", rc);
    pp_free((void *)arg.data);
    return;
  }
  if (cancel) {
    pp_future_wait(f, 30); /* let it start, most of the time */
    rc = pp_future_cancel(f);
    if (rc != 0)
      check_failure("pp_future_cancel", rc, pp_last_error());
  }
  memset(&r, 0, sizeof(r));
  rc = pp_future_wait(f, -1);
  if (rc == 0)
    rc = pp_future_take(f, &r);
  if (rc != 0)
    violated("%s: the future could not be waited for (%lld)", what, rc);
  else if (r.status == 0)
    violated("%s: OK (%lld) though it was stopped", what, 0);
  else
    check_failure(what, r.status, r.message);
  note(cancel ? "cancel" : "timeout", r.status);
  pp_results_free(&r, 1);
  pp_future_free(f);
  pp_free((void *)arg.data);
}

/* No worker may be left: alive (still our child) or ended and unreaped. */
static void check_no_children(void) {
#if defined(__unix__) || defined(__APPLE__)
  int wstatus;
  pid_t r = waitpid(-1, &wstatus, WNOHANG);
  if (r == 0)
    violated("%s%lld",
             "a worker process is still running after the "
             "pool's end",
             0);
  else if (r > 0)
    violated("%s (pid %lld)",
             "a worker was left unreaped after the pool's "
             "end",
             (long long)r);
  else if (errno != ECHILD)
    violated("%s: errno %lld", "waitpid", (long long)errno);
#endif
}

int main(int argc, char **argv) {
  pp_pool_t *pool;
  int rc, status, registered = 0, fds_before, fds_after;
  const char *in = getenv("PROCPOOL_FAULT_IN");
  const char *times = getenv("PROCPOOL_FAULT_TIMES");

  if (pp_worker_main(argc, argv, pp_test_tasks, &rc))
    return rc;
  persistent = times != NULL && strcmp(times, "1") != 0;
  fds_before = pp_test_fd_count();
  pool = make_pool(&status);
  note("create", status);
  if (pool == NULL && pp__fault_fired() > 0 &&
      (in == NULL || strcmp(in, "parent") == 0) &&
      (times == NULL || strcmp(times, "1") == 0)) {
    /* The one fault of this run has happened: nothing of it may stick. */
    pool = make_pool(&status);
    note("create-again", status);
    if (pool == NULL)
      violated("%s (%lld)",
               "a second pp_pool_create failed after a "
               "fault injected once in the first",
               (long long)status);
  }
  if (pool != NULL) {
    run_starmap(pool);
    run_init_map(pool);
    registered = run_future(pool);
    run_imap(pool);
    run_stopped_call(pool, 0);
    run_stopped_call(pool, 1);
    rc = pp_pool_destroy(pool, PP_DESTROY_WAIT);
    if (rc != 0)
      violated("%s: %lld", "pp_pool_destroy", (long long)rc);
    if (callback_runs != registered)
      violated("%s %lld time(s)", "the completion callback ran",
               (long long)callback_runs);
  }
  check_no_children();
  fds_after = pp_test_fd_count();
  if (fds_before >= 0 && fds_after != fds_before)
    violated("%s %lld", "descriptors left open after the pool's end:",
             (long long)fds_after - fds_before);
  pp__fault_report();
  printf("fault-run: %s; %u fallible calls in the parent, %u injected; %s\n",
         broken ? "BROKEN" : "ok", pp__fault_count(), pp__fault_fired(), seen);
  return broken ? 1 : 0;
}
