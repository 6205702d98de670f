/*
 * channel.c - named pipes on Windows: the private pipes procpool creates for
 * each worker (its duplex channel, its stdout and stderr) and the byte
 * stream I/O on them behind pp__chan_*.
 *
 * Every handle a channel wraps is opened with FILE_FLAG_OVERLAPPED, and each
 * direction has its own event.  The contract lets one thread read a channel
 * while another writes it; synchronous I/O on one pipe handle is serialized
 * by the I/O manager, so a blocked ReadFile would hold up the WriteFile of a
 * cancel message until the worker answers, which it may never do.
 * Overlapped calls do not serialize.
 */
#include "internal.h"

#include <stdlib.h>
#include <string.h>

struct pp__chan_s {
  HANDLE handle;
  HANDLE read_event;  /* only ever used by the reading thread */
  HANDLE write_event; /* only ever used by the writing thread */
  HANDLE abort_event; /* set by pp__chan_abort, from any thread */
  HANDLE process;     /* the bound process, or NULL */
  int own_process;    /* `process` is closed with the channel */
  /* A server end waiting for its worker to connect (pp__win_chan_listen);
   * `connect_status` is the outcome once known (0 while connecting). */
  OVERLAPPED connect_ov;
  int connecting;
  int connect_status;
  /* pp__chan_poll's zero-byte read, which completes once data is there
   * without taking any; only the polling thread touches it. */
  OVERLAPPED zero_ov;
  int zero_pending;
  int zero_useless; /* it completed at once on an empty pipe: not here */
};

static int aborted(void);

int pp__win_chan_wrap(HANDLE handle, pp__chan_t **chan) {
  pp__chan_t *c;
  char why[160];

  *chan = NULL;
  c = pp__calloc(1, sizeof(*c));
  if (c == NULL)
    return pp__os_fail(PP_ENOMEM, "out of memory for a channel");
  /* Manual-reset events, as overlapped I/O requires: ReadFile and
   * WriteFile reset them when an operation starts. */
  c->read_event = CreateEventW(NULL, TRUE, FALSE, NULL);
  c->write_event = CreateEventW(NULL, TRUE, FALSE, NULL);
  c->abort_event = CreateEventW(NULL, TRUE, FALSE, NULL);
  if (c->read_event == NULL || c->write_event == NULL ||
      c->abort_event == NULL) {
    pp__os_fail(PP_EIO, "CreateEventW: %s",
                pp__win_strerror(GetLastError(), why, sizeof(why)));
    if (c->read_event != NULL)
      CloseHandle(c->read_event);
    if (c->write_event != NULL)
      CloseHandle(c->write_event);
    if (c->abort_event != NULL)
      CloseHandle(c->abort_event);
    free(c);
    return PP_EIO;
  }
  c->handle = handle;
  *chan = c;
  return 0;
}

void pp__chan_bind_proc(pp__chan_t *chan, pp__proc_t *proc) {
  chan->process = pp__win_proc_handle(proc);
}

void pp__win_chan_bind_parent(pp__chan_t *chan, HANDLE parent) {
  chan->process = parent;
  chan->own_process = 1;
}

HANDLE pp__win_chan_handle(const pp__chan_t *chan) {
  return chan->handle;
}

HANDLE pp__win_chan_process(const pp__chan_t *chan) {
  return chan->process;
}

int pp__win_chan_listen(pp__chan_t *chan) {
  char why[160];
  int status = 0;
  memset(&chan->connect_ov, 0, sizeof(chan->connect_ov));
  chan->connect_ov.hEvent = CreateEventW(NULL, TRUE, FALSE, NULL);
  if (chan->connect_ov.hEvent == NULL)
    return pp__os_fail(PP_ESPAWN, "CreateEventW: %s",
                       pp__win_strerror(GetLastError(), why, sizeof(why)));
  chan->connecting = 1;
  if (ConnectNamedPipe(chan->handle, &chan->connect_ov) ||
      GetLastError() == ERROR_PIPE_CONNECTED) {
    SetEvent(chan->connect_ov.hEvent);
    return 0;
  }
  if (GetLastError() == ERROR_IO_PENDING)
    return 0;
  status = pp__os_fail(PP_ESPAWN, "ConnectNamedPipe: %s",
                       pp__win_strerror(GetLastError(), why, sizeof(why)));
  /* Nothing is pending on the event, and pp__chan_close looks at it only
   * while connecting: it is ours to close. */
  chan->connecting = 0;
  CloseHandle(chan->connect_ov.hEvent);
  chan->connect_ov.hEvent = NULL;
  return status;
}

/* Waits up to timeout_ms for a listening channel's client.  Returns 0 once
 * the worker is connected (at once for a channel that was never
 * listening), PP_EAGAIN at the timeout, or the reason it never will be:
 * PP_ECLOSED if the worker ended first or the channel was aborted,
 * PP_ESPAWN if another process connected.  The outcome is kept. */
static int finish_connect(pp__chan_t *chan, DWORD timeout_ms) {
  HANDLE objects[3];
  DWORD count = 2, n, wait;
  ULONG client = 0;
  char why[160];
  if (!chan->connecting)
    return chan->connect_status;
  objects[0] = chan->connect_ov.hEvent;
  objects[1] = chan->abort_event;
  if (chan->process != NULL)
    objects[count++] = chan->process;
  wait = WaitForMultipleObjects(count, objects, FALSE, timeout_ms);
  if (wait == WAIT_TIMEOUT)
    return PP_EAGAIN;
  if (wait != WAIT_OBJECT_0) {
    /* The connect is pending on connect_ov, which lives in the channel:
     * cancel it and wait for it to be over before giving up. */
    CancelIoEx(chan->handle, &chan->connect_ov);
    GetOverlappedResult(chan->handle, &chan->connect_ov, &n, TRUE);
    chan->connect_status =
        wait == WAIT_OBJECT_0 + 2
            ? pp__os_fail(PP_ECLOSED, "the worker ended before it opened "
                                      "its channel")
            : aborted();
  } else if (!GetOverlappedResult(chan->handle, &chan->connect_ov, &n,
                                  FALSE)) {
    chan->connect_status =
        pp__os_fail(PP_ECLOSED, "ConnectNamedPipe: %s",
                    pp__win_strerror(GetLastError(), why, sizeof(why)));
  } else if (chan->process != NULL &&
             (!GetNamedPipeClientProcessId(chan->handle, &client) ||
              client != GetProcessId(chan->process))) {
    /* The name is random and the DACL admits only this user, but a process
     * of the same user that learned the name could still get in first. */
    chan->connect_status = pp__os_fail(
        PP_ESPAWN, "process %lu, not the worker %lu, opened the channel",
        (unsigned long)client, (unsigned long)GetProcessId(chan->process));
  } else {
    chan->connect_status = 0;
  }
  chan->connecting = 0;
  CloseHandle(chan->connect_ov.hEvent);
  chan->connect_ov.hEvent = NULL;
  return chan->connect_status;
}

/* Bytes waiting to be read, or 0 (also when the pipe is broken). */
static DWORD available(pp__chan_t *chan) {
  DWORD avail = 0;
  if (!PeekNamedPipe(chan->handle, NULL, 0, NULL, &avail, NULL))
    return 0;
  return avail;
}

/* Translates the error of a failed pipe transfer.  The first three are the
 * ways a pipe reports that the other end has closed or gone away; they are
 * end-of-stream, not I/O errors. */
static int io_error(DWORD error, const char *what) {
  char why[160];

  if (error == ERROR_BROKEN_PIPE || error == ERROR_NO_DATA ||
      error == ERROR_PIPE_NOT_CONNECTED || error == ERROR_HANDLE_EOF)
    return pp__os_fail(PP_ECLOSED, "%s: the other end closed the pipe (%s)",
                       what, pp__win_strerror(error, why, sizeof(why)));
  return pp__os_fail(PP_EIO, "%s: %s", what,
                     pp__win_strerror(error, why, sizeof(why)));
}

static int aborted(void) {
  return pp__os_fail(PP_ECLOSED, "the channel was aborted");
}

/* Runs one overlapped ReadFile or WriteFile and waits for it.  Waiting on
 * our own event, not on the handle, matters: the handle is signalled by
 * whichever transfer finishes, so a reader could otherwise wake up for the
 * writer's completion.  The wait also watches the abort event and, for a
 * bound channel's reads, the worker's process.  After an abort (or the
 * process' end) a read still returns what has already arrived, and only
 * then the end of the stream: what a worker wrote before it died is never
 * lost, while a process its task started, which may hold the worker's end
 * open, cannot make the read wait for more. */
static int transfer(pp__chan_t *chan, int writing, void *buf, size_t len,
                    DWORD *done) {
  OVERLAPPED ov;
  HANDLE objects[3];
  DWORD want = (DWORD)(len > PP__WIN_PIPE_CHUNK ? PP__WIN_PIPE_CHUNK : len);
  DWORD count = 2, wait;
  BOOL ok;
  int status;

  *done = 0;
  status = finish_connect(chan, INFINITE);
  if (status != 0)
    return status;
  if (WaitForSingleObject(chan->abort_event, 0) == WAIT_OBJECT_0 &&
      (writing || available(chan) == 0))
    return aborted();
  memset(&ov, 0, sizeof(ov));
  ov.hEvent = writing ? chan->write_event : chan->read_event;
  if (writing)
    ok = WriteFile(chan->handle, buf, want, NULL, &ov);
  else
    ok = ReadFile(chan->handle, buf, want, NULL, &ov);
  if (!ok && GetLastError() != ERROR_IO_PENDING)
    return io_error(GetLastError(), writing ? "WriteFile" : "ReadFile");
  objects[0] = ov.hEvent;
  objects[1] = chan->abort_event;
  if (!writing && chan->process != NULL)
    objects[count++] = chan->process;
  wait = WaitForMultipleObjects(count, objects, FALSE, INFINITE);
  if (wait == WAIT_OBJECT_0 + 1 || wait == WAIT_OBJECT_0 + 2) {
    /* `ov` is on this stack: the cancelled transfer must be finished
     * before we return.  A read that got bytes meanwhile keeps them. */
    CancelIoEx(chan->handle, &ov);
    if (GetOverlappedResult(chan->handle, &ov, done, TRUE) && *done > 0)
      return 0;
    *done = 0;
    if (!writing && available(chan) > 0)
      return 0; /* Read again: the caller loops on zero bytes. */
    if (wait == WAIT_OBJECT_0 + 2)
      return pp__os_fail(PP_ECLOSED, "the worker process ended");
    return aborted();
  }
  if (!GetOverlappedResult(chan->handle, &ov, done, TRUE))
    return io_error(GetLastError(), writing ? "WriteFile" : "ReadFile");
  return 0;
}

int pp__chan_read_some(pp__chan_t *chan, void *buf, size_t cap, size_t *got) {
  DWORD n;
  int status;

  *got = 0;
  if (cap == 0)
    return pp__os_fail(PP_EINVAL, "pp__chan_read_some: zero capacity");
  PP__FAULT_RETURN(PP_EIO);
  /* A byte-mode pipe completes a read with whatever has arrived.  A zero
   * byte completion is not end-of-stream (that is ERROR_BROKEN_PIPE): it is
   * what a zero-length write by the peer gives, so read again. */
  do {
    status = transfer(chan, 0, buf, cap, &n);
    if (status != 0)
      return status;
  } while (n == 0);
  *got = n;
  return 0;
}

int pp__chan_write(pp__chan_t *chan, const void *buf, size_t len) {
  const unsigned char *p = buf;
  DWORD n;
  int status;

  PP__FAULT_RETURN(PP_EIO);
  /* A blocking-mode pipe write normally completes in full; the loop covers
   * the chunking and any short completion. */
  while (len > 0) {
    status = transfer(chan, 1, (void *)p, len, &n);
    if (status != 0)
      return status;
    if (n == 0)
      return pp__os_fail(PP_EIO, "WriteFile wrote nothing");
    p += n;
    len -= n;
  }
  return 0;
}

/* Named pipes cannot be polled together with other objects, and a
 * zero-byte overlapped read would race with the next real read; looking
 * with PeekNamedPipe every few milliseconds is enough for the watcher,
 * which only needs to notice a cancel or a dead parent promptly. */
int pp__chan_wait(pp__chan_t *chan, int64_t timeout_ms) {
  ULONGLONG end = GetTickCount64() + (ULONGLONG)(timeout_ms > 0 ? timeout_ms : 0);
  DWORD avail, pause = 1;
  if (chan->connecting) {
    DWORD wait = timeout_ms <= 0            ? 0
                 : timeout_ms > 0x7FFFFFFF ? 0x7FFFFFFF
                                            : (DWORD)timeout_ms;
    int status = finish_connect(chan, wait);
    if (status == PP_EAGAIN)
      return 0;
    if (status != 0)
      return 1; /* The read that follows reports why. */
  }
  for (;;) {
    avail = 0;
    if (!PeekNamedPipe(chan->handle, NULL, 0, NULL, &avail, NULL))
      return 1; /* Broken or closed: the read that follows reports it. */
    if (avail > 0 || WaitForSingleObject(chan->abort_event, 0) == WAIT_OBJECT_0)
      return 1;
    if (chan->process != NULL &&
        WaitForSingleObject(chan->process, 0) == WAIT_OBJECT_0)
      return 1;
    if (GetTickCount64() >= end)
      return 0;
    Sleep(pause);
    if (pause < 8)
      pause *= 2;
  }
}

/* Returns 1 if a read of the channel would not block now: data is there,
 * the other end has gone, the channel was aborted or its process ended. */
static int ready_now(pp__chan_t *chan) {
  DWORD avail = 0;
  if (chan->connecting) {
    int status = finish_connect(chan, 0);
    if (status == PP_EAGAIN)
      return 0;
    if (status != 0)
      return 1; /* The read that follows reports why. */
  }
  if (!PeekNamedPipe(chan->handle, NULL, 0, NULL, &avail, NULL) || avail > 0)
    return 1;
  if (WaitForSingleObject(chan->abort_event, 0) == WAIT_OBJECT_0)
    return 1;
  return chan->process != NULL &&
         WaitForSingleObject(chan->process, 0) == WAIT_OBJECT_0;
}

/* Makes sure a zero-byte read is pending on the channel and returns its
 * event, or NULL where that cannot be done (the caller then looks again
 * after a pause); sets *now when it completed at once, so the channel is
 * to be looked at again.  A zero-byte overlapped read on a byte-mode pipe
 * completes once bytes arrive (or the pipe breaks) and takes none, which
 * is how libuv waits for pipe input, so the poll sleeps in one wait
 * instead of looking with PeekNamedPipe every few milliseconds, a call to
 * the system (and under Wine a round trip to its server) each time, in
 * every worker. */
static HANDLE zero_read(pp__chan_t *chan, int *now) {
  static unsigned char zero_byte; /* never written: the reads take none */
  DWORD n;
  *now = 0;
  if (chan->zero_useless || chan->connecting)
    return NULL;
  if (chan->zero_pending) {
    if (!GetOverlappedResult(chan->handle, &chan->zero_ov, &n, FALSE) &&
        GetLastError() == ERROR_IO_INCOMPLETE)
      return chan->zero_ov.hEvent;
    chan->zero_pending = 0;
    *now = 1;
    return NULL;
  }
  if (chan->zero_ov.hEvent == NULL) {
    chan->zero_ov.hEvent = CreateEventW(NULL, TRUE, FALSE, NULL);
    if (chan->zero_ov.hEvent == NULL) {
      chan->zero_useless = 1;
      return NULL;
    }
  }
  chan->zero_ov.Internal = chan->zero_ov.InternalHigh = 0;
  chan->zero_ov.Offset = chan->zero_ov.OffsetHigh = 0;
  if (ReadFile(chan->handle, &zero_byte, 0, NULL, &chan->zero_ov)) {
    /* Bytes arrived since ready_now looked, or this system completes
     * zero-byte reads at once and they cannot wait for anything. */
    if (!ready_now(chan))
      chan->zero_useless = 1;
    *now = 1;
    return NULL;
  }
  if (GetLastError() != ERROR_IO_PENDING) {
    *now = 1; /* Broken: the next look reports it. */
    return NULL;
  }
  chan->zero_pending = 1;
  return chan->zero_ov.hEvent;
}

/* How long a poll over a channel without a zero-byte read pauses before it
 * looks again. */
#define POLL_PAUSE_MS 10

int pp__chan_poll(pp__chan_t **chans, int n, int64_t timeout_ms, int *ready) {
  ULONGLONG start = GetTickCount64();
  HANDLE objects[8 * 3];
  int i, got;

  if (n > 8)
    n = 8;
  /* Only one thread polls a given channel (the worker's watch thread);
   * other threads may read it or look at it with pp__chan_wait meanwhile,
   * which the pending zero-byte read does not disturb. */
  for (;;) {
    DWORD count = 0, wait_ms = INFINITE, elapsed;
    int again = 0;
    for (i = 0, got = 0; i < n; i++)
      got += ready[i] = ready_now(chans[i]);
    elapsed = (DWORD)(GetTickCount64() - start);
    if (got > 0 || (timeout_ms >= 0 && elapsed >= timeout_ms))
      return got;
    for (i = 0; i < n; i++) {
      int now;
      HANDLE ev = zero_read(chans[i], &now);
      again |= now;
      if (ev != NULL)
        objects[count++] = ev;
      else
        wait_ms = POLL_PAUSE_MS;
      objects[count++] = chans[i]->abort_event;
      if (chans[i]->process != NULL)
        objects[count++] = chans[i]->process;
    }
    if (again)
      continue;
    if (timeout_ms >= 0 && (DWORD)(timeout_ms - elapsed) < wait_ms)
      wait_ms = (DWORD)(timeout_ms - elapsed);
    WaitForMultipleObjects(count, objects, FALSE, wait_ms);
  }
}

int pp__chan_ended(pp__chan_t *chan) {
  DWORD avail = 0, error;
  if (chan->process != NULL &&
      WaitForSingleObject(chan->process, 0) == WAIT_OBJECT_0)
    return 1;
  if (PeekNamedPipe(chan->handle, NULL, 0, NULL, &avail, NULL))
    return 0;
  error = GetLastError();
  return error == ERROR_BROKEN_PIPE || error == ERROR_NO_DATA ||
         error == ERROR_PIPE_NOT_CONNECTED;
}

void pp__chan_abort(pp__chan_t *chan) {
  /* Closing the handle here instead would race with the reader, which may
   * be about to use it (or a new handle that reuses its value).  The event
   * makes the reader cancel its own transfer and stop. */
  if (chan != NULL)
    SetEvent(chan->abort_event);
}

void pp__chan_close(pp__chan_t *chan) {
  DWORD n;
  if (chan == NULL)
    return;
  if (chan->connecting) {
    CancelIoEx(chan->handle, &chan->connect_ov);
    GetOverlappedResult(chan->handle, &chan->connect_ov, &n, TRUE);
    CloseHandle(chan->connect_ov.hEvent);
  }
  if (chan->zero_pending) {
    CancelIoEx(chan->handle, &chan->zero_ov);
    GetOverlappedResult(chan->handle, &chan->zero_ov, &n, TRUE);
  }
  if (chan->zero_ov.hEvent != NULL)
    CloseHandle(chan->zero_ov.hEvent);
  if (chan->own_process)
    CloseHandle(chan->process);
  /* Closing the server end does not discard what we wrote: the worker can
   * still read it before it sees ERROR_BROKEN_PIPE.  (DisconnectNamedPipe
   * would discard it, so it is not called.) */
  CloseHandle(chan->handle);
  CloseHandle(chan->read_event);
  CloseHandle(chan->write_event);
  CloseHandle(chan->abort_event);
  free(chan);
}
