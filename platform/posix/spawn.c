/*
 * spawn.c (POSIX) - starting workers (the executable is image.c's; waiting
 * for them and killing them is proc.c's).
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
#include <signal.h>
#include <spawn.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "internal.h"

extern char **environ;

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

/* ---- starting ---------------------------------------------------------- */

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
  env = pp__calloc(n + 2, sizeof(*env));
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
  PP__FAULT_RETURN(PP_ESPAWN);
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
  argv = pp__calloc((size_t)n + 3, sizeof(*argv));
  p = pp__calloc(1, sizeof(*p));
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
