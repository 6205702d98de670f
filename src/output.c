/*
 * output.c - worker stdout/stderr as whole, tagged lines; log callbacks.
 *
 * A drain thread reads one stream of one worker.  When a call starts, the
 * worker writes a marker (NUL, "PP", 16 hex digits of the call id, newline)
 * to both streams, after flushing what came before; so every byte in the
 * stream after the marker belongs to that call, and lines are tagged with
 * the exact call id without a race against the reply on the channel.
 * Lines longer than PP__LINE_MAX are delivered in pieces of that size.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "internal.h"

#define PP__LINE_MAX 65536
/* How long a drain gathers output before it reads again: lines reach the
 * log callback at most this late. */
#define PP__DRAIN_BATCH_USEC 2000

struct pp__drain_s {
  pp_pool_t *pool;
  int worker;
  pp_log_source_t source;
  pp__chan_t *chan;
  apr_thread_t *thread;
  apr_pool_t *mem;
  apr_thread_mutex_t *lock;
  apr_thread_cond_t *cond;
  int finished;
  uint64_t call_id;
  char line[PP__LINE_MAX + 1];
  size_t line_len;
  char mark[PP__MARK_LEN];
  size_t mark_len;  /* > 0 while a marker is being read */
};

void pp__log_deliver(pp_pool_t *pool, const pp_log_record_t *rec) {
  apr_thread_mutex_lock(pool->log_lock);
  pool->log_cb(pool->log_data, rec);
  apr_thread_mutex_unlock(pool->log_lock);
}

void pp__log_text(pp_pool_t *pool, int worker, uint64_t call_id,
                  pp_log_source_t source, int level, const char *text,
                  size_t len) {
  pp_log_record_t rec;
  char *copy = malloc(len + 1);
  size_t start = 0, i;
  if (copy == NULL)
    return;
  memcpy(copy, text, len);
  copy[len] = '\0';
  rec.worker = worker;
  rec.call_id = call_id;
  rec.source = source;
  rec.level = level;
  for (i = 0; i <= len; i++) {
    if (i < len && copy[i] != '\n')
      continue;
    if (i == len && i == start && len > 0)
      break;
    copy[i] = '\0';
    rec.line = copy + start;
    rec.len = i - start;
    if (rec.len > 0 && rec.line[rec.len - 1] == '\r')
      copy[i - 1] = '\0', rec.len--;
    pp__log_deliver(pool, &rec);
    start = i + 1;
  }
  free(copy);
}

void pp__log_frame(pp_pool_t *pool, int worker, const pp__frame_t *fr,
                   const unsigned char *payload) {
  int level = (int32_t)pp__get_u32(payload);
  pp__log_text(pool, worker, fr->id, PP_LOG_TASK, level,
               (const char *)payload + 4, (size_t)fr->len - 4);
}

void pp_log_stderr(void *data, const pp_log_record_t *rec) {
  static const char *names[] = {"out", "err", "log"};
  char head[96];
  size_t hlen;
  char *buf;
  (void)data;
  if (rec == NULL)
    return;
  if (rec->source == PP_LOG_TASK)
    pp__format(head, sizeof(head), "[procpool w%d c%llu log%d] ", rec->worker,
               (unsigned long long)rec->call_id, rec->level);
  else
    pp__format(head, sizeof(head), "[procpool w%d c%llu %s] ", rec->worker,
               (unsigned long long)rec->call_id,
               names[rec->source <= PP_LOG_TASK ? rec->source : 0]);
  /* One fwrite per line, so lines from several pools in one process are not
   * mixed mid-line either. */
  hlen = strlen(head);
  buf = malloc(hlen + rec->len + 2);
  if (buf == NULL)
    return;
  memcpy(buf, head, hlen);
  memcpy(buf + hlen, rec->line, rec->len);
  buf[hlen + rec->len] = '\n';
  fwrite(buf, 1, hlen + rec->len + 1, stderr);
  fflush(stderr);
  free(buf);
}

static void flush_line(pp__drain_t *d) {
  pp_log_record_t rec;
  size_t n = d->line_len;
  if (n > 0 && d->line[n - 1] == '\r')
    n--;
  d->line[n] = '\0';
  rec.worker = d->worker;
  rec.call_id = d->call_id;
  rec.source = d->source;
  rec.level = 0;
  rec.line = d->line;
  rec.len = n;
  pp__log_deliver(d->pool, &rec);
  d->line_len = 0;
}

/* Parses a complete marker; if it is not one, its bytes count as text. */
static void end_marker(pp__drain_t *d) {
  uint64_t id = 0;
  size_t i;
  int ok = d->mark[1] == 'P' && d->mark[2] == 'P';
  for (i = 3; ok && i < 19; i++) {
    char c = d->mark[i];
    int v = c >= '0' && c <= '9'   ? c - '0'
            : c >= 'a' && c <= 'f' ? c - 'a' + 10
                                   : -1;
    if (v < 0)
      ok = 0;
    id = (id << 4) | (uint64_t)(v < 0 ? 0 : v);
  }
  if (ok) {
    d->call_id = id;
  } else {
    for (i = 1; i < d->mark_len; i++) {
      if (d->line_len == PP__LINE_MAX)
        flush_line(d);
      d->line[d->line_len++] = d->mark[i];
    }
  }
  d->mark_len = 0;
}

static void feed(pp__drain_t *d, const char *buf, size_t n) {
  size_t i;
  for (i = 0; i < n; i++) {
    char c = buf[i];
    if (d->mark_len > 0) {
      /* Markers end with '\n'; Windows text mode may add a '\r' first. */
      if (c == '\r' && d->mark_len == 19)
        continue;
      d->mark[d->mark_len++] = c;
      if (d->mark_len == PP__MARK_LEN || c == '\n')
        end_marker(d);
      continue;
    }
    if (c == '\0') {
      if (d->line_len > 0)
        flush_line(d);
      d->mark[0] = c;
      d->mark_len = 1;
      continue;
    }
    if (c == '\n') {
      flush_line(d);
      continue;
    }
    if (d->line_len == PP__LINE_MAX)
      flush_line(d);
    d->line[d->line_len++] = c;
  }
}

static void *APR_THREAD_FUNC drain_main(apr_thread_t *thread, void *data) {
  pp__drain_t *d = data;
  char buf[16384];
  size_t got;
  while (pp__chan_read_some(d->chan, buf, sizeof(buf), &got) == 0) {
    feed(d, buf, got);
    /* Every call writes a marker, and waking this thread for each one
     * would cost more than the call itself; after a short read the drain
     * waits a moment so that markers and lines arrive in batches.  A full
     * read means output is streaming, so it reads on at once. */
    if (got < sizeof(buf))
      apr_sleep(PP__DRAIN_BATCH_USEC);
  }
  if (d->line_len > 0)
    flush_line(d);
  apr_thread_mutex_lock(d->lock);
  d->finished = 1;
  apr_thread_cond_broadcast(d->cond);
  apr_thread_mutex_unlock(d->lock);
  /* Returned, not apr_thread_exit(): see pp__slot_main. */
  (void)thread;
  return NULL;
}

int pp__drain_start(pp_pool_t *pool, int worker, pp_log_source_t source,
                    pp__chan_t *chan, pp__drain_t **out) {
  pp__drain_t *d = NULL;
  apr_threadattr_t *attr = NULL;
  apr_status_t rv;
  int rc = 0;

  *out = NULL;
  d = calloc(1, sizeof(*d));
  if (d == NULL) {
    rc = pp__set_error(PP_ENOMEM, "cannot allocate an output drain");
    goto cleanup;
  }
  d->pool = pool;
  d->worker = worker;
  d->source = source;
  d->chan = chan;
  rv = apr_pool_create(&d->mem, NULL);
  if (rv == APR_SUCCESS)
    rv = apr_thread_mutex_create(&d->lock, APR_THREAD_MUTEX_DEFAULT, d->mem);
  if (rv == APR_SUCCESS)
    rv = apr_thread_cond_create(&d->cond, d->mem);
  if (rv == APR_SUCCESS)
    rv = apr_threadattr_create(&attr, d->mem);
  /* A drain needs little stack; keep hundreds of workers cheap. */
  if (rv == APR_SUCCESS)
    rv = apr_threadattr_stacksize_set(attr, 256 * 1024);
  if (rv == APR_SUCCESS)
    rv = apr_thread_create(&d->thread, attr, drain_main, d, d->mem);
  if (rv != APR_SUCCESS) {
    rc = pp__from_apr(rv, "starting an output drain");
    goto cleanup;
  }
  *out = d;
  return 0;

cleanup:
  pp__chan_close(chan);
  if (d != NULL && d->mem != NULL)
    apr_pool_destroy(d->mem);
  free(d);
  return rc;
}

void pp__drain_join(pp__drain_t *d) {
  apr_status_t rv;
  /* The worker has exited, so its end of the stream is closed unless a
   * process the task started inherited it; give that a moment, then stop
   * reading. */
  int finished;
  if (d == NULL)
    return;
  apr_thread_mutex_lock(d->lock);
  if (!d->finished)
    apr_thread_cond_timedwait(d->cond, d->lock, apr_time_from_msec(1000));
  finished = d->finished;
  apr_thread_mutex_unlock(d->lock);
  if (!finished)
    pp__chan_abort(d->chan);
  apr_thread_join(&rv, d->thread);
  pp__chan_close(d->chan);
  apr_pool_destroy(d->mem);
  free(d);
}
