/*
 * worker.c (POSIX) - the worker's side of start-up.
 *
 * The channel is descriptor 3 (placed there by the spawn file actions).  The
 * worker marks it close-on-exec, so processes a task starts do not hold the
 * parent's channel open (the parent would then never see the worker's end),
 * and closes every other descriptor above 3 that the application leaked
 * without close-on-exec.  On Linux it also asks the kernel to kill it when
 * the parent dies, and rechecks the parent afterwards, because the parent
 * may have died before the request was made.
 */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <signal.h>
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

int pp__worker_attach(const char *spec, int64_t parent_pid, pp__chan_t **chan) {
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
#if defined(__linux__)
  prctl(PR_SET_PDEATHSIG, SIGKILL);
  if (parent_pid > 0 && (int64_t)getppid() != parent_pid)
    return pp__set_error(PP_EIO, "the parent (pid %lld) has already exited",
                         (long long)parent_pid);
#else
  (void)parent_pid;
#endif
  rc = pp__chan_wrap((int)fd, chan);
  return rc;
}
