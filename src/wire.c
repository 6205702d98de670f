/*
 * wire.c - encoding, checking, sending and receiving frames (see wire.h).
 */
#include <stdlib.h>
#include <string.h>

#include "error.h"
#include "wire.h"

void pp__put_u16(unsigned char *p, uint16_t v) {
  p[0] = (unsigned char)v;
  p[1] = (unsigned char)(v >> 8);
}

void pp__put_u32(unsigned char *p, uint32_t v) {
  int i;
  for (i = 0; i < 4; i++)
    p[i] = (unsigned char)(v >> (8 * i));
}

void pp__put_u64(unsigned char *p, uint64_t v) {
  int i;
  for (i = 0; i < 8; i++)
    p[i] = (unsigned char)(v >> (8 * i));
}

uint16_t pp__get_u16(const unsigned char *p) {
  return (uint16_t)(p[0] | (p[1] << 8));
}

uint32_t pp__get_u32(const unsigned char *p) {
  uint32_t v = 0;
  int i;
  for (i = 3; i >= 0; i--)
    v = (v << 8) | p[i];
  return v;
}

uint64_t pp__get_u64(const unsigned char *p) {
  uint64_t v = 0;
  int i;
  for (i = 7; i >= 0; i--)
    v = (v << 8) | p[i];
  return v;
}

void pp__wire_put_header(unsigned char *out, int type, uint64_t id,
                         uint64_t len) {
  pp__put_u32(out, PP__WIRE_MAGIC);
  out[4] = PP__WIRE_VERSION;
  out[5] = (unsigned char)type;
  pp__put_u16(out + 6, 0);
  pp__put_u64(out + 8, id);
  pp__put_u64(out + 16, len);
}

int pp__wire_check_header(const unsigned char *in, pp__frame_t *frame) {
  uint64_t max;
  if (pp__get_u32(in) != PP__WIRE_MAGIC)
    return pp__set_error(PP_EPROTO, "frame with a bad magic number");
  if (in[4] != PP__WIRE_VERSION)
    return pp__set_error(PP_EPROTO, "frame of protocol version %d, not %d",
                         in[4], PP__WIRE_VERSION);
  frame->type = in[5];
  frame->flags = pp__get_u16(in + 6);
  frame->id = pp__get_u64(in + 8);
  frame->len = pp__get_u64(in + 16);
  switch (frame->type) {
    case PP__FRAME_HELLO:
      max = PP__HELLO_LEN;
      if (frame->len != max)
        return pp__set_error(PP_EPROTO, "HELLO frame of %llu bytes",
                             (unsigned long long)frame->len);
      break;
    case PP__FRAME_CALL:
    case PP__FRAME_INIT:
      max = PP__PAYLOAD_MAX;
      if (frame->len < 3)
        return pp__set_error(PP_EPROTO, "CALL frame too short");
      break;
    case PP__FRAME_RESULT:
      max = PP__PAYLOAD_MAX;
      break;
    case PP__FRAME_ERROR:
    case PP__FRAME_LOG:
      max = 4 + PP__MSG_MAX;
      if (frame->len < 4)
        return pp__set_error(PP_EPROTO, "ERROR/LOG frame too short");
      break;
    case PP__FRAME_CANCEL:
    case PP__FRAME_BYE:
      max = 0;
      break;
    default:
      return pp__set_error(PP_EPROTO, "frame of unknown type %d", frame->type);
  }
  if (frame->flags != 0)
    return pp__set_error(PP_EPROTO, "frame with unknown flags 0x%x",
                         frame->flags);
  if (frame->len > max)
    return pp__set_error(PP_EPROTO, "frame of type %d with %llu bytes (max %llu)",
                         frame->type, (unsigned long long)frame->len,
                         (unsigned long long)max);
  return 0;
}

/* Frames up to this size are assembled in one buffer and written with one
 * system call, which matters for the round trip of tiny calls. */
#define PP__SMALL_FRAME 4096

size_t pp__wire_put_frame(unsigned char *out, int type, uint64_t id,
                          const void *p1, size_t n1, const void *p2,
                          size_t n2) {
  pp__wire_put_header(out, type, id, (uint64_t)n1 + n2);
  if (n1)
    memcpy(out + PP__WIRE_HEADER, p1, n1);
  if (n2)
    memcpy(out + PP__WIRE_HEADER + n1, p2, n2);
  return PP__WIRE_HEADER + n1 + n2;
}

int pp__wire_send(pp__chan_t *chan, int type, uint64_t id, const void *p1,
                  size_t n1, const void *p2, size_t n2, const void *p3,
                  size_t n3) {
  unsigned char small[PP__SMALL_FRAME];
  uint64_t total = (uint64_t)n1 + n2 + n3;
  int err;

  if (total + PP__WIRE_HEADER <= sizeof(small)) {
    unsigned char *p = small + PP__WIRE_HEADER;
    pp__wire_put_header(small, type, id, total);
    if (n1)
      memcpy(p, p1, n1), p += n1;
    if (n2)
      memcpy(p, p2, n2), p += n2;
    if (n3)
      memcpy(p, p3, n3), p += n3;
    return pp__chan_write(chan, small, (size_t)(p - small));
  }
  pp__wire_put_header(small, type, id, total);
  err = pp__chan_write(chan, small, PP__WIRE_HEADER);
  if (err == 0 && n1)
    err = pp__chan_write(chan, p1, n1);
  if (err == 0 && n2)
    err = pp__chan_write(chan, p2, n2);
  if (err == 0 && n3)
    err = pp__chan_write(chan, p3, n3);
  return err;
}

void pp__reader_init(pp__reader_t *r, pp__chan_t *chan) {
  r->chan = chan;
  r->pos = r->len = 0;
}

int pp__reader_read(pp__reader_t *r, void *dst, size_t n) {
  unsigned char *d = dst;
  size_t have = r->len - r->pos, got;
  int err;
  if (have >= n) {
    memcpy(d, r->buf + r->pos, n);
    r->pos += n;
    return 0;
  }
  memcpy(d, r->buf + r->pos, have);
  d += have;
  n -= have;
  r->pos = r->len = 0;
  /* Large remainders go straight to their destination, without a copy. */
  if (n >= sizeof(r->buf) / 2)
    return pp__chan_read(r->chan, d, n);
  while (n > 0) {
    err = pp__chan_read_some(r->chan, r->buf, sizeof(r->buf), &got);
    if (err)
      return err == PP_ECLOSED
                 ? pp__set_error(PP_ECLOSED, "end of stream in a frame")
                 : err;
    r->len = got;
    r->pos = got < n ? got : n;
    memcpy(d, r->buf, r->pos);
    d += r->pos;
    n -= r->pos;
  }
  return 0;
}

int pp__wire_recv_header(pp__reader_t *r, pp__frame_t *frame) {
  unsigned char hdr[PP__WIRE_HEADER];
  int err = pp__reader_read(r, hdr, sizeof(hdr));
  if (err != 0)
    return err;
  return pp__wire_check_header(hdr, frame);
}

int pp__wire_recv_payload(pp__reader_t *r, const pp__frame_t *frame,
                          void **payload) {
  unsigned char *buf;
  int err;
  *payload = NULL;
  if (frame->len >= SIZE_MAX)
    return pp__set_error(PP_ENOMEM, "payload of %llu bytes does not fit",
                         (unsigned long long)frame->len);
  buf = malloc((size_t)frame->len + 1);
  if (buf == NULL)
    return pp__set_error(PP_ENOMEM, "cannot allocate %llu bytes for a payload",
                         (unsigned long long)frame->len);
  err = pp__reader_read(r, buf, (size_t)frame->len);
  if (err != 0) {
    free(buf);
    return err;
  }
  buf[frame->len] = '\0';
  *payload = buf;
  return 0;
}

size_t pp__wire_call_prefix(unsigned char *prefix, const char *name) {
  size_t n = strlen(name);
  pp__put_u16(prefix, (uint16_t)n);
  memcpy(prefix + 2, name, n);
  return 2 + n;
}

int pp__wire_split_call(const unsigned char *payload, uint64_t len,
                        char *name_buf, size_t name_cap, size_t *arg_off) {
  size_t n;
  if (len < 2)
    return pp__set_error(PP_EPROTO, "CALL payload too short");
  n = pp__get_u16(payload);
  if (n == 0 || n > PP__NAME_MAX || n + 2 > len || n >= name_cap)
    return pp__set_error(PP_EPROTO, "CALL frame with a bad task name length");
  if (memchr(payload + 2, '\0', n) != NULL)
    return pp__set_error(PP_EPROTO, "CALL frame with a NUL in the task name");
  memcpy(name_buf, payload + 2, n);
  name_buf[n] = '\0';
  *arg_off = 2 + n;
  return 0;
}

int pp__wire_parse_error(const unsigned char *p, uint64_t len, int *status,
                         char **message) {
  int32_t st = (int32_t)pp__get_u32(p);
  /* Only these describe a call's own outcome; anything else a worker sends
   * (a status that means something about the pool, like PP_EWORKERDIED, or
   * PP_EAGAIN, which means "not finished") becomes a task failure. */
  if (st != PP_ETASK && st != PP_ENOTASK && st != PP_ECANCELED &&
      st != PP_EINVAL && st != PP_ENOMEM)
    st = PP_ETASK;
  *status = st;
  *message = pp__strdup_printf("%.*s", (int)(len - 4), (const char *)p + 4);
  return *message ? 0 : pp__set_error(PP_ENOMEM, "out of memory");
}
