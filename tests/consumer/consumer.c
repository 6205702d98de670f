/*
 * consumer.c - a program of a project that uses procpool from outside:
 * built by tests/consumer/CMakeLists.txt (find_package or a subproject) and
 * by a plain `cc ... $(pkg-config --cflags --libs procpool)` in
 * ci/consumer.sh.  Runs a starmap over a few (string, int, int) tuples and
 * checks every result; prints "consumer: ok" and exits 0, else says what
 * was wrong and exits 1.
 */
#include <stdio.h>
#include <string.h>

#include "procpool.h"

/* (name, base, exp) -> (name, base^exp) */
static int power(pp_call_t *call, const void *arg, size_t len) {
  const char *name;
  int64_t base, exp, r = 1;
  if (pp_unpack(arg, len, "sii", &name, &base, &exp) != 0)
    return pp_call_fail(call, "power wants (str, int, int)");
  while (exp-- > 0)
    r *= base;
  return pp_call_replyf(call, "si", name, r);
}

static const pp_task_t tasks[] = {PP_TASK(power), PP_TASK_END};

#define N 8

int main(int argc, char **argv) {
  static const char *names[N] = {"zero", "one", "two",  "three",
                                 "four", "five", "six", "seven"};
  pp_pool_options_t o;
  pp_pool_t *pool = NULL;
  pp_buf_t params[N];
  pp_result_t results[N];
  int rc, i, bad = 0;

  if (pp_worker_main(argc, argv, tasks, &rc)) /* the worker guard */
    return rc;
  if (pp_version() != PP_VERSION_HEX) {
    fprintf(stderr, "consumer: header %d.%d.%d, library %s\n",
            PP_VERSION_MAJOR, PP_VERSION_MINOR, PP_VERSION_PATCH,
            pp_version_string());
    return 1;
  }
  memset(&o, 0, sizeof(o));
  o.workers = 2;
  if (pp_pool_create(&pool, &o) != 0) {
    fprintf(stderr, "consumer: pp_pool_create: %s\n", pp_last_error());
    return 1;
  }
  memset(params, 0, sizeof(params));
  memset(results, 0, sizeof(results));
  for (i = 0; i < N; i++) {
    if (pp_pack(&params[i], "sii", names[i], (int64_t)i, (int64_t)3) != 0) {
      fprintf(stderr, "consumer: pp_pack: %s\n", pp_last_error());
      return 1;
    }
  }
  rc = pp_pool_starmap(pool, "power", params, N, results, NULL);
  if (rc != 0) {
    fprintf(stderr, "consumer: pp_pool_starmap: %s\n", pp_last_error());
    bad = 1;
  }
  for (i = 0; i < N && rc == 0; i++) {
    const char *name = NULL;
    int64_t v = -1;
    if (results[i].status != 0 ||
        pp_unpack(results[i].data, results[i].len, "si", &name, &v) != 0 ||
        strcmp(name, names[i]) != 0 || v != (int64_t)i * i * i) {
      fprintf(stderr, "consumer: result %d is wrong (status %d, %s, %lld)\n",
              i, results[i].status,
              results[i].message ? results[i].message : "-", (long long)v);
      bad = 1;
    }
  }
  for (i = 0; i < N; i++)
    pp_free((void *)params[i].data);
  pp_results_free(results, N);
  if (pp_pool_destroy(pool, PP_DESTROY_WAIT) != 0) {
    fprintf(stderr, "consumer: pp_pool_destroy: %s\n", pp_last_error());
    bad = 1;
  }
  if (bad)
    return 1;
  printf("consumer: ok, %d tuples, procpool %s\n", N, pp_version_string());
  return 0;
}
