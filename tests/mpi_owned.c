/*
 * mpi_owned.c - an application that owns MPI: it calls MPI_Init_thread
 * right after the worker guard and MPI_Finalize at the end of main, as MPI
 * programs do.  procpool then neither begins nor ends MPI on rank 0, and
 * the application's MPI_Finalize (procpool_mpi's, through the profiling
 * interface) lets the serving ranks go first, so the job ends instead of
 * hanging.  Run under mpirun by tests/mpi_run.sh (test_mpi_owned); exits
 * 0 if the pool ran on the ranks and its results are right.
 */
#include <stdint.h>
#include <stdio.h>
#include <string.h>

#include <mpi.h>

#include "procpool_mpi.h"

static int square(pp_call_t *call, const void *arg, size_t len) {
  int64_t x;
  if (pp_unpack(arg, len, "i", &x) != 0)
    return pp_call_fail(call, "square wants one int64");
  return pp_call_replyf(call, "i", x * x);
}

static const pp_task_t tasks[] = {PP_TASK(square), PP_TASK_END};

int main(int argc, char **argv) {
  enum { N = 300 };
  pp_pool_options_t o;
  pp_pool_t *pool;
  pp_buf_t args[N];
  pp_result_t res[N];
  int rc, i, bad = 0, provided = 0, size = 0;
  /* The guard comes before MPI_Init: code above it also runs in the
   * local pools' worker processes, which must not become MPI processes
   * (they inherit the rank's launcher variables). */
  pp_mpi_enable();
  if (pp_worker_main(argc, argv, tasks, &rc))
    return rc;
  MPI_Init_thread(&argc, &argv, MPI_THREAD_MULTIPLE, &provided);
  MPI_Comm_size(MPI_COMM_WORLD, &size);
  memset(&o, 0, sizeof(o));
  o.backend = PP_BACKEND_MPI;
  if (pp_pool_create(&pool, &o) != 0) {
    fprintf(stderr, "mpi_owned: %s\n", pp_last_error());
    return 1;
  }
  for (i = 0; i < N; i++)
    pp_pack(&args[i], "i", (int64_t)i);
  if (pp_pool_map(pool, "square", args, N, res, NULL) != 0)
    bad = 1;
  for (i = 0; i < N; i++) {
    int64_t v = -1;
    if (res[i].status != 0 ||
        pp_unpack(res[i].data, res[i].len, "i", &v) != 0 || v != (int64_t)i * i)
      bad = 1;
    pp_free((void *)args[i].data);
  }
  pp_results_free(res, N);
  printf("mpi_owned: world of %d, %d workers, results %s\n", size,
         pp_pool_workers(pool), bad ? "WRONG" : "right");
  pp_pool_destroy(pool, PP_DESTROY_WAIT);
  MPI_Finalize();
  return bad;
}
