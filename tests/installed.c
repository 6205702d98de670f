/*
 * installed.c - a program that uses an installed procpool (issue 8,
 * item 4): tests/install_test.cmake installs procpool into a scratch
 * prefix, puts this program and a task library there and runs it.  The
 * pool names only the task library, so the worker host must be found at
 * run time next to the installed library, and must itself find the
 * library (on Windows: procpool.dll beside it in bin/).  Prints
 * "installed: ok <9 squared>".
 */
#include <stdio.h>
#include <string.h>

#include "procpool.h"

int main(int argc, char **argv) {
  pp_pool_options_t o;
  pp_pool_t *pool = NULL;
  pp_buf_t b = {NULL, 0};
  pp_result_t r;
  int64_t v = 0;
  int rc;
  if (argc < 2) {
    fprintf(stderr, "usage: %s TASK_LIBRARY\n", argv[0]);
    return 2;
  }
  memset(&o, 0, sizeof(o));
  o.workers = 1;
  o.task_library = argv[1];
  rc = pp_pool_create(&pool, &o);
  if (rc != 0) {
    printf("installed: create failed: %s\n", pp_last_error());
    return 1;
  }
  memset(&r, 0, sizeof(r));
  rc = pp_pack(&b, "i", (int64_t)9);
  if (rc == 0)
    rc = pp_pool_map(pool, "lib_square", &b, 1, &r, NULL);
  if (rc == 0)
    rc = pp_unpack(r.data, r.len, "i", &v);
  printf("installed: %s %lld\n", rc == 0 ? "ok" : pp_last_error(),
         (long long)v);
  pp_results_free(&r, 1);
  pp_free((void *)b.data);
  pp_pool_destroy(pool, PP_DESTROY_WAIT);
  return rc == 0 && v == 81 ? 0 : 1;
}
