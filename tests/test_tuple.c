/*
 * test_tuple.c - pp_pack(), pp_unpack() and pp_tuple_count().
 *
 * Tuples cross a process boundary and are decoded by code that must never
 * trust them, so besides the round trip these tests feed every truncation
 * and every single-byte corruption of a tuple to the decoder, each in a
 * buffer of exactly that size so that a sanitizer build catches any read
 * past its end.
 */
#include <float.h>
#include <math.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "helpers.h"
#include "tasks.h"

/* Packs a tuple that holds one value of every type, including empty ones. */
static pp_buf_t pack_sample(void) {
  static const unsigned char bytes[] = {0, 1, 2, 0, 255, 'x'};
  pp_buf_t b;
  assert_int_equal(pp_pack(&b, "i d s b s b i", (int64_t)INT64_MIN, -2.5,
                           "h\xc3\xa9llo", (const void *)bytes, sizeof(bytes),
                           "", (const void *)NULL, (size_t)0,
                           (int64_t)INT64_MAX),
                   0);
  assert_non_null(b.data);
  return b;
}

static void test_tuple_roundtrip_all_types(void **state) {
  pp_buf_t b = pack_sample();
  int64_t i1 = 0, i2 = 0;
  double d = 0;
  const char *s1 = NULL, *s2 = NULL;
  const void *b1 = NULL, *b2 = (const void *)&d;
  size_t n1 = 0, n2 = 99;
  static const unsigned char bytes[] = {0, 1, 2, 0, 255, 'x'};
  (void)state;

  assert_int_equal(pp_tuple_count(b.data, b.len), 7);
  /* Spaces in the format are ignored, here as in pp_pack. */
  assert_int_equal(pp_unpack(b.data, b.len, "idsbsbi", &i1, &d, &s1, &b1, &n1,
                             &s2, &b2, &n2, &i2),
                   0);
  assert_true(i1 == INT64_MIN);
  assert_true(i2 == INT64_MAX);
  assert_true(d == -2.5);
  assert_string_equal(s1, "h\xc3\xa9llo");
  assert_int_equal(n1, sizeof(bytes));
  assert_memory_equal(b1, bytes, sizeof(bytes));
  assert_string_equal(s2, "");
  assert_int_equal(n2, 0);
  /* Pointers point into the buffer, as documented. */
  assert_true((const char *)s1 > (const char *)b.data &&
              (const char *)s1 < (const char *)b.data + b.len);
  pp_free((void *)b.data);
}

static void test_tuple_doubles_keep_their_bits(void **state) {
  const double values[] = {0.0,    -0.0,     DBL_MIN,   DBL_MAX, -DBL_MAX,
                           1e-310, INFINITY, -INFINITY, NAN};
  size_t i;
  (void)state;
  for (i = 0; i < sizeof(values) / sizeof(values[0]); i++) {
    pp_buf_t b;
    double out = 1.0;
    assert_int_equal(pp_pack(&b, "d", values[i]), 0);
    assert_int_equal(pp_unpack(b.data, b.len, "d", &out), 0);
    assert_memory_equal(&out, &values[i], sizeof(double));
    pp_free((void *)b.data);
  }
}

static void test_tuple_empty_tuple(void **state) {
  pp_buf_t b;
  (void)state;
  assert_int_equal(pp_pack(&b, "", 0), 0);
  assert_int_equal(pp_tuple_count(b.data, b.len), 0);
  assert_int_equal(pp_unpack(b.data, b.len, ""), 0);
  assert_int_equal(pp_unpack(b.data, b.len, "i", NULL), PP_EBADARGS);
  pp_free((void *)b.data);
}

static void test_tuple_large_bytes(void **state) {
  size_t len = 5u << 20;
  unsigned char *data = malloc(len);
  const void *out = NULL;
  size_t out_len = 0;
  pp_buf_t b;
  (void)state;
  assert_non_null(data);
  pp_test_fill(data, len, 7);
  assert_int_equal(pp_pack(&b, "b", (const void *)data, len), 0);
  assert_int_equal(pp_unpack(b.data, b.len, "b", &out, &out_len), 0);
  assert_int_equal(out_len, len);
  assert_int_equal(pp_test_check(out, out_len, 7), len);
  pp_free((void *)b.data);
  free(data);
}

/* A refused unpack must leave every output as it was, even those of values
 * before the one that does not match. */
static void test_tuple_wrong_shape_keeps_outputs(void **state) {
  pp_buf_t b;
  int64_t i1 = 11, i2 = 22, i3 = 33;
  const char *s = "untouched";
  double d = 4.5;
  (void)state;
  assert_int_equal(pp_pack(&b, "is", (int64_t)7, "seven"), 0);

  assert_int_equal(pp_unpack(b.data, b.len, "ii", &i1, &i2), PP_EBADARGS);
  assert_int_equal(pp_unpack(b.data, b.len, "id", &i1, &d), PP_EBADARGS);
  assert_int_equal(pp_unpack(b.data, b.len, "si", &s, &i1), PP_EBADARGS);
  assert_int_equal(pp_unpack(b.data, b.len, "i", &i1), PP_EBADARGS);
  assert_int_equal(pp_unpack(b.data, b.len, "isi", &i1, &s, &i3), PP_EBADARGS);
  assert_true(i1 == 11 && i2 == 22 && i3 == 33);
  assert_true(d == 4.5);
  assert_string_equal(s, "untouched");
  assert_true(strlen(pp_last_error()) > 0);

  assert_int_equal(pp_unpack(b.data, b.len, "is", &i1, &s), 0);
  assert_true(i1 == 7);
  assert_string_equal(s, "seven");
  pp_free((void *)b.data);
}

/* Unpacks `len` bytes of `src` from a buffer of exactly that size. */
static void unpack_prefix(const void *src, size_t len, int want_ok) {
  unsigned char *copy = malloc(len ? len : 1);
  int64_t i1, i2;
  double d;
  const char *s1, *s2;
  const void *b1, *b2;
  size_t n1, n2;
  int count, rc;
  assert_non_null(copy);
  memcpy(copy, src, len);
  count = pp_tuple_count(copy, len);
  rc = pp_unpack(copy, len, "idsbsbi", &i1, &d, &s1, &b1, &n1, &s2, &b2, &n2,
                 &i2);
  if (want_ok) {
    assert_int_equal(count, 7);
    assert_int_equal(rc, 0);
  } else {
    assert_int_equal(count, PP_EBADARGS);
    assert_int_equal(rc, PP_EBADARGS);
  }
  free(copy);
}

static void test_tuple_truncated_at_every_length(void **state) {
  pp_buf_t b = pack_sample();
  size_t len;
  (void)state;
  for (len = 0; len < b.len; len++)
    unpack_prefix(b.data, len, 0);
  unpack_prefix(b.data, b.len, 1);
  pp_free((void *)b.data);
}

static void test_tuple_trailing_bytes_refused(void **state) {
  pp_buf_t b = pack_sample();
  unsigned char *longer = malloc(b.len + 1);
  (void)state;
  assert_non_null(longer);
  memcpy(longer, b.data, b.len);
  longer[b.len] = 0;
  assert_int_equal(pp_tuple_count(longer, b.len + 1), PP_EBADARGS);
  free(longer);
  pp_free((void *)b.data);
}

/* Every single-byte change is either refused or still decodes within the
 * buffer; what matters is that the decoder never reads outside it. */
static void test_tuple_corrupted_bytes_never_crash(void **state) {
  pp_buf_t b = pack_sample();
  static const unsigned char values[] = {0x00, 0x01, 0x7f, 0x80, 0xff,
                                         'i',  's',  'b',  'd'};
  size_t pos, v;
  (void)state;
  for (pos = 0; pos < b.len; pos++) {
    for (v = 0; v < sizeof(values); v++) {
      unsigned char *copy = malloc(b.len);
      int64_t i1, i2;
      double d;
      const char *s1, *s2;
      const void *b1, *b2;
      size_t n1, n2;
      int rc;
      assert_non_null(copy);
      memcpy(copy, b.data, b.len);
      copy[pos] = values[v];
      rc = pp_unpack(copy, b.len, "idsbsbi", &i1, &d, &s1, &b1, &n1, &s2, &b2,
                     &n2, &i2);
      assert_true(rc == 0 || rc == PP_EBADARGS);
      if (rc == 0) {
        assert_true((const unsigned char *)b1 + n1 <= copy + b.len);
        assert_true(strlen(s1) < b.len);
      }
      free(copy);
    }
  }
  pp_free((void *)b.data);
}

static void test_tuple_huge_lengths_refused(void **state) {
  pp_buf_t b;
  unsigned char *p;
  const void *out;
  size_t n;
  (void)state;
  assert_int_equal(pp_pack(&b, "b", (const void *)"abc", (size_t)3), 0);
  p = (unsigned char *)b.data;
  /* The byte string's length field follows the 8-byte head and the tag. */
  memset(p + 9, 0xff, 8);
  assert_int_equal(pp_unpack(b.data, b.len, "b", &out, &n), PP_EBADARGS);
  memset(p + 9, 0, 8);
  p[9 + 7] = 0x80;
  assert_int_equal(pp_unpack(b.data, b.len, "b", &out, &n), PP_EBADARGS);
  /* A count far above what the buffer can hold. */
  memset(p + 4, 0xff, 4);
  assert_int_equal(pp_tuple_count(b.data, b.len), PP_EBADARGS);
  pp_free((void *)b.data);
}

static void test_tuple_string_with_inner_nul_refused(void **state) {
  pp_buf_t b;
  unsigned char *p;
  const char *s;
  (void)state;
  assert_int_equal(pp_pack(&b, "s", "abcd"), 0);
  p = (unsigned char *)b.data;
  /* head 8, tag 1, length 8, then the characters. */
  p[8 + 1 + 8 + 1] = '\0';
  assert_int_equal(pp_unpack(b.data, b.len, "s", &s), PP_EBADARGS);
  p[8 + 1 + 8 + 1] = 'b';
  p[b.len - 1] = 'x'; /* the terminating NUL */
  assert_int_equal(pp_unpack(b.data, b.len, "s", &s), PP_EBADARGS);
  pp_free((void *)b.data);
}

static void test_tuple_not_a_tuple(void **state) {
  static const char junk[] = "this is not a tuple at all";
  int64_t v;
  (void)state;
  assert_int_equal(pp_tuple_count(NULL, 0), PP_EBADARGS);
  assert_int_equal(pp_tuple_count(junk, sizeof(junk)), PP_EBADARGS);
  assert_int_equal(pp_unpack(junk, sizeof(junk), "i", &v), PP_EBADARGS);
  /* NULL is a bad argument, as the header says, not a bad tuple. */
  assert_int_equal(pp_unpack(NULL, 0, "i", &v), PP_EINVAL);
  assert_int_equal(pp_unpack(NULL, 16, "i", &v), PP_EINVAL);
}

static void test_tuple_bad_format_is_einval(void **state) {
  pp_buf_t b = {(const void *)"sentinel", 8}, good;
  int64_t v;
  (void)state;
  assert_int_equal(pp_pack(&b, "ix", (int64_t)1, 2), PP_EINVAL);
  assert_null(b.data);
  assert_int_equal(b.len, 0);
  assert_int_equal(pp_pack(&b, NULL), PP_EINVAL);
  assert_int_equal(pp_pack(NULL, "i", (int64_t)1), PP_EINVAL);
  assert_int_equal(pp_pack(&b, "s", (const char *)NULL), PP_EINVAL);
  assert_int_equal(pp_pack(&b, "b", (const void *)NULL, (size_t)4), PP_EINVAL);
  assert_true(strstr(pp_last_error(), "NULL") != NULL);

  assert_int_equal(pp_pack(&good, "i", (int64_t)1), 0);
  assert_int_equal(pp_unpack(good.data, good.len, "q", &v), PP_EINVAL);
  assert_int_equal(pp_unpack(good.data, good.len, NULL), PP_EINVAL);
  assert_true(strlen(pp_last_error()) > 0);
  pp_free((void *)good.data);
}

/* Lengths whose sum does not fit in a size_t are refused before anything
 * is allocated or read (issue 7, item 4): the bytes behind the pointers
 * here are far shorter than the lengths claim. */
static void test_tuple_pack_size_overflow_is_einval(void **state) {
  static const char few[16] = "fifteen bytes..";
  pp_buf_t b;
  (void)state;
  b.data = few;
  b.len = 99;
  assert_int_equal(pp_pack(&b, "b", few, SIZE_MAX), PP_EINVAL);
  assert_null(b.data);
  assert_int_equal(b.len, 0);
  assert_non_null(strstr(pp_last_error(), "larger than memory"));
  assert_int_equal(pp_pack(&b, "b", few, SIZE_MAX - 8), PP_EINVAL);
  assert_int_equal(pp_pack(&b, "bb", few, SIZE_MAX / 2 + 1, few,
                           SIZE_MAX / 2 + 1),
                   PP_EINVAL);
  assert_int_equal(pp_pack(&b, "ib", (int64_t)1, few, SIZE_MAX - 9),
                   PP_EINVAL);
  assert_int_equal(pp_pack(&b, "sb", "x", few, SIZE_MAX - 12), PP_EINVAL);
  assert_null(b.data);
  /* A length that fits in a size_t but in no call (and no memory) is
   * refused as well, without an attempt to allocate it. */
#if SIZE_MAX == UINT64_MAX
  assert_int_equal(pp_pack(&b, "b", few, (size_t)1 << 62), PP_EINVAL);
  assert_null(b.data);
  assert_non_null(strstr(pp_last_error(), "larger than a call can carry"));
#endif
  /* Still fine for sizes that are real. */
  assert_int_equal(pp_pack(&b, "b", few, sizeof(few)), 0);
  assert_int_equal(pp_tuple_count(b.data, b.len), 1);
  pp_free((void *)b.data);
}

int main(int argc, char **argv) {
  int rc;
  if (pp_worker_main(argc, argv, pp_test_tasks, &rc))
    return rc;
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_tuple_roundtrip_all_types),
      cmocka_unit_test(test_tuple_doubles_keep_their_bits),
      cmocka_unit_test(test_tuple_empty_tuple),
      cmocka_unit_test(test_tuple_large_bytes),
      cmocka_unit_test(test_tuple_wrong_shape_keeps_outputs),
      cmocka_unit_test(test_tuple_truncated_at_every_length),
      cmocka_unit_test(test_tuple_trailing_bytes_refused),
      cmocka_unit_test(test_tuple_corrupted_bytes_never_crash),
      cmocka_unit_test(test_tuple_huge_lengths_refused),
      cmocka_unit_test(test_tuple_string_with_inner_nul_refused),
      cmocka_unit_test(test_tuple_not_a_tuple),
      cmocka_unit_test(test_tuple_bad_format_is_einval),
      cmocka_unit_test(test_tuple_pack_size_overflow_is_einval),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
