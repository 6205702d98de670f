/*
 * procpool-worker - the worker host.
 *
 * For programs that cannot put the worker guard at the top of main() (GUI
 * applications, plugins, language bindings): a pool created with
 * pp_pool_options_t.task_library starts this program as its worker, and it
 * loads the named library and serves that library's task table.
 */
#include <stdio.h>

#include "procpool.h"

int main(int argc, char **argv) {
  int rc;
  if (pp_worker_main(argc, argv, NULL, &rc))
    return rc;
  fprintf(stderr,
          "procpool-worker %s: this program is started by procpool pools "
          "that name a task library; it is not run by hand.\n",
          pp_version_string());
  return 2;
}
