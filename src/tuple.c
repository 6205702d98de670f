/*
 * tuple.c - pp_pack() and pp_unpack(): typed argument tuples.
 *
 * Layout: "PT" u8 version(1) u8 reserved(0), u32 count, then per value a
 * one-byte tag ('i', 'd', 's', 'b') and its data:
 *   i  8 bytes little-endian two's complement
 *   d  8 bytes, the IEEE-754 bits little-endian
 *   s  u64 length n, n bytes, one NUL (so unpacking can hand out a C string)
 *   b  u64 length n, n bytes
 * Every value is tagged, so a buffer unpacked with another shape is refused.
 */
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>

#include "error.h"
#include "internal.h"
#include "wire.h"

#define PP__TUPLE_HEAD 8

/* Adds `n` to *total unless the sum would not fit in a size_t. */
static int add_size(size_t *total, size_t n) {
  if (n > SIZE_MAX - *total)
    return 0;
  *total += n;
  return 1;
}

static int check_format(const char *fmt, size_t *count) {
  size_t n = 0;
  const char *f;
  if (fmt == NULL)
    return pp__fail(PP_EINVAL, "tuple format is NULL");
  for (f = fmt; *f; f++) {
    if (*f == ' ')
      continue;
    if (*f != 'i' && *f != 'd' && *f != 's' && *f != 'b')
      return pp__fail(PP_EINVAL, "bad tuple format letter '%c' in \"%s\"", *f,
                      fmt);
    n++;
  }
  *count = n;
  return 0;
}

int pp__vpack(pp_buf_t *out, const char *fmt, va_list ap) {
  va_list ap2;
  size_t count = 0, total = PP__TUPLE_HEAD;
  unsigned char *buf = NULL, *p;
  const char *f;
  int err;

  if (out == NULL)
    return pp__fail(PP_EINVAL, "pp_pack: out is NULL");
  out->data = NULL;
  out->len = 0;
  err = check_format(fmt, &count);
  if (err)
    return err;
  if (count > UINT32_MAX)
    return pp__fail(PP_EINVAL, "pp_pack: too many values");

  /* First pass: size and argument checks, on a copy of the list.  Every
   * sum is checked, so that huge lengths are refused instead of wrapping
   * around to a small buffer that the second pass would overrun. */
  va_copy(ap2, ap);
  for (f = fmt; *f && err == 0; f++) {
    const char *s;
    size_t n = 0, head = 0;
    switch (*f) {
      case 'i':
        (void)va_arg(ap2, int64_t);
        head = 9;
        break;
      case 'd':
        (void)va_arg(ap2, double);
        head = 9;
        break;
      case 's':
        s = va_arg(ap2, const char *);
        if (s == NULL)
          err = pp__fail(PP_EINVAL, "pp_pack: NULL string for 's'");
        else
          n = strlen(s), head = 1 + 8 + 1;
        break;
      case 'b':
        s = va_arg(ap2, const void *);
        n = va_arg(ap2, size_t);
        if (s == NULL && n > 0)
          err = pp__fail(PP_EINVAL, "pp_pack: NULL bytes for 'b'");
        head = 1 + 8;
        break;
      default:
        break;
    }
    if (err == 0 && (!add_size(&total, n) || !add_size(&total, head)))
      err = pp__fail(PP_EINVAL,
                     "pp_pack: the '%c' at %d of \"%s\" "
                     "makes the tuple larger than memory can hold",
                     *f, (int)(f - fmt), fmt);
  }
  va_end(ap2);
  if (err)
    return err;
  /* No call could carry it (wire.h), and no machine could hold it. */
  if ((uint64_t)total > PP__PAYLOAD_MAX)
    return pp__fail(PP_EINVAL,
                    "pp_pack: a tuple of %zu bytes is larger "
                    "than a call can carry",
                    total);

  buf = pp__malloc(total);
  if (buf == NULL)
    return pp__fail(PP_ENOMEM, "pp_pack: cannot allocate %zu bytes", total);
  p = buf;
  p[0] = 'P';
  p[1] = 'T';
  p[2] = 1;
  p[3] = 0;
  pp__put_u32(p + 4, (uint32_t)count);
  p += PP__TUPLE_HEAD;
  for (f = fmt; *f; f++) {
    int64_t i;
    double d;
    uint64_t bits;
    const char *s;
    size_t n;
    switch (*f) {
      case 'i':
        i = va_arg(ap, int64_t);
        *p++ = 'i';
        pp__put_u64(p, (uint64_t)i);
        p += 8;
        break;
      case 'd':
        d = va_arg(ap, double);
        memcpy(&bits, &d, 8);
        *p++ = 'd';
        pp__put_u64(p, bits);
        p += 8;
        break;
      case 's':
        s = va_arg(ap, const char *);
        n = strlen(s);
        *p++ = 's';
        pp__put_u64(p, n);
        memcpy(p + 8, s, n + 1);
        p += 8 + n + 1;
        break;
      case 'b':
        s = va_arg(ap, const void *);
        n = va_arg(ap, size_t);
        *p++ = 'b';
        pp__put_u64(p, n);
        if (n)
          memcpy(p + 8, s, n);
        p += 8 + n;
        break;
      default:
        break;
    }
  }
  out->data = buf;
  out->len = total;
  return 0;
}

int pp_pack(pp_buf_t *out, const char *fmt, ...) {
  va_list ap;
  int err;
  va_start(ap, fmt);
  err = pp__vpack(out, fmt, ap);
  va_end(ap);
  return err;
}

/* Walks one value at *off; checks that it fits.  Returns its tag, or 0 if the
 * buffer is malformed there. */
static int next_value(const unsigned char *b, size_t len, size_t *off,
                      size_t *data_off, uint64_t *data_len) {
  size_t o = *off;
  int tag;
  uint64_t n;
  if (o >= len)
    return 0;
  tag = b[o++];
  switch (tag) {
    case 'i':
    case 'd':
      if (len - o < 8)
        return 0;
      *data_off = o;
      *data_len = 8;
      *off = o + 8;
      return tag;
    case 's':
    case 'b':
      if (len - o < 8)
        return 0;
      n = pp__get_u64(b + o);
      o += 8;
      if (n > len - o || (tag == 's' && n + 1 > len - o))
        return 0;
      *data_off = o;
      *data_len = n;
      if (tag == 's') {
        /* A string must end with its NUL and contain no other. */
        if (b[o + n] != '\0' || memchr(b + o, '\0', (size_t)n) != NULL)
          return 0;
        *off = o + (size_t)n + 1;
      } else {
        *off = o + (size_t)n;
      }
      return tag;
    default:
      return 0;
  }
}

int pp_tuple_count(const void *buf, size_t len) {
  const unsigned char *b = buf;
  uint32_t count, i;
  size_t off = PP__TUPLE_HEAD, doff;
  uint64_t dlen;
  if (b == NULL || len < PP__TUPLE_HEAD || b[0] != 'P' || b[1] != 'T' ||
      b[2] != 1 || b[3] != 0)
    return pp__fail(PP_EBADARGS, "not a procpool tuple");
  count = pp__get_u32(b + 4);
  if (count > INT32_MAX)
    return pp__fail(PP_EBADARGS, "tuple claims %u values", count);
  for (i = 0; i < count; i++)
    if (next_value(b, len, &off, &doff, &dlen) == 0)
      return pp__fail(PP_EBADARGS, "tuple value %u is malformed", i);
  if (off != len)
    return pp__fail(PP_EBADARGS, "tuple has %zu trailing bytes", len - off);
  return (int)count;
}

int pp_unpack(const void *buf, size_t len, const char *fmt, ...) {
  const unsigned char *b = buf;
  size_t count = 0, off = PP__TUPLE_HEAD, doff, i = 0;
  uint64_t dlen;
  const char *f;
  va_list ap;
  int n, err = 0;

  if (buf == NULL)
    return pp__fail(PP_EINVAL, "pp_unpack: buf is NULL");
  err = check_format(fmt, &count);
  if (err)
    return err;
  n = pp_tuple_count(buf, len);
  if (n < 0)
    return n;
  if ((size_t)n != count)
    return pp__fail(PP_EBADARGS, "tuple has %d values, format \"%s\" wants %zu",
                    n, fmt, count);

  /* Check every tag before writing any output, so a refused unpack leaves
   * the caller's variables untouched. */
  for (f = fmt; *f; f++) {
    int tag;
    if (*f == ' ')
      continue;
    tag = next_value(b, len, &off, &doff, &dlen);
    if (tag != *f)
      return pp__fail(PP_EBADARGS, "tuple value %zu is '%c', format wants '%c'",
                      i, tag, *f);
    i++;
  }

  off = PP__TUPLE_HEAD;
  va_start(ap, fmt);
  for (f = fmt; *f; f++) {
    uint64_t bits;
    if (*f == ' ')
      continue;
    next_value(b, len, &off, &doff, &dlen);
    switch (*f) {
      case 'i': {
        int64_t *out = va_arg(ap, int64_t *);
        if (out)
          *out = (int64_t)pp__get_u64(b + doff);
        break;
      }
      case 'd': {
        double *out = va_arg(ap, double *);
        bits = pp__get_u64(b + doff);
        if (out)
          memcpy(out, &bits, 8);
        break;
      }
      case 's': {
        const char **out = va_arg(ap, const char **);
        if (out)
          *out = (const char *)(b + doff);
        break;
      }
      case 'b': {
        const void **out = va_arg(ap, const void **);
        size_t *out_len = va_arg(ap, size_t *);
        if (out)
          *out = b + doff;
        if (out_len)
          *out_len = (size_t)dlen;
        break;
      }
      default:
        break;
    }
  }
  va_end(ap);
  return err;
}
