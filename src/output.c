/*
 * output.c - worker output in the parent: whole lines, tagged; log
 * callbacks.
 *
 * A worker sends what it writes to stdout and stderr as OUTPUT records,
 * each tagged with the call that wrote it (capture.c), and its pp_log()
 * messages as LOG records.  Here the bytes of each worker's stream are put
 * together into lines, which go to the pool's log callback one at a time.
 * A call's output ends with its call: a last line without a newline is
 * delivered when the call's outcome is read (pp__lines_call_end), before
 * the outcome reaches the caller, so nothing a call wrote waits for the
 * next call's output.  A line that one call started and another finished
 * is thus two lines, each with its own call.
 *
 * Lines longer than PP_LOG_LINE_MAX are delivered in pieces of that size,
 * each but the last with `more` set.  NUL bytes in output are kept (a
 * record's len counts them).
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "internal.h"

struct pp__lines_s {
  int worker;
  pp_log_source_t source;
  uint64_t call_id; /* the call the line so far belongs to */
  size_t len;
  char line[PP_LOG_LINE_MAX + 1];
};

void pp__log_deliver(pp_pool_t *pool, const pp_log_record_t *rec) {
  pp__mutex_lock(pool->log_lock);
  pool->log_cb(pool->log_data, rec);
  pp__mutex_unlock(pool->log_lock);
}

void pp__log_text(pp_pool_t *pool, int worker, uint64_t call_id,
                  pp_log_source_t source, int level, const char *text,
                  size_t len) {
  pp__log_text_from(pool, 0, worker, call_id, source, level, text, len);
}

void pp__log_text_from(pp_pool_t *pool, int rank, int worker, uint64_t call_id,
                       pp_log_source_t source, int level, const char *text,
                       size_t len) {
  pp_log_record_t rec;
  char *copy = pp__malloc(len + 1);
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
  rec.rank = rank;
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

void pp_log_stderr(void *data, const pp_log_record_t *rec) {
  static const char *names[] = {"out", "err", "log"};
  char head[112], rank[16] = "";
  size_t hlen;
  char *buf;
  (void)data;
  if (rec == NULL)
    return;
  /* A piece of a longer line is marked with '+': the next record of the
   * same worker and source goes on with it.  A line from a serving rank
   * of an MPI pool names the rank first. */
  if (rec->rank > 0)
    pp__format(rank, sizeof(rank), "r%d ", rec->rank);
  if (rec->source == PP_LOG_TASK)
    pp__format(head, sizeof(head), "[procpool %sw%d c%llu log%d%s] ", rank,
               rec->worker, (unsigned long long)rec->call_id, rec->level,
               rec->more ? "+" : "");
  else
    pp__format(head, sizeof(head), "[procpool %sw%d c%llu %s%s] ", rank,
               rec->worker, (unsigned long long)rec->call_id,
               names[rec->source <= PP_LOG_TASK ? rec->source : 0],
               rec->more ? "+" : "");
  /* One fwrite per line, so lines from several pools in one process are not
   * mixed mid-line either. */
  hlen = strlen(head);
  buf = pp__malloc(hlen + rec->len + 2);
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
static void flush_line(pp_pool_t *pool, pp__lines_t *l, int more) {
  pp_log_record_t rec;
  size_t n = l->len;
  if (!more && n > 0 && l->line[n - 1] == '\r')
    n--;
  l->line[n] = '\0';
  rec.worker = l->worker;
  rec.rank = 0;
  rec.call_id = l->call_id;
  rec.source = l->source;
  rec.level = 0;
  rec.line = l->line;
  rec.len = n;
  rec.more = more;
  pp__log_deliver(pool, &rec);
  l->len = 0;
}

int pp__lines_feed(pp_pool_t *pool, pp__lines_t **lines, int worker,
                   pp_log_source_t source, uint64_t id, const void *bytes,
                   size_t len) {
  pp__lines_t *l = *lines;
  const char *p = bytes;
  size_t i;
  if (l == NULL) {
    l = *lines = pp__calloc(1, sizeof(*l));
    if (l == NULL)
      return PP_ENOMEM;
    l->worker = worker;
    l->source = source;
  }
  /* Another call's output: the line of the one before ends here. */
  if (l->len > 0 && l->call_id != id)
    flush_line(pool, l, 0);
  l->call_id = id;
  for (i = 0; i < len; i++) {
    if (p[i] == '\n') {
      flush_line(pool, l, 0);
      continue;
    }
    if (l->len == PP_LOG_LINE_MAX)
      flush_line(pool, l, 1);
    l->line[l->len++] = p[i];
  }
  return 0;
}

int pp__lines_held(const pp__lines_t *l, uint64_t id) {
  return l != NULL && l->len > 0 && l->call_id == id;
}

void pp__lines_call_end(pp_pool_t *pool, pp__lines_t *l, uint64_t id) {
  /* The call's output ended without a newline: the next call's output
   * would end that line, but the worker may stay quiet for ever, and the
   * caller expects all of a call's output by the time its result comes. */
  if (pp__lines_held(l, id))
    flush_line(pool, l, 0);
}

void pp__lines_end(pp_pool_t *pool, pp__lines_t *l) {
  if (l == NULL)
    return;
  /* The stream is over (its worker ended): a last line without a newline
   * is a line too. */
  if (l->len > 0)
    flush_line(pool, l, 0);
  free(l);
}
