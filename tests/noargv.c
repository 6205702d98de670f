/*
 * noargv.c - a worker whose main() has no narrow argv to give the guard,
 * as a wmain() program has none: it passes argc 0 and argv NULL, and on
 * Windows pp_worker_main finds its arguments in GetCommandLineW()
 * (issue 8, item 7).
 */
#include "tasks.h"

int main(void) {
  int rc;
  if (pp_worker_main(0, NULL, pp_test_tasks, &rc))
    return rc;
  return 3;
}
