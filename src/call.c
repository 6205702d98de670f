/*
 * call.c - what a task uses: pp_call_reply*, pp_call_fail, pp_log; and the
 * conventions of running a task (pp__call_run), shared by workers and the
 * inline mode.
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

/* Frees the call's reply, wherever it lives. */
static void reply_drop(pp_call_t *call) {
  if (call->reply_in_hint || call->reply_in_arg)
    ; /* the mapping is the worker's (borrowed), not the reply's */
  else if (call->reply_shm != NULL)
    pp__shm_close(call->reply_shm);
  else if (call->reply != call->small)
    free(call->reply);
  call->reply = NULL;
  call->reply_shm = NULL;
  call->reply_in_hint = 0;
  call->reply_in_arg = 0;
  call->reply_len = 0;
}

/* Makes `p` (`len` bytes, malloc'd or the base of `shm`) the call's
 * result. */
static void reply_set(pp_call_t *call, void *p, size_t len, pp__shm_t *shm,
                      int in_hint) {
  reply_drop(call);
  call->reply = p;
  call->reply_shm = shm;
  call->reply_in_hint = in_hint;
  call->reply_len = len;
  free(call->reply_error);
  call->reply_error = NULL;
  call->reply_status = 0;
}

/* Memory for a reply of `len` bytes: in a worker, a large one goes straight
 * into a blob, the shared mapping it will be handed over in (the parent's
 * reply hint when it is large enough), so it is never copied again; a
 * small one into the call's own buffer; otherwise the
 * heap. */
static void *reply_memory(pp_call_t *call, size_t len, pp__shm_t **shm,
                          int *in_hint) {
  *shm = NULL;
  *in_hint = 0;
  if (call->blob_min > 0 && len >= call->blob_min && call->hint != NULL &&
      len <= pp__shm_len(call->hint)) {
    /* The parent's spare: no fresh pages here, no mapping there.  Once
     * only: a second reply may not reuse what the first one holds. */
    *shm = call->hint;
    *in_hint = 1;
    call->hint = NULL;
    return pp__shm_base(*shm);
  }
  /* With room for the tag that hands it over (pp__shm_send). */
  if (call->blob_min > 0 && len >= call->blob_min)
    return len <= SIZE_MAX - PP__SHM_TAG_LEN &&
                   pp__shm_create((uint64_t)len + PP__SHM_TAG_LEN,
                                  PP__SHM_POPULATE, shm) == 0
               ? pp__shm_base(*shm)
               : NULL;
  /* The small buffer, unless the current reply is in it (a task may reply
   * with bytes of its previous reply). */
  if (len <= sizeof(call->small) && call->reply != call->small)
    return call->small;
  return pp__malloc(len ? len : 1);
}

int pp_call_reply(pp_call_t *call, const void *data, size_t len) {
  pp__shm_t *shm;
  int in_hint;
  void *p;
  if (call == NULL)
    return pp__fail(PP_EINVAL, "pp_call_reply: call is NULL");
  if (data == NULL && len > 0)
    return reply_failed(call, pp__fail(PP_EINVAL,
                                       "pp_call_reply: data "
                                       "is NULL with len %zu",
                                       len));
  if (call->arg_map != NULL && call->blob_min > 0 && len >= call->blob_min &&
      (const unsigned char *)data >= call->arg_map &&
      (uint64_t)((const unsigned char *)data - call->arg_map) <=
          call->arg_map_len &&
      len <= call->arg_map_len -
                 (uint64_t)((const unsigned char *)data - call->arg_map)) {
    /* Part of the argument, which the parent has mapped: the result is a
     * view of the same memory, with nothing copied anywhere. */
    reply_set(call, (void *)data, len, NULL, 0);
    call->reply_in_arg = 1;
    return 0;
  }
  p = reply_memory(call, len, &shm, &in_hint);
  if (p == NULL)
    return reply_failed(call,
                        pp__fail(PP_ENOMEM, "pp_call_reply: %zu bytes", len));
  if (len)
    memcpy(p, data, len);
  reply_set(call, p, len, shm, in_hint);
  return 0;
}

void *pp_call_reply_alloc(pp_call_t *call, size_t len) {
  pp__shm_t *shm;
  int in_hint;
  void *p;
  if (call == NULL)
    return NULL;
  p = reply_memory(call, len, &shm, &in_hint);
  if (p == NULL) {
    reply_failed(call, pp__fail(PP_ENOMEM,
                                "pp_call_reply_alloc: %zu "
                                "bytes",
                                len));
    return NULL;
  }
  reply_set(call, p, len, shm, in_hint);
  return p;
}

int pp_call_replyf(pp_call_t *call, const char *fmt, ...) {
  pp_buf_t buf;
  va_list ap;
  int rc;
  if (call == NULL)
    return pp__fail(PP_EINVAL, "pp_call_replyf: call is NULL");
  va_start(ap, fmt);
  rc = pp__vpack(&buf, fmt, ap);
  va_end(ap);
  if (rc)
    return reply_failed(call, rc);
  reply_set(call, (void *)buf.data, buf.len, NULL, 0);
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
  reply_drop(call);
  free(call->fail_message);
  free(call->reply_error);
  memset(call, 0, sizeof(*call));
}

int pp__call_run(const pp_task_t *task, pp_call_t *call, const void *arg,
                 size_t len) {
  int rc = task->fn(call, arg, len);
  if (rc == 0 && !call->failed && call->reply_status == 0)
    return 0;
  reply_drop(call);
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
