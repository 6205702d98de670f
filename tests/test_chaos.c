/*
 * test_chaos.c - the failure contract under a storm (label `chaos`): while
 * a thread of the test kills and stops random workers of a 4-worker pool,
 * the test runs calls of 1-3 ms through every way in: maps, starmaps,
 * unordered maps, futures with and without completion callbacks, async
 * maps and imap (ordered and not), with per-call timeouts of 2-5 ms, close
 * to the calls' own length, and with cancels of futures and maps.
 *
 * Every call adds 1 to a counter of its own, in a file that the test and
 * every worker map (the "chaos" task, tasks_chaos.c), before it does
 * anything else; so the test knows how often each call really started,
 * whatever the pool reported.  The calls and the checks of their outcomes
 * are in chaos_calls.c, the storm in helpers_chaos.c.  The contract:
 *
 *   - every call got exactly one outcome;
 *   - a call that reports PP_OK started exactly once, with its own value;
 *   - a call that failed started at most once, and failed for a reason
 *     the storm can give: PP_EWORKERDIED (killed by SIGKILL), PP_ETIMEDOUT
 *     (only a call with a timeout), PP_ECANCELED (only a call that was
 *     cancelled, or whose map was stopped), each with a message that says
 *     so;
 *   - a map returns the status of its first failed call;
 *   - after the storm the pool still serves, and pp_pool_destroy() leaves
 *     no child process behind and no descriptor open.
 *
 * The storm picks its targets from pp_pool_worker_pids() and, where the
 * system lists them, from all children of this process, which includes
 * workers that are still starting; every few seconds it kills every worker
 * as soon as it appears, for a while (a kill storm against starting
 * workers).  Stops last 1-15 ms, then the worker is continued; Windows has
 * no stop, so there the storm only kills (TerminateProcess).  Signals go
 * through pp_test_signal_child(), which never hits a pid that another
 * program got in the meantime.
 *
 * The test is seeded: PROCPOOL_CHAOS_SEED replays the storm's choices and
 * the calls (not the schedule).  PROCPOOL_CHAOS_CALLS sets the number of
 * calls (slow legs run fewer), PROCPOOL_CHAOS_SECONDS the most time the
 * storm may take (the work then stops early and says so);
 * PROCPOOL_CHAOS_BURSTS=0 leaves out the bursts (to look at the rest
 * alone).  It prints the seed first, and at the end the counts: calls,
 * kills, stops, outcomes by status, and every kind of breach of the
 * contract it found, with its first two cases.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include <apr_general.h>
#include <apr_thread_mutex.h>
#include <apr_time.h>

#include "chaos.h"
#include "helpers.h"
#include "tasks.h"

#define DEFAULT_CALLS 30000
#define DEFAULT_SECONDS 45
#define WORKERS 4
#define CLEAN_CALLS 200
#define MAX_FDS 1024
#define MAX_PIDS 256

static int64_t env_int(const char *name, int64_t fallback) {
  const char *v = getenv(name);
  long long n = v != NULL ? strtoll(v, NULL, 0) : 0;
  return n > 0 ? (int64_t)n : fallback;
}

/* ---- the test ---- */

static int fd_set_now(uint64_t *vals) {
  static int fds[MAX_FDS];
  int n = pp_test_fd_list(0, fds, MAX_FDS), i;
  if (n < 0)
    return pp_test_handle_list(vals, MAX_FDS);
  for (i = 0; i < n && i < MAX_FDS; i++)
    vals[i] = (uint64_t)fds[i];
  return n;
}

/* After the storm, every call's starts against its outcome. */
static void check_starts(chaos_t *ch, size_t *unstarted) {
  size_t k;
  for (k = 0; k < ch->used; k++) {
    call_t *c = &ch->calls[k];
    const char *api = chaos_api_names[c->api];
    unsigned s = (unsigned)pp_test_counter_get(&ch->starts[k]);
    *unstarted += s == 0;
    if (c->unmade && (s > 0 || c->seen > 0))
      chaos_note(ch, V_UNMADE,
                 "call %zu (%s) was never read: %u starts, %u "
                 "outcomes",
                 k, api, s, (unsigned)c->seen);
    else if (c->unmade)
      continue;
    else if (c->seen == 0)
      chaos_note(ch, V_NONE, "call %zu (%s) got no outcome (%u starts)", k, api,
                 s);
    else if (c->status == PP_OK && s != 1)
      chaos_note(ch, s > 1 ? V_RERUN_OK : V_PHANTOM,
                 "call %zu (%s) reported PP_OK and started %u times", k, api,
                 s);
    else if (c->status != PP_OK && s > 1)
      chaos_note(ch, V_RERUN_FAIL,
                 "call %zu (%s) reported %s and started %u times", k, api,
                 pp_err_name(c->status), s);
  }
}

static void print_line(const char *fmt, ...) PP_PRINTF(1, 2);
static void print_line(const char *fmt, ...) {
  char line[1024];
  va_list ap;
  /* CMocka's print functions check formats as Microsoft's printf under
   * mingw, which has no %zu; the C99 vsnprintf of the tests has. */
  va_start(ap, fmt);
  vsnprintf(line, sizeof(line), fmt, ap);
  va_end(ap);
  print_message("chaos: %s\n", line);
}

static void print_summary(chaos_t *ch, const pp_test_storm_stats_t *ss,
                          size_t unstarted) {
  char line[1024];
  size_t used;
  int s;
  print_line("storm: %zu kills, %zu stops%s, %zu bursts that killed every "
             "worker as it started (%zu kills)",
             ss->kills, ss->stops, ss->can_stop ? "" : " (none here)",
             ss->bursts, ss->burst_kills);
  used = (size_t)snprintf(line, sizeof(line), "calls by way:");
  for (s = 0; s < A_COUNT && used < sizeof(line); s++)
    used += (size_t)snprintf(line + used, sizeof(line) - used, " %s %zu",
                             chaos_api_names[s], ch->by_api[s]);
  print_line("%s", line);
  used = (size_t)snprintf(line, sizeof(line), "outcomes:");
  for (s = 0; s > PP_ERRNO_MIN && used < sizeof(line); s--)
    if (ch->by_status[-s] > 0)
      used += (size_t)snprintf(line + used, sizeof(line) - used, " %s %zu",
                               pp_err_name(s), ch->by_status[-s]);
  print_line("%s; %zu calls never started", line, unstarted);
  print_line("%zu breaches of the contract", ch->violations);
  for (s = 0; s < V_COUNT; s++) {
    size_t i;
    if (ch->v_count[s] == 0)
      continue;
    print_line("  %zu x %s, e.g.", ch->v_count[s], chaos_v_names[s]);
    for (i = 0; i < ch->v_count[s] && i < 2; i++)
      print_line("    %s", ch->v_first[s][i]);
  }
}

static void test_chaos_storm(void **state) {
  static uint64_t before[MAX_FDS], after[MAX_FDS];
  static chaos_t ch;
  pp_test_storm_stats_t ss;
  pp_test_storm_t *storm;
  pp_pool_options_t o;
  pp_pool_t *pool = NULL;
  apr_pool_t *mem = NULL;
  int64_t pids[MAX_PIDS], kids[MAX_PIDS], seconds;
  uint64_t seed;
  apr_time_t t0, deadline;
  size_t unstarted = 0, i;
  int nb, na, npids, nkids;
  (void)state;

  memset(&ch, 0, sizeof(ch));
  seed = (uint64_t)env_int("PROCPOOL_CHAOS_SEED",
                           (int64_t)(((uint64_t)apr_time_now() ^
                                      ((uint64_t)pp_test_self_pid() << 40)) &
                                     INT64_MAX));
  ch.n = (size_t)env_int("PROCPOOL_CHAOS_CALLS", DEFAULT_CALLS) + CLEAN_CALLS;
  seconds = env_int("PROCPOOL_CHAOS_SECONDS", DEFAULT_SECONDS);
  print_line("seed 0x%llx (PROCPOOL_CHAOS_SEED), %zu calls, at most %lld s "
             "of storm, %d workers",
             (unsigned long long)seed, ch.n - CLEAN_CALLS, (long long)seconds,
             WORKERS);
  ch.rng = seed;

  assert_int_equal(apr_initialize(), APR_SUCCESS);
  assert_int_equal(apr_pool_create(&mem, NULL), APR_SUCCESS);
  assert_int_equal(
      apr_thread_mutex_create(&ch.lock, APR_THREAD_MUTEX_DEFAULT, mem),
      APR_SUCCESS);
  ch.calls = calloc(ch.n, sizeof(*ch.calls));
  assert_non_null(ch.calls);
  assert_int_equal(pp_test_getcwd(ch.path, sizeof(ch.path) - 64), 0);
  snprintf(ch.path + strlen(ch.path), 64, "/pp-chaos-%lld.bin",
           (long long)pp_test_self_pid());
  ch.starts = pp_test_counters_map(ch.path, ch.n, 1);
  assert_non_null(ch.starts);

  /* One pool first, so that what the first pool of a process sets up for
   * good is in both descriptor sets. */
  pp_test_pool_options(&o, 1, 0, 0, NULL);
  PP_TEST_OK(pp_pool_create(&pool, &o));
  assert_int_equal(pp_pool_destroy(pool, PP_DESTROY_WAIT), 0);
  nb = fd_set_now(before);
  assert_true(nb <= MAX_FDS);

  /* A grace of 3 ms, so that cancels of running calls end in kills too. */
  pp_test_pool_options(&o, WORKERS, 0, 3, NULL);
  PP_TEST_OK(pp_pool_create(&pool, &o));
  storm = pp_test_storm_start(pool, seed ^ 0x5707a1u,
                              getenv("PROCPOOL_CHAOS_BURSTS") == NULL ||
                                  atoi(getenv("PROCPOOL_CHAOS_BURSTS")) != 0);
  assert_non_null(storm);
  t0 = apr_time_now();
  deadline = t0 + apr_time_from_sec(seconds);
  while (ch.used + CLEAN_CALLS < ch.n && apr_time_now() < deadline) {
    size_t m = 16 + chaos_pick(&ch.rng, 113);
    if (m > ch.n - CLEAN_CALLS - ch.used)
      m = ch.n - CLEAN_CALLS - ch.used;
    switch (chaos_pick(&ch.rng, 7)) {
      case 0:
        chaos_run_map(&ch, pool, A_MAP, m);
        break;
      case 1:
        chaos_run_map(&ch, pool, A_STARMAP, m);
        break;
      case 2:
        chaos_run_streaming(&ch, pool, A_UNORDERED, m);
        break;
      case 3:
      case 4:
        chaos_run_futures(&ch, pool, m);
        break;
      case 5:
        chaos_run_async(&ch, pool, m);
        break;
      default:
        chaos_run_streaming(&ch, pool, A_IMAP, m);
        break;
    }
  }
  pp_test_storm_stop(storm, &ss);
  print_line("%zu calls in %zu batches in %.1f s%s", ch.used, ch.batches,
             (double)(apr_time_now() - t0) / 1e6,
             ch.used + CLEAN_CALLS < ch.n ? " (the time limit came first)"
                                          : "");

  chaos_run_map(&ch, pool, A_CLEAN, CLEAN_CALLS);
  npids = pp_pool_worker_pids(pool, pids, MAX_PIDS);
  assert_true(npids >= 0 && npids <= MAX_PIDS);
  assert_int_equal(pp_pool_destroy(pool, PP_DESTROY_WAIT), 0);
  nkids = pp_test_children(kids, MAX_PIDS);
  na = fd_set_now(after);

  check_starts(&ch, &unstarted);
  print_summary(&ch, &ss, unstarted);
  pp_test_counters_unmap(ch.starts, ch.n);
  pp_test_remove_file(ch.path);
  free(ch.calls);
  apr_pool_destroy(mem);
  apr_terminate();

  for (i = 0; i < V_COUNT && ch.v_count[i] == 0; i++)
    ;
  if (ch.violations > 0)
    fail_msg("%llu breaches of the contract (seed 0x%llx); the first: %s",
             (unsigned long long)ch.violations, (unsigned long long)seed,
             ch.v_first[i][0]);
  /* No worker left: not one child of this process (where they can be
   * listed; elsewhere none of the pool's last workers). */
  if (nkids > 0)
    fail_msg("%d child processes left after pp_pool_destroy", nkids);
  if (nkids < 0)
    assert_true(pp_test_wait_gone(pids, (size_t)npids, 0));
  assert_true(na <= MAX_FDS);
  if (nb >= 0) {
    int same = na == nb;
    for (i = 0; same && i < (size_t)nb; i++)
      same = before[i] == after[i];
    if (!same)
      fail_msg("the pool changed the set of open descriptors: %d before, %d "
               "after",
               nb, na);
  }
}

int main(int argc, char **argv) {
  int rc;
  if (pp_worker_main(argc, argv, pp_test_tasks, &rc))
    return rc;
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_chaos_storm),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
