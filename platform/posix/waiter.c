/*
 * waiter.c (POSIX) - wake objects, and the parent's poller over many
 * workers.
 *
 * A wake object is an eventfd on Linux (one descriptor, readable while
 * signalled) and a non-blocking pipe elsewhere (signal writes a byte, clear
 * reads them all).  The poller is epoll on Linux, so a pool of hundreds of
 * workers costs one system call per wait whatever its size; elsewhere it
 * is poll() over an array.  A worker's end is watched through its pidfd
 * where there is one; without it the poller looks at registered processes
 * every PROC_POLL_MS.
 *
 * Every thread asleep on a wake object must wake at a signal (a worker's
 * main thread waiting for calls, and a thread waiting for room in its
 * result ring), yet the wait that sees the descriptor readable empties it,
 * and a thread whose poll had not yet looked would then sleep on.  So only
 * one thread at a time polls the descriptor, the watcher; it counts each
 * signal it takes and wakes the others, who sleep on a condition variable
 * and return once the count has moved past their ticket.
 */
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <poll.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#if defined(__linux__)
#include <sys/epoll.h>
#include <sys/eventfd.h>
#define PP__HAVE_EPOLL 1
#endif

#include "internal.h"

/* How often processes without a pidfd are looked at. */
#define PROC_POLL_MS 50

struct pp__wake_s {
  int rfd; /* readable while signalled */
  int wfd; /* written to signal (the same descriptor for an eventfd) */
  /* The sleepers (pp__wake_wait): `lock` guards the rest. */
  pp__mutex_t *lock;
  pp__cond_t *taken; /* a signal was counted, or the watcher left */
  uint64_t signals;  /* signals taken from the descriptor so far */
  int watching;      /* a thread polls the descriptor itself */
};

/* The sleepers' lock and condition variable. */
static int wake_init(pp__wake_t *w) {
  int rc = pp__mutex_new(&w->lock);
  if (rc == 0)
    rc = pp__cond_new(&w->taken);
  return rc;
}

int pp__wake_new(pp__wake_t **out) {
  pp__wake_t *w;
  int rc = 0;
  *out = NULL;
  PP__FAULT_RETURN(PP_ESPAWN);
  w = pp__calloc(1, sizeof(*w));
  if (w == NULL)
    return pp__os_fail(PP_ENOMEM, "out of memory for a wake object");
  w->rfd = w->wfd = -1;
#if defined(__linux__)
  w->rfd = w->wfd = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
  if (w->rfd < 0)
    rc = pp__posix_error(pp__posix_status(errno, PP_EIO), errno, "eventfd");
#else
  {
    int p[2];
    if (pipe(p) != 0) {
      rc = pp__posix_error(pp__posix_status(errno, PP_EIO), errno, "pipe");
    } else {
      w->rfd = p[0];
      w->wfd = p[1];
      fcntl(p[0], F_SETFD, FD_CLOEXEC);
      fcntl(p[1], F_SETFD, FD_CLOEXEC);
      fcntl(p[0], F_SETFL, O_NONBLOCK);
      fcntl(p[1], F_SETFL, O_NONBLOCK);
    }
  }
#endif
  if (rc == 0)
    rc = wake_init(w);
  if (rc == 0) {
    int same = w->wfd == w->rfd;
    rc = pp__posix_move_high(&w->rfd);
    if (rc == 0 && !same)
      rc = pp__posix_move_high(&w->wfd);
    else if (rc == 0)
      w->wfd = w->rfd;
  }
  if (rc != 0) {
    pp__wake_free(w);
    return rc;
  }
  *out = w;
  return 0;
}

int pp__posix_wake_wrap(int rfd, int wfd, pp__wake_t **out) {
  pp__wake_t *w = pp__calloc(1, sizeof(*w));
  int rc;
  *out = NULL;
  if (w == NULL)
    return pp__os_fail(PP_ENOMEM, "out of memory for a wake object");
  w->rfd = rfd;
  w->wfd = wfd;
  rc = wake_init(w);
  if (rc != 0) {
    /* The descriptors stay the caller's, as they were. */
    w->rfd = w->wfd = -1;
    pp__wake_free(w);
    return rc;
  }
  *out = w;
  return 0;
}

void pp__posix_wake_fds(const pp__wake_t *w, int *rfd, int *wfd) {
  *rfd = w->rfd;
  *wfd = w->wfd;
}

void pp__wake_free(pp__wake_t *w) {
  if (w == NULL)
    return;
  if (w->rfd >= 0)
    close(w->rfd);
  if (w->wfd >= 0 && w->wfd != w->rfd)
    close(w->wfd);
  pp__cond_free(w->taken);
  pp__mutex_free(w->lock);
  free(w);
}

int pp__wake_signal(pp__wake_t *w) {
  ssize_t r;
#if defined(__linux__)
  uint64_t one = 1;
  do
    r = write(w->wfd, &one, sizeof(one));
  while (r < 0 && errno == EINTR);
#else
  char one = 1;
  do
    r = write(w->wfd, &one, 1);
  while (r < 0 && errno == EINTR);
#endif
  /* EAGAIN: already signalled enough (a full pipe, a saturated counter). */
  if (r < 0 && errno != EAGAIN && errno != EWOULDBLOCK)
    return pp__posix_error(PP_EIO, errno, "signalling a wake object");
  return 0;
}

void pp__wake_clear(pp__wake_t *w) {
  char buf[64];
  ssize_t r;
  do
    r = read(w->rfd, buf, sizeof(buf));
  while (r > 0 || (r < 0 && errno == EINTR));
}

uint64_t pp__wake_ticket(pp__wake_t *w) {
  uint64_t ticket;
  pp__mutex_lock(w->lock);
  ticket = w->signals;
  pp__mutex_unlock(w->lock);
  return ticket;
}

/* Polls the descriptor itself, without the lock.  Returns 1 when it was
 * signalled, 0 at the timeout, or a status with its sentence. */
static int watch(pp__wake_t *w, pp__chan_t *alive, int64_t timeout_ms) {
  struct pollfd p[2];
  int n = 1, r;
  p[0].fd = w->rfd;
  p[0].events = POLLIN;
  p[0].revents = 0;
  if (alive != NULL) {
    p[1].fd = pp__posix_chan_fd(alive);
    p[1].events = POLLIN;
    p[1].revents = 0;
    n = 2;
  }
  do
    r = poll(p, (nfds_t)n,
             timeout_ms < 0 || timeout_ms > INT_MAX ? -1 : (int)timeout_ms);
  while (r < 0 && errno == EINTR);
  /* A descriptor closed behind our back: polling again would say so again
   * at once, so it is no wake-up and no timeout. */
  if (r > 0 && (p[0].revents & POLLNVAL) != 0)
    r = -1, errno = EBADF;
  if (r < 0)
    return pp__posix_error(PP_EIO, errno, "waiting for a wake-up");
  if (r > 0 && p[0].revents != 0) {
    pp__wake_clear(w);
    return 1;
  }
  /* A readable channel is the parent's end, or a large payload on its way
   * (announced by a record the caller will read next): only the end is
   * reported as such. */
  if (r > 0 && n == 2 && p[1].revents != 0)
    return pp__posix_chan_ended(alive)
               ? pp__os_fail(PP_ECLOSED, "the parent has ended")
               : 1;
  return 0;
}

int pp__wake_wait(pp__wake_t *w, uint64_t ticket, pp__chan_t *alive,
                  int64_t timeout_ms) {
  int64_t deadline_us = timeout_ms < 0 ? -1 : pp__now_us() + timeout_ms * 1000;
  int looked = 0, rc;

  pp__mutex_lock(w->lock);
  for (;;) {
    int64_t now_us = pp__now_us();
    /* Negative: no limit; 0 once the deadline has passed. */
    int64_t left_us = deadline_us < 0        ? -1
                      : deadline_us > now_us ? deadline_us - now_us
                                             : 0;
    if (w->signals != ticket) {
      rc = 1;
      break;
    }
    /* A wait without time still looks once, unless another thread does. */
    if (deadline_us >= 0 && left_us <= 0 && (looked || w->watching)) {
      rc = 0;
      break;
    }
    if (w->watching) {
      /* The watcher wakes us when it takes a signal and when it leaves. */
      if (left_us < 0)
        pp__cond_wait(w->taken, w->lock);
      else
        (void)pp__cond_timedwait(w->taken, w->lock, left_us);
      continue;
    }
    w->watching = 1;
    pp__mutex_unlock(w->lock);
    rc = watch(w, alive, left_us < 0 ? -1 : (left_us + 999) / 1000);
    pp__mutex_lock(w->lock);
    w->watching = 0;
    looked = 1;
    if (rc == 1)
      w->signals++;
    /* Every sleeper looks at the count, and one of them watches next. */
    pp__cond_broadcast(w->taken);
    if (rc < 0)
      break;
  }
  pp__mutex_unlock(w->lock);
  return rc;
}

/* ---- the poller ---------------------------------------------------------- */

typedef struct source_s {
  int fd;           /* -1: a process without a pidfd */
  pp__proc_t *proc; /* for processes */
  void *tag;
} source_t;

struct pp__poller_s {
#if defined(PP__HAVE_EPOLL)
  int epfd;
#endif
  source_t *src;
  size_t n, cap;
};

int pp__poller_new(pp__poller_t **out) {
  pp__poller_t *p;
  *out = NULL;
  PP__FAULT_RETURN(PP_ESPAWN);
  p = pp__calloc(1, sizeof(*p));
  if (p == NULL)
    return pp__os_fail(PP_ENOMEM, "out of memory for a poller");
#if defined(PP__HAVE_EPOLL)
  p->epfd = epoll_create1(EPOLL_CLOEXEC);
  if (p->epfd < 0) {
    int rc = pp__posix_error(pp__posix_status(errno, PP_EIO), errno,
                             "epoll_create1");
    free(p);
    return rc;
  }
#endif
  *out = p;
  return 0;
}

void pp__poller_free(pp__poller_t *p) {
  if (p == NULL)
    return;
#if defined(PP__HAVE_EPOLL)
  close(p->epfd);
#endif
  free(p->src);
  free(p);
}

static int add(pp__poller_t *p, int fd, pp__proc_t *proc, void *tag) {
  if (p->n == p->cap) {
    size_t cap = p->cap ? 2 * p->cap : 16;
    source_t *src = pp__realloc(p->src, cap * sizeof(*src));
    if (src == NULL)
      return pp__os_fail(PP_ENOMEM, "out of memory for a poller");
    p->src = src;
    p->cap = cap;
  }
#if defined(PP__HAVE_EPOLL)
  if (fd >= 0) {
    struct epoll_event ev;
    memset(&ev, 0, sizeof(ev));
    ev.events = EPOLLIN;
    ev.data.ptr = tag;
    if (epoll_ctl(p->epfd, EPOLL_CTL_ADD, fd, &ev) != 0)
      return pp__posix_error(pp__posix_status(errno, PP_EIO), errno,
                             "epoll_ctl(ADD)");
  }
#endif
  p->src[p->n].fd = fd;
  p->src[p->n].proc = proc;
  p->src[p->n].tag = tag;
  p->n++;
  return 0;
}

static void remove_at(pp__poller_t *p, size_t i) {
#if defined(PP__HAVE_EPOLL)
  if (p->src[i].fd >= 0)
    epoll_ctl(p->epfd, EPOLL_CTL_DEL, p->src[i].fd, NULL);
#endif
  p->src[i] = p->src[--p->n];
}

int pp__poller_add_wake(pp__poller_t *p, pp__wake_t *w, void *tag) {
  PP__FAULT_RETURN(PP_ENOMEM);
  return add(p, w->rfd, NULL, tag);
}

int pp__poller_add_proc(pp__poller_t *p, pp__proc_t *proc, void *tag) {
  PP__FAULT_RETURN(PP_ENOMEM);
  return add(p, pp__posix_proc_fd(proc), proc, tag);
}

void pp__poller_remove_proc(pp__poller_t *p, pp__proc_t *proc) {
  size_t i;
  for (i = 0; i < p->n; i++)
    if (p->src[i].proc == proc) {
      remove_at(p, i);
      return;
    }
}

/* Processes without a pidfd are looked at directly. */
static int ended_without_fd(pp__poller_t *p, void **tags, int max,
                            int *watched) {
  size_t i;
  int got = 0;
  *watched = 0;
  for (i = 0; i < p->n && got < max; i++)
    if (p->src[i].fd < 0) {
      (*watched)++;
      if (pp__posix_proc_ended(p->src[i].proc))
        tags[got++] = p->src[i].tag;
    }
  return got;
}

int pp__poller_wait(pp__poller_t *p, int64_t timeout_us, void **tags,
                    int max) {
  int watched, got, wait_ms, r, i;
  got = ended_without_fd(p, tags, max, &watched);
  if (got > 0)
    timeout_us = 0;
  wait_ms = timeout_us < 0 ? -1
            : timeout_us / 1000 > INT_MAX
                ? INT_MAX
                : (int)((timeout_us + 999) / 1000);
  if (watched > 0 && (wait_ms < 0 || wait_ms > PROC_POLL_MS))
    wait_ms = PROC_POLL_MS;
#if defined(PP__HAVE_EPOLL)
  {
    struct epoll_event ev[64];
    int room = max - got < 64 ? max - got : 64;
    if (room <= 0)
      return got;
    do
      r = epoll_wait(p->epfd, ev, room, wait_ms);
    while (r < 0 && errno == EINTR);
    if (r < 0)
      return pp__posix_error(PP_EIO, errno, "epoll_wait");
    for (i = 0; i < r; i++)
      tags[got++] = ev[i].data.ptr;
  }
#else
  {
    struct pollfd *pf = pp__calloc(p->n ? p->n : 1, sizeof(*pf));
    size_t k;
    if (pf == NULL)
      return got;
    for (k = 0; k < p->n; k++) {
      pf[k].fd = p->src[k].fd; /* negative descriptors are ignored */
      pf[k].events = POLLIN;
    }
    do
      r = poll(pf, (nfds_t)p->n, wait_ms);
    while (r < 0 && errno == EINTR);
    for (k = 0; r > 0 && k < p->n; k++)
      if (pf[k].fd >= 0 && (pf[k].revents & POLLNVAL) != 0)
        r = -1, errno = EBADF; /* a descriptor closed behind our back */
    for (k = 0; r > 0 && k < p->n && got < max; k++)
      if (pf[k].fd >= 0 && pf[k].revents != 0)
        tags[got++] = p->src[k].tag;
    free(pf);
    if (r < 0)
      return pp__posix_error(PP_EIO, errno, "poll");
  }
#endif
  return got;
}
