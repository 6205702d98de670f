/*
 * tasks_hostile.c - tasks that behave as careless or hostile user code
 * does: odd return values, replies that fail, forks that outlive the
 * worker, output that imitates procpool's own markers.  They are part of
 * the shared table in tasks.c (see tasks.h for their shapes).
 */
#if defined(__linux__)
#ifndef _GNU_SOURCE
#define _GNU_SOURCE
#endif
#elif !defined(_WIN32) && !defined(_POSIX_C_SOURCE)
#define _POSIX_C_SOURCE 200809L
#endif

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#ifdef _WIN32
#include <windows.h>
#else
#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <sys/resource.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>
#endif
#if defined(__linux__)
#include <sys/syscall.h>
#endif

#include <apr_thread_proc.h>
#include <apr_time.h>

#include "helpers.h"
#include "tasks.h"

/* The library's own hooks (internal, which the static library the tests
 * link shows): memory a task may scribble over. */
void pp__worker_zero_shared(void);
void pp__worker_clear_sleep_flag(void);
/* ... and what a worker holds (src/worker.c, platform/win32/waiter.c). */
struct pp__wake_s *pp__worker_parent_wake(void);
#ifdef _WIN32
HANDLE pp__win_wake_handle(const struct pp__wake_s *wake);
#endif

int pp_test_task_ret(pp_call_t *call, const void *arg, size_t len) {
  int64_t v;
  if (pp_unpack(arg, len, "i", &v) != 0)
    return pp_call_fail(call, "ret wants one int64");
  return (int)v;
}

int pp_test_task_bad_reply(pp_call_t *call, const void *arg, size_t len) {
  int64_t mode;
  if (pp_unpack(arg, len, "i", &mode) != 0)
    return pp_call_fail(call, "bad_reply wants one int64");
  switch (mode) {
    case 0:
      pp_call_replyf(call, "q", (int64_t)1); /* 'q' is no format letter */
      return 0;
    case 1:
      pp_call_reply(call, NULL, 5);
      return 0;
    case 2:
      pp_call_replyf(call, "b", (const void *)call, (size_t)-1);
      return 0;
    default:
      /* A failed reply followed by a good one: the good one counts. */
      pp_call_replyf(call, "q", (int64_t)1);
      return pp_call_replyf(call, "i", (int64_t)42);
  }
}

#ifndef _WIN32
/* Starts a child that sleeps `ms` and exits, holding whatever the worker
 * had open.  how 0: fork(), which runs fork handlers; how 1: a raw clone
 * system call that runs none (as _Fork() or a library's own clone would),
 * so only the parent's watch on the worker process can notice the
 * worker's death. */
static pid_t start_holder(int how, int64_t ms) {
  pid_t pid;
#if defined(__linux__) && defined(SYS_clone)
  if (how == 1) {
    pid = (pid_t)syscall(SYS_clone, SIGCHLD, NULL, NULL, NULL, NULL);
    if (pid == 0) {
      /* Only system calls here: the C library's state is the parent's. */
      struct timespec ts;
      ts.tv_sec = (time_t)(ms / 1000);
      ts.tv_nsec = (long)(ms % 1000) * 1000000L;
      syscall(SYS_nanosleep, &ts, NULL);
      syscall(SYS_exit_group, 0);
    }
    return pid;
  }
#else
  (void)how;
#endif
  pid = fork();
  if (pid == 0) {
    struct timespec ts;
    ts.tv_sec = (time_t)(ms / 1000);
    ts.tv_nsec = (long)(ms % 1000) * 1000000L;
    nanosleep(&ts, NULL);
    _exit(0);
  }
  return pid;
}
#endif

int pp_test_task_fork_hold(pp_call_t *call, const void *arg, size_t len) {
  int64_t how, ms;
  const char *action;
  if (pp_unpack(arg, len, "iis", &how, &ms, &action) != 0)
    return pp_call_fail(call, "fork_hold wants (int64, int64, string)");
#ifdef _WIN32
  (void)how, (void)ms, (void)action;
  return pp_call_fail(call, "fork_hold: there is no fork on Windows");
#else
  {
    pid_t pid = start_holder((int)how, ms);
    if (pid < 0)
      return pp_call_fail(call, "fork_hold: fork failed");
    /* The test learns the holder's pid before the worker goes away. */
    pp_log(1, "fork_hold: holder %lld", (long long)pid);
    if (strcmp(action, "segv") == 0)
      pp_test_crash_segv();
    if (strcmp(action, "hang") == 0)
      for (;;)
        apr_sleep(apr_time_from_sec(1));
    if (strcmp(action, "exit") == 0)
      _exit(3);
    return pp_call_replyf(call, "i", (int64_t)pid);
  }
#endif
}

int pp_test_task_fork_fd(pp_call_t *call, const void *arg, size_t len) {
  (void)arg, (void)len;
#ifdef _WIN32
  return pp_call_fail(call, "fork_fd: there is no fork on Windows");
#else
  {
    int status = 0;
    pid_t pid = fork();
    if (pid == 0)
      _exit(fcntl(3, F_GETFD) < 0 && errno == EBADF ? 0 : 1);
    if (pid < 0 || waitpid(pid, &status, 0) != pid || !WIFEXITED(status))
      return pp_call_fail(call, "fork_fd: the child did not exit");
    return pp_call_replyf(call, "i", (int64_t)WEXITSTATUS(status));
  }
#endif
}

int pp_test_task_spoof(pp_call_t *call, const void *arg, size_t len) {
  const char *tag;
  /* What a marker looks like, with a made-up call id and key. */
  static const char fake[] = "\0PP00000000000f4240deadbeefdeadbeef\n";
  static const char nul_line[] = "x\0y";
  if (pp_unpack(arg, len, "s", &tag) != 0)
    return pp_call_fail(call, "spoof wants one string");
  fflush(stdout);
  fwrite(fake, 1, sizeof(fake) - 1, stdout);
  printf("after %s\n", tag);
  fwrite(nul_line, 1, sizeof(nul_line) - 1, stdout);
  printf(" %s\n", tag);
  fflush(stdout);
  return pp_call_replyf(call, "i", (int64_t)pp_call_id(call));
}

int pp_test_task_longline(pp_call_t *call, const void *arg, size_t len) {
  int64_t n, i;
  if (pp_unpack(arg, len, "i", &n) != 0 || n < 0)
    return pp_call_fail(call, "longline wants one int64 >= 0");
  for (i = 0; i < n; i++)
    fputc('a' + (int)(i % 26), stdout);
  fputc('\n', stdout);
  fputs("longline end\n", stdout);
  fflush(stdout);
  return pp_call_replyf(call, "i", n);
}

int pp_test_task_noeol(pp_call_t *call, const void *arg, size_t len) {
  int64_t n, i;
  if (pp_unpack(arg, len, "i", &n) != 0 || n < 0)
    return pp_call_fail(call, "noeol wants one int64 >= 0");
  /* No newline and no flush: the end of the call must send it all. */
  for (i = 0; i < n; i++)
    fputc('a' + (int)(i % 26), stdout);
  return pp_call_replyf(call, "i", n);
}

int pp_test_task_zero_shared(pp_call_t *call, const void *arg, size_t len) {
  (void)arg;
  (void)len;
  /* Long enough for the parent to go to sleep waiting for this call. */
  apr_sleep(apr_time_from_msec(200));
  pp__worker_zero_shared();
  return pp_call_replyf(call, "i", (int64_t)1);
}

static void *APR_THREAD_FUNC unflag_main(apr_thread_t *t, void *data) {
  (void)data;
  /* By now the call has ended and the worker sleeps, waiting for the
   * next one. */
  apr_sleep(apr_time_from_msec(300));
  pp__worker_clear_sleep_flag();
  apr_thread_exit(t, APR_SUCCESS);
  return NULL;
}

int pp_test_task_unflag_later(pp_call_t *call, const void *arg, size_t len) {
  static apr_pool_t *mem;
  static apr_threadattr_t *detached;
  apr_thread_t *t;
  (void)arg;
  (void)len;
  if (mem == NULL && apr_pool_create(&mem, NULL) != APR_SUCCESS)
    return pp_call_fail(call, "unflag_later: no memory");
  /* Nobody joins it: it ends by itself. */
  if (detached == NULL && (apr_threadattr_create(&detached, mem) != APR_SUCCESS ||
                           apr_threadattr_detach_set(detached, 1) != APR_SUCCESS))
    return pp_call_fail(call, "unflag_later: no thread attributes");
  if (apr_thread_create(&t, detached, unflag_main, NULL, mem) != APR_SUCCESS)
    return pp_call_fail(call, "unflag_later: no thread");
  return pp_call_replyf(call, "i", (int64_t)1);
}

int pp_test_task_limit_as(pp_call_t *call, const void *arg, size_t len) {
  int64_t extra;
  if (pp_unpack(arg, len, "i", &extra) != 0 || extra < 0)
    return pp_call_fail(call, "limit_as wants one int64 >= 0");
#if defined(__linux__)
  {
    unsigned long pages = 0;
    struct rlimit rl;
    FILE *f = fopen("/proc/self/statm", "r");
    if (f == NULL || fscanf(f, "%lu", &pages) != 1) {
      if (f != NULL)
        fclose(f);
      return pp_call_fail(call, "limit_as: cannot read /proc/self/statm");
    }
    fclose(f);
    rl.rlim_cur = rl.rlim_max =
        (rlim_t)pages * (rlim_t)sysconf(_SC_PAGESIZE) + (rlim_t)extra;
    if (setrlimit(RLIMIT_AS, &rl) != 0)
      return pp_call_fail(call, "limit_as: setrlimit: %s", strerror(errno));
    return pp_call_replyf(call, "i", (int64_t)rl.rlim_cur);
  }
#else
  return pp_call_fail(call, "limit_as: Linux only");
#endif
}

int pp_test_task_late_peek(pp_call_t *call, const void *arg, size_t len) {
  const volatile unsigned char *p = arg;
  unsigned char first;
  apr_time_t end;
  if (len == 0)
    return pp_call_fail(call, "late_peek wants bytes");
  /* The log line tells the test when to change the byte, so that no
   * schedule decides whether the change comes after the start. */
  first = p[0];
  pp_log(1, "late_peek: started");
  end = apr_time_now() + apr_time_from_msec(PP_TEST_MS(10000));
  while (p[0] == first && apr_time_now() < end)
    apr_sleep(1000);
  return pp_call_replyf(call, "i", (int64_t)p[0]);
}

int pp_test_task_late_echo(pp_call_t *call, const void *arg, size_t len) {
  apr_sleep(apr_time_from_msec(500));
  return pp_call_reply(call, arg, len);
}

int pp_test_task_wake_rights(pp_call_t *call, const void *arg, size_t len) {
  (void)arg;
  (void)len;
#ifdef _WIN32
  {
    struct pp__wake_s *wake = pp__worker_parent_wake();
    HANDLE event;
    int64_t waited = 0, signalled = 0;
    if (wake == NULL)
      return pp_call_fail(call, "wake_rights: not in a worker");
    event = pp__win_wake_handle(wake);
    /* No time: if the wait works, it takes a signal some worker gave the
     * parent (which looks again within its bounded sleep). */
    if (WaitForSingleObject(event, 0) == WAIT_FAILED)
      waited = (int64_t)GetLastError();
    /* A spurious wake-up of the parent, which it takes in its stride. */
    if (!SetEvent(event))
      signalled = (int64_t)GetLastError();
    return pp_call_replyf(call, "ii", waited, signalled);
  }
#else
  return pp_call_fail(call, "wake_rights: Windows only");
#endif
}
