/*
 * helpers.c - OS facts for the tests and the capturing log callback.
 */
/* sched_getaffinity on Linux; kill and setenv elsewhere.  APR's flags may
 * already define _GNU_SOURCE. */
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
#else
#include <dirent.h>
#include <errno.h>
#include <signal.h>
#include <spawn.h>
#include <sys/wait.h>
#include <unistd.h>
extern char **environ;
#endif
#if defined(__linux__)
#include <sched.h>
#endif

#include <apr_general.h>
#include <apr_thread_mutex.h>
#include <apr_time.h>

#include "helpers.h"

int pp_test_fd_count(void) {
#if defined(__linux__)
  DIR *d = opendir("/proc/self/fd");
  struct dirent *e;
  int n = 0;
  if (d == NULL)
    return -1;
  while ((e = readdir(d)) != NULL)
    if (e->d_name[0] != '.')
      n++;
  closedir(d);
  /* The directory stream itself was one of them. */
  return n - 1;
#else
  return -1;
#endif
}

int pp_test_pid_alive(int64_t pid) {
#ifdef _WIN32
  HANDLE h = OpenProcess(PROCESS_QUERY_LIMITED_INFORMATION, FALSE, (DWORD)pid);
  DWORD code = 0;
  int alive;
  if (h == NULL)
    return 0;
  alive = GetExitCodeProcess(h, &code) && code == STILL_ACTIVE;
  CloseHandle(h);
  return alive;
#else
  if (pid <= 0)
    return 0;
  if (kill((pid_t)pid, 0) != 0 && errno == ESRCH)
    return 0;
#if defined(__linux__)
  {
    /* A process whose parent died is reparented to init, which in a
     * container may never reap it: a zombie has ended all the same. */
    char path[64], buf[512], *p;
    FILE *f;
    size_t n;
    snprintf(path, sizeof(path), "/proc/%lld/stat", (long long)pid);
    f = fopen(path, "r");
    if (f == NULL)
      return 0;
    n = fread(buf, 1, sizeof(buf) - 1, f);
    fclose(f);
    buf[n] = '\0';
    /* The state follows the command name, which is in parentheses and may
     * itself contain them. */
    p = strrchr(buf, ')');
    if (p != NULL && p[1] == ' ' && (p[2] == 'Z' || p[2] == 'X')) {
      /* A killed process' main thread can turn zombie before its other
       * threads have ended; until they have, the process cannot be waited
       * for and still holds its descriptors.  num_threads is the 18th
       * field after the state. */
      long threads = 1;
      sscanf(p + 2,
             "%*s %*s %*s %*s %*s %*s %*s %*s %*s %*s %*s %*s %*s "
             "%*s %*s %*s %*s %ld",
             &threads);
      return threads > 1;
    }
  }
#endif
  return 1;
#endif
}

int pp_test_wait_gone(const int64_t *pids, size_t n, int64_t timeout_ms) {
  apr_time_t end =
      apr_time_now() + apr_time_from_msec(timeout_ms * pp_test_time_scale());
  for (;;) {
    size_t i, alive = 0;
    for (i = 0; i < n; i++)
      alive += (size_t)pp_test_pid_alive(pids[i]);
    if (alive == 0)
      return 1;
    if (apr_time_now() >= end)
      return 0;
    pp_test_sleep_ms(10);
  }
}

int64_t pp_test_self_pid(void) {
#ifdef _WIN32
  return (int64_t)GetCurrentProcessId();
#else
  return (int64_t)getpid();
#endif
}

int pp_test_cpu_count(void) {
#ifdef _WIN32
  DWORD_PTR proc = 0, sys = 0;
  int n = 0;
  if (GetProcessAffinityMask(GetCurrentProcess(), &proc, &sys))
    for (; proc != 0; proc &= proc - 1)
      n++;
  if (n == 0) {
    SYSTEM_INFO si;
    GetSystemInfo(&si);
    n = (int)si.dwNumberOfProcessors;
  }
  return n > 0 ? n : 1;
#else
  long n;
#if defined(__linux__)
  cpu_set_t set;
  if (sched_getaffinity(0, sizeof(set), &set) == 0 && CPU_COUNT(&set) > 0)
    return CPU_COUNT(&set);
#endif
  n = sysconf(_SC_NPROCESSORS_ONLN);
  return n > 0 ? (int)n : 1;
#endif
}

#ifndef PP_TEST_BUILD_TIME_SCALE
#define PP_TEST_BUILD_TIME_SCALE 1
#endif

int64_t pp_test_time_scale(void) {
  const char *v = getenv("PROCPOOL_TEST_TIME_SCALE");
  long long run = v != NULL ? atoll(v) : 1;
  return (int64_t)PP_TEST_BUILD_TIME_SCALE * (run > 1 ? run : 1);
}

void pp_test_sleep_ms(int64_t ms) {
  apr_sleep(apr_time_from_msec(ms));
}

void pp_test_setenv(const char *name, const char *value) {
#ifdef _WIN32
  /* In UTF-16: _putenv_s would read the text in the ANSI code page. */
  WCHAR wname[256], wvalue[4096];
  if (MultiByteToWideChar(CP_UTF8, MB_ERR_INVALID_CHARS, name, -1, wname,
                          256) <= 0 ||
      MultiByteToWideChar(CP_UTF8, MB_ERR_INVALID_CHARS,
                          value != NULL ? value : "", -1, wvalue, 4096) <= 0) {
    fprintf(stderr, "pp_test_setenv: %s: not UTF-8, or too long\n", name);
    abort();
  }
  _wputenv_s(wname, wvalue);
#else
  if (value)
    setenv(name, value, 1);
  else
    unsetenv(name);
#endif
}

int64_t pp_test_int_result(const pp_result_t *r) {
  int64_t v;
  if (r->status != 0 || pp_unpack(r->data, r->len, "i", &v) != 0)
    return INT64_MIN;
  return v;
}

pp_buf_t pp_test_pack_int(int64_t v) {
  pp_buf_t b;
  if (pp_pack(&b, "i", v) != 0) {
    fprintf(stderr, "pp_pack: %s\n", pp_last_error());
    exit(1);
  }
  return b;
}

void pp_test_free_bufs(pp_buf_t *bufs, size_t n) {
  size_t i;
  for (i = 0; i < n; i++) {
    pp_free((void *)bufs[i].data);
    bufs[i].data = NULL;
    bufs[i].len = 0;
  }
}

/* ---- a child process ---- */

#ifdef _WIN32
struct pp_test_child_s {
  HANDLE process;
};

pp_test_child_t *pp_test_child_start(const char *argv0, const char *arg,
                                     char *line, size_t cap) {
  SECURITY_ATTRIBUTES sa = {sizeof(sa), NULL, TRUE};
  STARTUPINFOA si;
  PROCESS_INFORMATION pi;
  HANDLE rd = NULL, wr = NULL;
  char exe[MAX_PATH], cmd[2 * MAX_PATH];
  pp_test_child_t *c = NULL;
  size_t got = 0;
  BOOL ok;
  (void)argv0;
  if (cap == 0 || GetModuleFileNameA(NULL, exe, sizeof(exe)) == 0 ||
      !CreatePipe(&rd, &wr, &sa, 0))
    return NULL;
  /* Only the write end goes to the child. */
  SetHandleInformation(rd, HANDLE_FLAG_INHERIT, 0);
  snprintf(cmd, sizeof(cmd), "\"%s\" %s", exe, arg);
  memset(&si, 0, sizeof(si));
  si.cb = sizeof(si);
  si.dwFlags = STARTF_USESTDHANDLES;
  si.hStdInput = GetStdHandle(STD_INPUT_HANDLE);
  si.hStdOutput = wr;
  si.hStdError = GetStdHandle(STD_ERROR_HANDLE);
  ok = CreateProcessA(NULL, cmd, NULL, NULL, TRUE, 0, NULL, NULL, &si, &pi);
  CloseHandle(wr);
  if (!ok) {
    CloseHandle(rd);
    return NULL;
  }
  CloseHandle(pi.hThread);
  while (got + 1 < cap && memchr(line, '\n', got) == NULL) {
    DWORD n = 0;
    if (!ReadFile(rd, line + got, (DWORD)(cap - 1 - got), &n, NULL) || n == 0)
      break;
    got += n;
  }
  CloseHandle(rd);
  line[got] = '\0';
  if (strchr(line, '\n') == NULL || (c = malloc(sizeof(*c))) == NULL) {
    TerminateProcess(pi.hProcess, 1);
    WaitForSingleObject(pi.hProcess, INFINITE);
    CloseHandle(pi.hProcess);
    return NULL;
  }
  *strchr(line, '\n') = '\0';
  c->process = pi.hProcess;
  return c;
}

void pp_test_child_kill(pp_test_child_t *c) {
  if (c == NULL)
    return;
  TerminateProcess(c->process, 9);
  WaitForSingleObject(c->process, INFINITE);
  CloseHandle(c->process);
  free(c);
}
#else
struct pp_test_child_s {
  pid_t pid;
};

pp_test_child_t *pp_test_child_start(const char *argv0, const char *arg,
                                     char *line, size_t cap) {
  posix_spawn_file_actions_t fa;
  const char *exe = argv0;
  char *argv[3];
  pp_test_child_t *c;
  size_t got = 0;
  int fds[2], rc, status;
  pid_t pid;
#if defined(__linux__)
  /* readlink, not an exec of the link itself: under valgrind the link
   * names valgrind's tool, and only readlink is translated to the client. */
  char self[4096];
  ssize_t len = readlink("/proc/self/exe", self, sizeof(self) - 1);
  if (len > 0) {
    self[len] = '\0';
    exe = self;
  }
#endif
  if (cap == 0 || pipe(fds) != 0)
    return NULL;
  argv[0] = (char *)argv0;
  argv[1] = (char *)arg;
  argv[2] = NULL;
  posix_spawn_file_actions_init(&fa);
  posix_spawn_file_actions_adddup2(&fa, fds[1], 1);
  posix_spawn_file_actions_addclose(&fa, fds[0]);
  rc = posix_spawn(&pid, exe, &fa, NULL, argv, environ);
  posix_spawn_file_actions_destroy(&fa);
  close(fds[1]);
  if (rc != 0) {
    close(fds[0]);
    return NULL;
  }
  while (got + 1 < cap && memchr(line, '\n', got) == NULL) {
    ssize_t n = read(fds[0], line + got, cap - 1 - got);
    if (n < 0 && errno == EINTR)
      continue;
    if (n <= 0)
      break;
    got += (size_t)n;
  }
  close(fds[0]);
  line[got] = '\0';
  if (strchr(line, '\n') == NULL || (c = malloc(sizeof(*c))) == NULL) {
    kill(pid, SIGKILL);
    waitpid(pid, &status, 0);
    return NULL;
  }
  *strchr(line, '\n') = '\0';
  c->pid = pid;
  return c;
}

void pp_test_child_kill(pp_test_child_t *c) {
  int status;
  if (c == NULL)
    return;
  kill(c->pid, SIGKILL);
  while (waitpid(c->pid, &status, 0) < 0 && errno == EINTR)
    ;
  free(c);
}
#endif

/* ---- log capture ---- */

struct pp_test_log_s {
  apr_pool_t *mem;
  apr_thread_mutex_t *lock;
  pp_test_record_t *recs;
  size_t n, cap;
};

pp_test_log_t *pp_test_log_new(void) {
  pp_test_log_t *log = calloc(1, sizeof(*log));
  if (log == NULL || apr_initialize() != APR_SUCCESS ||
      apr_pool_create(&log->mem, NULL) != APR_SUCCESS ||
      apr_thread_mutex_create(&log->lock, APR_THREAD_MUTEX_DEFAULT, log->mem) !=
          APR_SUCCESS) {
    fprintf(stderr, "cannot create a log capture\n");
    exit(1);
  }
  return log;
}

void pp_test_log_free(pp_test_log_t *log) {
  size_t i;
  if (log == NULL)
    return;
  for (i = 0; i < log->n; i++)
    free(log->recs[i].line);
  free(log->recs);
  apr_pool_destroy(log->mem);
  free(log);
  apr_terminate();
}

void pp_test_log_cb(void *data, const pp_log_record_t *record) {
  pp_test_log_t *log = data;
  pp_test_record_t r;
  r.worker = record->worker;
  r.call_id = record->call_id;
  r.source = record->source;
  r.level = record->level;
  r.more = record->more;
  r.len = record->len;
  r.line = malloc(record->len + 1);
  if (r.line == NULL)
    abort();
  memcpy(r.line, record->line, record->len);
  r.line[record->len] = '\0';
  apr_thread_mutex_lock(log->lock);
  if (log->n == log->cap) {
    size_t cap = log->cap ? 2 * log->cap : 64;
    pp_test_record_t *recs = realloc(log->recs, cap * sizeof(*recs));
    if (recs == NULL)
      abort();
    log->recs = recs;
    log->cap = cap;
  }
  log->recs[log->n++] = r;
  apr_thread_mutex_unlock(log->lock);
}

size_t pp_test_log_count(pp_test_log_t *log) {
  size_t n;
  apr_thread_mutex_lock(log->lock);
  n = log->n;
  apr_thread_mutex_unlock(log->lock);
  return n;
}

int pp_test_log_get(pp_test_log_t *log, size_t i, pp_test_record_t *out) {
  int ok;
  apr_thread_mutex_lock(log->lock);
  ok = i < log->n;
  if (ok)
    *out = log->recs[i];
  apr_thread_mutex_unlock(log->lock);
  return ok;
}

static int find_line(pp_test_log_t *log, const char *line,
                     pp_test_record_t *out) {
  size_t i;
  int found = 0;
  apr_thread_mutex_lock(log->lock);
  for (i = 0; i < log->n && !found; i++) {
    if (strcmp(log->recs[i].line, line) == 0) {
      found = 1;
      if (out != NULL)
        *out = log->recs[i];
    }
  }
  apr_thread_mutex_unlock(log->lock);
  return found;
}

int pp_test_log_wait(pp_test_log_t *log, const char *line, int64_t timeout_ms,
                     pp_test_record_t *out) {
  apr_time_t end =
      apr_time_now() + apr_time_from_msec(timeout_ms * pp_test_time_scale());
  for (;;) {
    if (find_line(log, line, out))
      return 1;
    if (apr_time_now() >= end)
      return 0;
    pp_test_sleep_ms(5);
  }
}

size_t pp_test_log_count_line(pp_test_log_t *log, const char *line) {
  size_t i, n = 0;
  apr_thread_mutex_lock(log->lock);
  for (i = 0; i < log->n; i++)
    n += strcmp(log->recs[i].line, line) == 0;
  apr_thread_mutex_unlock(log->lock);
  return n;
}
