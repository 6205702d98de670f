/*
 * spawn.c (POSIX) - the worker executable, and starting, waiting for and
 * killing workers.
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
 *
 * On Linux the executable is held open from the pool's creation and started
 * as /proc/self/fd/<n>, which keeps working after the file is deleted or
 * replaced, and each worker is watched through a pidfd, which cannot be
 * confused with another process that reuses the pid of a worker that
 * somebody else reaped.
 */
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <spawn.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#if defined(__linux__)
#include <sys/syscall.h>
#endif
#if defined(__linux__) && defined(SYS_pidfd_open) &&                           \
    defined(SYS_pidfd_send_signal)
#define PP__HAVE_PIDFD 1
#endif

#include "internal.h"

extern char **environ;

struct pp__image_s {
  char *path;          /* as given, or this program's path */
  int fd;              /* the open file, or -1 */
  int by_fd;           /* start workers from fd (Linux, /proc mounted) */
};

/* Where the spawn file actions put things in the child: the channel at 3,
 * the shared memory at 4, its wake object at 5 and the parent's at 6, the
 * read ends of its own stdout and stderr at 7 and 8 (its write ends are 1
 * and 2), and the image at 9.  The image is not close-on-exec there, so
 * that a worker_exe that is a script (#!) can be opened by its interpreter
 * under this name; the worker closes it at once (pp__worker_attach closes
 * everything it does not use). */
#define PP__CHILD_SPEC "3,4,5,6,7,8"
#define PP__CHILD_SPEC_INHERIT "3,4,5,6,-1,-1"
#define PP__IMAGE_CHILD_FD 9
#define PP__IMAGE_CHILD_PATH "/proc/self/fd/9"

struct pp__proc_s {
  pid_t pid;
  int pidfd; /* -1 where the system has none */
  int reaped;
  int killed;
  pp__exit_t status;
};

/* ---- the executable ---------------------------------------------------- */

/* Moves a descriptor to 10 or above, close-on-exec, so that the spawn file
 * actions (which fill 0 to 9) never overwrite it and never dup2 a descriptor
 * onto itself (which would keep its close-on-exec flag on some systems). */
int pp__posix_move_high(int *fd) {
  int nfd = fcntl(*fd, F_DUPFD_CLOEXEC, 10);
  if (nfd < 0)
    return pp__posix_error(PP_ESPAWN, errno, "fcntl(F_DUPFD_CLOEXEC)");
  close(*fd);
  *fd = nfd;
  return 0;
}

int pp__image_open(const char *path, pp__image_t **out) {
  pp__image_t *im = NULL;
  char *self = NULL;
  int rc = 0;

  *out = NULL;
  if (path == NULL) {
    rc = pp__exe_path(&self);
    if (rc)
      return rc;
    path = self;
  }
  im = calloc(1, sizeof(*im));
  if (im == NULL || (im->path = strdup(path)) == NULL) {
    rc = pp__os_fail(PP_ENOMEM, "out of memory for the worker executable");
    goto cleanup;
  }
  im->fd = -1;
  /* posix_spawn reports a failed exec on current glibc, musl and macOS, but
   * not where it falls back to fork and exec (old glibc, valgrind); checking
   * first gives the same clear reason everywhere. */
  if (access(path, X_OK) != 0) {
    rc = pp__posix_error(PP_ESPAWN, errno, "cannot start worker '%s'", path);
    goto cleanup;
  }
#if defined(__linux__)
  /* The path was read a moment ago; if the file has gone meanwhile, our own
   * image is still reachable through /proc/self/exe. */
  im->fd = open(path, O_RDONLY | O_CLOEXEC);
  if (im->fd < 0 && self != NULL)
    im->fd = open("/proc/self/exe", O_RDONLY | O_CLOEXEC);
  if (im->fd >= 0 && pp__posix_move_high(&im->fd) == 0) {
    char fd_path[40];
    snprintf(fd_path, sizeof(fd_path), "/proc/self/fd/%d", im->fd);
    /* Without /proc (a chroot, a sandbox) the path is all there is. */
    im->by_fd = access(fd_path, X_OK) == 0;
  }
#endif
  *out = im;
  im = NULL;

cleanup:
  pp__image_close(im);
  free(self);
  return rc;
}

const char *pp__image_path(const pp__image_t *im) {
  return im->path;
}

void pp__image_close(pp__image_t *im) {
  if (im == NULL)
    return;
  if (im->fd >= 0)
    close(im->fd);
  free(im->path);
  free(im);
}

/* ---- starting ---------------------------------------------------------- */

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

static int make_pair(int sv[2]) {
  if (socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv) != 0)
    return pp__posix_error(PP_ESPAWN, errno, "socketpair");
  return 0;
}

/* Builds the worker's environment: ours without any PP__WORKER_ENV, then
 * PP__WORKER_ENV=<token>.  The array is malloc'd, the strings are ours but
 * the last one, `*mark`, which the caller frees too. */
static int worker_env(const char *token, char ***envp, char **mark) {
  size_t n = 0, k = 0, name_len = strlen(PP__WORKER_ENV);
  char **env;
  while (environ != NULL && environ[n] != NULL)
    n++;
  *envp = NULL;
  *mark = pp__strdup_printf("%s=%s", PP__WORKER_ENV, token);
  env = calloc(n + 2, sizeof(*env));
  if (*mark == NULL || env == NULL) {
    free(env);
    free(*mark);
    *mark = NULL;
    return pp__os_fail(PP_ENOMEM, "spawn: out of memory");
  }
  for (n = 0; environ != NULL && environ[n] != NULL; n++)
    if (strncmp(environ[n], PP__WORKER_ENV, name_len) != 0 ||
        environ[n][name_len] != '=')
      env[k++] = environ[n];
  env[k++] = *mark;
  env[k] = NULL;
  *envp = env;
  return 0;
}

int pp__spawn(const pp__spawn_req_t *req, pp__spawned_t *out) {
  int ch[2] = {-1, -1}, so[2] = {-1, -1}, se[2] = {-1, -1};
  posix_spawn_file_actions_t fa;
  posix_spawnattr_t attr;
  int fa_ready = 0, attr_ready = 0, rc, n = 0, i, wake_r, wake_w, unused;
  const pp__image_t *im = req->image;
  const char *exec_path = im->by_fd ? PP__IMAGE_CHILD_PATH : im->path;
  char *arg = NULL, *mark = NULL;
  char **envp = NULL;
  const char **argv = NULL;
  sigset_t mask;
  pp__proc_t *p = NULL;
  pid_t pid;

  memset(out, 0, sizeof(*out));
  if (!im->by_fd && access(im->path, X_OK) != 0)
    return pp__posix_error(PP_ESPAWN, errno, "cannot start worker '%s'",
                           im->path);
  pp__posix_wake_fds(req->wake_worker, &wake_r, &unused);
  pp__posix_wake_fds(req->wake_parent, &unused, &wake_w);
  rc = make_pair(ch);
  if (rc == 0 && !req->inherit_output)
    rc = make_pair(so);
  if (rc == 0 && !req->inherit_output)
    rc = make_pair(se);
  if (rc == 0)
    rc = pp__posix_move_high(&ch[1]);
  if (rc == 0 && !req->inherit_output)
    rc = pp__posix_move_high(&so[0]);
  if (rc == 0 && !req->inherit_output)
    rc = pp__posix_move_high(&so[1]);
  if (rc == 0 && !req->inherit_output)
    rc = pp__posix_move_high(&se[0]);
  if (rc == 0 && !req->inherit_output)
    rc = pp__posix_move_high(&se[1]);
  if (rc == 0)
    rc = worker_env(req->token, &envp, &mark);
  if (rc)
    goto cleanup;

  arg = pp__strdup_printf("--procpool-worker=%s:%s",
                          req->inherit_output ? PP__CHILD_SPEC_INHERIT
                                              : PP__CHILD_SPEC,
                          req->token);
  while (req->extra_args && req->extra_args[n])
    n++;
  argv = calloc((size_t)n + 3, sizeof(*argv));
  p = calloc(1, sizeof(*p));
  if (arg == NULL || argv == NULL || p == NULL) {
    rc = pp__os_fail(PP_ENOMEM, "spawn: out of memory");
    goto cleanup;
  }
  p->pidfd = -1;
  argv[0] = im->path;
  argv[1] = arg;
  for (i = 0; i < n; i++)
    argv[2 + i] = req->extra_args[i];

  if ((rc = posix_spawn_file_actions_init(&fa)) != 0) {
    rc = pp__posix_error(PP_ESPAWN, rc, "posix_spawn_file_actions_init");
    goto cleanup;
  }
  fa_ready = 1;
  /* Every source is at 10 or above (move_high), so no action overwrites
   * the source of a later one. */
  rc = posix_spawn_file_actions_addopen(&fa, 0, "/dev/null", O_RDONLY, 0);
  if (rc == 0 && !req->inherit_output)
    rc = posix_spawn_file_actions_adddup2(&fa, so[1], 1);
  if (rc == 0 && !req->inherit_output)
    rc = posix_spawn_file_actions_adddup2(&fa, se[1], 2);
  if (rc == 0)
    rc = posix_spawn_file_actions_adddup2(&fa, ch[1], 3);
  if (rc == 0)
    rc = posix_spawn_file_actions_adddup2(&fa, pp__posix_shm_fd(req->shm), 4);
  if (rc == 0)
    rc = posix_spawn_file_actions_adddup2(&fa, wake_r, 5);
  if (rc == 0)
    rc = posix_spawn_file_actions_adddup2(&fa, wake_w, 6);
  if (rc == 0 && !req->inherit_output)
    rc = posix_spawn_file_actions_adddup2(&fa, so[0], 7);
  if (rc == 0 && !req->inherit_output)
    rc = posix_spawn_file_actions_adddup2(&fa, se[0], 8);
  if (rc == 0 && im->by_fd)
    rc = posix_spawn_file_actions_adddup2(&fa, im->fd, PP__IMAGE_CHILD_FD);
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
   * workers still end with the parent (channel end, PR_SET_PDEATHSIG).  The
   * group is also how a kill reaches what a task started. */
  posix_spawnattr_setpgroup(&attr, 0);
  posix_spawnattr_setflags(&attr, POSIX_SPAWN_SETSIGMASK |
                                      POSIX_SPAWN_SETSIGDEF |
                                      POSIX_SPAWN_SETPGROUP);

  rc = posix_spawn(&pid, exec_path, &fa, &attr, (char *const *)argv, envp);
  if (rc != 0) {
    rc = pp__posix_error(PP_ESPAWN, rc, "cannot start worker '%s'", im->path);
    goto cleanup;
  }
  p->pid = pid;
#if defined(PP__HAVE_PIDFD)
  /* Our child cannot be reaped by anyone but us before this (short of a
   * SIGCHLD handler of the application, which the README warns about), so
   * the pidfd is for this worker.  Old kernels give ENOSYS: pids then. */
  p->pidfd = (int)syscall(SYS_pidfd_open, pid, 0);
  if (p->pidfd >= 0 && p->pidfd < 10 && pp__posix_move_high(&p->pidfd) != 0)
    p->pidfd = -1;
#endif
  rc = pp__chan_wrap(ch[0], &out->chan);
  if (rc == 0) {
    ch[0] = -1;
    if (!req->inherit_output)
      rc = pp__chan_wrap(so[0], &out->out);
  }
  if (rc == 0) {
    so[0] = -1;
    if (!req->inherit_output)
      rc = pp__chan_wrap(se[0], &out->err);
  }
  if (rc == 0)
    se[0] = -1;
  if (rc != 0) {
    pp__chan_close(out->chan);
    pp__chan_close(out->out);
    out->chan = out->out = NULL;
    pp__proc_free(p);
    p = NULL;
    goto cleanup;
  }
  out->proc = p;
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
  free(envp);
  free(mark);
  return rc;
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
      poll(&pfd, 1, wait_ms);
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
#if defined(PP__HAVE_PIDFD)
  if (p->pidfd >= 0)
    rc = (int)syscall(SYS_pidfd_send_signal, p->pidfd, SIGKILL, NULL, 0);
  else
#endif
    /* The pid is ours until we reap it, so this cannot hit another
     * process (unless the application reaped it; see pp__proc_wait). */
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
