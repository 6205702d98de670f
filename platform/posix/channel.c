/*
 * channel.c (POSIX) - byte streams between parent and worker.
 *
 * Every channel is one end of an AF_UNIX stream socketpair: the duplex
 * control channel and the captured stdout/stderr alike.  Sockets rather than
 * pipes because send(MSG_NOSIGNAL) never raises SIGPIPE in the parent when a
 * worker dies, and shutdown() wakes a thread blocked in read while the bytes
 * already received stay readable, which is how a reader stops at the end of
 * what a dead worker wrote although a process its task forked still holds
 * the other end.
 *
 * A channel bound to its worker's process waits for data and for the
 * process' end together (poll on the socket and the pidfd; without a pidfd,
 * the process is looked at every 50 ms), so a worker that dies is noticed
 * whoever else holds its end of the socket.
 */
#include <errno.h>
#include <limits.h>
#include <poll.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "internal.h"

#if !defined(MSG_NOSIGNAL)
#define MSG_NOSIGNAL 0 /* macOS: SO_NOSIGPIPE is set on the socket instead. */
#endif

/* How often a bound channel without a pidfd looks at its process. */
#define PP__PROC_POLL_MS 50

struct pp__chan_s {
  int fd;
  pp__proc_t *proc; /* bound worker, or NULL */
};

int pp__posix_error(int status, int err, const char *fmt, ...) {
  char what[256];
  va_list ap;
  va_start(ap, fmt);
  vsnprintf(what, sizeof(what), fmt, ap);
  va_end(ap);
  return pp__os_fail(status, "%s: %s", what, strerror(err));
}

int pp__posix_status(int err, int otherwise) {
  switch (err) {
    case ENOMEM:
    case ENOSPC:
    case EAGAIN:
      return PP_ENOMEM;
    case EMFILE:
    case ENFILE:
      return PP_ESPAWN;
    default:
      return otherwise;
  }
}

int pp__chan_wrap(int fd, pp__chan_t **chan) {
  pp__chan_t *c = pp__calloc(1, sizeof(*c));
  *chan = NULL;
  if (c == NULL)
    return pp__os_fail(PP_ENOMEM, "cannot allocate a channel");
#if defined(SO_NOSIGPIPE)
  {
    int one = 1;
    setsockopt(fd, SOL_SOCKET, SO_NOSIGPIPE, &one, sizeof(one));
  }
#endif
  c->fd = fd;
  *chan = c;
  return 0;
}

void pp__posix_chan_forget(pp__chan_t *chan, int close_fd) {
  if (close_fd)
    close(chan->fd);
  chan->fd = -1;
}

int pp__posix_chan_fd(const pp__chan_t *chan) {
  return chan->fd;
}

int pp__posix_chan_ended(const pp__chan_t *chan) {
  char c;
  ssize_t r;
  do
    r = recv(chan->fd, &c, 1, MSG_PEEK | MSG_DONTWAIT);
  while (r < 0 && errno == EINTR);
  return r == 0 || (r < 0 && errno != EAGAIN && errno != EWOULDBLOCK);
}

void pp__chan_bind_proc(pp__chan_t *chan, pp__proc_t *proc) {
  chan->proc = proc;
}

static int io_error(int err, const char *what) {
  if (err == EPIPE || err == ECONNRESET || err == ENOTCONN)
    return pp__os_fail(PP_ECLOSED, "%s: the other end has gone (%s)", what,
                       strerror(err));
  return pp__posix_error(PP_EIO, err, "%s", what);
}

/* Waits up to timeout_ms (negative: no limit) until the socket is readable
 * or the bound process has ended.  Returns 1 if the socket is readable, 0 at
 * the timeout, -1 if the process has ended with nothing left to read. */
static int await_input(pp__chan_t *c, int64_t timeout_ms) {
  int pidfd = c->proc != NULL ? pp__posix_proc_fd(c->proc) : -1;
  int64_t end = pp__now_us() + (timeout_ms > 0 ? timeout_ms * 1000 : 0);
  for (;;) {
    struct pollfd p[2];
    int r, wait_ms, ended;
    int64_t left_ms = (end - pp__now_us() + 999) / 1000;
    if (timeout_ms >= 0 && left_ms < 0)
      left_ms = 0;
    wait_ms = timeout_ms < 0 || left_ms > INT_MAX ? -1 : (int)left_ms;
    if (c->proc != NULL && pidfd < 0 &&
        (wait_ms < 0 || wait_ms > PP__PROC_POLL_MS))
      wait_ms = PP__PROC_POLL_MS;
    p[0].fd = c->fd;
    p[0].events = POLLIN;
    p[0].revents = 0;
    p[1].fd = pidfd;
    p[1].events = POLLIN;
    p[1].revents = 0;
    r = poll(p, pidfd >= 0 ? 2 : 1, wait_ms);
    if (r < 0 && errno != EINTR)
      return 1; /* The read that follows reports the error. */
    if (r > 0 && p[0].revents != 0)
      return 1;
    ended = c->proc != NULL &&
            (pidfd >= 0 ? (r > 0 && p[1].revents != 0)
                        : pp__posix_proc_ended(c->proc));
    if (ended) {
      /* What the process wrote before it ended is already queued on our
       * end; one more look without waiting finds it. */
      p[0].revents = 0;
      if (poll(p, 1, 0) > 0 && p[0].revents != 0)
        return 1;
      return -1;
    }
    if (timeout_ms >= 0 && pp__now_us() >= end)
      return 0;
  }
}

/* One read of at most `cap` bytes.  Unbound channels block in read(); bound
 * ones try first without waiting, which costs nothing when data is already
 * there (the common case of a busy worker), and else wait for data or the
 * process' end. */
static ssize_t read_once(pp__chan_t *c, void *buf, size_t cap, int *ended) {
  ssize_t r;
  *ended = 0;
  if (cap > PP__IO_CHUNK)
    cap = PP__IO_CHUNK;
  if (c->proc == NULL) {
    do
      r = read(c->fd, buf, cap);
    while (r < 0 && errno == EINTR);
    return r;
  }
  for (;;) {
    r = recv(c->fd, buf, cap, MSG_DONTWAIT);
    if (r >= 0 || (errno != EAGAIN && errno != EWOULDBLOCK && errno != EINTR))
      return r;
    if (errno == EINTR)
      continue;
    if (await_input(c, -1) < 0) {
      *ended = 1;
      return 0;
    }
  }
}

int pp__chan_read_some(pp__chan_t *chan, void *buf, size_t cap, size_t *got) {
  int ended;
  ssize_t r;
  *got = 0;
  PP__FAULT_RETURN(PP_EIO);
  r = read_once(chan, buf, cap, &ended);
  if (r < 0)
    return io_error(errno, "read");
  if (r == 0)
    return PP_ECLOSED;
  *got = (size_t)r;
  return 0;
}

int pp__chan_write(pp__chan_t *chan, const void *buf, size_t len) {
  const char *p = buf;
  PP__FAULT_RETURN(PP_EIO);
  while (len > 0) {
    size_t n = len < PP__IO_CHUNK ? len : PP__IO_CHUNK;
    ssize_t r = send(chan->fd, p, n, MSG_NOSIGNAL);
    if (r < 0 && errno == EINTR)
      continue;
    if (r < 0)
      return io_error(errno, "send");
    p += r;
    len -= (size_t)r;
  }
  return 0;
}

int pp__chan_wait(pp__chan_t *chan, int64_t timeout_ms) {
  return await_input(chan, timeout_ms < 0 ? 0 : timeout_ms) != 0;
}

int pp__chan_poll(pp__chan_t **chans, int n, int64_t timeout_ms, int *ready) {
  struct pollfd p[8];
  int i, r;
  if (n > 8)
    n = 8;
  for (i = 0; i < n; i++) {
    p[i].fd = chans[i]->fd;
    p[i].events = POLLIN;
    p[i].revents = 0;
  }
  do
    r = poll(p, (nfds_t)n,
             timeout_ms < 0 || timeout_ms > INT_MAX ? -1 : (int)timeout_ms);
  while (r < 0 && errno == EINTR);
  for (i = 0; i < n; i++)
    ready[i] = r > 0 && p[i].revents != 0;
  return r > 0 ? r : 0;
}

int pp__chan_ended(pp__chan_t *chan) {
  return pp__posix_chan_ended(chan);
}

void pp__chan_abort(pp__chan_t *chan) {
  if (chan != NULL)
    shutdown(chan->fd, SHUT_RDWR);
}

void pp__chan_close(pp__chan_t *chan) {
  if (chan == NULL)
    return;
  close(chan->fd);
  free(chan);
}
