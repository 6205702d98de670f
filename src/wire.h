/*
 * wire.h - the frames exchanged between a parent and its workers.
 *
 * A frame is a fixed 24-byte little-endian header followed by the payload:
 *
 *   offset  size  field
 *        0     4  magic "PPW1" (0x31575050 read as little-endian u32)
 *        4     1  protocol version (PP__WIRE_VERSION)
 *        5     1  type (pp__frame_type_t)
 *        6     2  flags (0; reserved)
 *        8     8  call id
 *       16     8  payload length (u64, so payloads above 4 GiB work)
 *
 * Payloads by type:
 *   HELLO  (worker->parent)  16-byte cookie, u64 pid, 32-byte build id of
 *                            the worker's task table, u64 output marker key
 *   CALL   (parent->worker)  u16 name length, name, argument bytes
 *   INIT   (parent->worker)  as CALL; the initializer
 *   RESULT (worker->parent)  result bytes
 *   ERROR  (worker->parent)  i32 status, message (UTF-8, no NUL)
 *   LOG    (worker->parent)  i32 level, message
 *   CANCEL (parent->worker)  empty; asks the running call `id` to stop
 *   BYE    (parent->worker)  empty; the worker finishes and exits 0
 *
 * The decoder checks magic, version, type and every length before it trusts
 * them (pp__wire_check_header), so a malformed frame ends that worker, never
 * the process reading it.
 */
#ifndef PP_WIRE_H
#define PP_WIRE_H

#include <stddef.h>
#include <stdint.h>

#include "../platform/platform.h"

#define PP__WIRE_MAGIC 0x31575050u
#define PP__WIRE_VERSION 2
#define PP__WIRE_HEADER 24
#define PP__COOKIE_LEN 16
/* cookie, pid, build id (PP__BUILD_ID_LEN), marker key */
#define PP__HELLO_LEN (PP__COOKIE_LEN + 8 + PP__BUILD_ID_LEN + 8)
/* The longest task name a frame may carry. */
#define PP__NAME_MAX 1024
/* The longest ERROR or LOG message; longer ones are cut by the sender. */
#define PP__MSG_MAX 65536
/* The largest argument or result: far above any machine's memory, but a
 * bound, so that a corrupted length cannot pass as a huge allocation. */
#define PP__PAYLOAD_MAX ((uint64_t)1 << 46)

typedef enum {
  PP__FRAME_HELLO = 1,
  PP__FRAME_CALL = 2,
  PP__FRAME_INIT = 3,
  PP__FRAME_RESULT = 4,
  PP__FRAME_ERROR = 5,
  PP__FRAME_LOG = 6,
  PP__FRAME_CANCEL = 7,
  PP__FRAME_BYE = 8
} pp__frame_type_t;

typedef struct pp__frame_s {
  int type;
  unsigned flags;
  uint64_t id;
  uint64_t len;
} pp__frame_t;

/* Encodes a header into 24 bytes. */
void pp__wire_put_header(unsigned char *out, int type, uint64_t id,
                         uint64_t len);

/* Decodes and checks a header: magic, version, a known type, a length within
 * that type's bounds.  Returns 0 or PP_EPROTO (with pp_last_error() set). */
int pp__wire_check_header(const unsigned char *in, pp__frame_t *frame);

/* Little-endian helpers, used by the wire and tuple code. */
void pp__put_u16(unsigned char *p, uint16_t v);
void pp__put_u32(unsigned char *p, uint32_t v);
void pp__put_u64(unsigned char *p, uint64_t v);
uint16_t pp__get_u16(const unsigned char *p);
uint32_t pp__get_u32(const unsigned char *p);
uint64_t pp__get_u64(const unsigned char *p);

/* Appends one small frame (header and up to two parts) to `out`, which
 * must have room; returns the bytes written.  For coalescing frames. */
size_t pp__wire_put_frame(unsigned char *out, int type, uint64_t id,
                          const void *p1, size_t n1, const void *p2,
                          size_t n2);

/* Sends one frame whose payload is the concatenation of up to three parts
 * (NULL/0 parts are skipped).  Small frames go out in one write.  The caller
 * serializes writers of `chan`. */
int pp__wire_send(pp__chan_t *chan, int type, uint64_t id, const void *p1,
                  size_t n1, const void *p2, size_t n2, const void *p3,
                  size_t n3);

/* A buffered reader over a channel: frames of tiny calls arrive many per
 * system call instead of two system calls per frame. */
#define PP__READER_BUF 65536
typedef struct pp__reader_s {
  pp__chan_t *chan;
  size_t pos;
  size_t len;
  unsigned char buf[PP__READER_BUF];
} pp__reader_t;

/* Starts reading `chan` with an empty buffer. */
void pp__reader_init(pp__reader_t *r, pp__chan_t *chan);

/* Reads exactly n bytes: first what is buffered, then from the channel
 * (large reads go straight into dst).  Returns 0, PP_ECLOSED or PP_EIO. */
int pp__reader_read(pp__reader_t *r, void *dst, size_t n);

/* Reads and checks one header. */
int pp__wire_recv_header(pp__reader_t *r, pp__frame_t *frame);

/* Reads a frame's whole payload into a new malloc'd buffer (with one extra
 * NUL byte, so text payloads are C strings).  PP_ENOMEM if it cannot be
 * allocated; the channel is then out of step and must be dropped. */
int pp__wire_recv_payload(pp__reader_t *r, const pp__frame_t *frame,
                          void **payload);

/* Encodes the CALL payload prefix for `name` into `prefix` (2 + name bytes);
 * returns its length. */
size_t pp__wire_call_prefix(unsigned char *prefix, const char *name);

/* Splits a CALL/INIT payload into name and argument.  Returns 0 or
 * PP_EPROTO.  `name` is copied NUL-terminated into name_buf. */
int pp__wire_split_call(const unsigned char *payload, uint64_t len,
                        char *name_buf, size_t name_cap, size_t *arg_off);

/* Reads an ERROR payload (checked to be at least 4 bytes) into a PP_E*
 * status and a malloc'd message.  Returns 0 or PP_ENOMEM. */
int pp__wire_parse_error(const unsigned char *payload, uint64_t len,
                         int *status, char **message);

#endif /* PP_WIRE_H */
