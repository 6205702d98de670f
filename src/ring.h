/*
 * ring.h - the memory a parent shares with each of its workers: a control
 * block and two single-producer, single-consumer rings of records.
 *
 *   offset 0      control block (PP__SHM_CTL_SIZE bytes)
 *   call_off      the call ring: header, then data   parent -> worker
 *   result_off    the result ring: header, then data worker -> parent
 *
 * A ring is a byte buffer of a power-of-two size with two counters that
 * only grow: `head`, the bytes the producer has published, and `tail`, the
 * bytes the consumer is done with.  Each counter has one writer, and lives
 * on a cache line of its own.  A producer writes records past head, then
 * publishes the new head with a release store; the consumer loads head with
 * an acquire load, reads the records, and publishes tail when it no longer
 * needs them.
 *
 * A record is a 16-byte header and its payload, padded to 8 bytes:
 *
 *   u32 len    payload bytes            u16 kind    u16 aux (kind-specific)
 *   u64 id     the call it is about (0 if none)
 *
 * A record never wraps around the end of the buffer: where fewer than 16
 * bytes are left the position skips to the start, and where the record does
 * not fit in what is left, a PAD record fills it first.
 *
 * Sleeping and waking: a consumer with nothing to read sets
 * `consumer_waiting`, looks again, and only then sleeps on its wake object
 * (platform.h, pp__wake_t); a producer that publishes looks at the flag
 * after a full fence and signals only if it is set.  So an awake consumer
 * costs the producer no system call.  A producer that finds the ring full
 * does the same with `producer_waiting`.
 *
 * Nothing read from shared memory is trusted: the worker's side may be
 * corrupted by a task.  Every header and position is checked before use
 * (pp__ring_next), and a bad one is PP_EPROTO for that worker only.
 */
#ifndef PP_RING_H
#define PP_RING_H

#include <stddef.h>
#include <stdint.h>

#include "../platform/platform.h"
#include "error.h"

#define PP__SHM_MAGIC 0x4d485350u /* "PSHM" */
#define PP__SHM_VERSION 2
#define PP__SHM_CTL_SIZE 4096
#define PP__RING_HDR_SIZE 256
#define PP__REC_HEADER 16
/* The smallest and the default size of each ring's data. */
#define PP__RING_MIN (64 * 1024)
#define PP__RING_DEFAULT (1024 * 1024)
/* The HELLO payload: cookie, pid, build id. */
#define PP__COOKIE_LEN 16
#define PP__HELLO_LEN (PP__COOKIE_LEN + 8 + PP__BUILD_ID_LEN)
/* The longest task name, ERROR or LOG message a record carries. */
#define PP__NAME_MAX 1024
#define PP__MSG_MAX 65536

typedef enum {
  PP__REC_PAD = 1,    /* filler before the end of the buffer */
  /* parent -> worker */
  PP__REC_CALL = 2,   /* u32 cancel, u16 name length, u16 0, name, pad to 8,
                         argument; aux 0: argument inline, 1: the argument
                         is a blob (see pp__call_rec_put), 2: refused (the
                         parent could not send the argument; nothing
                         follows on the channel; the worker answers
                         PP_ECANCELED at once) */
  PP__REC_INIT = 3,   /* as CALL, id 0: the initializer */
  PP__REC_BYE = 4,    /* empty: finish and exit 0 */
  /* worker -> parent */
  PP__REC_HELLO = 10, /* cookie, u64 pid, build id (PP__HELLO_LEN) */
  PP__REC_RESULT = 11, /* result bytes; aux 1: a blob (u64 size, u64
                          handle, u64 tag: see pp__shm_send); aux 2: u64
                          size, the result is in the call's reply hint;
                          aux 3: u64 offset, u64 size, the result is that
                          part of the argument's mapping */
  PP__REC_ERROR = 12, /* i32 status, message */
  PP__REC_LOG = 13,   /* i32 level, message */
  PP__REC_OUTPUT = 14 /* aux: 1 stdout, 2 stderr; bytes of output */
} pp__rec_kind_t;

/* The header of one ring, in shared memory.  Each line has one writer. */
typedef struct pp__ring_hdr_s {
  uint64_t head; /* producer */
  unsigned char pad0[56];
  uint64_t tail; /* consumer */
  unsigned char pad1[56];
  uint32_t consumer_waiting; /* consumer */
  unsigned char pad2[60];
  uint32_t producer_waiting; /* producer */
  unsigned char pad3[60];
} pp__ring_hdr_t;

/* The control block at the start of the mapping. */
typedef struct pp__shm_ctl_s {
  /* Written by the parent before the worker starts, then read-only. */
  uint32_t magic;
  uint32_t version;
  uint64_t size;
  uint64_t call_off, call_size;
  uint64_t result_off, result_size;
  unsigned char pad0[24];
  /* Written by the worker: the call it is running, 0 between calls. */
  uint64_t running_id;
  /* Written by the worker: the last blob it handed to the parent (handle,
   * tag and size as its RESULT record gives them), stored as soon as
   * pp__shm_send returns and before that record is published.  A worker
   * that dies in between leaves the blob in the parent with no record to
   * name it: the parent drops it from here when it buries the worker
   * (pp__shm_drop, which closes it only if the tag still proves it is
   * that blob and was never taken). */
  uint64_t blob_handle, blob_tag, blob_size;
  unsigned char pad1[32];
} pp__shm_ctl_t;

/* ---- the payloads of the records both sides build and parse ---- */

/* CALL and INIT: u32 state (the PP__CALL_* bits below), u16 name length, u16 0, the name, padding to 8, then either the
 * argument (aux 0) or, for an argument passed in a blob of its own (aux 1),
 * PP__CALL_BLOB_TAIL bytes, all u64:
 *   size, handle, offset, mapping size, serial
 *        the argument: its size, the handle of its mapping (Windows: a
 *        handle in the worker; POSIX: 0, the descriptor comes on the
 *        channel), its offset in the mapping, the mapping's size, and the
 *        parent's serial for the mapping (pp__shm_serial)
 *   hint size, hint handle, hint serial
 *        a reply hint, or size 0 for none: spare shared memory (blob.c)
 *        the worker may write a large result into, which the parent has
 *        mapped already; its descriptor follows the argument's (POSIX)
 *   flags
 *        PP__BLOB_SENT_ARG, PP__BLOB_SENT_HINT: the mapping goes with this
 *        record; without the flag the worker has it already (kept under
 *        its serial, pp__mapcache_t) */
#define PP__CALL_HEAD 8
#define PP__CALL_BLOB_TAIL 72
#define PP__BLOB_SENT_ARG 1u
#define PP__BLOB_SENT_HINT 2u
/* The payload length of a call record. */
uint64_t pp__call_rec_len(size_t name_len, uint64_t arg_len, int blob);
/* A blob argument's handles, for pp__call_rec_put. */
typedef struct pp__call_blob_s {
  uint64_t handle, offset, map_size, serial;
  uint64_t hint_size, hint_handle, hint_serial;
  uint64_t flags;
} pp__call_blob_t;
/* Fills a call record's payload; `blob` NULL for an inline argument. */
void pp__call_rec_put(unsigned char *payload, const char *name,
                      size_t name_len, const void *arg, uint64_t arg_len,
                      const pp__call_blob_t *blob);

/* The state word of a call record, which both sides change with atomic
 * read-modify-writes (PP__OR32, PP__CAS32).  0 is a call that waits.  The
 * worker sets STARTED before it runs the call, and runs it only if the word
 * was still 0; the parent takes a waiting call back (for an idle worker,
 * dispatch.c) by setting WITHDRAWN, only if the word is still 0.  So exactly
 * one of the two wins, and a call taken back never runs here.  CANCEL asks
 * a call to stop (pp_call_cancelled()), or not to start. */
#define PP__CALL_CANCEL 1u
#define PP__CALL_STARTED 2u
#define PP__CALL_WITHDRAWN 4u

/* A parsed call record (pointers into the record). */
typedef struct pp__call_rec_s {
  uint32_t *cancel; /* the state word (PP__CALL_*) */
  const char *name; /* not NUL-terminated */
  size_t name_len;
  const unsigned char *arg; /* inline argument, or NULL for a blob */
  uint64_t arg_len;         /* its length, or the blob's size */
  int blob;
  int refused; /* aux 2 */
  pp__call_blob_t b; /* blob: the tail, as pp__call_rec_put had it */
} pp__call_rec_t;

/* Bytes a mapping with rings of `ring_size` bytes each needs. */
uint64_t pp__shm_size(uint64_t ring_size);
/* Lays out a fresh, zeroed mapping (parent). */
void pp__shm_format(void *base, uint64_t ring_size);
/* Checks a mapping's control block against its size (worker).  Returns 0
 * or PP_EPROTO. */
int pp__shm_check(const void *base, uint64_t size, pp__err_t *err);

/* One process' view of a ring: pointers into its own mapping, and the
 * positions it works with.  Used by one thread at a time on each side. */
typedef struct pp__ring_s {
  pp__ring_hdr_t *hdr;
  unsigned char *data;
  uint64_t size; /* power of two */
  uint64_t head; /* producer: written so far (published or not) */
  uint64_t tail; /* producer: the consumer's tail last seen;
                    consumer: read so far (released or not) */
  uint64_t seen; /* consumer: the producer's head last seen */
} pp__ring_t;

/* Binds a view to ring `which` (0 call, 1 result) of a checked mapping. */
void pp__ring_bind(pp__ring_t *r, void *base, int which);

/* The largest payload a record may have in this ring. */
uint64_t pp__ring_max_payload(const pp__ring_t *r);

/* Producer: reserves room for a record with a payload of `len` bytes and
 * fills in its header; returns where the payload goes, or NULL if the ring
 * has no room now (nothing is changed then).  The record becomes visible
 * with the next pp__ring_commit. */
void *pp__ring_begin(pp__ring_t *r, int kind, uint16_t aux, uint64_t id,
                     uint64_t len);

/* Producer: where a record of `len` payload bytes would go if it were begun
 * now, without writing anything: advances r->head as pp__ring_begin would
 * and returns the record's position, or UINT64_MAX if there is no room.
 * Used on a copy of the view, to plan under a lock what is written after
 * it. */
uint64_t pp__ring_plan(pp__ring_t *r, uint64_t len);

/* Producer: sets the cancel word of the CALL record at position `pos`, if
 * it is still call `id`'s (its space may have been given back and used
 * again since). */
void pp__ring_set_cancel(pp__ring_t *r, uint64_t pos, uint64_t id);
/* Producer: takes back the CALL record at `pos`, which must be call `id`'s
 * and not yet committed as read: returns 1 if the worker had not started
 * it (it never will), 0 if it had. */
int pp__ring_withdraw(pp__ring_t *r, uint64_t pos, uint64_t id);
/* Producer: returns 1 if call `id`, written at `pos`, has been started by
 * the consumer: its state word says so, or its record is no longer there
 * (the consumer gave its room back after running it). */
int pp__ring_started(pp__ring_t *r, uint64_t pos, uint64_t id);

/* Consumer: returns 1 if records are there to read (a look, no more). */
int pp__ring_has_data(pp__ring_t *r);

/* Producer: publishes every record begun so far.  Returns 1 if the consumer
 * is waiting and must be woken. */
int pp__ring_commit(pp__ring_t *r);

/* Producer: returns 1 if a record of `len` payload bytes would fit now. */
int pp__ring_fits(pp__ring_t *r, uint64_t len);

/* A record as the consumer sees it. */
typedef struct pp__rec_s {
  int kind;
  uint16_t aux;
  uint64_t id;
  uint64_t len;
  const unsigned char *payload; /* in shared memory */
  uint64_t end; /* the position after it, for pp__ring_release */
} pp__rec_t;

/* Consumer: returns 1 and the next record (PAD records are skipped), 0 if
 * there is none yet, or PP_EPROTO if the ring holds something that is not a
 * record (with the reason in *err).  Records are read in order; each must
 * be released, in order, when its payload is no longer needed. */
int pp__ring_next(pp__ring_t *r, pp__rec_t *rec, pp__err_t *err);

/* Consumer: gives the space up to `end` (a record's end) back to the
 * producer.  Returns 1 if the producer is waiting for room and must be
 * woken. */
int pp__ring_release(pp__ring_t *r, uint64_t end);

/* Consumer, before sleeping: sets consumer_waiting, then returns 1 if
 * records arrived meanwhile (the flag is then cleared and the caller must
 * not sleep).  After waking the caller calls pp__ring_awake. */
int pp__ring_sleep_prepare(pp__ring_t *r);
void pp__ring_awake(pp__ring_t *r);

/* Producer, before waiting for room: the same with producer_waiting;
 * returns 1 if room for `len` appeared meanwhile. */
int pp__ring_wait_room_prepare(pp__ring_t *r, uint64_t len);
void pp__ring_room_awake(pp__ring_t *r);

/* Parses a CALL or INIT record.  Returns 0, or PP_EPROTO with the reason in
 * *err. */
int pp__call_rec_parse(const pp__rec_t *rec, pp__call_rec_t *call,
                       pp__err_t *err);

/* ---- the mappings a worker keeps ----
 *
 * A worker keeps the last few mappings it was sent (arguments and reply
 * hints), so that one sent again (a spare, a caller's shared buffer) costs
 * it no mapping and no page-table work.  The parent keeps the same
 * bookkeeping per worker (objects NULL), and so knows without asking
 * whether a mapping must go with a record.  Both sides make the same calls
 * in the same order, record by record (the argument, then the hint:
 * pp__mapcache_find, and pp__mapcache_put for a mapping that was sent), so
 * they always agree.  A worker's kept mappings hold their memory until
 * they are pushed out: at most PP__MAPCACHE_N of them and
 * PP__MAPCACHE_BYTES in all. */
#define PP__MAPCACHE_N 4
#define PP__MAPCACHE_BYTES ((uint64_t)512 << 20)
typedef struct pp__mapcache_s {
  int n;
  uint64_t bytes;
  uint64_t serial[PP__MAPCACHE_N]; /* most recently used first */
  uint64_t size[PP__MAPCACHE_N];
  void *obj[PP__MAPCACHE_N]; /* the worker's pp__shm_t; NULL in the parent */
} pp__mapcache_t;
/* Returns 1 and the object kept under `serial` (which becomes the most
 * recently used), or 0. */
int pp__mapcache_find(pp__mapcache_t *c, uint64_t serial, void **obj);
/* Keeps a mapping that was just sent, first in line; returns 1, or 0 if it
 * is too large to keep.  The objects pushed out go to out[] (room for
 * PP__MAPCACHE_N), for the caller to close once nothing uses them. */
int pp__mapcache_put(pp__mapcache_t *c, uint64_t serial, uint64_t size,
                     void *obj, void **out, int *nout);

/* A worker also keeps the mappings of the last few large results it sent
 * (at most PP__KEPT_N, and PP__MAPCACHE_BYTES in all), which the parent
 * does not track: when one comes back (a spare as a reply hint, or a
 * result passed on as the next argument), it is still sent, but the worker
 * recognizes it (pp__shm_recv_known) and uses the mapping it has, whose
 * pages are in place, instead of mapping it afresh.  From then on it is
 * kept like any mapping sent to it, as above; the two sides still agree,
 * since the parent's bookkeeping only says what was sent. */
#define PP__KEPT_N 2

#endif /* PP_RING_H */
