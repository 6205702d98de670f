/*
 * capture.c - a worker's stdout and stderr, and its watch on the parent.
 *
 * A worker's output reaches the parent as OUTPUT records in the result ring,
 * tagged with the call that wrote it, and the parent turns them into lines
 * (output.c).  Tagging must cost nothing for the usual call that prints
 * nothing, so no system call is made per call:
 *
 *   - Where the C library tells how many bytes a stream holds (__fpending),
 *     stdout and stderr are fully buffered in buffers of our own, whose
 *     first bytes get a random sentinel when a call starts.  Whatever the
 *     call prints through stdio goes through those buffers, even when the
 *     task flushes at once, and overwrites the sentinel.  So at the end of
 *     a call that printed, the buffers are flushed into their pipes and the
 *     pipes drained into the ring at once, under that call's id: exact.  A
 *     call that printed nothing costs a few loads and stores.
 *   - Elsewhere (the Microsoft C runtimes) the streams are unbuffered and
 *     the pipes are looked at after every call.
 *   - Bytes written around stdio (write(2), processes the task started)
 *     reach the pipes on their own; the watch thread forwards them under
 *     the call that runs when they are read.
 *
 * While a long call runs, the watch thread flushes what it printed every
 * PP__FLUSH_MS, so lines still arrive as they are written.  If the worker
 * crashes, the crash hook writes what the buffers hold into the pipes,
 * where the parent finds it after the worker's death.
 *
 * The watch thread also watches the channel: its end means the parent has
 * gone, and the worker exits at once, even in the middle of a task.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <apr_general.h>
#include <apr_thread_proc.h>

#include "internal.h"

/* How often a running call's buffered output is sent on. */
#define PP__FLUSH_MS 100
#define PP__STDIO_BUF 65536

static struct {
  pp__chan_t *alive;
  pp__chan_t *out, *err; /* the pipes' read ends, NULL if inherited */
  pp__put_fn put;        /* publishes OUTPUT records */
  pp__mutex_t *lock;     /* one drain at a time */
  int ended[2];          /* a pipe gave its end: the task closed stdout or
                            stderr (every copy); written under lock */
  apr_pool_t *mem;
  apr_thread_t *thread;
  uint32_t stop;         /* the main thread's word to the watch thread */
  int own_buffers;       /* the streams use outbuf and errbuf */
  /* The call whose output the watch thread drains (0 between calls),
   * written by the main thread; and the watch thread's "draining now".
   * Together they keep a drain of the watch thread from reaching into the
   * next call's output (drain_running). */
  uint64_t running;
  uint32_t draining;
  uint64_t sentinel;     /* random; at the start of each buffer */
  char outbuf[PP__STDIO_BUF];
  char errbuf[PP__STDIO_BUF];
} C;

/* The worker cannot read its own stdout or stderr: what its tasks print
 * would fill the pipe and block them for ever, so it says why (in its
 * ring, as a log line: stderr may be the pipe that is full) and exits; the
 * parent fails the running call and starts another worker. */
static void cannot_read(int i) {
  char text[512];
  unsigned char level[4] = {0, 0, 0, 0};
  int n = snprintf(text, sizeof(text),
                   "procpool worker: cannot read its own %s: %s",
                   i == 0 ? "stdout" : "stderr", pp__os_reason());
  C.put(PP__REC_LOG, 0, PP__LOAD_ACQ64(&C.running), level, 4, text,
        n > 0 && (size_t)n < sizeof(text) ? (size_t)n : 0);
  pp__exit_now(70);
}

/* Forwards what the pipes hold now, under call `id`. */
static void drain(uint64_t id) {
  char buf[16384];
  pp__chan_t *chans[2];
  int i;
  chans[0] = C.out;
  chans[1] = C.err;
  pp__mutex_lock(C.lock);
  for (i = 0; i < 2; i++) {
    size_t got;
    int rc = 0;
    if (C.ended[i])
      continue;
    while (pp__chan_wait(chans[i], 0) &&
           (rc = pp__chan_read_some(chans[i], buf, sizeof(buf), &got)) == 0)
      C.put(PP__REC_OUTPUT, (uint16_t)(i + 1), id, buf, got, NULL, 0);
    /* At its end a pipe stays readable: the watch thread stops looking at
     * it, or it would spin. */
    if (rc == PP_ECLOSED)
      C.ended[i] = 1;
    else if (rc != 0)
      cannot_read(i);
  }
  pp__mutex_unlock(C.lock);
}

/* The watch thread forwards what the pipes hold under the call running
 * now.  The pipes fill while it reads them, so it must not run into the
 * next call's output: it says it is draining, then reads which call runs;
 * the main thread, starting a call, says which call runs, then waits while
 * a drain is on (pp__capture_call_start).  With full barriers between
 * each write and read, either the drain sees the new call, or the new call
 * starts (and prints) only after the drain.  A call's own end drains the
 * rest of its output under the drain lock. */
static void drain_running(void) {
  PP__STORE_REL32(&C.draining, 1);
  PP__FENCE();
  drain(PP__LOAD_ACQ64(&C.running));
  PP__STORE_REL32(&C.draining, 0);
}

/* Sends a running call's buffered output on, unless the task is inside
 * stdio right now (the next round will do). */
static void flush_running(void) {
  FILE *fps[2];
  int i, flushed = 0;
  fps[0] = stdout;
  fps[1] = stderr;
  for (i = 0; i < 2; i++) {
    if (pp__stdio_pending(fps[i]) <= 0 || !pp__stdio_trylock(fps[i]))
      continue;
    fflush(fps[i]);
    pp__stdio_unlock(fps[i]);
    flushed = 1;
  }
  if (flushed)
    drain_running();
}

static void *APR_THREAD_FUNC watch_main(apr_thread_t *thread, void *data) {
  pp__chan_t *chans[3];
  int n, i, ready[3], pipe_ready;
  (void)data;
  chans[0] = C.alive;
  while (!PP__LOAD_ACQ32(&C.stop)) {
    int got;
    /* The pipes that have not ended (drain). */
    n = 1;
    for (i = 0; C.out != NULL && i < 2; i++)
      if (!C.ended[i])
        chans[n++] = i == 0 ? C.out : C.err;
    got = pp__chan_poll(chans, n, PP__FLUSH_MS, ready);
    if (PP__LOAD_ACQ32(&C.stop))
      break;
    if (got > 0 && ready[0] && pp__chan_ended(C.alive))
      pp__exit_now(0); /* The parent has gone: nobody wants our results. */
    pipe_ready = got > 0 && ((n > 1 && ready[1]) || (n > 2 && ready[2]));
    if (pipe_ready)
      drain_running();
    else if (C.own_buffers && PP__LOAD_ACQ64(&C.running) != 0)
      flush_running();
    if (got > 0 && ready[0] && !pipe_ready)
      /* A blob on its way to the main thread: not ours to read. */
      apr_sleep(1000);
  }
  /* Returned, not apr_thread_exit(): see pp__loop_main. */
  (void)thread;
  return NULL;
}

/* The worker is dying of a signal or exception: what the buffers hold goes
 * to the pipes, where the parent reads it after the death. */
static void salvage(void) {
  pp__stdio_salvage(stdout, C.outbuf);
  pp__stdio_salvage(stderr, C.errbuf);
}

/* Puts the sentinel at the start of an empty buffer; stdio writes the next
 * output there. */
static void arm(FILE *fp, char *buf) {
  if (pp__stdio_pending(fp) == 0)
    memcpy(buf, &C.sentinel, sizeof(C.sentinel));
}

/* Returns 1 if a stream was written to since it was armed. */
static int written(FILE *fp, const char *buf) {
  return pp__stdio_pending(fp) > 0 ||
         memcmp(buf, &C.sentinel, sizeof(C.sentinel)) != 0;
}

void pp__capture_call_start(uint64_t id) {
  unsigned turn = 0;
  if (C.out == NULL)
    return;
  PP__STORE_REL64(&C.running, id);
  PP__FENCE();
  while (PP__LOAD_ACQ32(&C.draining))
    pp__spin_turn(turn); /* a drain of the call before: short */
  if (C.own_buffers) {
    arm(stdout, C.outbuf);
    arm(stderr, C.errbuf);
  }
}

int pp__capture_start(pp__chan_t *alive, pp__chan_t *out, pp__chan_t *err,
                      pp__put_fn put, pp__err_t *why) {
  apr_status_t rv;
  int rc;
  C.alive = alive;
  C.put = put;
  C.out = out;
  C.err = err;
  rc = pp__mutex_new(&C.lock);
  if (rc)
    return pp__err_os(why, rc);
  if (out == NULL || pp__stdio_pending(stdout) < 0) {
    /* Inherited output: lines stream as they would on a terminal.  And
     * where the buffers cannot be looked into, the same: what a call
     * wrote is flushed at its end and drained with its id. */
    rc = pp__stdio_stream();
    if (rc)
      return pp__err_os(why, rc);
  } else {
    setvbuf(stdout, C.outbuf, _IOFBF, sizeof(C.outbuf));
    setvbuf(stderr, C.errbuf, _IOFBF, sizeof(C.errbuf));
    if (apr_generate_random_bytes((unsigned char *)&C.sentinel,
                                  sizeof(C.sentinel)) != APR_SUCCESS)
      C.sentinel = 0x5c0ffee5badf00dull;
    C.own_buffers = 1;
    pp__worker_set_crash_hook(salvage);
  }
  rv = PP__FAULT_HIT("apr_pool_create") ? APR_ENOMEM
                                        : apr_pool_create(&C.mem, NULL);
  if (rv == APR_SUCCESS)
    rv = PP__FAULT_HIT("apr_thread_create")
             ? APR_EAGAIN
             : apr_thread_create(&C.thread, NULL, watch_main, NULL, C.mem);
  if (rv != APR_SUCCESS)
    return pp__from_apr(why, rv, "starting the worker's watch thread");
  return 0;
}

void pp__capture_call_end(uint64_t id) {
  int out_pending, err_pending;
  if (C.out == NULL)
    return;
  if (C.own_buffers) {
    out_pending = written(stdout, C.outbuf);
    err_pending = written(stderr, C.errbuf);
    if (out_pending)
      fflush(stdout);
    if (err_pending)
      fflush(stderr);
    if (out_pending || err_pending)
      drain(id);
  } else {
    /* Streamed output: once flushed, whatever the call wrote is in the
     * pipes. */
    fflush(stdout);
    fflush(stderr);
    if (pp__chan_wait(C.out, 0) || pp__chan_wait(C.err, 0))
      drain(id);
  }
  /* Output from here to the next call's start is no call's. */
  PP__STORE_REL64(&C.running, 0);
}

void pp__capture_stop(void) {
  apr_status_t rv;
  fflush(stdout);
  fflush(stderr);
  if (C.out != NULL)
    drain(0);
  PP__STORE_REL32(&C.stop, 1);
  /* The watch thread waits on the channel; ending our side of it (the
   * worker is leaving anyway) wakes it at once.  It is joined, not left
   * running while the process exits (Wine can hang when a thread ends
   * during ExitProcess). */
  pp__chan_abort(C.alive);
  if (C.thread != NULL)
    apr_thread_join(&rv, C.thread);
}
