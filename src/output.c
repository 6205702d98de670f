/*
 * output.c - worker stdout/stderr as whole, tagged lines; log callbacks.
 *
 * A drain thread reads one stream of one worker.  When a call starts, the
 * worker writes a marker (NUL, "PP", 16 hex digits of the call id, 16 hex
 * digits of its marker key, newline) to both streams, after flushing what
 * came before; so every byte in the stream after the marker belongs to that
 * call, and lines are tagged with the exact call id without a race against
 * the reply on the channel.  The key is random per worker and reaches the
 * parent over the channel (HELLO), so output that merely looks like a
 * marker (a task that copies binary data to stdout) stays text.
 *
 * Lines longer than PP_LOG_LINE_MAX are delivered in pieces of that size,
 * each but the last with `more` set.  NUL bytes in output are kept (a
 * record's len counts them).
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <apr_time.h>

#include "internal.h"

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
  pp__mutex_t *lock;
  uint64_t key;     /* lock: the worker's marker key, 0 until HELLO */
  char last[200];   /* lock: the last line delivered */
  uint64_t call_id;
  char line[PP_LOG_LINE_MAX + 1];
  size_t line_len;
  char mark[PP__MARK_LEN];
  size_t mark_len;  /* > 0 while a marker is being read */
};

void pp__log_deliver(pp_pool_t *pool, const pp_log_record_t *rec) {
  pp__mutex_lock(pool->log_lock);
  pool->log_cb(pool->log_data, rec);
  pp__mutex_unlock(pool->log_lock);
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
  rec.more = 0;
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
  /* A piece of a longer line is marked with '+': the next record of the
   * same worker and source goes on with it. */
  if (rec->source == PP_LOG_TASK)
    pp__format(head, sizeof(head), "[procpool w%d c%llu log%d%s] ",
               rec->worker, (unsigned long long)rec->call_id, rec->level,
               rec->more ? "+" : "");
  else
    pp__format(head, sizeof(head), "[procpool w%d c%llu %s%s] ", rec->worker,
               (unsigned long long)rec->call_id,
               names[rec->source <= PP_LOG_TASK ? rec->source : 0],
               rec->more ? "+" : "");
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

/* Delivers the line gathered so far; `more` marks a piece of a line that
 * was too long to keep whole. */
static void flush_line(pp__drain_t *d, int more) {
  pp_log_record_t rec;
  size_t n = d->line_len;
  if (!more && n > 0 && d->line[n - 1] == '\r')
    n--;
  d->line[n] = '\0';
  rec.worker = d->worker;
  rec.call_id = d->call_id;
  rec.source = d->source;
  rec.level = 0;
  rec.line = d->line;
  rec.len = n;
  rec.more = more;
  pp__log_deliver(d->pool, &rec);
  pp__mutex_lock(d->lock);
  pp__format(d->last, sizeof(d->last), "%s", d->line);
  pp__mutex_unlock(d->lock);
  d->line_len = 0;
}

static void put_char(pp__drain_t *d, char c) {
  if (d->line_len == PP_LOG_LINE_MAX)
    flush_line(d, 1);
  d->line[d->line_len++] = c;
}

static int hex_value(char c) {
  return c >= '0' && c <= '9'   ? c - '0'
         : c >= 'a' && c <= 'f' ? c - 'a' + 10
                                : -1;
}

/* Parses 16 hex digits; returns 0 if they are not. */
static int parse_hex16(const char *p, uint64_t *out) {
  uint64_t v = 0;
  int i;
  for (i = 0; i < 16; i++) {
    int h = hex_value(p[i]);
    if (h < 0)
      return 0;
    v = (v << 4) | (uint64_t)h;
  }
  *out = v;
  return 1;
}

/* Ends a marker that is complete or was cut short by a newline.  A real
 * marker (right length and our worker's key) retags what follows; anything
 * else is output: its bytes, NUL included, become text. */
static void end_marker(pp__drain_t *d) {
  uint64_t id = 0, key = 0, want;
  size_t i, n = d->mark_len;
  int newline = d->mark[n - 1] == '\n';
  int ok = n == PP__MARK_LEN && newline && d->mark[1] == 'P' &&
           d->mark[2] == 'P' && parse_hex16(d->mark + 3, &id) &&
           parse_hex16(d->mark + 19, &key);
  if (ok) {
    pp__mutex_lock(d->lock);
    want = d->key;
    pp__mutex_unlock(d->lock);
    ok = want != 0 && key == want;
  }
  d->mark_len = 0;
  if (ok) {
    /* What came before the marker (a task's last line without a newline)
     * belongs to the call before. */
    if (d->line_len > 0)
      flush_line(d, 0);
    d->call_id = id;
    return;
  }
  for (i = 0; i < n - (newline ? 1 : 0); i++)
    put_char(d, d->mark[i]);
  if (newline)
    flush_line(d, 0);
}

static void feed(pp__drain_t *d, const char *buf, size_t n) {
  size_t i;
  for (i = 0; i < n; i++) {
    char c = buf[i];
    if (d->mark_len > 0) {
      /* Markers end with '\n'; Windows text mode may add a '\r' first. */
      if (c == '\r' && d->mark_len == PP__MARK_LEN - 1)
        continue;
      d->mark[d->mark_len++] = c;
      if (d->mark_len == PP__MARK_LEN || c == '\n')
        end_marker(d);
      continue;
    }
    if (c == '\0') {
      /* Perhaps a marker; the line so far waits until that is known. */
      d->mark[0] = c;
      d->mark_len = 1;
      continue;
    }
    if (c == '\n') {
      flush_line(d, 0);
      continue;
    }
    put_char(d, c);
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
  if (d->mark_len > 0) {
    /* A marker cut short by the end of the stream is text too. */
    d->mark[d->mark_len++] = '\n';
    end_marker(d);
  }
  if (d->line_len > 0)
    flush_line(d, 0);
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
  rc = pp__mutex_new(&d->lock);
  if (rc)
    goto cleanup;
  rv = apr_pool_create(&d->mem, NULL);
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
  if (d != NULL) {
    if (d->mem != NULL)
      apr_pool_destroy(d->mem);
    pp__mutex_free(d->lock);
  }
  free(d);
  return rc;
}

void pp__drain_set_key(pp__drain_t *d, uint64_t key) {
  if (d == NULL)
    return;
  pp__mutex_lock(d->lock);
  d->key = key;
  pp__mutex_unlock(d->lock);
}

void pp__drain_stop(pp__drain_t *d) {
  if (d != NULL)
    pp__chan_abort(d->chan);
}

void pp__drain_join(pp__drain_t *d, char *last, size_t cap) {
  apr_status_t rv;
  if (last != NULL && cap > 0)
    last[0] = '\0';
  if (d == NULL)
    return;
  apr_thread_join(&rv, d->thread);
  if (last != NULL)
    pp__format(last, cap, "%s", d->last);
  pp__chan_close(d->chan);
  apr_pool_destroy(d->mem);
  pp__mutex_free(d->lock);
  free(d);
}
