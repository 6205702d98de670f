/*
 * bench.c - procpool's figures, one per run, for bench/run.sh.
 *
 *   procpool-bench --figure=NAME [--workers=2] [--calls=N] [--futures=N]
 *                  [--mib=256]
 *
 * Each run measures one figure in a fresh process and prints it as
 * "key value unit description", the format bench_mp.py prints too; run.sh
 * interleaves the implementations and repetitions and takes medians.
 *
 *   startup       pool create + one call + destroy, ms (median of 10)
 *   rtt           one tiny call: submit + wait + take, us (median of 2000)
 *   tiny          a map of --calls tiny calls (8 distinct bytes each,
 *                 default options), calls/s; also the process' peak
 *                 resident memory, MB
 *   tiny_inherit  the same with PP_POOL_INHERIT_OUTPUT (no output
 *                 tagging), to price the tagging, calls/s
 *   c1            the same with chunksize 1 (each call handed out alone),
 *                 calls/s
 *   echo          one --mib argument echoed back, from ordinary memory,
 *                 GB/s of argument (median of 3)
 *   echo_zc       the same from pp_shared_alloc() memory (no copy on the
 *                 way in; the echoed result is the argument's memory, so
 *                 nothing moves at all), GB/s
 *   copy, copy_zc the same, but the task writes a new result of the same
 *                 size (pp_call_reply_alloc + memcpy), as a task that
 *                 transforms its data must: the honest large-data figure
 *   as_completed, as_completed_one, as_completed_many
 *                 --futures tiny futures (100 k) taken as they finish:
 *                 by a completion queue, by waiting for each in turn,
 *                 and by the old pp_future_wait_many() loop (over a
 *                 tenth of them: it is quadratic); futures/s
 *                 (as_completed.c)
 *   raw_*         the floor with plain sockets (raw.c): raw_startup,
 *                 raw_rtt, raw_c1 (one message in flight per child),
 *                 raw_batch (64 calls per write, the physical floor for
 *                 small calls), raw_echo
 */
#ifndef _WIN32
#define _POSIX_C_SOURCE 200809L
#endif

#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#ifndef _WIN32
#include <sys/resource.h>
#else
#include <windows.h>
#endif

#include "bench.h"

static int echo(pp_call_t *call, const void *arg, size_t len) {
  return pp_call_reply(call, arg, len);
}

/* A new result as large as the argument, written in place. */
static int copy(pp_call_t *call, const void *arg, size_t len) {
  void *out = pp_call_reply_alloc(call, len);
  if (out == NULL)
    return pp_call_fail(call, "copy: no memory for %zu bytes", len);
  memcpy(out, arg, len);
  return 0;
}

static const pp_task_t tasks[] = {PP_TASK(echo), PP_TASK(copy), PP_TASK_END};

const char bench_tiny[8] = "12345678";

double bench_now(void) {
#ifdef _WIN32
  /* mingw-w64 has clock_gettime only in libwinpthread. */
  LARGE_INTEGER now, freq;
  QueryPerformanceCounter(&now);
  QueryPerformanceFrequency(&freq);
  return (double)now.QuadPart / (double)freq.QuadPart;
#else
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (double)ts.tv_sec + (double)ts.tv_nsec * 1e-9;
#endif
}

static int cmp_double(const void *a, const void *b) {
  double x = *(const double *)a, y = *(const double *)b;
  return x < y ? -1 : x > y;
}

double bench_median(double *v, int n) {
  qsort(v, (size_t)n, sizeof(*v), cmp_double);
  return n % 2 ? v[n / 2] : (v[n / 2 - 1] + v[n / 2]) / 2;
}

void bench_row(const char *key, double value, const char *unit,
               const char *what) {
  printf("%-18s %14.3f  %-8s %s\n", key, value, unit, what);
  fflush(stdout);
}

double bench_peak_mb(void) {
#ifndef _WIN32
  struct rusage ru;
  if (getrusage(RUSAGE_SELF, &ru) == 0)
    return (double)ru.ru_maxrss / 1024.0; /* Linux reports KiB */
#endif
  return 0;
}

static int fail(const char *what) {
  fprintf(stderr, "procpool-bench: %s: %s\n", what, pp_last_error());
  return 1;
}

static int make_pool(pp_pool_t **pool, int workers, unsigned flags) {
  pp_pool_options_t o;
  memset(&o, 0, sizeof(o));
  o.workers = workers;
  o.flags = flags;
  return pp_pool_create(pool, &o) == 0 ? 0 : fail("pp_pool_create");
}

/* One call through a future; the argument is borrowed, as a caller that
 * cares about copies would do. */
static int call_once(pp_pool_t *pool, const char *task, const void *arg,
                     size_t len, pp_result_t *r) {
  pp_call_options_t co;
  pp_future_t *f;
  memset(&co, 0, sizeof(co));
  co.borrow_arg = 1;
  if (pp_pool_submit(pool, task, arg, len, &co, &f) != 0)
    return fail("pp_pool_submit");
  pp_future_wait(f, -1);
  pp_future_take(f, r);
  pp_future_free(f);
  if (r->status != 0 || r->len != len) {
    fprintf(stderr, "procpool-bench: %s failed: %s\n", task,
            r->message ? r->message : "wrong length");
    pp_results_free(r, 1);
    return 1;
  }
  return 0;
}

static int fig_startup(const bench_opts_t *o) {
  double v[10];
  int i;
  for (i = 0; i < 10; i++) {
    pp_pool_t *pool;
    pp_result_t r;
    double t0 = bench_now();
    if (make_pool(&pool, o->workers, 0) != 0 ||
        call_once(pool, "echo", bench_tiny, sizeof(bench_tiny), &r) != 0)
      return 1;
    pp_results_free(&r, 1);
    pp_pool_destroy(pool, PP_DESTROY_WAIT);
    v[i] = (bench_now() - t0) * 1e3;
  }
  bench_row("startup_ms", bench_median(v, 10), "ms",
            "pool create + 1 call + destroy, median of 10");
  return 0;
}

static int fig_rtt(const bench_opts_t *o) {
  pp_pool_t *pool;
  double *v = malloc(2000 * sizeof(*v));
  int i;
  if (v == NULL || make_pool(&pool, o->workers, 0) != 0)
    return 1;
  for (i = -200; i < 2000; i++) { /* the first 200 warm up */
    pp_result_t r;
    double t0 = bench_now();
    if (call_once(pool, "echo", bench_tiny, sizeof(bench_tiny), &r) != 0)
      return 1;
    pp_results_free(&r, 1);
    if (i >= 0)
      v[i] = (bench_now() - t0) * 1e6;
  }
  bench_row("rtt_us", bench_median(v, 2000), "us",
            "tiny call round trip, median of 2000");
  pp_pool_destroy(pool, PP_DESTROY_WAIT);
  free(v);
  return 0;
}

/* A map of n tiny calls, each with an argument of its own (8 distinct
 * bytes), as a program that transforms records would run it. */
static int fig_tiny(const bench_opts_t *o, size_t chunksize, unsigned flags,
                    const char *key, const char *what) {
  size_t n = chunksize == 1 ? (size_t)o->calls / 10 : (size_t)o->calls, i;
  pp_buf_t *args = malloc(n * sizeof(*args));
  pp_result_t *res = malloc(n * sizeof(*res));
  uint64_t *data = malloc(n * sizeof(*data));
  pp_map_options_t mo;
  pp_pool_t *pool;
  double t0, cps;
  int rc;
  if (args == NULL || res == NULL || data == NULL ||
      make_pool(&pool, o->workers, flags) != 0)
    return 1;
  for (i = 0; i < n; i++) {
    data[i] = i * 0x9E3779B97F4A7C15ull;
    args[i].data = &data[i];
    args[i].len = 8;
  }
  memset(&mo, 0, sizeof(mo));
  mo.chunksize = chunksize;
  t0 = bench_now();
  rc = pp_pool_map(pool, "echo", args, n, res, &mo);
  cps = (double)n / (bench_now() - t0);
  for (i = 0; i < n && rc == 0; i++)
    if (res[i].len != 8 || memcmp(res[i].data, &data[i], 8) != 0)
      rc = 1;
  if (rc != 0)
    return fail("pp_pool_map");
  bench_row(key, cps, "calls/s", what);
  if (chunksize != 1 && flags == 0)
    bench_row("tiny_rss_mb", bench_peak_mb(), "MB",
              "peak resident memory of the process after the map");
  pp_results_free(res, n);
  pp_pool_destroy(pool, PP_DESTROY_WAIT);
  free(args);
  free(res);
  free(data);
  return 0;
}

/* The imap figure's producer and result check: the tiny figure's
 * arguments, made one at a time, and each result compared as it comes. */
typedef struct imap_feed_s {
  size_t n;
  uint64_t v;
  size_t bad;
} imap_feed_t;

static int imap_next(void *data, pp_next_arg_t *next) {
  imap_feed_t *f = data;
  if (next->index >= f->n)
    return 0;
  f->v = next->index * 0x9E3779B97F4A7C15ull;
  next->arg.data = &f->v;
  next->arg.len = 8;
  return 1;
}

static int imap_take(void *data, size_t index, pp_result_t *r) {
  imap_feed_t *f = data;
  uint64_t want = index * 0x9E3779B97F4A7C15ull;
  if (r->status != 0 || r->len != 8 || memcmp(r->data, &want, 8) != 0)
    f->bad++;
  pp_results_free(r, 1);
  return 0;
}

/* A streaming map of n tiny calls: arguments from a producer, results to
 * a callback in input order, with the default bound on calls held. */
static int fig_imap(const bench_opts_t *o) {
  imap_feed_t f;
  pp_pool_t *pool;
  double t0, cps;
  int rc;
  if (make_pool(&pool, o->workers, 0) != 0)
    return 1;
  memset(&f, 0, sizeof(f));
  f.n = (size_t)o->calls;
  t0 = bench_now();
  rc = pp_pool_imap(pool, "echo", imap_next, &f, imap_take, &f, NULL);
  cps = (double)f.n / (bench_now() - t0);
  if (rc != 0 || f.bad != 0)
    return fail("pp_pool_imap");
  bench_row("imap_cps", cps, "calls/s",
            "imap from a producer, in order, default bound");
  pp_pool_destroy(pool, PP_DESTROY_WAIT);
  return 0;
}

static int fig_echo(const bench_opts_t *o, const char *task, int shared) {
  unsigned char *buf = shared ? pp_shared_alloc(o->big) : malloc(o->big);
  pp_pool_t *pool;
  double v[3];
  size_t i;
  int k;
  if (buf == NULL || make_pool(&pool, o->workers, 0) != 0)
    return 1;
  for (i = 0; i < o->big; i += 4096)
    buf[i] = (unsigned char)(i >> 12);
  for (k = 0; k < 3; k++) {
    pp_result_t r;
    double t0 = bench_now();
    if (call_once(pool, task, buf, o->big, &r) != 0)
      return 1;
    v[k] = (double)o->big / 1e9 / (bench_now() - t0);
    if (memcmp(r.data, buf, o->big) != 0) {
      fprintf(stderr, "procpool-bench: the echo came back different\n");
      return 1;
    }
    pp_results_free(&r, 1);
  }
  {
    char key[32];
    snprintf(key, sizeof(key), "%s%s_gbps", task, shared ? "_zc" : "");
    bench_row(key, bench_median(v, 3), "GB/s",
              strcmp(task, "echo") == 0
                  ? shared ? "large argument in shared memory echoed, median "
                             "of 3"
                           : "large argument echoed, median of 3"
              : shared ? "large argument in shared memory, new result "
                         "written by the task, median of 3"
                       : "large argument, new result written by the task, "
                         "median of 3");
  }
  pp_pool_destroy(pool, PP_DESTROY_WAIT);
  if (shared)
    pp_free(buf);
  else
    free(buf);
  return 0;
}

static int parse_args(int argc, char **argv, bench_opts_t *o) {
  int i;
  o->workers = 2;
  o->calls = 1000000;
  o->futures = 100000;
  o->big = (size_t)256 << 20;
  o->figure = NULL;
  for (i = 1; i < argc; i++) {
    const char *a = argv[i], *v = strchr(a, '=');
    long n = v ? atol(v + 1) : 0;
    if (strncmp(a, "--workers=", 10) == 0 && n > 0)
      o->workers = (int)n;
    else if (strncmp(a, "--calls=", 8) == 0 && n > 0)
      o->calls = n;
    else if (strncmp(a, "--futures=", 10) == 0 && n > 0)
      o->futures = n;
    else if (strncmp(a, "--mib=", 6) == 0 && n > 0)
      o->big = (size_t)n << 20;
    else if (strncmp(a, "--figure=", 9) == 0)
      o->figure = v + 1;
    else
      return -1;
  }
  return o->figure == NULL ? -1 : 0;
}

int main(int argc, char **argv) {
  bench_opts_t o;
  int rc;
  if (pp_worker_main(argc, argv, tasks, &rc))
    return rc;
  if (bench_raw_child(argc, argv, &rc))
    return rc;
  if (parse_args(argc, argv, &o) != 0) {
    fprintf(stderr, "usage: procpool-bench --figure=NAME [--workers=2] "
                    "[--calls=1000000] [--futures=100000] [--mib=256]\n");
    return 2;
  }
  bench_raw_init(argv[0]);
  if (strcmp(o.figure, "startup") == 0)
    return fig_startup(&o);
  if (strcmp(o.figure, "rtt") == 0)
    return fig_rtt(&o);
  if (strcmp(o.figure, "tiny") == 0)
    return fig_tiny(&o, 0, 0, "tiny_cps", "map, default options");
  if (strcmp(o.figure, "imap") == 0)
    return fig_imap(&o);
  if (strcmp(o.figure, "tiny_inherit") == 0)
    return fig_tiny(&o, 0, PP_POOL_INHERIT_OUTPUT, "tiny_inherit_cps",
                    "map, default options but PP_POOL_INHERIT_OUTPUT");
  if (strcmp(o.figure, "c1") == 0)
    return fig_tiny(&o, 1, 0, "c1_cps", "map, chunksize 1");
  if (strcmp(o.figure, "echo") == 0 || strcmp(o.figure, "copy") == 0)
    return fig_echo(&o, o.figure, 0);
  if (strcmp(o.figure, "echo_zc") == 0 || strcmp(o.figure, "copy_zc") == 0)
    return fig_echo(&o, strcmp(o.figure, "echo_zc") == 0 ? "echo" : "copy",
                    1);
  if (strncmp(o.figure, "as_completed", 12) == 0)
    return bench_as_completed(&o);
  if (strncmp(o.figure, "raw_", 4) == 0)
    return bench_raw_figure(&o);
  fprintf(stderr, "procpool-bench: no figure '%s'\n", o.figure);
  return 2;
}
