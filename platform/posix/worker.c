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

/* Workers are started from an open file on Linux (/proc/self/fd/4), which
 * would leave "4" as the process name that top and pgrep show; the name is
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

int pp__worker_attach(const char *spec, int64_t parent_pid, unsigned flags,
                      pp__chan_t **chan) {
  char *end = NULL;
  long fd;
  int rc;

  *chan = NULL;
  errno = 0;
  fd = strtol(spec, &end, 10);
  if (errno != 0 || end == spec || *end != '\0' || fd < 3 || fd > 1024)
    return pp__set_error(PP_EINVAL, "bad worker channel '%s'", spec);
  if (fcntl((int)fd, F_SETFD, FD_CLOEXEC) != 0)
    return pp__posix_error(PP_EIO, errno, "channel descriptor %ld", fd);
  close_from((int)fd + 1);
  name_process();
  if (pthread_atfork(NULL, NULL, close_channel_in_child) != 0)
    return pp__set_error(PP_EIO, "pthread_atfork failed");
  /* A worker that writes to the parent's terminal is in a background
   * process group there; with `stty tostop` its first write would stop it
   * (SIGTTOU) and its call would never end.  Ignored, the write goes
   * through, as it would for the application itself. */
  if (flags & PP__ATTACH_INHERIT_OUTPUT)
    signal(SIGTTOU, SIG_IGN);
#if defined(__linux__)
  prctl(PR_SET_PDEATHSIG, SIGKILL);
  if (parent_pid > 0 && (int64_t)getppid() != parent_pid)
    return pp__set_error(PP_EIO, "the parent (pid %lld) has already exited",
                         (long long)parent_pid);
#else
  (void)parent_pid;
#endif
  rc = pp__chan_wrap((int)fd, chan);
  if (rc == 0)
    worker_chan = *chan;
  return rc;
}

int pp__worker_stdio(void) {
  /* Line buffering with a buffer of the usual size: a size of 0 is left to
   * the C library's choice, which not every one makes. */
  if (setvbuf(stdout, NULL, _IOLBF, BUFSIZ) != 0)
    return pp__set_error(PP_EIO, "setvbuf(stdout) refused line buffering");
  return 0;
}

void pp__exit_now(int code) {
  _Exit(code);
}

void pp__worker_args(int *argc, char ***argv) {
  /* POSIX hands main its arguments as the bytes they were given. */
  (void)argc;
  (void)argv;
}
