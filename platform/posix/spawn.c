/*
 * spawn.c (POSIX) - starting, waiting for and killing workers.
 *
 * Workers are started with posix_spawn(), never with a bare fork(): the
 * parent has threads, and only an exec gives the worker a clean process.
 * posix_spawn also reports a failed exec to the caller (glibc, musl and
 * macOS all use a close-on-exec error pipe or vfork semantics for that), so
 * a wrong executable is PP_ESPAWN with the OS reason, not a dead child.
 *
 * Every descriptor procpool creates is close-on-exec from birth
 * (SOCK_CLOEXEC, F_DUPFD_CLOEXEC), so workers spawned at the same time from
 * several threads never inherit each other's channels.  The child's ends are
 * placed at fixed numbers by the spawn file actions: the channel at 3, the
 * output streams at 1 and 2, /dev/null at 0.
 */
#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <spawn.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "internal.h"

extern char **environ;

struct pp__proc_s {
  pid_t pid;
  int reaped;
  int killed;
  pp__exit_t status;
};

static const char *signal_name(int sig) {
  switch (sig) {
    case SIGSEGV: return "SIGSEGV";
    case SIGABRT: return "SIGABRT";
    case SIGBUS: return "SIGBUS";
    case SIGFPE: return "SIGFPE";
    case SIGILL: return "SIGILL";
    case SIGKILL: return "SIGKILL";
    case SIGTERM: return "SIGTERM";
    case SIGINT: return "SIGINT";
    case SIGPIPE: return "SIGPIPE";
    case SIGTRAP: return "SIGTRAP";
    case SIGHUP: return "SIGHUP";
    case SIGQUIT: return "SIGQUIT";
    case SIGSYS: return "SIGSYS";
    default: return "signal";
  }
}

/* Moves a descriptor to 10 or above, close-on-exec, so that the spawn file
 * actions never dup2 a descriptor onto itself (which would keep its
 * close-on-exec flag on some systems). */
static int move_high(int *fd) {
  int nfd = fcntl(*fd, F_DUPFD_CLOEXEC, 10);
  if (nfd < 0)
    return pp__posix_error(PP_ESPAWN, errno, "fcntl(F_DUPFD_CLOEXEC)");
  close(*fd);
  *fd = nfd;
  return 0;
}

static int make_pair(int sv[2]) {
  if (socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv) != 0)
    return pp__posix_error(PP_ESPAWN, errno, "socketpair");
  return 0;
}

int pp__spawn(const pp__spawn_req_t *req, pp__proc_t **proc, pp__chan_t **chan,
              pp__chan_t **out, pp__chan_t **err) {
  int ch[2] = {-1, -1}, so[2] = {-1, -1}, se[2] = {-1, -1};
  posix_spawn_file_actions_t fa;
  posix_spawnattr_t attr;
  int fa_ready = 0, attr_ready = 0, rc, n = 0, i;
  char *arg = NULL;
  const char **argv = NULL;
  sigset_t mask;
  pp__proc_t *p = NULL;
  pid_t pid;

  *proc = NULL;
  *chan = *out = *err = NULL;
  /* posix_spawn reports a failed exec on current glibc, musl and macOS, but
   * not where it falls back to fork and exec (old glibc, valgrind); checking
   * first gives the same clear reason everywhere. */
  if (access(req->exe, X_OK) != 0)
    return pp__posix_error(PP_ESPAWN, errno, "cannot start worker '%s'",
                           req->exe);
  rc = make_pair(ch);
  if (rc == 0 && !req->inherit_output)
    rc = make_pair(so);
  if (rc == 0 && !req->inherit_output)
    rc = make_pair(se);
  if (rc == 0)
    rc = move_high(&ch[1]);
  if (rc == 0 && !req->inherit_output)
    rc = move_high(&so[1]);
  if (rc == 0 && !req->inherit_output)
    rc = move_high(&se[1]);
  if (rc)
    goto cleanup;

  arg = pp__strdup_printf("--procpool-worker=3:%s", req->token);
  while (req->extra_args && req->extra_args[n])
    n++;
  argv = calloc((size_t)n + 3, sizeof(*argv));
  p = calloc(1, sizeof(*p));
  if (arg == NULL || argv == NULL || p == NULL) {
    rc = pp__set_error(PP_ENOMEM, "spawn: out of memory");
    goto cleanup;
  }
  argv[0] = req->exe;
  argv[1] = arg;
  for (i = 0; i < n; i++)
    argv[2 + i] = req->extra_args[i];

  if ((rc = posix_spawn_file_actions_init(&fa)) != 0) {
    rc = pp__posix_error(PP_ESPAWN, rc, "posix_spawn_file_actions_init");
    goto cleanup;
  }
  fa_ready = 1;
  rc = posix_spawn_file_actions_addopen(&fa, 0, "/dev/null", O_RDONLY, 0);
  if (rc == 0 && !req->inherit_output)
    rc = posix_spawn_file_actions_adddup2(&fa, so[1], 1);
  if (rc == 0 && !req->inherit_output)
    rc = posix_spawn_file_actions_adddup2(&fa, se[1], 2);
  if (rc == 0)
    rc = posix_spawn_file_actions_adddup2(&fa, ch[1], 3);
  if (rc != 0) {
    rc = pp__posix_error(PP_ESPAWN, rc, "posix_spawn_file_actions");
    goto cleanup;
  }
  if ((rc = posix_spawnattr_init(&attr)) != 0) {
    rc = pp__posix_error(PP_ESPAWN, rc, "posix_spawnattr_init");
    goto cleanup;
  }
  attr_ready = 1;
  /* The worker starts with no blocked signals and default dispositions,
   * whatever the application's threads had (APR apps often block signals in
   * every thread but one). */
  sigemptyset(&mask);
  posix_spawnattr_setsigmask(&attr, &mask);
  sigfillset(&mask);
  sigdelset(&mask, SIGKILL);
  sigdelset(&mask, SIGSTOP);
  posix_spawnattr_setsigdefault(&attr, &mask);
  /* Each worker gets a process group of its own, so a Ctrl-C at the terminal
   * reaches only the application, which decides what happens to its calls;
   * it does not kill every worker at once in the middle of its call.  The
   * workers still end with the parent (channel end, PR_SET_PDEATHSIG). */
  posix_spawnattr_setpgroup(&attr, 0);
  posix_spawnattr_setflags(&attr, POSIX_SPAWN_SETSIGMASK |
                                      POSIX_SPAWN_SETSIGDEF |
                                      POSIX_SPAWN_SETPGROUP);

  rc = posix_spawn(&pid, req->exe, &fa, &attr, (char *const *)argv, environ);
  if (rc != 0) {
    rc = pp__posix_error(PP_ESPAWN, rc, "cannot start worker '%s'", req->exe);
    goto cleanup;
  }
  p->pid = pid;
  rc = pp__chan_wrap(ch[0], chan);
  if (rc == 0) {
    ch[0] = -1;
    if (!req->inherit_output)
      rc = pp__chan_wrap(so[0], out);
  }
  if (rc == 0) {
    so[0] = -1;
    if (!req->inherit_output)
      rc = pp__chan_wrap(se[0], err);
  }
  if (rc == 0)
    se[0] = -1;
  if (rc != 0) {
    pp__chan_close(*chan);
    pp__chan_close(*out);
    *chan = *out = NULL;
    pp__proc_free(p);
    p = NULL;
    goto cleanup;
  }
  *proc = p;
  p = NULL;

cleanup:
  if (fa_ready)
    posix_spawn_file_actions_destroy(&fa);
  if (attr_ready)
    posix_spawnattr_destroy(&attr);
  for (i = 0; i < 2; i++) {
    if (ch[i] >= 0)
      close(ch[i]);
    if (so[i] >= 0)
      close(so[i]);
    if (se[i] >= 0)
      close(se[i]);
  }
  free(p);
  free(arg);
  free(argv);
  return rc;
}

int64_t pp__proc_pid(const pp__proc_t *proc) {
  return proc ? (int64_t)proc->pid : 0;
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
    st->exit_code = -1;
    st->term_signal = WTERMSIG(wstatus);
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

int pp__proc_wait(pp__proc_t *p, int64_t timeout_ms, pp__exit_t *st) {
  int wstatus, pause_us = 500;
  int64_t waited_us = 0;
  pid_t r;
  if (p->reaped) {
    *st = p->status;
    return 0;
  }
  for (;;) {
    r = waitpid(p->pid, &wstatus, timeout_ms < 0 ? 0 : WNOHANG);
    if (r == p->pid)
      break;
    if (r < 0 && errno == EINTR)
      continue;
    if (r < 0) {
      /* ECHILD: someone else reaped it (SIGCHLD set to SIG_IGN). */
      memset(&p->status, 0, sizeof(p->status));
      p->status.exit_code = -1;
      p->status.killed = p->killed;
      pp__format(p->status.reason, sizeof(p->status.reason),
                 "ended (its status was reaped elsewhere: %s)",
                 strerror(errno));
      p->reaped = 1;
      *st = p->status;
      return 0;
    }
    if (waited_us >= timeout_ms * 1000)
      return pp__set_error(PP_ETIMEDOUT, "worker %d still running",
                           (int)p->pid);
    {
      struct timespec ts = {0, pause_us * 1000L};
      nanosleep(&ts, NULL);
    }
    waited_us += pause_us;
    if (pause_us < 20000)
      pause_us *= 2;
  }
  describe(p, wstatus);
  p->reaped = 1;
  *st = p->status;
  return 0;
}

int pp__proc_kill(pp__proc_t *p) {
  if (p == NULL || p->reaped)
    return 0;
  p->killed = 1;
  /* The pid is ours until it is reaped, so this cannot hit another process. */
  if (kill(p->pid, SIGKILL) != 0 && errno != ESRCH)
    return pp__posix_error(PP_EIO, errno, "kill(%d)", (int)p->pid);
  return 0;
}

void pp__proc_free(pp__proc_t *p) {
  pp__exit_t st;
  if (p == NULL)
    return;
  if (!p->reaped) {
    pp__proc_kill(p);
    pp__proc_wait(p, -1, &st);
  }
  free(p);
}
