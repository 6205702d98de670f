/*
 * fuzz_tuple.c - libFuzzer target for the tuple unpacker.
 *
 * The first byte picks a format; the rest is the buffer.  pp_unpack() must
 * either refuse the buffer or hand out values that lie inside it: every
 * string is checked to be NUL-terminated within the buffer, every byte
 * range to be inside it.
 */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "../platform/platform.h"
#include "procpool.h"

/* tuple.c shares wire.c's byte-order helpers; wire.c links against a
 * channel, which this target never uses. */
int pp__chan_read(pp__chan_t *chan, void *buf, size_t len) {
  (void)chan;
  (void)buf;
  (void)len;
  return PP_ECLOSED;
}

int pp__chan_read_some(pp__chan_t *chan, void *buf, size_t cap, size_t *got) {
  (void)chan;
  (void)buf;
  (void)cap;
  *got = 0;
  return PP_ECLOSED;
}

int pp__chan_write(pp__chan_t *chan, const void *buf, size_t len) {
  (void)chan;
  (void)buf;
  (void)len;
  return PP_ECLOSED;
}

static const char *const formats[] = {"i", "d", "s", "b", "ii", "is",
                                      "sb", "dsb", "iisb", "bbbb", "ssii", ""};

int LLVMFuzzerTestOneInput(const unsigned char *data, size_t size);

static void check_inside(const unsigned char *buf, size_t len, const void *p,
                         size_t n) {
  const unsigned char *q = p;
  if (q < buf || q > buf + len || n > (size_t)(buf + len - q))
    abort();
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
