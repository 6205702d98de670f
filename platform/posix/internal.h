/*
 * internal.h (POSIX) - helpers shared by the POSIX platform files, and
 * what a worker's executable and process are (image.c, spawn.c, proc.c).
 */
#ifndef PP_POSIX_INTERNAL_H
#define PP_POSIX_INTERNAL_H

#include <sys/types.h>
#if defined(__linux__)
#include <sys/syscall.h>
#endif

#include "../../src/error.h"
#include "../../src/fault.h"
#include "../platform.h"

/* A pidfd per worker (Linux 5.3): spawn.c opens it, proc.c waits on it and
 * kills through it. */
#if defined(__linux__) && defined(SYS_pidfd_open) &&                           \
    defined(SYS_pidfd_send_signal)
#define PP__HAVE_PIDFD 1
#endif

/* Records "<what>: <strerror(err)>" as the last error and returns status.
 * This is where errno becomes a PP_E* code. */
int pp__posix_error(int status, int err, const char *fmt, ...) PP__PRINTF(3, 4);

/* The status of a failure that ran out of something: PP_ENOMEM for memory
 * and what the kernel gives out like it (ENOMEM; ENOSPC: the epoll watch
 * limit; EAGAIN: the thread and process limits), PP_ESPAWN for
 * descriptors (EMFILE, ENFILE), as pp_pool_create() reports a pool that
 * the descriptor limit cannot hold; `otherwise` for any other errno.  So
 * that a pool's resource failures are the statuses procpool.h lists. */
int pp__posix_status(int err, int otherwise);

/* Wraps a descriptor (close-on-exec, owned) in a channel.  On failure the
 * descriptor is left open for the caller to close. */
int pp__chan_wrap(int fd, pp__chan_t **chan);

/* Closes the channel's descriptor (if `close_fd`) and makes every later
 * read or write of it fail, without freeing it: for a forked child, whose
 * copy of the worker state still points at the channel. */
void pp__posix_chan_forget(pp__chan_t *chan, int close_fd);

/* The executable workers are started from (image.c; spawn.c starts them
 * from it). */
struct pp__image_s {
  char *path; /* as given, or this program's path */
  int fd;     /* the open file, or -1 */
  int by_fd;  /* start workers from fd (Linux, /proc mounted) */
};

/* A worker process: spawn.c starts it, proc.c waits for it, kills it and
 * frees it. */
struct pp__proc_s {
  pid_t pid;
  int pidfd; /* -1 where the system has none */
  int reaped;
  int killed;
  pp__exit_t status;
};

/* A worker's pidfd (readable once it has ended), or -1 where there is none. */
int pp__posix_proc_fd(const pp__proc_t *proc);

/* Returns 1 if the worker has ended (it may not be reaped yet), else 0. */
int pp__posix_proc_ended(const pp__proc_t *proc);

/* Moves a descriptor to 10 or above, close-on-exec, so that the spawn file
 * actions (which fill the low numbers) never overwrite it. */
int pp__posix_move_high(int *fd);

/* The descriptor of a channel; 1 if the channel's peer has closed it (a
 * look that reads nothing). */
int pp__posix_chan_fd(const pp__chan_t *chan);
int pp__posix_chan_ended(const pp__chan_t *chan);

/* The descriptor of a shared mapping; maps a descriptor received at spawn,
 * whatever its size, its pages in place with PP__SHM_POPULATE (a blob
 * about to be read whole; not a ring). */
int pp__posix_shm_fd(const pp__shm_t *shm);
int pp__posix_shm_map(int fd, unsigned flags, void **base, uint64_t *size);

/* A wake object's descriptors (the same for an eventfd); wraps descriptors
 * received at spawn. */
void pp__posix_wake_fds(const pp__wake_t *wake, int *rfd, int *wfd);
int pp__posix_wake_wrap(int rfd, int wfd, pp__wake_t **wake);

/* Returns the full path (malloc'd) of the running executable. */
int pp__exe_path(char **path);

#endif /* PP_POSIX_INTERNAL_H */
