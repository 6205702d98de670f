/*
 * fuzz_tuple.c - libFuzzer target for the tuple unpacker.
 *
 * The first byte picks a format; the rest is the buffer.  pp_unpack() must
 * either refuse the buffer or hand out values that lie inside it: every
 * string is checked to be NUL-terminated within the buffer, every byte
 * range to be inside it.
 *
 * With the top bit of the first byte set, the input drives pp_pack()
 * instead: up to four byte values whose lengths come from the input, either
 * real (within the input) or huge (close to SIZE_MAX, which must be refused
 * with PP_EINVAL before anything is read or allocated).  A tuple that is
 * packed must unpack to the same values.
 */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "../platform/platform.h"
#include "procpool.h"

static const char *const formats[] = {"i", "d", "s", "b", "ii", "is",
                                      "sb", "dsb", "iisb", "bbbb", "ssii", ""};

int LLVMFuzzerTestOneInput(const unsigned char *data, size_t size);

static void check_inside(const unsigned char *buf, size_t len, const void *p,
                         size_t n) {
  const unsigned char *q = p;
  if (q < buf || q > buf + len || n > (size_t)(buf + len - q))
    abort();
}

/* Packs "bbbb" (or fewer letters) with lengths taken from the input. */
static void fuzz_pack(const unsigned char *data, size_t size) {
  static const char *const pack_formats[] = {"b", "bb", "ibs", "bbbb"};
  const char *fmt = pack_formats[data[0] % 4];
  size_t lens[4] = {0, 0, 0, 0}, n = strlen(fmt), i, huge = 0, pos = 1;
  const unsigned char *ptr[4];
  const void *out[4];
  size_t out_len[4];
  int64_t iv = 0;
  const char *sv = NULL;
  pp_buf_t b;
  int rc;

  for (i = 0; i < 4; i++) {
    unsigned char sel = pos < size ? data[pos++] : 0;
    size_t left = size - pos;
    ptr[i] = data + pos;
    if (sel & 0x80) {
      /* Within 16 of SIZE_MAX: the sum with any header overflows. */
      lens[i] = SIZE_MAX - (size_t)(sel % 17);
      huge = 1;
    } else {
      lens[i] = left ? (size_t)sel % (left + 1) : 0;
      pos += lens[i];
    }
  }
  if (fmt[0] == 'i') {
    /* "ibs": the int is 7, the bytes are value 1, the string "x". */
    rc = pp_pack(&b, fmt, (int64_t)7, ptr[1], lens[1], "x");
    huge = lens[1] > size;
  } else if (n == 1) {
    rc = pp_pack(&b, fmt, ptr[0], lens[0]);
    huge = lens[0] > size;
  } else if (n == 2) {
    rc = pp_pack(&b, fmt, ptr[0], lens[0], ptr[1], lens[1]);
    huge = lens[0] > size || lens[1] > size;
  } else {
    rc = pp_pack(&b, fmt, ptr[0], lens[0], ptr[1], lens[1], ptr[2], lens[2],
                 ptr[3], lens[3]);
  }
  if (huge) {
    if (rc != PP_EINVAL || b.data != NULL || b.len != 0)
      abort();
    return;
  }
  if (rc != 0)
    abort();
  if (fmt[0] == 'i') {
    if (pp_unpack(b.data, b.len, fmt, &iv, &out[1], &out_len[1], &sv) != 0 ||
        iv != 7 || strcmp(sv, "x") != 0 || out_len[1] != lens[1] ||
        memcmp(out[1], ptr[1], lens[1]) != 0)
      abort();
  } else {
    rc = n == 1 ? pp_unpack(b.data, b.len, fmt, &out[0], &out_len[0])
         : n == 2
             ? pp_unpack(b.data, b.len, fmt, &out[0], &out_len[0], &out[1],
                         &out_len[1])
             : pp_unpack(b.data, b.len, fmt, &out[0], &out_len[0], &out[1],
                         &out_len[1], &out[2], &out_len[2], &out[3],
                         &out_len[3]);
    if (rc != 0)
      abort();
    for (i = 0; i < n; i++)
      if (out_len[i] != lens[i] || memcmp(out[i], ptr[i], lens[i]) != 0)
        abort();
  }
  free((void *)b.data); /* pp_pack memory is the heap's */
}

int LLVMFuzzerTestOneInput(const unsigned char *data, size_t size) {
  const char *fmt;
  const unsigned char *buf;
  size_t len;
  int64_t i1 = 0, i2 = 0;
  double d = 0;
  const char *s1 = NULL, *s2 = NULL;
  const void *b1 = NULL, *b2 = NULL, *b3 = NULL, *b4 = NULL;
  size_t n1 = 0, n2 = 0, n3 = 0, n4 = 0;

  if (size < 1)
    return 0;
  if (data[0] & 0x80) {
    fuzz_pack(data, size);
    return 0;
  }
  fmt = formats[data[0] % (sizeof(formats) / sizeof(formats[0]))];
  /* A copy of exactly the right size, so ASan sees any overread. */
  len = size - 1;
  buf = malloc(len ? len : 1);
  if (buf == NULL)
    return 0;
  memcpy((void *)buf, data + 1, len);
  (void)pp_tuple_count(buf, len);
  switch (data[0] % (sizeof(formats) / sizeof(formats[0]))) {
    case 0: (void)pp_unpack(buf, len, fmt, &i1); break;
    case 1: (void)pp_unpack(buf, len, fmt, &d); break;
    case 2:
      if (pp_unpack(buf, len, fmt, &s1) == 0)
        check_inside(buf, len, s1, strlen(s1) + 1);
      break;
    case 3:
      if (pp_unpack(buf, len, fmt, &b1, &n1) == 0)
        check_inside(buf, len, b1, n1);
      break;
    case 4: (void)pp_unpack(buf, len, fmt, &i1, &i2); break;
    case 5:
      if (pp_unpack(buf, len, fmt, &i1, &s1) == 0)
        check_inside(buf, len, s1, strlen(s1) + 1);
      break;
    case 6:
      if (pp_unpack(buf, len, fmt, &s1, &b1, &n1) == 0) {
        check_inside(buf, len, s1, strlen(s1) + 1);
        check_inside(buf, len, b1, n1);
      }
      break;
    case 7:
      if (pp_unpack(buf, len, fmt, &d, &s1, &b1, &n1) == 0) {
        check_inside(buf, len, s1, strlen(s1) + 1);
        check_inside(buf, len, b1, n1);
      }
      break;
    case 8:
      if (pp_unpack(buf, len, fmt, &i1, &i2, &s1, &b1, &n1) == 0)
        check_inside(buf, len, b1, n1);
      break;
    case 9:
      if (pp_unpack(buf, len, fmt, &b1, &n1, &b2, &n2, &b3, &n3, &b4, &n4) ==
          0) {
        check_inside(buf, len, b1, n1);
        check_inside(buf, len, b4, n4);
      }
      break;
    case 10:
      if (pp_unpack(buf, len, fmt, &s1, &s2, &i1, &i2) == 0)
        check_inside(buf, len, s2, strlen(s2) + 1);
      break;
    default: (void)pp_unpack(buf, len, fmt); break;
  }
  free((void *)buf);
  return 0;
}
