/*
 * noguard.c - a program that forgets the worker guard (issue 7, item 6).
 *
 * Its main() creates a pool without calling pp_worker_main() first, so each
 * worker it starts runs this main() again.  procpool must refuse the pool
 * in those workers (they are marked as workers in their environment), and
 * the parent's pp_pool_create() must fail with a message that names the
 * missing guard, instead of a storm of processes.
 *
 * The environment variable PP_TEST_NOGUARD_GEN counts generations; the
 * program stops by itself at the third, as the test's own cap, and then
 * prints "storm" so that the test can tell that the cap was needed.
 * Everything it reports goes to stdout, so that the last line a refusing
 * worker writes to stderr is procpool's own.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "helpers.h"
#include "tasks.h"

int main(int argc, char **argv) {
  const char *gen = getenv("PP_TEST_NOGUARD_GEN");
  int g = gen != NULL ? atoi(gen) : 0;
  char next[16];
  pp_pool_options_t o;
  pp_pool_t *pool = NULL;
  pp_buf_t args[4];
  pp_result_t res[4];
  int i, rc;
  (void)argc, (void)argv;
  if (g >= 3) {
    printf("storm: generation %d\n", g);
    return 3;
  }
  snprintf(next, sizeof(next), "%d", g + 1);
  pp_test_setenv("PP_TEST_NOGUARD_GEN", next);
  memset(&o, 0, sizeof(o));
  o.workers = 2;
  o.tasks = pp_test_tasks;
  rc = pp_pool_create(&pool, &o);
  if (rc != 0) {
    printf("create: %s: %s\n", pp_err_name(rc), pp_last_error());
    return 1;
  }
  for (i = 0; i < 4; i++)
    args[i] = pp_test_pack_int(i);
  rc = pp_pool_map(pool, "square", args, 4, res, NULL);
  printf("map: %s\n", pp_err_name(rc));
  pp_results_free(res, 4);
  pp_test_free_bufs(args, 4);
  pp_pool_destroy(pool, PP_DESTROY_WAIT);
  return 0;
}
