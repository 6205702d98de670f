/*
 * imap.c - pp_pool_imap(): a map over arguments read from a producer, in
 * bounded memory.
 *
 * The map holds at most `window` arguments: read from the producer and
 * not yet handed over as results.  They live in PP__IMAP_BATCHES batches
 * of `cap` calls each.  A batch is one source of the pool (source.c),
 * queued when it is opened and grown (pp__src_grow_locked) as arguments
 * are read, so that workers start on the first arguments while the
 * producer makes the next ones.  A batch whose calls have all been read,
 * finished and handed over is opened again for the next arguments, with a
 * fresh source.  So the map costs no object per call, as a map does, and
 * its memory does not grow with its input.
 *
 * Two threads share a map.  The calling thread reads arguments, writes
 * them into a batch and hands results over; the I/O thread (or whoever
 * finishes a call) runs imap_done under pool->lock.  The rule for each
 * field is written at the field.  An argument, args[i] and its bytes, is
 * written by the calling thread before the call is counted in its source
 * (under pool->lock), and not touched again until the batch is opened
 * anew, which is after the call has finished.
 */
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "internal.h"

/* Batches of a map: with four, three stay busy while the oldest hands
 * over its last results, and a batch is a quarter of the window. */
#define PP__IMAP_BATCHES 4
/* Read arguments are counted in (published to) their source at least
 * once per chunk, or after this long, so that a slow producer does not
 * keep the workers waiting for a whole chunk. */
#define PP__IMAP_PUBLISH_US 1000
typedef struct imap_s imap_t;

typedef struct batch_s {
  pp__src_t src; /* first: imap_done casts; pool->lock, as source.c says */
  imap_t *im;
  /* The calling thread's. */
  pp_buf_t *args;    /* cap arguments */
  pp__arena_t bytes; /* their bytes */
  size_t base;       /* the map's index of its call 0 */
  size_t filled;     /* arguments read into it */
  int closed;        /* it takes no more arguments */
  /* pool->lock. */
  int in_use;           /* opened, not yet all handed over */
  size_t delivered;     /* results handed over */
  pp_result_t *results; /* input order: the outcomes, */
  unsigned char *fin;   /* and which of them are there */
} batch_t;

/* A finished call waiting to be handed over (PP_MAP_UNORDERED). */
typedef struct ready_s {
  batch_t *b;
  size_t index;
  pp_result_t r;
} ready_t;

struct imap_s {
  /* Fixed at the start. */
  pp_pool_t *pool;
  const pp_task_t *task;
  pp_producer_cb producer;
  void *producer_data;
  pp_result_cb cb;
  void *cb_data;
  int64_t timeout_ms;
  size_t chunk;   /* the options' chunksize; 1 with auto_chunk */
  int auto_chunk; /* chunk follows each batch's size */
  size_t workers;
  size_t cap;    /* calls per batch */
  size_t window; /* the most arguments held; <= PP__IMAP_BATCHES * cap */
  int unordered;
  int stop_on_error;
  batch_t b[PP__IMAP_BATCHES];
  /* The calling thread's. */
  batch_t *open;        /* the batch being read into, or NULL */
  size_t order;         /* input order: the batch to open next */
  size_t head;          /* input order: the batch to hand over from */
  size_t read;          /* arguments read */
  size_t handed;        /* results handed over */
  int ended;            /* no more reading: input ended, failed, or the
                           map stopped */
  int status;           /* why the map ended early, or 0 */
  char why[384];        /* and in words */
  int64_t published_at; /* when the last arguments were counted */
  pp__reporter_t rep;
  /* pool->lock. */
  ready_t *ready;        /* unordered: ready[rfirst ..] circular, */
  size_t rfirst, rcount; /* at most `window` */
  int stop;              /* stop: cancel all, read no more */
  int first_status;      /* the first failed call in input order */
  int cause_status;      /* STOP_ON_ERROR: the failure that stopped it */
  size_t first_index;
  size_t finished, failed;
};

/* Cancels every open batch's calls that have not run; pool->lock held. */
static void stop_locked(imap_t *im) {
  size_t i;
  if (im->stop)
    return;
  im->stop = 1;
  for (i = 0; i < PP__IMAP_BATCHES; i++)
    if (im->b[i].in_use)
      pp__src_cancel_locked(&im->b[i].src);
}

/* A call's outcome; pool->lock held (see pp__src_done_fn).  The caller is
 * woken when it has something to hand over: in input order, only when the
 * next result it waits for is there. */
static int imap_done(pp__src_t *src, size_t index, pp_result_t *r) {
  batch_t *b = (batch_t *)src;
  imap_t *im = b->im;
  size_t at = b->base + index;
  im->finished++;
  if (r->status != 0) {
    im->failed++;
    if (im->first_status == 0 || at < im->first_index) {
      im->first_status = r->status;
      im->first_index = at;
    }
    if (im->stop_on_error) {
      /* As in map.c: the failure that stops the map is its status. */
      if (im->cause_status == 0)
        im->cause_status = r->status;
      stop_locked(im);
    }
  }
  if (im->unordered) {
    ready_t *e = &im->ready[(im->rfirst + im->rcount) % im->window];
    e->b = b;
    e->index = index;
    e->r = *r;
    im->rcount++;
    return 1;
  }
  b->results[index] = *r;
  b->fin[index] = 1;
  return b == &im->b[im->head] && index == b->delivered;
}

/* Ends reading with a status and a reason (the first one wins). */
static void end_reading(imap_t *im, int status, const char *fmt, ...)
    PP__PRINTF(3, 4);
static void end_reading(imap_t *im, int status, const char *fmt, ...) {
  va_list ap;
  im->ended = 1;
  if (status == 0 || im->status != 0)
    return;
  im->status = status;
  va_start(ap, fmt);
  vsnprintf(im->why, sizeof(im->why), fmt, ap);
  va_end(ap);
}

/* Opens the next batch for reading, if one is free; pool->lock held.
 * Returns 0, or PP_ECLOSED. */
static int open_batch_locked(imap_t *im) {
  batch_t *b = NULL;
  size_t i;
  int rc;
  if (im->unordered) {
    for (i = 0; i < PP__IMAP_BATCHES && b == NULL; i++)
      if (!im->b[i].in_use)
        b = &im->b[i];
  } else if (!im->b[im->order].in_use) {
    b = &im->b[im->order];
  }
  if (b == NULL)
    return 0;
  free(b->src.retry);
  pp__src_init(&b->src, im->pool, im->task, b->args, 0, im->timeout_ms,
               im->chunk, imap_done);
  b->src.cap = im->cap;
  rc = pp__src_queue_locked(&b->src);
  if (rc != 0)
    return rc;
  pp__arena_reset(&b->bytes);
  b->base = im->read;
  b->filled = 0;
  b->closed = 0;
  b->delivered = 0;
  if (b->fin != NULL)
    memset(b->fin, 0, im->cap);
  b->in_use = 1;
  im->open = b;
  if (!im->unordered)
    im->order = (im->order + 1) % PP__IMAP_BATCHES;
  return 0;
}

/* Counts the arguments read into the open batch in its source, so that
 * workers get them.  If the pool is being destroyed, the arguments not
 * counted end PP_ECLOSED, so that each one read still gets a result. */
static void publish(imap_t *im) {
  batch_t *b = im->open;
  size_t i, from;
  int rc;
  if (b == NULL)
    return;
  im->published_at = pp__now_us();
  pp__mutex_lock(im->pool->lock);
  if (im->stop)
    /* Stopped (a failure, the callback's word): read no more.  What was
     * read is still counted; its calls end cancelled (source.c). */
    im->ended = 1;
  from = b->src.n;
  if (b->filled == from) {
    pp__mutex_unlock(im->pool->lock);
    return;
  }
  rc = pp__src_grow_locked(&b->src, b->filled - from);
  if (rc == 0 && im->auto_chunk)
    /* Python's rule for a map of n calls (map.c), from what the batch
     * holds so far: a short input is spread over the workers rather than
     * handed to the first one. */
    b->src.chunk = pp__src_auto_chunk(b->src.n, im->workers);
  if (rc != 0) {
    for (i = from; i < b->filled; i++) {
      pp_result_t r;
      memset(&r, 0, sizeof(r));
      r.status = rc;
      r.message = pp__strdup_printf("call %zu of the map did not run: the "
                                    "pool is being destroyed",
                                    b->base + i);
      imap_done(&b->src, i, &r);
    }
    b->closed = 1;
    im->open = NULL;
  }
  pp__mutex_unlock(im->pool->lock);
  if (rc != 0) {
    end_reading(im, rc,
                "the pool was destroyed while the map read its "
                "input");
    return;
  }
  if (im->pool->inline_mode)
    /* In inline mode the caller runs what it counts. */
    for (i = from; i < b->filled; i++)
      pp__inline_run(&b->src, i);
}

/* Closes the open batch: it takes no more arguments. */
static void close_open(imap_t *im) {
  if (im->open == NULL)
    return;
  publish(im);
  if (im->open != NULL)
    im->open->closed = 1;
  im->open = NULL;
}

/* Reads arguments until some are counted in a source, or reading must
 * wait (the window is full, no batch is free) or has ended.  Returns 1 if
 * it read anything.  No lock held. */
static int read_some(imap_t *im) {
  pp_next_arg_t next;
  int rc, any = 0;
  void *room;
  batch_t *b;

  while (!im->ended) {
    if (im->read - im->handed >= im->window)
      break;
    if (im->open == NULL) {
      /* The lock is taken per batch and per publish, not per argument:
       * a stop is seen at the next publish, within a chunk. */
      pp__mutex_lock(im->pool->lock);
      rc = im->stop ? 0 : open_batch_locked(im);
      if (im->stop)
        im->ended = 1;
      pp__mutex_unlock(im->pool->lock);
      if (rc != 0)
        end_reading(im, rc,
                    "the pool was destroyed while the map read its "
                    "input");
      if (im->ended || im->open == NULL)
        break;
    }
    b = im->open;
    next.index = im->read;
    next.arg.data = NULL;
    next.arg.len = 0;
    next.message[0] = '\0';
    rc = im->producer(im->producer_data, &next);
    next.message[sizeof(next.message) - 1] = '\0';
    if (rc == 0) {
      im->ended = 1;
      break;
    }
    if (rc < 0) {
      end_reading(im, rc, "the producer failed at argument %zu: %s", im->read,
                  next.message[0] ? next.message : pp_strerror(rc));
      break;
    }
    if (rc != 1 || (next.arg.data == NULL && next.arg.len > 0)) {
      end_reading(im, PP_EINVAL,
                  "the producer gave argument %zu as %d with %s data and %zu "
                  "bytes (it returns 1 with an argument, 0 at the end, or a "
                  "negative status)",
                  im->read, rc, next.arg.data ? "its" : "NULL", next.arg.len);
      break;
    }
    room = next.arg.len ? pp__arena_alloc(&b->bytes, next.arg.len) : NULL;
    if (next.arg.len > 0 && room == NULL) {
      end_reading(im, PP_ENOMEM,
                  "out of memory to copy argument %zu of %zu bytes", im->read,
                  next.arg.len);
      break;
    }
    if (room != NULL)
      memcpy(room, next.arg.data, next.arg.len);
    b->args[b->filled].data = room;
    b->args[b->filled].len = next.arg.len;
    b->filled++;
    im->read++;
    any = 1;
    if (b->filled == im->cap) {
      close_open(im);
      break;
    }
    if (b->filled - b->src.n >= b->src.chunk ||
        pp__now_us() - im->published_at >= PP__IMAP_PUBLISH_US) {
      publish(im);
      break;
    }
  }
  /* Nothing read stays uncounted while the map waits or ends. */
  if (im->ended)
    close_open(im);
  else
    publish(im);
  return any;
}

/* Frees a batch that has handed over all its results, so that it can be
 * opened again; pool->lock held. */
static void batch_done_locked(imap_t *im, batch_t *b) {
  b->in_use = 0;
  if (!im->unordered)
    im->head = (im->head + 1) % PP__IMAP_BATCHES;
}

/* Hands every result that may go to the callback; pool->lock held,
 * released while the callback runs.  Returns 1 if it handed any. */
static int deliver_locked(imap_t *im) {
  pp_pool_t *pool = im->pool;
  int any = 0, stop;
  if (im->unordered) {
    while (im->rcount > 0) {
      ready_t e = im->ready[im->rfirst];
      im->rfirst = (im->rfirst + 1) % im->window;
      im->rcount--;
      pp__mutex_unlock(pool->lock);
      stop = im->cb(im->cb_data, e.b->base + e.index, &e.r);
      pp__mutex_lock(pool->lock);
      if (stop)
        stop_locked(im);
      im->handed++;
      any = 1;
      if (++e.b->delivered == e.b->filled && e.b->closed)
        batch_done_locked(im, e.b);
    }
    return any;
  }
  for (;;) {
    batch_t *b = &im->b[im->head];
    size_t from, to, i;
    if (!b->in_use)
      return any;
    from = b->delivered;
    to = from;
    while (to < b->filled && b->fin[to])
      to++;
    if (to > from) {
      /* Moved on first, so that imap_done wakes this thread for the one
       * after them. */
      b->delivered = to;
      pp__mutex_unlock(pool->lock);
      stop = 0;
      for (i = from; i < to; i++)
        if (im->cb(im->cb_data, b->base + i, &b->results[i]) != 0)
          stop = 1;
      pp__mutex_lock(pool->lock);
      if (stop)
        stop_locked(im);
      im->handed += to - from;
      any = 1;
    }
    if (b->delivered < b->filled || !b->closed)
      return any;
    batch_done_locked(im, b);
  }
}

/* Returns 1 if there is a result to hand over; pool->lock held. */
static int deliverable_locked(const imap_t *im) {
  const batch_t *b = &im->b[im->head];
  if (im->unordered)
    return im->rcount > 0;
  return b->in_use && b->delivered < b->filled && b->fin[b->delivered];
}

/* Returns 1 if the calling thread can read another argument now. */
static int can_read(const imap_t *im) {
  size_t i;
  if (im->ended || im->read - im->handed >= im->window)
    return 0;
  if (im->open != NULL)
    return 1;
  if (!im->unordered)
    return !im->b[im->order].in_use;
  for (i = 0; i < PP__IMAP_BATCHES; i++)
    if (!im->b[i].in_use)
      return 1;
  return 0;
}

/* Makes a progress report if one is due; pool->lock held, released while
 * the callback runs.  A callback that returns non-zero stops the map. */
static void report_locked(imap_t *im, int final) {
  size_t done, failed;
  if (!pp__reporter_due(&im->rep, final))
    return;
  done = im->finished;
  failed = im->failed;
  pp__mutex_unlock(im->pool->lock);
  if (pp__reporter_call(&im->rep, done, failed, im->ended ? im->read : 0,
                        final) != 0 &&
      !final) {
    pp__mutex_lock(im->pool->lock);
    stop_locked(im);
    return;
  }
  pp__mutex_lock(im->pool->lock);
}

/* Allocates the batches and the list of finished calls. */
static int imap_alloc(imap_t *im) {
  size_t i;
  for (i = 0; i < PP__IMAP_BATCHES; i++) {
    batch_t *b = &im->b[i];
    b->im = im;
    pp__queue_init(&b->src.link);
    b->args = pp__calloc(im->cap, sizeof(*b->args));
    if (b->args == NULL)
      return PP_ENOMEM;
    if (!im->unordered) {
      b->results = pp__calloc(im->cap, sizeof(*b->results));
      b->fin = pp__calloc(im->cap, 1);
      if (b->results == NULL || b->fin == NULL)
        return PP_ENOMEM;
    }
  }
  if (im->unordered) {
    im->ready = pp__calloc(im->window, sizeof(*im->ready));
    if (im->ready == NULL)
      return PP_ENOMEM;
  }
  return 0;
}

static void imap_free(imap_t *im) {
  size_t i;
  for (i = 0; i < PP__IMAP_BATCHES; i++) {
    batch_t *b = &im->b[i];
    pp__arena_free(&b->bytes);
    free(b->args);
    free(b->results);
    free(b->fin);
    free(b->src.retry);
  }
  free(im->ready);
}

/* Sets the map's fixed part from its arguments; returns 0 or a status
 * raised with its reason. */
static int imap_setup(imap_t *im, pp_pool_t *pool, const char *task,
                      const pp_map_options_t *o) {
  unsigned known =
      PP_MAP_STOP_ON_ERROR | PP_MAP_PROGRESS_BAR | PP_MAP_UNORDERED;
  size_t workers, window;
  im->task = pp__task_find(pool->tasks, task);
  if (im->task == NULL)
    return pp__fail(PP_ENOTASK, "pp_pool_imap: no task named '%s'", task);
  if (o != NULL && (o->flags & ~known))
    return pp__fail(PP_EINVAL, "pp_pool_imap: unknown flags 0x%x", o->flags);
  workers = (size_t)pp__pool_width(pool);
  /* By default a window that keeps tiny calls near the array map's rate
   * (a quarter of it per batch, in chunks of a sixteenth per worker),
   * which costs a few hundred KiB for small arguments. */
  window = o != NULL && o->max_in_flight ? o->max_in_flight : 256 * workers;
  if (!(o != NULL && o->max_in_flight) && window < 4096)
    window = 4096;
  if (window > SIZE_MAX / 2 / sizeof(ready_t))
    return pp__fail(PP_EINVAL, "pp_pool_imap: max_in_flight %zu is too large",
                    window);
  im->cap = (window + PP__IMAP_BATCHES - 1) / PP__IMAP_BATCHES;
  im->window = window;
  im->pool = pool;
  im->unordered = o != NULL && (o->flags & PP_MAP_UNORDERED);
  im->stop_on_error = o != NULL && (o->flags & PP_MAP_STOP_ON_ERROR);
  im->timeout_ms = o && o->timeout_ms ? o->timeout_ms : pool->call_timeout_ms;
  /* As a map does (Python's rule), from a batch's calls: a worker's
   * share of a batch comes in about four pieces (publish() follows the
   * batch as it fills). */
  im->workers = workers;
  im->auto_chunk = !(o && o->chunksize);
  im->chunk = o && o->chunksize ? o->chunksize : 1;
  if (imap_alloc(im) != 0)
    return pp__fail(PP_ENOMEM,
                    "pp_pool_imap: out of memory for a window of "
                    "%zu calls",
                    im->window);
  pp__reporter_init(&im->rep, o);
  return 0;
}

int pp_pool_imap(pp_pool_t *pool, const char *task, pp_producer_cb producer,
                 void *producer_data, pp_result_cb cb, void *cb_data,
                 const pp_map_options_t *options) {
  imap_t *im;
  int rc;

  if (pool == NULL || task == NULL || producer == NULL || cb == NULL)
    return pp__fail(PP_EINVAL, "pp_pool_imap: pool, task, producer and cb "
                               "must be set");
  if (pp__pool_forked(pool, "pp_pool_imap") != 0)
    return PP_ECLOSED;
  im = pp__calloc(1, sizeof(*im));
  if (im == NULL)
    return pp__fail(PP_ENOMEM, "pp_pool_imap: out of memory");
  im->producer = producer;
  im->producer_data = producer_data;
  im->cb = cb;
  im->cb_data = cb_data;
  rc = imap_setup(im, pool, task, options);
  if (rc != 0)
    goto cleanup;

  pp__mutex_lock(pool->lock);
  if (pool->closing) {
    pp__mutex_unlock(pool->lock);
    rc = pp__fail(PP_ECLOSED, "pp_pool_imap: the pool is being destroyed");
    goto cleanup;
  }
  /* The map uses the pool until it returns, like a future. */
  pool->live_futures++;
  pp__mutex_unlock(pool->lock);

  while (!im->ended || im->handed < im->read) {
    int moved = read_some(im);
    pp__mutex_lock(pool->lock);
    moved |= deliver_locked(im);
    report_locked(im, 0);
    if (im->stop)
      /* Stopped by the callback, a progress report or a failure: the
       * producer is not called again. */
      im->ended = 1;
    if (!moved && !can_read(im) && !deliverable_locked(im) &&
        (!im->ended || im->handed < im->read)) {
      if (im->rep.cb == NULL)
        pp__cond_wait(pool->done_cond, pool->lock);
      else
        pp__cond_timedwait(pool->done_cond, pool->lock,
                           pp__us_left(im->rep.next));
    }
    pp__mutex_unlock(pool->lock);
  }
  pp__mutex_lock(pool->lock);
  report_locked(im, 1);
  rc = im->status != 0         ? im->status
       : im->cause_status != 0 ? im->cause_status
                               : im->first_status;
  /* Another thread may have destroyed the pool while this map ran; then
   * the map's end frees it. */
  pp__pool_leave_unlock(pool);
  if (im->status != 0)
    rc = pp__fail(im->status, "pp_pool_imap: %s", im->why);

cleanup:
  imap_free(im);
  free(im);
  return rc;
}
