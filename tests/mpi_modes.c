/*
 * mpi_modes.c - test_mpi's whole-job cases: each runs alone under mpirun
 * (tests/mpi_run.sh) with three ranks, and its exit code on rank 0 says
 * whether the outcome was right; mpi_run.sh's timeout says whether the
 * job ended, and its process check whether anything was left behind.
 *
 *   --rank-stop early|late
 *       a serving rank stopped (SIGSTOP) while it holds calls is declared
 *       lost: its calls fail PP_EWORKERDIED, the other rank finishes the
 *       map; it is continued (SIGCONT) while rank 0 still runs (early) or
 *       after rank 0 has ended (late), and the job must end all the same.
 *   --faults WHICH
 *       allocations fail where PROCPOOL_MPI_FAIL_ALLOC says (src/mpi's
 *       test hook): every call must still get exactly one outcome, a
 *       failure with PP_ENOMEM (or the loss of a rank) and a sentence, the
 *       pool must go on, and the job must end.
 */
#include <fcntl.h>
#include <signal.h>
#include <spawn.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "helpers.h"
#include "mpi_modes.h"
#include "procpool_mpi.h"

/* The pid of some serving rank's process (the parent of a worker of its
 * local pool), or -1. */
static int64_t some_rank_pid(pp_pool_t *pool) {
  pp_future_t *who;
  pp_result_t r;
  int64_t pid = -1;
  if (pp_pool_submit(pool, "parent_pid", NULL, 0, NULL, &who) != 0)
    return -1;
  if (pp_future_wait(who, -1) == 0 && pp_future_take(who, &r) == 0) {
    if (r.status == 0)
      pid = pp_test_int_result(&r);
    pp_results_free(&r, 1);
  }
  pp_future_free(who);
  return pid;
}

/* Continues `pid` after `seconds`, from a process of its own that
 * outlives this one (its output goes nowhere, so that mpirun does not
 * wait for it). */
static int continue_later(int64_t pid, int seconds) {
  extern char **environ;
  char script[96];
  char *argv[] = {"sh", "-c", script, NULL};
  posix_spawn_file_actions_t fa;
  pid_t child;
  int rc;
  snprintf(script, sizeof(script), "sleep %d; kill -CONT %lld", seconds,
           (long long)pid);
  posix_spawn_file_actions_init(&fa);
  posix_spawn_file_actions_addopen(&fa, 0, "/dev/null", O_RDONLY, 0);
  posix_spawn_file_actions_addopen(&fa, 1, "/dev/null", O_WRONLY, 0);
  posix_spawn_file_actions_addopen(&fa, 2, "/dev/null", O_WRONLY, 0);
  rc = posix_spawnp(&child, "sh", &fa, NULL, argv, environ);
  posix_spawn_file_actions_destroy(&fa);
  return rc;
}

/* --rank-stop early|late: a serving rank stopped while it holds calls is
 * declared lost, its calls fail and the other rank finishes the map;
 * continued, it must end its service, and the job must end (early: it is
 * continued while rank 0 runs, and told to stop when it speaks; late: it
 * is continued after rank 0 has ended, finds nobody answering and ends by
 * itself). */
int pp_test_mpi_rank_stop(const char *when) {
  pp_pool_t *pool;
  enum { N = 24 };
  pp_pool_options_t o;
  pp_buf_t args[N];
  pp_result_t res[N];
  pp_map_t *m;
  int64_t victim;
  size_t i, ok = 0, lost = 0;
  int late = strcmp(when, "late") == 0, good;
  memset(&o, 0, sizeof(o));
  o.backend = PP_BACKEND_MPI;
  if (pp_pool_create(&pool, &o) != 0)
    return 2;
  victim = some_rank_pid(pool);
  if (victim <= 0)
    return 3;
  for (i = 0; i < N; i++)
    args[i] = pp_test_pack_int(200);
  if (pp_pool_map_async(pool, "sleep_ms", args, N, res, NULL, &m) != 0)
    return 4;
  pp_test_sleep_ms(300);
  printf("stopping rank process %lld\n", (long long)victim);
  fflush(stdout);
  kill((pid_t)victim, SIGSTOP);
  pp_map_wait(m, -1);
  pp_map_free(m);
  for (i = 0; i < N; i++) {
    if (res[i].status == 0 && pp_test_int_result(&res[i]) == 200)
      ok++;
    else if (res[i].status == PP_EWORKERDIED && res[i].message != NULL &&
             strstr(res[i].message, "lost with MPI rank") != NULL)
      lost++;
    else
      printf("call %zu: %s: %s\n", i, pp_err_name(res[i].status),
             res[i].message ? res[i].message : "");
  }
  printf("rank stop (%s): %zu calls ok, %zu lost with the rank, of %d\n", when,
         ok, lost, N);
  good = ok > 0 && lost > 0 && ok + lost == N;
  pp_results_free(res, N);
  pp_test_free_bufs(args, N);
  if (late) {
    /* Continued once this process has ended (and MPI with it). */
    if (continue_later(victim, 2) != 0)
      good = 0;
  } else {
    kill((pid_t)victim, SIGCONT);
    /* Time for it to speak (it still runs its calls, and beats), so that
     * rank 0 tells it to stop before the end. */
    pp_test_sleep_ms(1000);
  }
  pp_pool_destroy(pool, PP_DESTROY_WAIT);
  return good ? 0 : 1;
}

/* ---- --faults ---- */

/* What the calls of a map came to. */
typedef struct tally_s {
  size_t ok, nomem, lost, bad;
} tally_t;

/* Sorts results: right values (`want` gives the value of call i), clean
 * failures for want of memory or with a lost rank, and anything else
 * (printed).  `lost_ok` admits PP_EWORKERDIED for a rank that is lost. */
static tally_t tally(const pp_result_t *res, size_t n,
                     int64_t (*want)(size_t i), int lost_ok) {
  tally_t t = {0, 0, 0, 0};
  size_t i;
  for (i = 0; i < n; i++) {
    const pp_result_t *r = &res[i];
    if (r->status == 0 && pp_test_int_result(r) == want(i))
      t.ok++;
    else if (r->status == PP_ENOMEM && r->message != NULL &&
             strstr(r->message, "no memory") != NULL)
      t.nomem++;
    else if (lost_ok && r->status == PP_EWORKERDIED && r->message != NULL &&
             (strstr(r->message, "lost with MPI rank") != NULL ||
              strstr(r->message, "no MPI rank is left") != NULL))
      t.lost++;
    else {
      if (t.bad++ < 3)
        printf("call %zu: %s: %s\n", i, pp_err_name(r->status),
               r->message ? r->message : "");
    }
  }
  return t;
}

static int64_t sum_of(size_t i) {
  return (int64_t)(8 * i);
}

static int64_t square_of(size_t i) {
  return (int64_t)(i * i);
}

/* A starmap of `n` "add" calls (i + 7i); prints and returns its tally. */
static tally_t add_map(pp_pool_t *pool, size_t n, int lost_ok,
                       const char *what) {
  pp_buf_t *args = calloc(n, sizeof(*args));
  pp_result_t *res = calloc(n, sizeof(*res));
  tally_t t = {0, 0, 0, 1};
  size_t i;
  if (args == NULL || res == NULL)
    goto cleanup;
  for (i = 0; i < n; i++)
    pp_pack(&args[i], "ii", (int64_t)i, (int64_t)(7 * i));
  pp_pool_starmap(pool, "add", args, n, res, NULL);
  t = tally(res, n, sum_of, lost_ok);
  printf("%s: %zu ok, %zu without memory, %zu lost, %zu wrong, of %zu\n", what,
         t.ok, t.nomem, t.lost, t.bad, n);
  pp_results_free(res, n);
  pp_test_free_bufs(args, n);
cleanup:
  free(args);
  free(res);
  return t;
}

/* A call of "bump" over `n` bytes: 0 if its result is right, 1 if it
 * failed cleanly for want of memory, -1 otherwise. */
static int bump_call(pp_pool_t *pool, size_t n) {
  unsigned char *big = malloc(n);
  pp_future_t *f;
  pp_result_t r;
  size_t i;
  int rc = -1;
  if (big == NULL)
    return -1;
  for (i = 0; i < n; i++)
    big[i] = (unsigned char)(i * 31 + 7);
  if (pp_pool_submit(pool, "bump", big, n, NULL, &f) != 0) {
    free(big);
    return -1;
  }
  if (pp_future_wait(f, -1) == 0 && pp_future_take(f, &r) == 0) {
    if (r.status == 0 && r.len == n) {
      rc = 0;
      for (i = 0; i < n; i++)
        if (((unsigned char *)r.data)[i] != (unsigned char)(big[i] + 1))
          rc = -1;
    } else if (r.status == PP_ENOMEM && r.message != NULL &&
               strstr(r.message, "no memory") != NULL) {
      rc = 1;
    }
    printf("bump of %zu bytes: %s%s%s\n", n, pp_err_name(r.status),
           r.message ? ": " : "", r.message ? r.message : "");
    pp_results_free(&r, 1);
  }
  pp_future_free(f);
  free(big);
  return rc;
}

/* rank0: on rank 0, the 2nd batch cannot be built (its calls fail), the
 * 2nd growth of the table of calls in flight fails (one call fails), the
 * first growth of the round's outcomes fails (they are finished early:
 * nothing fails), and the first large result cannot be received (that
 * call fails); every later call succeeds. */
static int faults_rank0(pp_pool_t *pool) {
  tally_t t = add_map(pool, 3000, 0, "map");
  int b1 = bump_call(pool, 200 * 1024), b2 = bump_call(pool, 200 * 1024);
  tally_t u = add_map(pool, 500, 0, "map after");
  return t.bad == 0 && t.nomem >= 2 && t.ok + t.nomem == 3000 && b1 == 1 &&
                 b2 == 0 && u.ok == 500
             ? 0
             : 1;
}

/* lose: the engine cannot be allocated for the first pool (it fails with
 * PP_ENOMEM); in the next, rank 0 cannot receive the first results of a
 * rank, whose calls then fail PP_ENOMEM while the other rank serves on. */
static int faults_lose(pp_pool_options_t *o) {
  pp_pool_t *pool = NULL;
  tally_t t;
  int rc = pp_pool_create(&pool, o), good;
  printf("first pool: %s: %s\n", pp_err_name(rc), pp_last_error());
  if (rc != PP_ENOMEM || strstr(pp_last_error(), "no memory") == NULL)
    return 1;
  if (pp_pool_create(&pool, o) != 0)
    return 2;
  t = add_map(pool, 400, 0, "map");
  good = t.bad == 0 && t.nomem > 0 && t.ok > 0 && t.ok + t.nomem == 400;
  t = add_map(pool, 400, 0, "map after");
  good = good && t.ok == 400;
  pp_pool_destroy(pool, PP_DESTROY_WAIT);
  return good ? 0 : 3;
}

/* world: MPI has begun but the engine's state cannot be allocated: the
 * pool fails with PP_ENOMEM, the ranks are let go, and a later MPI pool
 * runs locally (and says why). */
static int faults_world(pp_pool_options_t *o) {
  pp_pool_t *pool = NULL;
  tally_t t;
  int rc = pp_pool_create(&pool, o);
  printf("first pool: %s: %s\n", pp_err_name(rc), pp_last_error());
  if (rc != PP_ENOMEM || strstr(pp_last_error(), "no memory") == NULL)
    return 1;
  if (pp_pool_create(&pool, o) != 0)
    return 2;
  t = add_map(pool, 200, 0, "local map");
  pp_pool_destroy(pool, PP_DESTROY_WAIT);
  return t.ok == 200 ? 0 : 3;
}

/* serving: on rank 1 the first batch cannot be split into groups (its
 * calls fail), and on ranks 1 and 2 the first large argument cannot be
 * kept (that call fails); the rest succeeds. */
static int faults_serving(pp_pool_t *pool) {
  tally_t t = add_map(pool, 400, 0, "map");
  int i, nomem = 0, ok = 0, bad = 0;
  for (i = 0; i < 6; i++) {
    int b = bump_call(pool, 100 * 1024);
    ok += b == 0, nomem += b == 1, bad += b < 0;
  }
  t.bad += (size_t)bad;
  return t.bad == 0 && t.nomem > 0 && t.ok + t.nomem == 400 && nomem >= 1 &&
                 ok >= 1
             ? 0
             : 1;
}

/* break: rank 1 cannot keep a result at all (nor the failure that would
 * replace it) and rank 2 cannot receive its second batch: each ends its
 * service, saying why, and their calls fail PP_ENOMEM; once no rank is
 * left, the rest fail PP_EWORKERDIED. */
static int faults_break(pp_pool_t *pool) {
  enum { N = 2000 };
  pp_buf_t *args = calloc(N, sizeof(*args));
  pp_result_t *res = calloc(N, sizeof(*res));
  tally_t t;
  size_t i;
  if (args == NULL || res == NULL)
    return 2;
  for (i = 0; i < N; i++)
    args[i] = pp_test_pack_int((int64_t)i);
  pp_pool_map(pool, "square", args, N, res, NULL);
  t = tally(res, N, square_of, 1);
  printf("map: %zu ok, %zu without memory, %zu lost, %zu wrong, of %d\n", t.ok,
         t.nomem, t.lost, t.bad, N);
  pp_results_free(res, N);
  pp_test_free_bufs(args, N);
  free(args);
  free(res);
  return t.bad == 0 && t.nomem > 0 && t.ok + t.nomem + t.lost == N ? 0 : 1;
}

int pp_test_mpi_faults(const char *which) {
  pp_pool_options_t o;
  pp_pool_t *pool;
  int rc;
  memset(&o, 0, sizeof(o));
  o.backend = PP_BACKEND_MPI;
  if (strcmp(which, "lose") == 0)
    return faults_lose(&o);
  if (strcmp(which, "world") == 0)
    return faults_world(&o);
  if (pp_pool_create(&pool, &o) != 0) {
    printf("pool: %s\n", pp_last_error());
    return 2;
  }
  if (strcmp(which, "rank0") == 0)
    rc = faults_rank0(pool);
  else if (strcmp(which, "serving") == 0)
    rc = faults_serving(pool);
  else if (strcmp(which, "break") == 0)
    rc = faults_break(pool);
  else
    rc = 2;
  pp_pool_destroy(pool, PP_DESTROY_WAIT);
  return rc;
}
