/*
 * mpi_env.c - PROCPOOL_BACKEND=mpi in a program that never heard of the
 * MPI backend: it links the shared procpool only and does not call
 * pp_mpi_enable(), so procpool loads the shared libprocpool_mpi itself
 * (on every rank, in the worker guard).  Run under mpirun by
 * tests/mpi_run.sh (test_mpi_env); exits 0 if the pool ran on the other
 * ranks and its results are right.
 */
#include <stdint.h>
#include <stdio.h>
#include <string.h>

#include "procpool.h"

static int square(pp_call_t *call, const void *arg, size_t len) {
  int64_t x;
  if (pp_unpack(arg, len, "i", &x) != 0)
    return pp_call_fail(call, "square wants one int64");
  return pp_call_replyf(call, "i", x * x);
}

static const pp_task_t tasks[] = {PP_TASK(square), PP_TASK_END};

static int fell_back;

static void on_log(void *data, const pp_log_record_t *rec) {
  (void)data;
  fprintf(stderr, "log: %.*s\n", (int)rec->len, rec->line);
  if (strstr(rec->line, "runs its calls locally") != NULL)
    fell_back = 1;
}

int main(int argc, char **argv) {
  enum { N = 500 };
  pp_pool_options_t o;
  pp_pool_t *pool;
  pp_buf_t args[N];
  pp_result_t res[N];
  int rc, i, bad = 0;
  if (pp_worker_main(argc, argv, tasks, &rc))
    return rc;
  memset(&o, 0, sizeof(o));
  o.log_cb = on_log; /* backend: PP_BACKEND_DEFAULT, so the environment */
  if (pp_pool_create(&pool, &o) != 0) {
    fprintf(stderr, "mpi_env: %s\n", pp_last_error());
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
  printf("mpi_env: %d workers, %s, results %s\n", pp_pool_workers(pool),
         fell_back ? "fell back to a local pool" : "MPI pool",
         bad ? "WRONG" : "right");
  pp_pool_destroy(pool, PP_DESTROY_WAIT);
  return bad || fell_back ? 1 : 0;
}
