/*
 * record.c - what a worker's result ring brings back to the parent, as the
 * pool's I/O thread reads it: a call's outcome (RESULT, ERROR records),
 * turned into a pp__outcome_t without finishing the call yet, and the
 * records beside the outcomes (LOG, OUTPUT), delivered at once.
 *
 * A result comes in the record itself, in a blob the worker sends over
 * the channel, in the reply hint the parent sent with the call, or as a
 * part of the call's argument mapping.  loop.c reads the records of a
 * live worker, life.c those a dead one left behind.
 *
 * Every function here runs on the I/O thread (or a caller that holds
 * io_lock), which owns the slots.
 */
#include <stdlib.h>
#include <string.h>

#include "internal.h"

int pp__record_side(pp__slot_t *s, const pp__rec_t *rec) {
  pp_pool_t *pool = s->pool;
  if (rec->kind == PP__REC_LOG && rec->len >= 4) {
    int32_t level;
    memcpy(&level, rec->payload, 4);
    pp__log_text(pool, s->index, rec->id, PP_LOG_TASK, level,
                 (const char *)rec->payload + 4, (size_t)rec->len - 4);
    return 1;
  }
  if (rec->kind == PP__REC_OUTPUT && (rec->aux == 1 || rec->aux == 2)) {
    pp__lines_feed(pool, &s->lines[rec->aux - 1], s->index,
                   rec->aux == 1 ? PP_LOG_STDOUT : PP_LOG_STDERR, rec->id,
                   rec->payload, (size_t)rec->len);
    return 1;
  }
  return 0;
}

void pp__record_drop(const pp__rec_t *rec) {
  uint64_t meta[3];
  if (rec->kind != PP__REC_RESULT || rec->aux != 1 || rec->len != 24)
    return;
  memcpy(meta, rec->payload, sizeof(meta));
  pp__shm_drop(meta[1], meta[2], meta[0]);
}

void pp__record_drop_last(pp__slot_t *s) {
  /* Written by the worker, so no more trusted than a record: the tag
   * decides (ring.h). */
  uint64_t handle = PP__LOAD_ACQ64(&s->ctl->blob_handle);
  if (handle != 0)
    pp__shm_drop(handle, PP__LOAD_ACQ64(&s->ctl->blob_tag),
                 PP__LOAD_ACQ64(&s->ctl->blob_size));
}

void pp__outcome_drop(pp__outcome_t *out) {
  pp_free(out->data);
  free(out->message);
  out->data = NULL;
  out->message = NULL;
}

/* The call's outcome when this process (the parent) has no memory for its
 * result: the record has been read, so the worker stays in step and is
 * kept; only the call fails.  Returns 0. */
static int parent_out_of_memory(const pp__flight_t *f, pp__outcome_t *out,
                                uint64_t len) {
  pp_free(out->data);
  out->data = NULL;
  out->len = 0;
  out->status = PP_ENOMEM;
  /* NULL if even this fails: the call then says "out of memory". */
  out->message = pp__strdup_printf(
      "call %llu finished, but the parent (this process) was out of memory "
      "for its result of %llu bytes",
      (unsigned long long)f->id, (unsigned long long)len);
  return 0;
}

int pp__record_outcome(pp__slot_t *s, const pp__rec_t *rec, pp__flight_t *f,
                       pp__outcome_t *out, pp__err_t *err) {
  memset(out, 0, sizeof(*out));
  out->f = *f;
  /* What it holds stays the flight's, freed when it is popped. */
  out->f.arg_copy = out->f.hint = out->f.arg_shared = NULL;
  out->f.refused_why = NULL;
  if (f->refused) {
    /* Whatever the worker said, the call never reached it. */
    pp__record_drop(rec);
    out->status = f->refused;
    /* NULL if memory is short: the call still fails, with its status. */
    out->message =
        pp__strdup_printf("%s", f->refused_why ? f->refused_why : "refused");
    return 0;
  }
  if (rec->kind == PP__REC_RESULT && rec->aux == 0) {
    out->data = pp__malloc(rec->len ? (size_t)rec->len : 1);
    if (out->data == NULL)
      return parent_out_of_memory(f, out, rec->len);
    if (rec->len)
      memcpy(out->data, rec->payload, (size_t)rec->len);
    out->len = (size_t)rec->len;
    return 0;
  }
  if (rec->kind == PP__REC_RESULT && rec->aux == 1 && rec->len == 24) {
    uint64_t meta[3];
    pp__shm_t *blob = NULL;
    int rc;
    memcpy(meta, rec->payload, sizeof(meta));
    if (meta[0] > (uint64_t)SIZE_MAX)
      return pp__err_set(err, PP_EPROTO, "a result of %llu bytes",
                         (unsigned long long)meta[0]);
    rc = pp__shm_recv(s->chan, meta[1], meta[2], meta[0], s->proc, &blob);
    /* PP_ENOMEM: the mapping came but could not be mapped here (it was
     * closed): the channel is in step, the worker is fine. */
    if (rc == PP_ENOMEM)
      return parent_out_of_memory(f, out, meta[0]);
    if (rc != 0)
      return pp__err_os(err, PP_EPROTO);
    out->data = pp__blob_adopt(blob);
    out->len = (size_t)meta[0];
    return out->data ? 0 : parent_out_of_memory(f, out, meta[0]);
  }
  if (rec->kind == PP__REC_RESULT && rec->aux == 2 && rec->len == 8) {
    /* Written into the reply hint we sent, which we have mapped. */
    uint64_t len;
    memcpy(&len, rec->payload, 8);
    if (f->hint == NULL || len > pp__shm_len(f->hint))
      return pp__err_set(err, PP_EPROTO,
                         "worker %d put a result of %llu bytes "
                         "in a reply hint it did not have",
                         s->index, (unsigned long long)len);
    out->data = pp__blob_adopt(f->hint);
    out->len = (size_t)len;
    f->hint = NULL;
    return out->data ? 0 : parent_out_of_memory(f, out, len);
  }
  if (rec->kind == PP__REC_RESULT && rec->aux == 3 && rec->len == 16) {
    /* A part of the argument's mapping, which we have mapped: our copy
     * becomes the result, or the caller's shared memory is shared. */
    uint64_t where[2];
    pp__shm_t *map = f->arg_copy ? f->arg_copy : f->arg_shared;
    memcpy(where, rec->payload, sizeof(where));
    if (map == NULL || where[0] > pp__shm_len(map) ||
        where[1] > pp__shm_len(map) - where[0])
      return pp__err_set(err, PP_EPROTO,
                         "worker %d answered with a part of "
                         "an argument it did not have",
                         s->index);
    if (f->arg_copy != NULL) {
      out->data = pp__blob_adopt(f->arg_copy);
      f->arg_copy = NULL;
      if (out->data != NULL)
        out->data = (unsigned char *)out->data + where[0];
    } else {
      out->data = pp__blob_share(f->arg_shared, where[0]);
      if (out->data == NULL) {
        out->status = PP_EINVAL;
        out->message = pp__strdup_printf("call %llu answered with a part of "
                                         "its shared argument, which was "
                                         "freed while the call ran",
                                         (unsigned long long)f->id);
        return 0;
      }
    }
    out->len = (size_t)where[1];
    return out->data ? 0 : parent_out_of_memory(f, out, where[1]);
  }
  if (rec->kind == PP__REC_ERROR && rec->len >= 4) {
    int32_t st;
    memcpy(&st, rec->payload, 4);
    /* Only these describe a call's own outcome; anything else a worker
     * sends (a status that means something about the pool, like
     * PP_EWORKERDIED, or PP_EAGAIN, which means "not finished") becomes a
     * task failure. */
    if (st != PP_ETASK && st != PP_ENOTASK && st != PP_ECANCELED &&
        st != PP_EINVAL && st != PP_ENOMEM)
      st = PP_ETASK;
    out->status = st;
    /* An empty text (a worker that had no memory left for its message)
     * and a failed copy leave NULL: the status's own sentence then. */
    out->message = rec->len > 4
                       ? pp__strdup_printf("%.*s", (int)(rec->len - 4),
                                           (const char *)rec->payload + 4)
                       : NULL;
    return 0;
  }
  return pp__err_set(err, PP_EPROTO,
                     "worker %d sent a record of kind %d for "
                     "call %llu",
                     s->index, rec->kind, (unsigned long long)rec->id);
}
