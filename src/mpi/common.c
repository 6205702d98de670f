/*
 * common.c - what both sides of the MPI backend use: buffers, sends under
 * way, the task table's hash, the MPI world, the idle-friendly wait.
 */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE /* clock_gettime, PATH_MAX for apr.h */
#endif
#include <limits.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sched.h>
#include <time.h>

#include "ppm.h"

/* ---- allocation, and its test hook ---- */

/* The failures PROCPOOL_MPI_FAIL_ALLOC asks for, read once. */
typedef struct fail_s {
  char site[16];
  long rank, nth;
  long seen; /* allocations at the site so far (atomic) */
} fail_t;

static pthread_once_t fail_once = PTHREAD_ONCE_INIT;
static fail_t fails[8];
static int nfails;

static void fail_read(void) {
  const char *v = getenv("PROCPOOL_MPI_FAIL_ALLOC");
  int rank = -1, size = 0;
  if (v == NULL || !ppm_world(&rank, &size))
    return;
  while (*v != '\0' && nfails < (int)(sizeof(fails) / sizeof(fails[0]))) {
    fail_t f;
    int used = 0;
    memset(&f, 0, sizeof(f));
    if (sscanf(v, "%15[^:,]:%ld:%ld%n", f.site, &f.rank, &f.nth, &used) != 3)
      return;
    if (f.rank == rank && f.nth > 0)
      fails[nfails++] = f;
    v += used;
    if (*v == ',')
      v++;
  }
}

int ppm_fail_here(const char *site) {
  int i, fail = 0;
  pthread_once(&fail_once, fail_read);
  /* Every entry of the site counts every allocation there, so that
   * "results:1:2,results:1:3" fails the 2nd and the 3rd. */
  for (i = 0; i < nfails; i++)
    if (strcmp(fails[i].site, site) == 0 &&
        __atomic_add_fetch(&fails[i].seen, 1, __ATOMIC_RELAXED) == fails[i].nth)
      fail = 1;
  return fail;
}

void *ppm_malloc(const char *site, size_t n) {
  return ppm_fail_here(site) ? NULL : malloc(n > 0 ? n : 1);
}

void *ppm_calloc(const char *site, size_t count, size_t size) {
  return ppm_fail_here(site) ? NULL : calloc(count > 0 ? count : 1, size);
}

void *ppm_realloc(const char *site, void *p, size_t n) {
  return ppm_fail_here(site) ? NULL : realloc(p, n > 0 ? n : 1);
}

/* ---- buffers and sends ---- */

int ppm_buf_put(ppm_buf_t *b, const char *site, const void *data, size_t n) {
  size_t need = b->len + PPM_PAD8(n);
  if (need > b->cap) {
    size_t cap = b->cap ? b->cap : 4096;
    unsigned char *p;
    while (cap < need)
      cap *= 2;
    p = ppm_realloc(site, b->p, cap);
    if (p == NULL)
      return PP_ENOMEM;
    b->p = p;
    b->cap = cap;
  }
  if (n > 0)
    memcpy(b->p + b->len, data, n);
  memset(b->p + b->len + n, 0, PPM_PAD8(n) - n);
  b->len = need;
  return 0;
}

void ppm_buf_free(ppm_buf_t *b) {
  free(b->p);
  memset(b, 0, sizeof(*b));
}

int ppm_sends_reserve(ppm_sends_t *s, size_t k) {
  size_t cap = s->cap ? s->cap : 16;
  ppm_send_t *v;
  while (cap < s->n + k)
    cap *= 2;
  if (cap == s->cap)
    return 0;
  v = ppm_realloc("sends", s->v, cap * sizeof(*v));
  if (v == NULL)
    return PP_ENOMEM;
  s->v = v;
  s->cap = cap;
  return 0;
}

int ppm_discard(MPI_Message *msg, MPI_Status *st, int64_t until) {
  /* One thread per process receives (rank 0's engine thread, a serving
   * rank's main thread), and what lands here is never read. */
  static unsigned char scratch[PPM_SCRATCH];
  MPI_Request req;
  int n = 0, done = 0;
  MPI_Get_count(st, MPI_BYTE, &n);
  /* A larger message is left matched and never received: MPI keeps what
   * it holds of it, and its sender's send never completes (the sender is
   * lost, or gets the failure another way).  A truncated receive is no
   * way out: over shared memory, Open MPI 4.1 copies a large message
   * whole, whatever the receive's size. */
  if (n < 0 || n > PPM_SCRATCH)
    return 1;
  if (MPI_Imrecv(scratch, n, MPI_BYTE, msg, &req) != MPI_SUCCESS)
    return 0;
  for (;;) {
    struct timespec ts = {0, 50000};
    if (MPI_Test(&req, &done, MPI_STATUS_IGNORE) != MPI_SUCCESS || done)
      return 0;
    if (ppm_now_us() > until)
      return -1; /* the request is left to MPI, and scratch to it */
    nanosleep(&ts, NULL);
  }
}

int ppm_isend(ppm_sends_t *s, MPI_Comm comm, int peer, int tag,
              const void *data, size_t n, void *mem,
              void (*release)(void *mem)) {
  ppm_send_t *e;
  int rc;
  if (ppm_sends_reserve(s, 1) != 0)
    return MPI_ERR_NO_MEM;
  e = &s->v[s->n];
  rc = MPI_Isend(data, (int)n, MPI_BYTE, peer, tag, comm, &e->req);
  if (rc != MPI_SUCCESS)
    return rc;
  e->mem = mem;
  e->release = release;
  e->peer = peer;
  s->n++;
  return MPI_SUCCESS;
}

int ppm_sends_test(ppm_sends_t *s) {
  size_t i = 0;
  int any = 0;
  while (i < s->n) {
    int done = 0;
    MPI_Test(&s->v[i].req, &done, MPI_STATUS_IGNORE);
    if (!done) {
      i++;
      continue;
    }
    if (s->v[i].release != NULL)
      s->v[i].release(s->v[i].mem);
    s->v[i] = s->v[--s->n];
    any = 1;
  }
  return any;
}

void ppm_sends_drop(ppm_sends_t *s, int peer) {
  size_t i = 0;
  while (i < s->n) {
    if (s->v[i].peer == peer)
      s->v[i] = s->v[--s->n];
    else
      i++;
  }
}

void ppm_sends_free(ppm_sends_t *s) {
  free(s->v);
  memset(s, 0, sizeof(*s));
}

uint64_t ppm_tasks_hash(const pp_task_t *tasks, uint32_t *n) {
  uint64_t h = 14695981039346656037ull;
  uint32_t k = 0;
  const char *c;
  for (; tasks != NULL && tasks[k].name != NULL; k++) {
    /* The terminating NUL goes in too: "ab","c" is not "a","bc". */
    for (c = tasks[k].name;; c++) {
      h = (h ^ (unsigned char)*c) * 1099511628211ull;
      if (*c == '\0')
        break;
    }
  }
  *n = k;
  return h;
}

/* Reads a non-negative integer variable; -1 if it is not one. */
static long env_long(const char *name) {
  const char *v = getenv(name);
  char *end;
  long x;
  if (v == NULL || *v == '\0')
    return -1;
  x = strtol(v, &end, 10);
  return *end == '\0' && x >= 0 ? x : -1;
}

int ppm_world(int *rank, int *size) {
  static const char *const vars[][2] = {
      {"OMPI_COMM_WORLD_RANK", "OMPI_COMM_WORLD_SIZE"},
      {"PMI_RANK", "PMI_SIZE"}};
  size_t i;
  int init = 0, fin = 0;
  for (i = 0; i < sizeof(vars) / sizeof(vars[0]); i++) {
    long r = env_long(vars[i][0]), s = env_long(vars[i][1]);
    if (r >= 0 && s > 0 && r < s && s <= INT_MAX) {
      *rank = (int)r;
      *size = (int)s;
      return 1;
    }
  }
  MPI_Initialized(&init);
  MPI_Finalized(&fin);
  if (init && !fin) {
    MPI_Comm_rank(MPI_COMM_WORLD, rank);
    MPI_Comm_size(MPI_COMM_WORLD, size);
    return 1;
  }
  return 0;
}

const char *ppm_strerror(int code, char *buf, size_t cap) {
  char s[MPI_MAX_ERROR_STRING];
  int len = 0;
  if (MPI_Error_string(code, s, &len) != MPI_SUCCESS || len <= 0)
    snprintf(s, sizeof(s), "MPI error %d", code);
  else
    s[len < MPI_MAX_ERROR_STRING ? len : MPI_MAX_ERROR_STRING - 1] = '\0';
  snprintf(buf, cap, "%s", s);
  return buf;
}

void ppm_block_sigpipe(void) {
  sigset_t set;
  sigemptyset(&set);
  sigaddset(&set, SIGPIPE);
  pthread_sigmask(SIG_BLOCK, &set, NULL);
}

int64_t ppm_now_us(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (int64_t)ts.tv_sec * 1000000 + ts.tv_nsec / 1000;
}

int64_t ppm_env_int(const char *name, int64_t def) {
  long v = env_long(name);
  return v >= 0 ? v : def;
}

void ppm_idle_reset(ppm_idle_t *w) {
  w->active = ppm_now_us();
  w->sleep_us = 0;
}

int64_t ppm_idle_next(ppm_idle_t *w) {
  if (ppm_now_us() - w->active < PPM_SPIN_US) {
    /* The CPU goes to whoever wants it: on a node with more busy threads
     * than cores (the local pool's workers, other ranks), what this loop
     * waits for may need this very core. */
    sched_yield();
    return 0;
  }
  w->sleep_us = w->sleep_us == 0 ? PPM_SLEEP_MIN_US : 2 * w->sleep_us;
  if (w->sleep_us > PPM_SLEEP_MAX_US)
    w->sleep_us = PPM_SLEEP_MAX_US;
  return w->sleep_us;
}

void ppm_tune_before_init(void) {
  /* A batch of a few hundred tiny calls is some 16 KiB; over shared memory
   * Open MPI sends messages above 4 KiB by rendezvous, which stalls while
   * the receiver sleeps between polls.  A larger eager limit keeps batches
   * eager (measured in notes/mpi-feasibility.md); the user's own setting,
   * in the environment or on mpirun's command line (which exports it),
   * wins. */
  setenv("OMPI_MCA_btl_vader_eager_limit", "32768", 0);
  /* Open MPI 4.1 begins MPI_Finalize with a PMIx fence over every process
   * of the job.  When a rank has died (mpirun --enable-recovery), that
   * fence completes only if the PMIx server in mpirun saw the dead rank's
   * connection drop before mpirun reaped it; when the reaping comes first,
   * the server keeps counting the rank and the fence never completes
   * (docs/design.md, section 7).  A rank that is merely stopped holds it
   * up as long as it is stopped.  The backend needs no barrier there: no
   * message of it is in flight when a rank ends MPI (rank 0 has every
   * rank's BYE, a rank has rank 0's STOP), so every rank skips it.  It
   * must be all ranks or none (a fence is a collective), so rank 0 sets
   * it too, also for an application that begins MPI itself after the
   * guard (ppm_master_arm). */
  setenv("OMPI_MCA_async_mpi_finalize", "1", 0);
}
