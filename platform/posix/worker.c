/*
 * worker.c (POSIX) - the worker's side of start-up.
 *
 * The channel is descriptor 3 (placed there by the spawn file actions).  The
 * worker marks it close-on-exec, so processes a task starts do not hold the
 * parent's channel open (the parent would then never see the worker's end),
 * and closes every other descriptor above 3 that the application leaked
 * without close-on-exec.  A task that forks without exec (a daemonized
 * helper, a library's watchdog) would still hand the channel to its child,
 * so a fork handler closes it there.  On Linux the worker also asks the
 * kernel to kill it when the parent dies, and rechecks the parent
 * afterwards, because the parent may have died before the request was made.
 */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#if defined(__linux__)
#include <sys/prctl.h>
#include <sys/syscall.h>
#endif

#include "internal.h"

static void close_from(int lowfd) {
#if defined(__linux__) && defined(SYS_close_range)
  if (syscall(SYS_close_range, (unsigned)lowfd, ~0u, 0u) == 0)
    return;
#endif
  {
    long max = sysconf(_SC_OPEN_MAX);
    int fd;
    if (max < 0 || max > 65536)
      max = 65536;
    for (fd = lowfd; fd < max; fd++)
      close(fd);
  }
}

/* The worker's channel, for the fork handler. */
static pp__chan_t *worker_chan;

/* Runs in the child of every fork() in the worker (not for posix_spawn or
 * vfork, whose child execs at once and loses the close-on-exec channel
 * anyway).  The child is not the worker: it must neither hold the channel
 * open, which would hide the worker's death from a parent that waits for
 * the end of the stream, nor write frames to it.  A child that calls
 * pp_log() later gets an error and logs to its stderr instead. */
static void close_channel_in_child(void) {
  if (worker_chan != NULL) {
    pp__posix_chan_forget(worker_chan, 1);
    worker_chan = NULL;
  }
}

/* ---- the crash hook ---- */

static void (*crash_hook)(void);

/* Runs the hook, then lets the signal do what it would have done: the
 * handler was installed with SA_RESETHAND, so the disposition is the
 * default again, and raising the signal once more ends the process with
 * it, whether it came from a fault or from raise() or abort(). */
static void on_crash(int sig) {
  if (crash_hook != NULL)
    crash_hook();
  raise(sig);
}

void pp__worker_set_crash_hook(void (*hook)(void)) {
  static const int sigs[] = {SIGSEGV, SIGBUS, SIGILL, SIGFPE, SIGABRT};
  static char stack[65536];
  stack_t ss;
  size_t i;
  crash_hook = hook;
  /* A stack overflow leaves no stack to run a handler on. */
  memset(&ss, 0, sizeof(ss));
  ss.ss_sp = stack;
  ss.ss_size = sizeof(stack);
  sigaltstack(&ss, NULL);
  for (i = 0; i < sizeof(sigs) / sizeof(sigs[0]); i++) {
    struct sigaction old, sa;
    if (sigaction(sigs[i], NULL, &old) != 0 || old.sa_handler != SIG_DFL ||
        (old.sa_flags & SA_SIGINFO))
      continue; /* The application's own handler stays. */
    memset(&sa, 0, sizeof(sa));
    sa.sa_handler = on_crash;
    sa.sa_flags = SA_RESETHAND | SA_ONSTACK | SA_NODEFER;
    sigemptyset(&sa.sa_mask);
    sigaction(sigs[i], &sa, NULL);
  }
}

/* Workers are started from an open file on Linux (/proc/self/fd/9), which
 * would leave "9" as the process name that top and pgrep show; the name is
 * set back to the program's file name, as an ordinary start would set it. */
static void name_process(void) {
#if defined(__linux__)
  char path[PATH_MAX + 1];
  const char *base;
  ssize_t n = readlink("/proc/self/exe", path, sizeof(path) - 1);
  if (n <= 0)
    return;
  path[n] = '\0';
  /* A file deleted since it was started reads "<path> (deleted)". */
  if (n > 10 && strcmp(path + n - 10, " (deleted)") == 0)
    path[n - 10] = '\0';
  base = strrchr(path, '/');
  prctl(PR_SET_NAME, base != NULL ? base + 1 : path, 0, 0, 0);
#endif
}

/* Parses "c,s,w,p,o,e": the descriptors of the channel, shared memory,
 * this worker's wake object, the parent's, and the read ends of stdout and
 * stderr (-1 when output is inherited). */
static int parse_spec(const char *spec, int fds[6]) {
  const char *p = spec;
  int i;
  for (i = 0; i < 6; i++) {
    char *end = NULL;
    long v;
    errno = 0;
    v = strtol(p, &end, 10);
    if (errno != 0 || end == p || v < -1 || v > 1024 ||
        (i < 4 && v < 3) || *end != (i < 5 ? ',' : '\0'))
      return pp__os_fail(PP_EINVAL, "bad worker descriptors '%s'", spec);
    fds[i] = (int)v;
    p = end + 1;
  }
  return 0;
}

int pp__worker_attach(const char *spec, int64_t parent_pid, unsigned flags,
                      pp__attached_t *at) {
  int fds[6], i, rc, keep_max = 0;

  memset(at, 0, sizeof(*at));
  PP__FAULT_RETURN(PP_EIO);
  rc = parse_spec(spec, fds);
  if (rc)
    return rc;
  for (i = 0; i < 6; i++) {
    if (fds[i] < 0)
      continue;
    if (fcntl(fds[i], F_SETFD, FD_CLOEXEC) != 0)
      return pp__posix_error(PP_EIO, errno, "worker descriptor %d", fds[i]);
    if (fds[i] > keep_max)
      keep_max = fds[i];
  }
  /* The spawn file actions place them at 3..8 in this order; anything above
   * (the image, descriptors the application leaked without close-on-exec)
   * goes. */
  close_from(keep_max + 1);
  name_process();
  if (pthread_atfork(NULL, NULL, close_channel_in_child) != 0)
    return pp__os_fail(PP_EIO, "pthread_atfork failed");
  /* A worker that writes to the parent's terminal is in a background
   * process group there; with `stty tostop` its first write would stop it
   * (SIGTTOU) and its call would never end.  Ignored, the write goes
   * through, as it would for the application itself. */
  if (flags & PP__ATTACH_INHERIT_OUTPUT)
    signal(SIGTTOU, SIG_IGN);
#if defined(__linux__)
  prctl(PR_SET_PDEATHSIG, SIGKILL);
  if (parent_pid > 0 && (int64_t)getppid() != parent_pid)
    return pp__os_fail(PP_EIO, "the parent (pid %lld) has already exited",
                       (long long)parent_pid);
#else
  (void)parent_pid;
#endif
  rc = pp__posix_shm_map(fds[1], 0, &at->shm_base, &at->shm_size);
  if (rc == 0) {
    /* The mapping stays; the descriptor is not needed any more. */
    close(fds[1]);
    rc = pp__posix_wake_wrap(fds[2], -1, &at->wake_worker);
  }
  if (rc == 0)
    rc = pp__posix_wake_wrap(-1, fds[3], &at->wake_parent);
  if (rc == 0 && fds[4] >= 0)
    rc = pp__chan_wrap(fds[4], &at->out);
  if (rc == 0 && fds[5] >= 0)
    rc = pp__chan_wrap(fds[5], &at->err);
  if (rc == 0)
    rc = pp__chan_wrap(fds[0], &at->chan);
  if (rc == 0)
    worker_chan = at->chan;
  return rc;
}

void pp__exit_now(int code) {
  _Exit(code);
}

void pp__worker_args(int *argc, char ***argv) {
  /* POSIX hands main its arguments as the bytes they were given. */
  (void)argc;
  (void)argv;
}
