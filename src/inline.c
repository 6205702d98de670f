/*
 * inline.c - the inline (debug) executor: every call of a pool runs in the
 * calling thread, through the same record encoding and checks as in a
 * worker, so that a debugger or a sanitizer sees the task code directly.
 */
#include <stdlib.h>
#include <string.h>

#include "internal.h"

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

int pp__inline_init(pp_pool_t *pool, pp__err_t *err) {
  const pp_task_t *task = pp__task_find(pool->tasks, pool->init_task);
  pp_call_t call;
  int status;

  memset(&call, 0, sizeof(call));
  pp__inline_enter(pool, 0);
  status = pp__call_run(task, &call, pool->init_arg, pool->init_arg_len);
  pp__inline_leave();
  if (status != 0)
    pp__err_set(err, status, "initializer '%s' failed in inline mode: %s",
                pool->init_task,
                call.fail_message ? call.fail_message : pp_strerror(status));
  pp__call_clear(&call);
  return status;
}

void pp__inline_run(pp__src_t *src, size_t index) {
  pp_pool_t *pool = src->pool;
  const pp_buf_t *arg = &src->args[index];
  uint64_t id = src->first_id + index;
  uint64_t len = pp__call_rec_len(src->task_len, arg->len, 0);
  unsigned char *payload = pp__malloc(len ? (size_t)len : 1);
  void *reply = NULL;
  const pp_task_t *task = NULL;
  pp__call_rec_t c;
  pp__rec_t rec;
  pp_call_t call;
  pp__err_t err;
  const char *why = NULL; /* our reason for a failure; NULL: the task's */
  int status;

  memset(&call, 0, sizeof(call));
  call.id = id;
  if (payload == NULL) {
    status = pp__err_set(&err, PP_ENOMEM, "inline: cannot copy %llu bytes",
                         (unsigned long long)len);
    why = err.text;
  } else {
    /* The record a worker would get, decoded as a worker would. */
    pp__call_rec_put(payload, src->task, src->task_len, arg->data, arg->len,
                     NULL);
    memset(&rec, 0, sizeof(rec));
    rec.kind = PP__REC_CALL;
    rec.id = id;
    rec.len = len;
    rec.payload = payload;
    status = pp__call_rec_parse(&rec, &c, &err);
    if (status != 0)
      why = err.text;
  }
  if (status == 0) {
    task = pp__task_find(pool->tasks, src->task);
    if (task == NULL) {
      status = pp__err_set(&err, PP_ENOTASK, "no task named '%s'", src->task);
      why = err.text;
    } else {
      pp__inline_enter(pool, id);
      status = pp__call_run(task, &call, c.arg, (size_t)c.arg_len);
      pp__inline_leave();
    }
  }
  free(payload);
  if (status == 0) {
    /* The result is copied, as it would be out of a ring. */
    reply = pp__malloc(call.reply_len ? call.reply_len : 1);
    if (reply == NULL) {
      status = pp__err_set(&err, PP_ENOMEM,
                           "inline: cannot copy a result "
                           "of %zu bytes",
                           call.reply_len);
      why = err.text;
    } else if (call.reply_len)
      memcpy(reply, call.reply, call.reply_len);
  }

  pp__mutex_lock(pool->lock);
  if (status == 0)
    pp__src_finish_locked(src, index, 0, reply, call.reply_len, NULL, 0, 0);
  else
    /* A task that returns a failed public call's status without
     * pp_call_fail() leaves that call's reason in pp_last_error(), as in a
     * worker (worker.c). */
    pp__src_finish_locked(
        src, index, status, NULL, 0,
        call.fail_message
            ? call.fail_message
            : pp__strdup_printf("%s", why ? why : pp_last_error()),
        0, 0);
  pp__cond_broadcast(pool->done_cond);
  pp__mutex_unlock(pool->lock);
  if (status != 0)
    call.fail_message = NULL;
  pp__call_clear(&call);
}
