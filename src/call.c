/*
 * call.c - what a task uses: pp_call_reply*, pp_call_fail, pp_log; and the
 * inline (debug) mode, which runs a call in the caller's thread through the
 * same frame encoding as a worker.
 */
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "internal.h"

/* Records that a reply could not be set: the call fails with `status` and
 * this reason unless a later reply succeeds.  Returns status. */
static int reply_failed(pp_call_t *call, int status) {
  free(call->reply_error);
  call->reply_error = pp__strdup_printf("%s", pp_last_error());
  call->reply_status = status;
  return status;
}

/* Makes `p` (malloc'd, `len` bytes) the call's result. */
static void reply_set(pp_call_t *call, void *p, size_t len) {
  free(call->reply);
  call->reply = p;
  call->reply_len = len;
  free(call->reply_error);
  call->reply_error = NULL;
  call->reply_status = 0;
}

int pp_call_reply(pp_call_t *call, const void *data, size_t len) {
  void *p;
  if (call == NULL)
    return pp__set_error(PP_EINVAL, "pp_call_reply: call is NULL");
  if (data == NULL && len > 0)
    return reply_failed(call, pp__set_error(PP_EINVAL, "pp_call_reply: data "
                                            "is NULL with len %zu", len));
  p = malloc(len ? len : 1);
  if (p == NULL)
    return reply_failed(call, pp__set_error(PP_ENOMEM,
                                            "pp_call_reply: %zu bytes", len));
  if (len)
    memcpy(p, data, len);
  reply_set(call, p, len);
  return 0;
}

void *pp_call_reply_alloc(pp_call_t *call, size_t len) {
  void *p;
  if (call == NULL)
    return NULL;
  p = malloc(len ? len : 1);
  if (p == NULL) {
    reply_failed(call, pp__set_error(PP_ENOMEM, "pp_call_reply_alloc: %zu "
                                     "bytes", len));
    return NULL;
  }
  reply_set(call, p, len);
  return p;
}

int pp_call_replyf(pp_call_t *call, const char *fmt, ...) {
  pp_buf_t buf;
  va_list ap;
  int rc;
  if (call == NULL)
    return pp__set_error(PP_EINVAL, "pp_call_replyf: call is NULL");
  va_start(ap, fmt);
  rc = pp__vpack(&buf, fmt, ap);
  va_end(ap);
  if (rc)
    return reply_failed(call, rc);
  reply_set(call, (void *)buf.data, buf.len);
  return 0;
}

int pp_call_fail(pp_call_t *call, const char *fmt, ...) {
  va_list ap;
  char msg[PP__MSG_MAX];
  if (call == NULL)
    return PP_ETASK;
  if (fmt == NULL) {
    pp__format(msg, sizeof(msg), "task failed");
  } else {
    va_start(ap, fmt);
    vsnprintf(msg, sizeof(msg), fmt, ap);
    va_end(ap);
  }
  free(call->fail_message);
  call->fail_message = pp__strdup_printf("%s", msg);
  call->failed = 1;
  return PP_ETASK;
}

uint64_t pp_call_id(const pp_call_t *call) {
  return call ? call->id : 0;
}

void pp__call_clear(pp_call_t *call) {
  free(call->reply);
  free(call->fail_message);
  free(call->reply_error);
  memset(call, 0, sizeof(*call));
}

int pp__call_run(const pp_task_t *task, pp_call_t *call, const void *arg,
                 size_t len) {
  int rc = task->fn(call, arg, len);
  if (rc == 0 && !call->failed && call->reply_status == 0)
    return 0;
  free(call->reply);
  call->reply = NULL;
  call->reply_len = 0;
  if (call->failed)
    return PP_ETASK;
  if (call->reply_status != 0) {
    /* The task's reply could not be made; whatever it returned, the caller
     * must not see an empty success. */
    free(call->fail_message);
    call->fail_message = pp__strdup_printf(
        "task '%s': its reply failed: %s", task->name,
        call->reply_error ? call->reply_error : pp_strerror(call->reply_status));
    return call->reply_status;
  }
  /* A plain non-zero return is the task's own failure, whatever the number:
   * a task's -5 is not procpool's PP_EWORKERDIED. */
  call->fail_message = pp__strdup_printf(
      "task '%s' returned %d without calling pp_call_fail()", task->name, rc);
  return PP_ETASK;
}

void pp_log(int level, const char *fmt, ...) {
  char msg[PP__MSG_MAX];
  va_list ap;
  int n;
  if (fmt == NULL)
    return;
  va_start(ap, fmt);
  n = vsnprintf(msg, sizeof(msg), fmt, ap);
  va_end(ap);
  if (n < 0)
    return;
  if ((size_t)n >= sizeof(msg))
    n = (int)sizeof(msg) - 1;
  if (pp__worker_log(level, msg, (size_t)n) == 0)
    return;
  if (pp__inline_log(level, msg, (size_t)n) == 0)
    return;
  fprintf(stderr, "[procpool log%d] %s\n", level, msg);
}

/* ---- inline mode ---- */

static PP__THREAD_LOCAL pp_pool_t *inline_pool;
static PP__THREAD_LOCAL uint64_t inline_call;

void pp__inline_enter(pp_pool_t *pool, uint64_t call_id) {
  inline_pool = pool;
  inline_call = call_id;
}

void pp__inline_leave(void) {
  inline_pool = NULL;
  inline_call = 0;
}

int pp__inline_log(int level, const char *text, size_t len) {
  if (inline_pool == NULL)
    return -1;
  pp__log_text(inline_pool, 0, inline_call, PP_LOG_TASK, level, text, len);
  return 0;
}

/* Encodes a frame into memory and decodes it again, exactly as a channel
 * would carry it, so inline mode exercises the same checks. */
static int round_trip(int type, uint64_t id, const void *p1, size_t n1,
                      const void *p2, size_t n2, unsigned char **payload,
                      pp__frame_t *fr) {
  unsigned char *buf = malloc(PP__WIRE_HEADER + n1 + n2 + 1);
  int rc;
  *payload = NULL;
  if (buf == NULL)
    return pp__set_error(PP_ENOMEM, "inline: cannot copy %zu bytes", n1 + n2);
  pp__wire_put_header(buf, type, id, (uint64_t)n1 + n2);
  if (n1)
    memcpy(buf + PP__WIRE_HEADER, p1, n1);
  if (n2)
    memcpy(buf + PP__WIRE_HEADER + n1, p2, n2);
  buf[PP__WIRE_HEADER + n1 + n2] = '\0';
  rc = pp__wire_check_header(buf, fr);
  if (rc) {
    free(buf);
    return rc;
  }
  memmove(buf, buf + PP__WIRE_HEADER, n1 + n2 + 1);
  *payload = buf;
  return 0;
}

int pp__inline_init(pp_pool_t *pool) {
  const pp_task_t *task = pp__task_find(pool->tasks, pool->init_task);
  pp_call_t call;
  int status;

  memset(&call, 0, sizeof(call));
  pp__inline_enter(pool, 0);
  status = pp__call_run(task, &call, pool->init_arg, pool->init_arg_len);
  pp__inline_leave();
  if (status != 0)
    pp__set_error(status, "initializer '%s' failed in inline mode: %s",
                  pool->init_task,
                  call.fail_message ? call.fail_message : pp_strerror(status));
  pp__call_clear(&call);
  return status;
}

void pp__inline_run(pp_future_t *f) {
  pp_pool_t *pool = f->pool;
  unsigned char prefix[2 + PP__NAME_MAX];
  unsigned char *payload = NULL, *reply = NULL;
  char name[PP__NAME_MAX + 1];
  const pp_task_t *task;
  pp_call_t call;
  pp__frame_t fr;
  size_t plen, off;
  int status;

  memset(&call, 0, sizeof(call));
  call.id = f->id;
  plen = pp__wire_call_prefix(prefix, f->task);
  status = round_trip(PP__FRAME_CALL, f->id, prefix, plen, f->arg, f->arg_len,
                      &payload, &fr);
  if (status == 0)
    status = pp__wire_split_call(payload, fr.len, name, sizeof(name), &off);
  if (status == 0) {
    task = pp__task_find(pool->tasks, name);
    pp__inline_enter(pool, f->id);
    status = task ? pp__call_run(task, &call, payload + off, fr.len - off)
                  : PP_ENOTASK;
    pp__inline_leave();
  }
  free(payload);
  if (status == 0)
    status = round_trip(PP__FRAME_RESULT, f->id, call.reply, call.reply_len,
                        NULL, 0, &reply, &fr);

  pp__mutex_lock(pool->lock);
  if (status == 0)
    pp__future_finish(f, 0, reply, (size_t)fr.len, NULL, 0, 0);
  else
    pp__future_finish(f, status, NULL, 0,
                      call.fail_message
                          ? call.fail_message
                          : pp__strdup_printf("%s", pp_last_error()),
                      0, 0);
  pp__mutex_unlock(pool->lock);
  if (status != 0)
    call.fail_message = NULL;
  pp__call_clear(&call);
}
