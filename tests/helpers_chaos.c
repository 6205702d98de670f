/*
 * helpers_chaos.c - what the chaos test needs from the system (see
 * helpers.h): the list of this process's children, signals that reach one
 * of them and nothing else, and a file of counters that the test and its
 * workers map at the same time.
 *
 * The storm of test_chaos picks its targets from pids that may be stale by
 * the time it sends a signal: a worker that died was reaped by its pool,
 * and its pid may belong to another program of the machine a moment
 * later.  So a signal is sent only through a handle to the process (a
 * pidfd on Linux, a process handle on Windows) that was checked to be a
 * child of this process after it was opened; the handle then names that
 * one process whatever happens to the pid.
 *
 * The storm itself is a thread that, until it is stopped, picks a random
 * worker every 1-13 ms and kills it (60 %) or stops it for 1-15 ms; and
 * every 2-5 s, for 500-1000 ms, kills every worker as soon as it appears,
 * so that workers die while they start.
 */
#if defined(__linux__)
#ifndef _GNU_SOURCE
#define _GNU_SOURCE
#endif
#elif !defined(_WIN32) && !defined(__APPLE__) && !defined(_POSIX_C_SOURCE)
#define _POSIX_C_SOURCE 200809L
#endif

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#ifdef _WIN32
#include <windows.h>
#include <tlhelp32.h>
#else
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>
#endif
#if defined(__linux__)
#include <sys/syscall.h>
#endif

#include <apr_atomic.h>
#include <apr_general.h>
#include <apr_thread_proc.h>
#include <apr_time.h>

#include "helpers.h"

/* ---- children ---- */

#if defined(__linux__)
/* Reads the parent pid from /proc/<pid>/stat with plain system calls (the
 * storm scans every process of the machine, often). */
static int64_t parent_of(const char *pid) {
  char path[64], buf[512], *p;
  long long ppid;
  ssize_t n;
  int fd;
  snprintf(path, sizeof(path), "/proc/%s/stat", pid);
  fd = open(path, O_RDONLY | O_CLOEXEC);
  if (fd < 0)
    return -1;
  n = read(fd, buf, sizeof(buf) - 1);
  close(fd);
  if (n <= 0)
    return -1;
  buf[n] = '\0';
  /* "pid (comm) state ppid": the name may hold spaces and parentheses. */
  p = strrchr(buf, ')');
  if (p == NULL || sscanf(p + 1, " %*c %lld", &ppid) != 1)
    return -1;
  return (int64_t)ppid;
}
#endif

int pp_test_children(int64_t *pids, size_t cap) {
#if defined(__linux__)
  int64_t self = (int64_t)getpid();
  DIR *d = opendir("/proc");
  struct dirent *e;
  size_t n = 0;
  if (d == NULL)
    return -1;
  while ((e = readdir(d)) != NULL) {
    if (e->d_name[0] < '1' || e->d_name[0] > '9')
      continue;
    if (parent_of(e->d_name) != self)
      continue;
    if (n < cap)
      pids[n] = (int64_t)atoll(e->d_name);
    n++;
  }
  closedir(d);
  return (int)n;
#elif defined(_WIN32)
  PROCESSENTRY32W pe;
  DWORD self = GetCurrentProcessId();
  HANDLE snap = CreateToolhelp32Snapshot(TH32CS_SNAPPROCESS, 0);
  size_t n = 0;
  BOOL more;
  if (snap == INVALID_HANDLE_VALUE)
    return -1;
  pe.dwSize = sizeof(pe);
  for (more = Process32FirstW(snap, &pe); more;
       more = Process32NextW(snap, &pe)) {
    /* The snapshot's parent ids may be stale (Windows reuses pids); a
     * signal checks the parent again through a handle. */
    if (pe.th32ParentProcessID != self || pe.th32ProcessID == self)
      continue;
    if (n < cap)
      pids[n] = (int64_t)pe.th32ProcessID;
    n++;
  }
  CloseHandle(snap);
  return (int)n;
#else
  (void)pids, (void)cap;
  return -1;
#endif
}

/* ---- signals ---- */

#ifdef _WIN32
/* PROCESS_BASIC_INFORMATION with every field pointer-sized, which is its
 * layout on both 32-bit and 64-bit Windows (declared here, as winternl.h
 * differs between SDKs). */
typedef struct basic_info_s {
  LONG_PTR exit_status;
  PVOID peb;
  ULONG_PTR affinity;
  LONG_PTR priority;
  ULONG_PTR pid;
  ULONG_PTR parent;
} basic_info_t;

typedef LONG(WINAPI *query_process_fn)(HANDLE, ULONG, PVOID, ULONG, PULONG);
#endif

int pp_test_signal_child(int64_t pid, pp_test_signal_t what) {
#ifdef _WIN32
  query_process_fn query = (query_process_fn)(void (*)(void))GetProcAddress(
      GetModuleHandleW(L"ntdll.dll"), "NtQueryInformationProcess");
  basic_info_t info;
  HANDLE h;
  int rc = -1;
  if (what != PP_TEST_KILL)
    return -2; /* Windows has no stop and continue for a process */
  if (query == NULL)
    return -2;
  h = OpenProcess(PROCESS_TERMINATE | PROCESS_QUERY_LIMITED_INFORMATION, FALSE,
                  (DWORD)pid);
  if (h == NULL)
    return -1;
  memset(&info, 0, sizeof(info));
  if (query(h, 0 /* ProcessBasicInformation */, &info, sizeof(info), NULL) ==
          0 &&
      info.parent == (ULONG_PTR)GetCurrentProcessId() && TerminateProcess(h, 9))
    rc = 0;
  CloseHandle(h);
  return rc;
#else
  int sig = what == PP_TEST_KILL   ? SIGKILL
            : what == PP_TEST_STOP ? SIGSTOP
                                   : SIGCONT;
#if defined(__linux__) && defined(SYS_pidfd_open) &&                           \
    defined(SYS_pidfd_send_signal)
  /* Set once the system said it has no pidfd (valgrind says so, loudly,
   * every time it is asked). */
  static int no_pidfd;
  int fd = no_pidfd ? -1 : (int)syscall(SYS_pidfd_open, (pid_t)pid, 0), rc;
  if (no_pidfd)
    errno = ENOSYS;
  if (fd >= 0) {
    /* Opened first, checked second: the pidfd names the process that had
     * the pid when it was opened, and that one is ours or not. */
    if (pp_test_pid_parent(pid) != (int64_t)getpid()) {
      close(fd);
      return -1;
    }
    rc = (int)syscall(SYS_pidfd_send_signal, fd, sig, NULL, 0);
    close(fd);
    return rc == 0 ? 0 : -1;
  }
  if (errno != ENOSYS)
    return -1; /* gone */
  no_pidfd = 1;
#endif
#if defined(__linux__)
  /* A kernel before 5.3 (or valgrind without the call): checked, then
   * sent, with a short window in between. */
  if (pp_test_pid_parent(pid) != (int64_t)getpid())
    return -1;
#endif
  return kill((pid_t)pid, sig) == 0 ? 0 : -1;
#endif
}

/* ---- counters in a shared file ---- */

uint32_t *pp_test_counters_map(const char *path, size_t n, int create) {
  size_t len = n * sizeof(uint32_t);
#ifdef _WIN32
  WCHAR wpath[1024];
  HANDLE file, mapping;
  void *view = NULL;
  if (len == 0 || MultiByteToWideChar(CP_UTF8, 0, path, -1, wpath, 1024) <= 0)
    return NULL;
  file = CreateFileW(wpath, GENERIC_READ | GENERIC_WRITE,
                     FILE_SHARE_READ | FILE_SHARE_WRITE | FILE_SHARE_DELETE,
                     NULL, create ? CREATE_ALWAYS : OPEN_EXISTING,
                     FILE_ATTRIBUTE_NORMAL, NULL);
  if (file == INVALID_HANDLE_VALUE)
    return NULL;
  /* A mapping of the file's size grows a new file to it, zeroed. */
  mapping = CreateFileMappingW(file, NULL, PAGE_READWRITE,
                               (DWORD)((uint64_t)len >> 32), (DWORD)len, NULL);
  if (mapping != NULL) {
    view = MapViewOfFile(mapping, FILE_MAP_WRITE, 0, 0, len);
    CloseHandle(mapping); /* the view keeps it */
  }
  CloseHandle(file);
  return view;
#else
  void *p;
  int fd =
      open(path, O_RDWR | O_CLOEXEC | (create ? O_CREAT | O_TRUNC : 0), 0600);
  if (len == 0 || fd < 0) {
    if (fd >= 0)
      close(fd);
    return NULL;
  }
  /* A new file is extended with zeros; an existing one must be as long. */
  if (create && ftruncate(fd, (off_t)len) != 0) {
    close(fd);
    return NULL;
  }
  p = mmap(NULL, len, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
  close(fd); /* the mapping keeps it */
  return p == MAP_FAILED ? NULL : p;
#endif
}

void pp_test_counters_unmap(uint32_t *counters, size_t n) {
  if (counters == NULL)
    return;
#ifdef _WIN32
  (void)n;
  UnmapViewOfFile(counters);
#else
  munmap(counters, n * sizeof(uint32_t));
#endif
}

/* The atomics of the compiler, not APR's: APR may fall back to a mutex of
 * this process, which another process would not see. */
uint32_t pp_test_counter_inc(uint32_t *counter) {
#if defined(_MSC_VER)
  return (uint32_t)InterlockedIncrement((volatile LONG *)counter);
#else
  return __atomic_add_fetch(counter, 1, __ATOMIC_SEQ_CST);
#endif
}

uint32_t pp_test_counter_get(const uint32_t *counter) {
#if defined(_MSC_VER)
  return (uint32_t)InterlockedCompareExchange((volatile LONG *)counter, 0, 0);
#else
  return __atomic_load_n(counter, __ATOMIC_SEQ_CST);
#endif
}

/* ---- the storm ---- */

#define STORM_PIDS 128
#define STORM_STOPPED 32

typedef struct stopped_s {
  int64_t pid;
  apr_time_t until;
} stopped_t;

/* Windows: when each target was first seen (see storm_targets). */
#define STORM_SEEN 256
typedef struct seen_s {
  int64_t pid;
  apr_time_t first;
} seen_t;

struct pp_test_storm_s {
  pp_pool_t *pool;
  seen_t seen[STORM_SEEN];
  size_t nseen;
  uint64_t rng;
  volatile apr_uint32_t quit;
  apr_pool_t *mem;
  apr_thread_t *thread;
  int can_list; /* 0 once the system cannot list children */
  int bursts;   /* kill every worker as it starts, now and then */
  pp_test_storm_stats_t stats;
  stopped_t stopped[STORM_STOPPED];
  size_t nstopped;
};

/* splitmix64, as the tests' own generators. */
static unsigned storm_pick(pp_test_storm_t *st, unsigned n) {
  uint64_t z = (st->rng += 0x9E3779B97F4A7C15ull);
  z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
  z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
  return (unsigned)((z ^ (z >> 31)) % n);
}

static void storm_resume(pp_test_storm_t *st, int all) {
  apr_time_t now = apr_time_now();
  size_t i = 0;
  while (i < st->nstopped) {
    if (all || st->stopped[i].until <= now) {
      pp_test_signal_child(st->stopped[i].pid, PP_TEST_CONT);
      st->stopped[i] = st->stopped[--st->nstopped];
    } else {
      i++;
    }
  }
}

#ifdef _WIN32
/* Windows (as Wine runs it): only workers first seen STORM_GROWN_MS ago or
 * more are targets.  Wine's server ends itself, and with it every process
 * of the prefix, when a process is terminated while the pool creates it
 * (suspended, being put in its job); so the kills of starting workers are
 * left to the POSIX legs, and Windows cannot tell such a kill from the
 * program's own exit anyway (design.md, section 2). */
#define STORM_GROWN_MS 500
static size_t storm_grown(pp_test_storm_t *st, int64_t *pids, size_t n) {
  apr_time_t now = apr_time_now();
  size_t i, j, kept = 0;
  for (i = 0; i < n; i++) {
    for (j = 0; j < st->nseen && st->seen[j].pid != pids[i]; j++)
      ;
    if (j == st->nseen) {
      if (st->nseen == STORM_SEEN) /* forget the oldest half */
        memmove(st->seen, st->seen + STORM_SEEN / 2,
                (st->nseen -= STORM_SEEN / 2) * sizeof(st->seen[0]));
      j = st->nseen++;
      st->seen[j].pid = pids[i];
      st->seen[j].first = now;
    }
    if (now - st->seen[j].first >=
        apr_time_from_msec(STORM_GROWN_MS * pp_test_time_scale()))
      pids[kept++] = pids[i];
  }
  return kept;
}
#endif

/* The pool's workers, and (where they can be listed) every child of this
 * process, which includes workers the pool has only just started. */
static size_t storm_targets(pp_test_storm_t *st, int64_t *pids, int children) {
  int64_t kids[STORM_PIDS / 2];
  int got = pp_pool_worker_pids(st->pool, pids, STORM_PIDS / 2), k;
  size_t n = got > 0 ? (size_t)got : 0, i, j;
  if (n > STORM_PIDS / 2)
    n = STORM_PIDS / 2;
#ifdef _WIN32
  (void)children, (void)kids, (void)k, (void)i, (void)j;
  return storm_grown(st, pids, n);
#else
  if (!st->can_list || !children)
    return n;
  k = pp_test_children(kids, STORM_PIDS / 2);
  if (k < 0)
    st->can_list = 0;
  for (i = 0; k > 0 && i < (size_t)k && i < STORM_PIDS / 2; i++) {
    for (j = 0; j < n && pids[j] != kids[i]; j++)
      ;
    if (j == n)
      pids[n++] = kids[i];
  }
  return n;
#endif
}

static void *APR_THREAD_FUNC storm_main(apr_thread_t *thread, void *data) {
  pp_test_storm_t *st = data;
  pp_test_storm_stats_t *s = &st->stats;
  int64_t pids[STORM_PIDS];
  apr_time_t burst_end = 0;
  unsigned round = 0;
  apr_time_t next_burst = apr_time_now() + apr_time_from_msec(1000);
  (void)thread;
  while (!apr_atomic_read32(&st->quit)) {
    apr_time_t now = apr_time_now();
    size_t n, i;
    int64_t pid;
    storm_resume(st, 0);
    /* In a burst the children are listed one round in ten: a scan of
     * /proc takes longer than a worker needs to start. */
    n = storm_targets(st, pids, now >= burst_end || ++round % 10 == 0);
    if (st->bursts && now >= next_burst) {
      /* Every worker is killed as soon as it shows, for 500-1000 ms: the
       * pool starts new ones, which die again while they start. */
      burst_end = now + apr_time_from_msec(500 + storm_pick(st, 501));
      next_burst = burst_end + apr_time_from_msec(2000 + storm_pick(st, 3001));
      s->bursts++;
    }
    if (now < burst_end) {
      for (i = 0; i < n; i++)
        if (pp_test_signal_child(pids[i], PP_TEST_KILL) == 0)
          s->burst_kills++;
      apr_sleep(200);
      continue;
    }
    pid = n > 0 ? pids[storm_pick(st, (unsigned)n)] : 0;
    if (n == 0) {
      /* nothing to hit */
    } else if (!s->can_stop || storm_pick(st, 100) < 60) {
      if (pp_test_signal_child(pid, PP_TEST_KILL) == 0)
        s->kills++;
    } else if (st->nstopped < STORM_STOPPED) {
      int rc = pp_test_signal_child(pid, PP_TEST_STOP);
      if (rc == -2)
        s->can_stop = 0;
      if (rc == 0) {
        s->stops++;
        st->stopped[st->nstopped].pid = pid;
        st->stopped[st->nstopped++].until =
            now + apr_time_from_msec(1 + storm_pick(st, 15));
      }
    }
    apr_sleep(apr_time_from_msec(1 + storm_pick(st, 12)));
  }
  storm_resume(st, 1);
  return NULL;
}

pp_test_storm_t *pp_test_storm_start(pp_pool_t *pool, uint64_t seed,
                                     int bursts) {
  pp_test_storm_t *st = calloc(1, sizeof(*st));
  if (st == NULL || apr_initialize() != APR_SUCCESS) {
    free(st);
    return NULL;
  }
  st->pool = pool;
  st->rng = seed;
  st->can_list = 1;
  st->bursts = bursts;
  st->stats.can_stop = 1;
  if (apr_pool_create(&st->mem, NULL) != APR_SUCCESS ||
      apr_thread_create(&st->thread, NULL, storm_main, st, st->mem) !=
          APR_SUCCESS) {
    if (st->mem != NULL)
      apr_pool_destroy(st->mem);
    free(st);
    apr_terminate();
    return NULL;
  }
  return st;
}

void pp_test_storm_stop(pp_test_storm_t *st, pp_test_storm_stats_t *stats) {
  apr_status_t rv;
  if (st == NULL)
    return;
  apr_atomic_set32(&st->quit, 1);
  apr_thread_join(&rv, st->thread);
  if (stats != NULL)
    *stats = st->stats;
  apr_pool_destroy(st->mem);
  free(st);
  apr_terminate();
}
