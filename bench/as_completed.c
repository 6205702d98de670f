/*
 * as_completed.c - the as_completed figures of procpool-bench: n tiny
 * calls submitted as futures, each taken as soon as it has finished.
 *
 *   as_completed       a completion queue (pp_cq_*): O(1) per future
 *   as_completed_one   every future waited for in turn, in the order
 *                      submitted (pp_future_wait): O(1) per future, but
 *                      not as they finish
 *   as_completed_many  the loop pp_future_wait_many()'s header showed
 *                      before the queue existed: FIRST_COMPLETED over
 *                      the array, taken futures set to NULL, O(n) per
 *                      future; run over n / 10 futures, since it is
 *                      quadratic (100 k took over a minute)
 *
 * Each prints futures/s over the whole run, submits included.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "bench.h"

/* Takes a finished future's result, checks it and frees both; returns 0,
 * or 1 if the call failed. */
static int take(pp_future_t *f) {
  pp_result_t r;
  int bad = pp_future_take(f, &r) != 0 || r.status != 0 || r.len != 8 ||
            memcmp(r.data, bench_tiny, 8) != 0;
  pp_results_free(&r, 1);
  pp_future_free(f);
  return bad;
}

static int drain_queue(pp_future_t **fs, size_t n, pp_cq_t *cq) {
  pp_future_t *f;
  size_t got = 0;
  int bad = 0;
  (void)fs;
  while (pp_cq_next(cq, -1, &f) == 1) {
    bad |= take(f);
    got++;
  }
  return bad || got != n;
}

static int drain_one(pp_future_t **fs, size_t n) {
  size_t i;
  int bad = 0;
  for (i = 0; i < n; i++) {
    bad |= pp_future_wait(fs[i], -1) != 0;
    bad |= take(fs[i]);
  }
  return bad;
}

static int drain_many(pp_future_t **fs, size_t n) {
  size_t left = n, at;
  int bad = 0;
  while (left > 0 &&
         pp_future_wait_many(fs, n, PP_WAIT_FIRST_COMPLETED, -1, &at) == 0) {
    bad |= take(fs[at]);
    fs[at] = NULL;
    left--;
  }
  return bad || left != 0;
}

int bench_as_completed(const bench_opts_t *o) {
  const char *how = o->figure + strlen("as_completed");
  size_t n = (size_t)o->futures, i;
  pp_future_t **fs;
  pp_pool_options_t po;
  pp_pool_t *pool;
  pp_cq_t *cq = NULL;
  double t0, fps;
  int bad = 0;
  char key[64], what[160];
  if (strcmp(how, "_many") == 0)
    n /= 10;
  else if (*how != '\0' && strcmp(how, "_one") != 0) {
    fprintf(stderr, "procpool-bench: no figure '%s'\n", o->figure);
    return 2;
  }
  memset(&po, 0, sizeof(po));
  po.workers = o->workers;
  fs = calloc(n ? n : 1, sizeof(*fs));
  if (fs == NULL || pp_pool_create(&pool, &po) != 0 ||
      (*how == '\0' && pp_cq_create(&cq) != 0)) {
    fprintf(stderr, "procpool-bench: %s\n", pp_last_error());
    return 1;
  }
  t0 = bench_now();
  for (i = 0; i < n && !bad; i++) {
    bad = pp_pool_submit(pool, "echo", bench_tiny, 8, NULL, &fs[i]) != 0 ||
          (cq != NULL && pp_cq_add(cq, fs[i]) != 0);
  }
  if (!bad)
    bad = cq != NULL      ? drain_queue(fs, n, cq)
          : *how == '\0'  ? 1
          : how[1] == 'o' ? drain_one(fs, n)
                          : drain_many(fs, n);
  fps = (double)n / (bench_now() - t0);
  if (bad) {
    fprintf(stderr, "procpool-bench: %s: a call failed: %s\n", o->figure,
            pp_last_error());
    return 1;
  }
  snprintf(key, sizeof(key), "%s_fps", o->figure);
  snprintf(what, sizeof(what), "%zu tiny futures taken as they finish, %s", n,
           cq != NULL      ? "completion queue"
           : how[1] == 'o' ? "each waited for in turn"
                           : "the old wait_many loop");
  bench_row(key, fps, "futures/s", what);
  pp_cq_free(cq);
  pp_pool_destroy(pool, PP_DESTROY_WAIT);
  free(fs);
  return 0;
}
