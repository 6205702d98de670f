/*
 * bench.c - what procpool costs, next to the floor: raw pipes.
 *
 *   procpool-bench [--workers=2] [--startups=20] [--rtts=2000]
 *                  [--calls=100000] [--mib=256] [--no-raw]
 *
 * Measures, for a pool of --workers workers:
 *   startup_ms     pool create + one call + destroy (median)
 *   rtt_us         one tiny call, submit + wait + take (median)
 *   tput_*_cps     tiny calls per second through pp_pool_map with chunksize
 *                  1 (one call per message round), auto (0) and 64
 *   echo_gbps      one large argument echoed back: argument bytes divided
 *                  by the time from submit to the result in hand (median of
 *                  3), so each byte crosses the channel twice
 * and the same with plain read/write over socketpairs to children that run
 * this program with the hidden argument --raw-child (POSIX only): the cost
 * of the bytes alone, without procpool's framing, threads and buffers.
 *
 * Every row is "key value unit description", the format bench_mp.py prints
 * too, so that run.sh can set them side by side.  Tiny calls carry 8 bytes
 * each way.
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
#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <spawn.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>
#endif

#include <apr_time.h>

#include "procpool.h"

static int echo(pp_call_t *call, const void *arg, size_t len) {
  return pp_call_reply(call, arg, len);
}

static const pp_task_t tasks[] = {PP_TASK(echo), PP_TASK_END};

typedef struct opts_s {
  int workers;
  int startups;
  int rtts;
  int calls;
  size_t big;
  int raw;
} opts_t;

static const char tiny[8] = "12345678";

/* APR's clock, which every platform procpool runs on has (msvcrt lacks
 * C11's timespec_get). */
static double now(void) {
  return (double)apr_time_now() * 1e-6;
}

static int cmp_double(const void *a, const void *b) {
  double x = *(const double *)a, y = *(const double *)b;
  return x < y ? -1 : x > y;
}

static double median(double *v, int n) {
  qsort(v, (size_t)n, sizeof(*v), cmp_double);
  return n % 2 ? v[n / 2] : (v[n / 2 - 1] + v[n / 2]) / 2;
}

static void row(const char *key, double value, const char *unit,
                const char *what) {
  printf("%-18s %14.2f  %-8s %s\n", key, value, unit, what);
  fflush(stdout);
}

static int fail(const char *what) {
  fprintf(stderr, "procpool-bench: %s: %s\n", what, pp_last_error());
  return -1;
}

/* ---- procpool ---- */

static int make_pool(pp_pool_t **pool, int workers, unsigned flags) {
  pp_pool_options_t o;
  memset(&o, 0, sizeof(o));
  o.workers = workers;
  o.flags = flags;
  return pp_pool_create(pool, &o) == 0 ? 0 : fail("pp_pool_create");
}

/* One call through a future; the argument is borrowed, as a caller that
 * cares about copies would do.  The result goes to *r. */
static int call_once(pp_pool_t *pool, const void *arg, size_t len,
                     pp_result_t *r) {
  pp_call_options_t co;
  pp_future_t *f;
  memset(&co, 0, sizeof(co));
  co.borrow_arg = 1;
  if (pp_pool_submit(pool, "echo", arg, len, &co, &f) != 0)
    return fail("pp_pool_submit");
  pp_future_wait(f, -1);
  pp_future_take(f, r);
  pp_future_free(f);
  if (r->status != 0 || r->len != len) {
    fprintf(stderr, "procpool-bench: echo failed: %s\n",
            r->message ? r->message : "wrong length");
    pp_results_free(r, 1);
    return -1;
  }
  return 0;
}

static int pp_startup(const opts_t *o, double *v) {
  int i;
  for (i = 0; i < o->startups; i++) {
    pp_pool_t *pool;
    pp_result_t r;
    double t0 = now();
    if (make_pool(&pool, o->workers, 0) != 0)
      return -1;
    if (call_once(pool, tiny, sizeof(tiny), &r) != 0)
      return -1;
    pp_results_free(&r, 1);
    pp_pool_destroy(pool, PP_DESTROY_WAIT);
    v[i] = (now() - t0) * 1e3;
  }
  return 0;
}

static int pp_rtt(pp_pool_t *pool, const opts_t *o, double *v) {
  int i;
  for (i = -100; i < o->rtts; i++) { /* the first 100 warm up */
    pp_result_t r;
    double t0 = now();
    if (call_once(pool, tiny, sizeof(tiny), &r) != 0)
      return -1;
    pp_results_free(&r, 1);
    if (i >= 0)
      v[i] = (now() - t0) * 1e6;
  }
  return 0;
}

static int pp_tput(pp_pool_t *pool, const opts_t *o, size_t chunksize,
                   double *cps) {
  size_t n = (size_t)o->calls, i;
  pp_buf_t *args = malloc(n * sizeof(*args));
  pp_result_t *res = malloc(n * sizeof(*res));
  pp_map_options_t mo;
  double t0;
  int rc = -1;
  if (args == NULL || res == NULL)
    goto cleanup;
  for (i = 0; i < n; i++) {
    args[i].data = tiny;
    args[i].len = sizeof(tiny);
  }
  memset(&mo, 0, sizeof(mo));
  mo.chunksize = chunksize;
  t0 = now();
  rc = pp_pool_map(pool, "echo", args, n, res, &mo);
  *cps = (double)n / (now() - t0);
  pp_results_free(res, n);
  if (rc != 0)
    fail("pp_pool_map");
cleanup:
  free(args);
  free(res);
  return rc;
}

static int pp_echo(pp_pool_t *pool, const opts_t *o, double *v) {
  unsigned char *buf = malloc(o->big);
  size_t i;
  int k;
  if (buf == NULL)
    return -1;
  for (i = 0; i < o->big; i++)
    buf[i] = (unsigned char)(i * 131 + (i >> 20));
  for (k = 0; k < 3; k++) {
    pp_result_t r;
    double t0 = now();
    if (call_once(pool, buf, o->big, &r) != 0) {
      free(buf);
      return -1;
    }
    v[k] = (double)o->big / 1e9 / (now() - t0);
    if (memcmp(r.data, buf, o->big) != 0) {
      fprintf(stderr, "procpool-bench: the echo came back different\n");
      pp_results_free(&r, 1);
      free(buf);
      return -1;
    }
    pp_results_free(&r, 1);
  }
  free(buf);
  return 0;
}

static int run_procpool(const opts_t *o, double *v) {
  pp_pool_t *pool = NULL;
  double cps;
  int rc = -1;
  if (pp_startup(o, v) != 0)
    return -1;
  row("startup_ms", median(v, o->startups), "ms",
      "pool create + 1 call + destroy, median");
  if (make_pool(&pool, o->workers, 0) != 0)
    return -1;
  if (pp_rtt(pool, o, v) != 0)
    goto cleanup;
  row("rtt_us", median(v, o->rtts), "us", "tiny call round trip, median");
  if (pp_tput(pool, o, 1, &cps) != 0)
    goto cleanup;
  row("tput_c1_cps", cps, "calls/s", "pp_pool_map, chunksize 1");
  if (pp_tput(pool, o, 0, &cps) != 0)
    goto cleanup;
  row("tput_auto_cps", cps, "calls/s", "pp_pool_map, chunksize auto (0)");
  if (pp_tput(pool, o, 64, &cps) != 0)
    goto cleanup;
  row("tput_c64_cps", cps, "calls/s", "pp_pool_map, chunksize 64");
  if (pp_echo(pool, o, v) != 0)
    goto cleanup;
  row("echo_gbps", median(v, 3), "GB/s", "large argument echoed, median of 3");
  /* Without output capture the per-call markers and capture threads go,
   * which is what tiny calls pay for tagged output lines. */
  pp_pool_destroy(pool, PP_DESTROY_WAIT);
  pool = NULL;
  if (make_pool(&pool, o->workers, PP_POOL_INHERIT_OUTPUT) != 0)
    return -1;
  if (pp_rtt(pool, o, v) != 0)
    goto cleanup;
  row("rtt_inherit_us", median(v, o->rtts), "us",
      "tiny call round trip, PP_POOL_INHERIT_OUTPUT, median");
  if (pp_tput(pool, o, 64, &cps) != 0)
    goto cleanup;
  row("tput_c64_inherit_cps", cps, "calls/s",
      "pp_pool_map, chunksize 64, PP_POOL_INHERIT_OUTPUT");
  rc = 0;
cleanup:
  pp_pool_destroy(pool, PP_DESTROY_WAIT);
  return rc;
}

/* ---- raw pipes (POSIX) ---- */

#ifndef _WIN32
extern char **environ;

/* The child's end of the socketpair, where --raw-child finds it. */
#define RAW_FD 3

static char self_exe[4096];

typedef struct raw_s {
  int fd;
  pid_t pid;
} raw_t;

static int write_all(int fd, const void *buf, size_t n) {
  const char *p = buf;
  while (n > 0) {
    ssize_t w = write(fd, p, n);
    if (w < 0 && errno == EINTR)
      continue;
    if (w <= 0)
      return -1;
    p += w;
    n -= (size_t)w;
  }
  return 0;
}

static int read_all(int fd, void *buf, size_t n) {
  char *p = buf;
  while (n > 0) {
    ssize_t r = read(fd, p, n);
    if (r < 0 && errno == EINTR)
      continue;
    if (r <= 0)
      return -1;
    p += r;
    n -= (size_t)r;
  }
  return 0;
}

/* The child: reads messages (u64 length, bytes) and writes each back with
 * one write, until the parent closes its end. */
static int raw_child_main(void) {
  unsigned char *buf = NULL;
  size_t cap = 0;
  uint64_t len;
  while (read_all(RAW_FD, &len, sizeof(len)) == 0) {
    if (8 + len > cap) {
      free(buf);
      cap = 8 + (size_t)len;
      if ((buf = malloc(cap)) == NULL)
        return 1;
    }
    memcpy(buf, &len, 8);
    if (read_all(RAW_FD, buf + 8, (size_t)len) != 0 ||
        write_all(RAW_FD, buf, 8 + (size_t)len) != 0)
      return 1;
  }
  free(buf);
  return 0;
}

static int raw_spawn(raw_t *c) {
  static char arg1[] = "--raw-child";
  char *argv[3];
  posix_spawn_file_actions_t fa;
  int sv[2], rc;
  if (socketpair(AF_UNIX, SOCK_STREAM, 0, sv) != 0)
    return -1;
  fcntl(sv[0], F_SETFD, FD_CLOEXEC);
  fcntl(sv[1], F_SETFD, FD_CLOEXEC);
  if (sv[1] == RAW_FD) { /* dup2 onto itself would keep close-on-exec */
    int d = fcntl(sv[1], F_DUPFD_CLOEXEC, RAW_FD + 1);
    close(sv[1]);
    sv[1] = d;
  }
  argv[0] = self_exe;
  argv[1] = arg1;
  argv[2] = NULL;
  posix_spawn_file_actions_init(&fa);
  posix_spawn_file_actions_adddup2(&fa, sv[1], RAW_FD);
  rc = posix_spawn(&c->pid, self_exe, &fa, NULL, argv, environ);
  posix_spawn_file_actions_destroy(&fa);
  close(sv[1]);
  if (rc != 0) {
    close(sv[0]);
    fprintf(stderr, "procpool-bench: cannot start %s: %s\n", self_exe,
            strerror(rc));
    return -1;
  }
  c->fd = sv[0];
  return 0;
}

static void raw_stop(raw_t *c) {
  int st;
  close(c->fd);
  waitpid(c->pid, &st, 0);
}

/* Sends one message: small ones in one write, as procpool does. */
static int raw_send(const raw_t *c, const void *p, size_t n) {
  unsigned char small[64];
  uint64_t len = n;
  if (n <= sizeof(small) - 8) {
    memcpy(small, &len, 8);
    memcpy(small + 8, p, n);
    return write_all(c->fd, small, 8 + n);
  }
  return write_all(c->fd, &len, 8) || write_all(c->fd, p, n) ? -1 : 0;
}

static int raw_recv(const raw_t *c, void *p, size_t n) {
  uint64_t len;
  if (read_all(c->fd, &len, 8) != 0 || len != n)
    return -1;
  return read_all(c->fd, p, n);
}

static int raw_call(const raw_t *c, const void *p, size_t n, void *out) {
  return raw_send(c, p, n) || raw_recv(c, out, n) ? -1 : 0;
}

static int raw_tput(const opts_t *o, raw_t *cs, int depth, double *cps) {
  int rounds = o->calls / (o->workers * depth), r, w, d;
  char back[8];
  double t0 = now();
  for (r = 0; r < rounds; r++) {
    for (w = 0; w < o->workers; w++)
      for (d = 0; d < depth; d++)
        if (raw_send(&cs[w], tiny, sizeof(tiny)) != 0)
          return -1;
    for (w = 0; w < o->workers; w++)
      for (d = 0; d < depth; d++)
        if (raw_recv(&cs[w], back, sizeof(back)) != 0)
          return -1;
  }
  *cps = (double)rounds * o->workers * depth / (now() - t0);
  return 0;
}

static int raw_echo(const raw_t *c, const opts_t *o, double *v) {
  unsigned char *buf = malloc(o->big);
  int k;
  if (buf == NULL)
    return -1;
  memset(buf, 'x', o->big);
  for (k = 0; k < 3; k++) {
    /* A fresh buffer per result, as a caller would get one. */
    unsigned char *back = malloc(o->big);
    double t0 = now();
    if (back == NULL || raw_call(c, buf, o->big, back) != 0) {
      free(back);
      free(buf);
      return -1;
    }
    v[k] = (double)o->big / 1e9 / (now() - t0);
    free(back);
  }
  free(buf);
  return 0;
}

static int run_raw(const opts_t *o, double *v) {
  raw_t *cs = calloc((size_t)o->workers, sizeof(*cs));
  char back[8];
  double cps;
  int i, started = 0, rc = -1;

  signal(SIGPIPE, SIG_IGN); /* a dead child shows as a failed write */
  if (cs == NULL)
    return -1;
  /* Like a pool's start: every child runs and has answered once. */
  for (i = 0; i < o->startups; i++) {
    double t0 = now();
    int w, ok = 1;
    for (started = 0; started < o->workers && ok; started++)
      ok = raw_spawn(&cs[started]) == 0;
    if (!ok)
      started--;
    for (w = 0; w < started && ok; w++)
      ok = raw_call(&cs[w], tiny, 8, back) == 0;
    for (w = 0; w < started; w++)
      raw_stop(&cs[w]);
    started = 0;
    if (!ok)
      goto cleanup;
    v[i] = (now() - t0) * 1e3;
  }
  row("raw_startup_ms", median(v, o->startups), "ms",
      "raw: spawn the children + 1 round trip each + exit, median");
  for (started = 0; started < o->workers; started++)
    if (raw_spawn(&cs[started]) != 0)
      goto cleanup;
  for (i = -100; i < o->rtts; i++) {
    double t0 = now();
    if (raw_call(&cs[0], tiny, 8, back) != 0)
      goto cleanup;
    if (i >= 0)
      v[i] = (now() - t0) * 1e6;
  }
  row("raw_rtt_us", median(v, o->rtts), "us", "raw: tiny round trip, median");
  if (raw_tput(o, cs, 1, &cps) != 0)
    goto cleanup;
  row("raw_tput_c1_cps", cps, "calls/s", "raw: 1 message in flight per child");
  if (raw_tput(o, cs, 64, &cps) != 0)
    goto cleanup;
  row("raw_tput_c64_cps", cps, "calls/s",
      "raw: 64 messages in flight per child");
  if (raw_echo(&cs[0], o, v) != 0)
    goto cleanup;
  row("raw_echo_gbps", median(v, 3), "GB/s", "raw: large echo, median of 3");
  rc = 0;
cleanup:
  if (rc != 0)
    fprintf(stderr, "procpool-bench: the raw-pipe benchmark failed\n");
  for (i = 0; i < started; i++)
    raw_stop(&cs[i]);
  free(cs);
  return rc;
}

static void find_self(const char *argv0) {
  ssize_t n = readlink("/proc/self/exe", self_exe, sizeof(self_exe) - 1);
  if (n > 0)
    self_exe[n] = '\0';
  else
    snprintf(self_exe, sizeof(self_exe), "%s", argv0);
}
#endif /* !_WIN32 */

/* ---- main ---- */

static int parse_args(int argc, char **argv, opts_t *o) {
  int i;
  o->workers = 2;
  o->startups = 20;
  o->rtts = 2000;
  o->calls = 100000;
  o->big = (size_t)256 << 20;
  o->raw = 1;
  for (i = 1; i < argc; i++) {
    const char *a = argv[i], *v = strchr(a, '=');
    int n = v ? atoi(v + 1) : 0;
    if (strncmp(a, "--workers=", 10) == 0 && n > 0)
      o->workers = n;
    else if (strncmp(a, "--startups=", 11) == 0 && n > 0)
      o->startups = n;
    else if (strncmp(a, "--rtts=", 7) == 0 && n > 0)
      o->rtts = n;
    else if (strncmp(a, "--calls=", 8) == 0 && n > 0)
      o->calls = n;
    else if (strncmp(a, "--mib=", 6) == 0 && n > 0)
      o->big = (size_t)n << 20;
    else if (strcmp(a, "--no-raw") == 0)
      o->raw = 0;
    else {
      fprintf(stderr,
              "usage: procpool-bench [--workers=2] [--startups=20] "
              "[--rtts=2000] [--calls=100000] [--mib=256] [--no-raw]\n");
      return -1;
    }
  }
  return 0;
}

int main(int argc, char **argv) {
  opts_t o;
  double *v;
  int rc;
  if (pp_worker_main(argc, argv, tasks, &rc))
    return rc;
#ifndef _WIN32
  if (argc == 2 && strcmp(argv[1], "--raw-child") == 0)
    return raw_child_main();
  find_self(argv[0]);
#endif
  if (parse_args(argc, argv, &o) != 0)
    return 2;
  v = malloc((size_t)(o.startups > o.rtts ? o.startups : o.rtts) * sizeof(*v) +
             3 * sizeof(*v));
  if (v == NULL)
    return 1;
  printf("# procpool %s: %d workers, %d calls, %zu MiB echo\n",
         pp_version_string(), o.workers, o.calls, o.big >> 20);
  rc = run_procpool(&o, v);
#ifndef _WIN32
  if (rc == 0 && o.raw)
    rc = run_raw(&o, v);
#endif
  free(v);
  return rc == 0 ? 0 : 1;
}
