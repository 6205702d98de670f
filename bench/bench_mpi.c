/*
 * bench_mpi.c - the MPI backend next to a local pool, in the same run:
 * tiny-call throughput (a map of N calls that add two integers) and the
 * bandwidth of 64 MiB arguments (a task that only returns their length).
 *
 *   mpirun --oversubscribe -n 3 procpool-bench-mpi [N] [REPS]
 *
 * The MPI pool runs first (its ranks then end), the local pool after, with
 * as many workers as the MPI pool had.  It prints numbers and never fails
 * on them.  Run alone (no mpirun) both rows are local pools.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <apr_time.h>

#include "procpool.h"
#include "procpool_mpi.h"

static int add(pp_call_t *call, const void *arg, size_t len) {
  int64_t a, b;
  if (pp_unpack(arg, len, "ii", &a, &b) != 0)
    return pp_call_fail(call, "add wants two int64");
  return pp_call_replyf(call, "i", a + b);
}

static int length(pp_call_t *call, const void *arg, size_t len) {
  (void)arg;
  return pp_call_replyf(call, "i", (int64_t)len);
}

static const pp_task_t tasks[] = {PP_TASK(add), PP_TASK(length), PP_TASK_END};

static double now(void) {
  return (double)apr_time_now() * 1e-6;
}

/* Runs both measurements over `pool`; prints one row. */
static int run(pp_pool_t *pool, const char *name, pp_buf_t *args, size_t n,
               const void *big, size_t big_len, int reps) {
  pp_result_t *res = calloc(n, sizeof(*res));
  double t0, tiny, bw;
  int i, rc;
  if (res == NULL)
    return -1;
  /* A warm-up map first: workers and ranks are started and paged in. */
  rc = pp_pool_starmap(pool, "add", args, n / 10, res, NULL);
  pp_results_free(res, n / 10);
  t0 = now();
  if (rc == 0)
    rc = pp_pool_starmap(pool, "add", args, n, res, NULL);
  tiny = now() - t0;
  pp_results_free(res, n);
  free(res);
  t0 = now();
  for (i = 0; i < reps && rc == 0; i++) {
    pp_future_t *f;
    pp_call_options_t co;
    memset(&co, 0, sizeof(co));
    co.borrow_arg = 1;
    rc = pp_pool_submit(pool, "length", big, big_len, &co, &f);
    if (rc == 0) {
      rc = pp_future_wait(f, -1);
      if (rc == 0)
        rc = pp_future_status(f);
      pp_future_free(f);
    }
  }
  bw = now() - t0;
  if (rc != 0) {
    fprintf(stderr, "bench: %s: %s\n", name, pp_last_error());
    return -1;
  }
  printf("%-28s %8d %14.0f %12.2f\n", name, pp_pool_workers(pool),
         (double)n / tiny, (double)big_len * reps / bw / 1e9);
  fflush(stdout);
  return 0;
}

int main(int argc, char **argv) {
  pp_pool_options_t o;
  pp_pool_t *pool;
  pp_buf_t *args;
  size_t n = argc > 1 ? (size_t)atol(argv[1]) : 100000, i;
  int reps = argc > 2 ? atoi(argv[2]) : 10, rc, workers;
  size_t big_len = (size_t)64 << 20;
  unsigned char *big;
  const char *transport = getenv("PP_BENCH_TRANSPORT");
  char name[64];

  pp_mpi_enable();
  if (pp_worker_main(argc, argv, tasks, &rc))
    return rc;
  args = calloc(n, sizeof(*args));
  big = malloc(big_len);
  if (args == NULL || big == NULL)
    return 1;
  memset(big, 7, big_len);
  for (i = 0; i < n; i++)
    if (pp_pack(&args[i], "ii", (int64_t)i, (int64_t)i) != 0)
      return 1;
  printf("%-28s %8s %14s %12s\n", "pool", "workers", "tiny calls/s",
         "64 MiB GB/s");
  memset(&o, 0, sizeof(o));
  o.backend = PP_BACKEND_MPI;
  if (pp_pool_create(&pool, &o) != 0) {
    fprintf(stderr, "bench: %s\n", pp_last_error());
    return 1;
  }
  workers = pp_pool_workers(pool);
  snprintf(name, sizeof(name), "mpi (%s)", transport ? transport : "default");
  run(pool, name, args, n, big, big_len, reps);
  pp_pool_destroy(pool, PP_DESTROY_WAIT);
  o.backend = PP_BACKEND_LOCAL;
  o.workers = workers;
  if (pp_pool_create(&pool, &o) != 0) {
    fprintf(stderr, "bench: %s\n", pp_last_error());
    return 1;
  }
  run(pool, "local", args, n, big, big_len, reps);
  pp_pool_destroy(pool, PP_DESTROY_WAIT);
  for (i = 0; i < n; i++)
    pp_free((void *)args[i].data);
  free(args);
  free(big);
  return 0;
}
