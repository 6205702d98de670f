/*
 * channel.c (POSIX) - byte streams between parent and worker.
 *
 * Every channel is one end of an AF_UNIX stream socketpair: the duplex
 * control channel and the captured stdout/stderr alike.  Sockets rather than
 * pipes because send(MSG_NOSIGNAL) never raises SIGPIPE in the parent when a
 * worker dies, and shutdown() wakes a thread blocked in read, which is how a
 * drain stops reading output that a task's own child still holds open.
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

struct pp__chan_s {
  int fd;
};

int pp__posix_error(int status, int err, const char *fmt, ...) {
  char what[256];
  va_list ap;
  va_start(ap, fmt);
  vsnprintf(what, sizeof(what), fmt, ap);
  va_end(ap);
  return pp__set_error(status, "%s: %s", what, strerror(err));
}

int pp__chan_wrap(int fd, pp__chan_t **chan) {
  pp__chan_t *c = malloc(sizeof(*c));
  *chan = NULL;
  if (c == NULL)
    return pp__set_error(PP_ENOMEM, "cannot allocate a channel");
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

static int io_error(int err, const char *what) {
  if (err == EPIPE || err == ECONNRESET || err == ENOTCONN)
    return pp__set_error(PP_ECLOSED, "%s: the other end has gone (%s)", what,
                         strerror(err));
  return pp__posix_error(PP_EIO, err, "%s", what);
}

int pp__chan_read(pp__chan_t *chan, void *buf, size_t len) {
  char *p = buf;
  while (len > 0) {
    size_t n = len < PP__IO_CHUNK ? len : PP__IO_CHUNK;
    ssize_t r = read(chan->fd, p, n);
    if (r < 0 && errno == EINTR)
      continue;
    if (r < 0)
      return io_error(errno, "read");
    if (r == 0)
      return pp__set_error(PP_ECLOSED, "end of stream with %zu bytes missing",
                           len);
    p += r;
    len -= (size_t)r;
  }
  return 0;
}

int pp__chan_read_some(pp__chan_t *chan, void *buf, size_t cap, size_t *got) {
  ssize_t r;
  *got = 0;
  do
    r = read(chan->fd, buf, cap < PP__IO_CHUNK ? cap : PP__IO_CHUNK);
  while (r < 0 && errno == EINTR);
  if (r < 0)
    return io_error(errno, "read");
  if (r == 0)
    return PP_ECLOSED;
  *got = (size_t)r;
  return 0;
}

int pp__chan_write(pp__chan_t *chan, const void *buf, size_t len) {
  const char *p = buf;
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
  struct pollfd p;
  int r;
  p.fd = chan->fd;
  p.events = POLLIN;
  p.revents = 0;
  do
    r = poll(&p, 1, timeout_ms > INT_MAX ? INT_MAX : (int)timeout_ms);
  while (r < 0 && errno == EINTR);
  /* An error counts as ready: the read that follows reports it. */
  return r != 0;
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
