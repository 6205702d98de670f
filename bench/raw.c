/*
 * raw.c - the floor: the same work over plain sockets, no library.
 *
 * The program starts copies of itself with --raw-child; each child reads
 * messages (u64 length, then bytes) from fd 3 and writes each back.  The
 * figures are what procpool is held against in bench/run.sh:
 *
 *   raw_startup   spawn the children, one round trip each, close, reap, ms
 *   raw_rtt       one 8-byte round trip with one child, us
 *   raw_c1        one message in flight per child, calls/s
 *   raw_batch     64 calls per write and 64 results per write per child:
 *                 the physical floor for small calls, calls/s
 *   raw_echo      one large message echoed, GB/s
 *
 * POSIX only; on Windows the raw figures print nothing.
 */
#ifndef _WIN32
#define _POSIX_C_SOURCE 200809L
#endif

#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "bench.h"

#ifndef _WIN32
#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <spawn.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

extern char **environ;

/* The child's end of the socketpair, where --raw-child finds it. */
#define RAW_FD 3
/* Calls per write in raw_batch. */
#define RAW_BATCH 64

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

/* The child: echoes each message with one write until the parent closes
 * its end.  A batch is one message whose bytes are the batch's calls, so
 * the child answers K calls with one write, as a batched worker would. */
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

int bench_raw_child(int argc, char **argv, int *rc) {
  if (argc != 2 || strcmp(argv[1], "--raw-child") != 0)
    return 0;
  *rc = raw_child_main();
  return 1;
}

void bench_raw_init(const char *argv0) {
  ssize_t n = readlink("/proc/self/exe", self_exe, sizeof(self_exe) - 1);
  if (n > 0)
    self_exe[n] = '\0';
  else
    snprintf(self_exe, sizeof(self_exe), "%s", argv0);
  signal(SIGPIPE, SIG_IGN); /* a dead child shows as a failed write */
}

static int raw_spawn(raw_t *c) {
  static char arg1[] = "--raw-child";
  char *argv[3];
  posix_spawn_file_actions_t fa;
  int sv[2], rc;
  if (socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv) != 0)
    return -1;
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

/* Sends one message: small ones in one write, as a library would. */
static int raw_send(const raw_t *c, const void *p, size_t n) {
  unsigned char small[8 + RAW_BATCH * 8];
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

static int spawn_all(raw_t *cs, int n) {
  int i;
  for (i = 0; i < n; i++)
    if (raw_spawn(&cs[i]) != 0) {
      while (i-- > 0)
        raw_stop(&cs[i]);
      return -1;
    }
  return 0;
}

static void stop_all(raw_t *cs, int n) {
  int i;
  for (i = 0; i < n; i++)
    raw_stop(&cs[i]);
}

static int fig_startup(const bench_opts_t *o, raw_t *cs) {
  double v[10];
  char back[8];
  int i, w;
  for (i = 0; i < 10; i++) {
    double t0 = bench_now();
    if (spawn_all(cs, o->workers) != 0)
      return -1;
    for (w = 0; w < o->workers; w++)
      if (raw_call(&cs[w], bench_tiny, 8, back) != 0)
        break;
    stop_all(cs, o->workers);
    if (w < o->workers)
      return -1;
    v[i] = (bench_now() - t0) * 1e3;
  }
  bench_row("raw_startup_ms", bench_median(v, 10), "ms",
            "raw: spawn + 1 round trip each + close + reap, median of 10");
  return 0;
}

static int fig_rtt(raw_t *cs) {
  static double v[2000];
  char back[8];
  int i;
  for (i = -200; i < 2000; i++) {
    double t0 = bench_now();
    if (raw_call(&cs[0], bench_tiny, 8, back) != 0)
      return -1;
    if (i >= 0)
      v[i] = (bench_now() - t0) * 1e6;
  }
  bench_row("raw_rtt_us", bench_median(v, 2000), "us",
            "raw: tiny round trip, median of 2000");
  return 0;
}

/* Rounds of `per` calls to every child, `per` calls per message: with
 * per = 1 one call in flight per child, with RAW_BATCH the batched floor.
 * The bytes are distinct per call, like the map's. */
static int fig_tput(const bench_opts_t *o, raw_t *cs, int per,
                    const char *key, const char *what) {
  long calls = per == 1 ? o->calls / 10 : o->calls;
  long rounds = calls / ((long)o->workers * per), r;
  uint64_t msg[RAW_BATCH], back[RAW_BATCH], seq = 0;
  double t0 = bench_now();
  int w, k;
  for (r = 0; r < rounds; r++) {
    for (w = 0; w < o->workers; w++) {
      for (k = 0; k < per; k++)
        msg[k] = seq++ * 0x9E3779B97F4A7C15ull;
      if (raw_send(&cs[w], msg, (size_t)per * 8) != 0)
        return -1;
    }
    for (w = 0; w < o->workers; w++)
      if (raw_recv(&cs[w], back, (size_t)per * 8) != 0)
        return -1;
  }
  bench_row(key, (double)(rounds * o->workers * per) / (bench_now() - t0),
            "calls/s", what);
  return 0;
}

static int fig_echo(const bench_opts_t *o, raw_t *cs) {
  unsigned char *buf = malloc(o->big);
  double v[3];
  size_t i;
  int k;
  if (buf == NULL)
    return -1;
  for (i = 0; i < o->big; i += 4096)
    buf[i] = (unsigned char)(i >> 12);
  for (k = 0; k < 3; k++) {
    /* A fresh buffer per result, as a caller would get one. */
    unsigned char *back = malloc(o->big);
    double t0 = bench_now();
    if (back == NULL || raw_call(&cs[0], buf, o->big, back) != 0) {
      free(back);
      free(buf);
      return -1;
    }
    v[k] = (double)o->big / 1e9 / (bench_now() - t0);
    free(back);
  }
  free(buf);
  bench_row("raw_echo_gbps", bench_median(v, 3), "GB/s",
            "raw: large echo, median of 3");
  return 0;
}

int bench_raw_figure(const bench_opts_t *o) {
  raw_t *cs = calloc((size_t)o->workers, sizeof(*cs));
  const char *f = o->figure;
  int rc = -1;
  if (cs == NULL)
    return 1;
  if (strcmp(f, "raw_startup") == 0) {
    rc = fig_startup(o, cs);
    free(cs);
    return rc == 0 ? 0 : 1;
  }
  if (spawn_all(cs, o->workers) != 0) {
    free(cs);
    return 1;
  }
  if (strcmp(f, "raw_rtt") == 0)
    rc = fig_rtt(cs);
  else if (strcmp(f, "raw_c1") == 0)
    rc = fig_tput(o, cs, 1, "raw_c1_cps", "raw: 1 call in flight per child");
  else if (strcmp(f, "raw_batch") == 0)
    rc = fig_tput(o, cs, RAW_BATCH, "raw_batch_cps",
                  "raw: 64 calls per write, the batched floor");
  else if (strcmp(f, "raw_echo") == 0)
    rc = fig_echo(o, cs);
  else
    fprintf(stderr, "procpool-bench: no figure '%s'\n", f);
  stop_all(cs, o->workers);
  free(cs);
  if (rc != 0)
    fprintf(stderr, "procpool-bench: the raw figure %s failed\n", f);
  return rc == 0 ? 0 : 1;
}

#else /* _WIN32 */

int bench_raw_child(int argc, char **argv, int *rc) {
  (void)argc;
  (void)argv;
  (void)rc;
  return 0;
}

void bench_raw_init(const char *argv0) {
  (void)argv0;
}

int bench_raw_figure(const bench_opts_t *o) {
  fprintf(stderr, "procpool-bench: %s: the raw figures are POSIX only\n",
          o->figure);
  return 0;
}

#endif
