/* starmap.c - Python's pool.starmap(pow, [(0, 3), (1, 3), ...]) in C: the
 * example of the README. */
#include <stdio.h>
#include "procpool.h"

static int power(pp_call_t *call, const void *arg, size_t len) {
  int64_t base, exp, r = 1;
  if (pp_unpack(arg, len, "ii", &base, &exp) != 0)
    return pp_call_fail(call, "power wants (int, int)");
  while (exp-- > 0) r *= base;
  return pp_call_replyf(call, "i", r);
}
static const pp_task_t tasks[] = {PP_TASK(power), PP_TASK_END};

int main(int argc, char **argv) {
  int rc;
  if (pp_worker_main(argc, argv, tasks, &rc)) return rc; /* the worker guard */
  pp_pool_t *pool;
  pp_buf_t params[10];
  pp_result_t results[10];
  if (pp_pool_create(&pool, NULL) != 0) return 1;        /* one worker per CPU */
  for (int i = 0; i < 10; i++) pp_pack(&params[i], "ii", (int64_t)i, (int64_t)3);
  pp_pool_starmap(pool, "power", params, 10, results, NULL);
  for (int i = 0; i < 10; i++) {
    int64_t v = 0;
    if (results[i].status == 0) pp_unpack(results[i].data, results[i].len, "i", &v);
    printf("%d^3 = %lld %s\n", i, (long long)v, results[i].message ? results[i].message : "");
    pp_free((void *)params[i].data);
  }
  pp_results_free(results, 10);
  return pp_pool_destroy(pool, PP_DESTROY_WAIT);
}
