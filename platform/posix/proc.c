/*
 * proc.c (POSIX) - a running worker process: waiting for it (on its pidfd
 * where the system has one), reaping it, telling how it ended (exit code,
 * signal, or the pool's kill), killing it and its process group, and
 * freeing it.  spawn.c starts it.
 */
#include <errno.h>
#include <poll.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "internal.h"

/* ---- exit status ------------------------------------------------------- */

static const char *signal_name(int sig) {
  switch (sig) {
    case SIGSEGV:
      return "SIGSEGV";
    case SIGABRT:
      return "SIGABRT";
    case SIGBUS:
      return "SIGBUS";
    case SIGFPE:
      return "SIGFPE";
    case SIGILL:
      return "SIGILL";
    case SIGKILL:
      return "SIGKILL";
    case SIGTERM:
      return "SIGTERM";
    case SIGINT:
      return "SIGINT";
    case SIGPIPE:
      return "SIGPIPE";
    case SIGTRAP:
      return "SIGTRAP";
    case SIGHUP:
      return "SIGHUP";
    case SIGQUIT:
      return "SIGQUIT";
    case SIGSYS:
      return "SIGSYS";
    default:
      return "signal";
  }
}

/* ---- the running worker ------------------------------------------------ */

int64_t pp__proc_pid(const pp__proc_t *proc) {
  return proc ? (int64_t)proc->pid : 0;
}

int pp__posix_proc_fd(const pp__proc_t *proc) {
  return proc->pidfd;
}

int pp__posix_proc_ended(const pp__proc_t *p) {
  siginfo_t info;
  if (p->reaped)
    return 1;
  /* WNOWAIT looks without reaping, so the status stays for pp__proc_wait;
   * ECHILD means somebody else reaped it: it has certainly ended. */
  memset(&info, 0, sizeof(info));
  if (waitid(P_PID, (id_t)p->pid, &info, WEXITED | WNOHANG | WNOWAIT) != 0)
    return errno == ECHILD;
  return info.si_pid == p->pid;
}

static void describe(pp__proc_t *p, int wstatus) {
  pp__exit_t *st = &p->status;
  memset(st, 0, sizeof(*st));
  st->killed = p->killed;
  if (WIFEXITED(wstatus)) {
    st->exit_code = WEXITSTATUS(wstatus);
    pp__format(st->reason, sizeof(st->reason), "exited with code %d",
               st->exit_code);
  } else if (WIFSIGNALED(wstatus)) {
    int sig = WTERMSIG(wstatus);
    st->exit_code = -1;
    st->term_signal = sig;
    st->outside = !p->killed && sig != SIGSEGV && sig != SIGBUS &&
                  sig != SIGILL && sig != SIGFPE && sig != SIGABRT &&
                  sig != SIGSYS && sig != SIGTRAP;
    if (p->killed)
      pp__format(st->reason, sizeof(st->reason), "was killed by the pool");
    else
      pp__format(st->reason, sizeof(st->reason), "was killed by signal %d (%s)",
                 st->term_signal, signal_name(st->term_signal));
  } else {
    st->exit_code = -1;
    pp__format(st->reason, sizeof(st->reason), "ended (status 0x%x)", wstatus);
  }
}

/* Waits up to timeout_ms (negative: no limit) for the process to end,
 * without reaping it: on the pidfd where there is one, else in short
 * sleeps.  Returns 1 once it has ended. */
static int await_end(pp__proc_t *p, int64_t timeout_ms) {
  int64_t end = pp__now_us() + (timeout_ms < 0 ? 0 : timeout_ms * 1000);
  long pause_us = 500;
  for (;;) {
    int64_t left_ms;
    if (pp__posix_proc_ended(p))
      return 1;
    left_ms = (end - pp__now_us() + 999) / 1000;
    if (timeout_ms >= 0 && left_ms <= 0)
      return 0;
    if (p->pidfd >= 0) {
      struct pollfd pfd = {p->pidfd, POLLIN, 0};
      int wait_ms = timeout_ms < 0 || left_ms > 60000 ? 60000 : (int)left_ms;
      if (poll(&pfd, 1, wait_ms) > 0 && (pfd.revents & POLLNVAL) != 0)
        /* Closed behind our back: no longer ours to poll, or to close
         * (its number may be somebody else's soon). */
        p->pidfd = -1;
    } else {
      struct timespec ts = {0, pause_us * 1000L};
      nanosleep(&ts, NULL);
      if (pause_us < 20000)
        pause_us *= 2;
    }
  }
}

int pp__proc_wait(pp__proc_t *p, int64_t timeout_ms, pp__exit_t *st) {
  int wstatus = 0;
  pid_t r;
  if (p->reaped) {
    *st = p->status;
    return 0;
  }
  if (!await_end(p, timeout_ms))
    return pp__os_fail(PP_ETIMEDOUT, "worker %d still running", (int)p->pid);
  do
    r = waitpid(p->pid, &wstatus, 0);
  while (r < 0 && errno == EINTR);
  if (r == p->pid) {
    describe(p, wstatus);
  } else {
    /* ECHILD: somebody else in this program reaped it.  That it ended
     * during the call is all that is left to tell. */
    memset(&p->status, 0, sizeof(p->status));
    p->status.exit_code = -1;
    p->status.killed = p->killed;
    pp__format(p->status.reason, sizeof(p->status.reason),
               "ended; its exit status was collected elsewhere in this program "
               "(SIGCHLD ignored, or a handler calling waitpid(-1)), so its "
               "signal or exit code is unknown");
  }
  p->reaped = 1;
  *st = p->status;
  return 0;
}

int pp__proc_kill(pp__proc_t *p) {
  siginfo_t info;
  int rc;
  if (p == NULL || p->reaped)
    return 0;
  p->killed = 1;
  rc = -1;
  errno = EBADF;
#if defined(PP__HAVE_PIDFD)
  if (p->pidfd >= 0)
    rc = (int)syscall(SYS_pidfd_send_signal, p->pidfd, SIGKILL, NULL, 0);
#endif
  /* The pid is ours until we reap it, so this cannot hit another process
   * (unless the application reaped it; see pp__proc_wait).  It also
   * serves when the pidfd was closed behind our back (a closefrom() in the
   * application): EBADF. */
  if (rc != 0 && errno == EBADF)
    rc = kill(p->pid, SIGKILL);
  if (rc != 0 && errno != ESRCH)
    return pp__posix_error(PP_EIO, errno, "kill(%d)", (int)p->pid);
  /* The worker leads its process group, and the group keeps its number
   * while any process of it lives, or while the worker is a zombie that
   * only we may reap: what the task forked dies too.  Skipped when the
   * worker was reaped elsewhere (ECHILD), since then the number may have
   * been given to somebody else. */
  memset(&info, 0, sizeof(info));
  if (waitid(P_PID, (id_t)p->pid, &info, WEXITED | WNOHANG | WNOWAIT) == 0)
    kill(-p->pid, SIGKILL);
  return 0;
}

void pp__proc_abandon(pp__proc_t *p) {
  if (p == NULL)
    return;
  if (p->pidfd >= 0)
    close(p->pidfd);
  free(p);
}

void pp__proc_free(pp__proc_t *p) {
  pp__exit_t st;
  if (p == NULL)
    return;
  if (!p->reaped) {
    pp__proc_kill(p);
    pp__proc_wait(p, -1, &st);
  }
  if (p->pidfd >= 0)
    close(p->pidfd);
  free(p);
}
