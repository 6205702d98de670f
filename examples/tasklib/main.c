/*
 * main.c - a program that runs tasks from a task library over a pool of
 * procpool-worker hosts.  It has no worker guard in main(): its own code is
 * never run as a worker.
 *
 *   tasklib_demo [LIBRARY [WORKER_HOST]]
 */
#include <stdio.h>
#include <string.h>

#include "procpool.h"

#ifndef TASKLIB_PATH
#define TASKLIB_PATH "libpp_example_tasks.so"
#endif
#ifndef WORKER_HOST_PATH
#define WORKER_HOST_PATH "procpool-worker"
#endif

int main(int argc, char **argv) {
  static const char *const words[] = {"spawned", "not", "forked"};
  pp_pool_options_t options;
  pp_pool_t *pool = NULL;
  pp_buf_t args[3];
  pp_result_t results[3];
  int rc, i;

  memset(&options, 0, sizeof(options));
  options.workers = 2;
  options.task_library = argc > 1 ? argv[1] : TASKLIB_PATH;
  options.worker_exe = argc > 2 ? argv[2] : WORKER_HOST_PATH;
  rc = pp_pool_create(&pool, &options);
  if (rc != 0) {
    fprintf(stderr, "pp_pool_create: %s: %s\n", pp_err_name(rc),
            pp_last_error());
    return 1;
  }
  for (i = 0; i < 3; i++)
    pp_pack(&args[i], "s", words[i]);
  rc = pp_pool_starmap(pool, "shout", args, 3, results, NULL);
  for (i = 0; i < 3; i++) {
    if (results[i].status == 0)
      printf("%s -> %.*s\n", words[i], (int)results[i].len,
             (const char *)results[i].data);
    else
      printf("%s -> %s\n", words[i], results[i].message);
    pp_free((void *)args[i].data);
  }
  pp_results_free(results, 3);
  pp_pool_destroy(pool, PP_DESTROY_WAIT);
  return rc == 0 ? 0 : 1;
}
