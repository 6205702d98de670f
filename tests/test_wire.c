/*
 * test_wire.c - the frame header codec (src/wire.h).
 *
 * Frames are the only thing a parent and a worker trust each other with, so
 * the checker must refuse every header that is not exactly right before any
 * length in it is used.  These functions are internal: the test links the
 * static library, whose internal symbols are not hidden.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include <cmocka.h>

#include "../src/wire.h"
#include "tasks.h"

static const int all_types[] = {
    PP__FRAME_HELLO, PP__FRAME_CALL, PP__FRAME_INIT,   PP__FRAME_RESULT,
    PP__FRAME_ERROR, PP__FRAME_LOG,  PP__FRAME_CANCEL, PP__FRAME_BYE};

/* A payload length that is valid for each type. */
static uint64_t good_len(int type) {
  switch (type) {
    case PP__FRAME_HELLO:
      return PP__HELLO_LEN;
    case PP__FRAME_CALL:
    case PP__FRAME_INIT:
      return 3 + 100;
    case PP__FRAME_RESULT:
      return (uint64_t)5 << 32; /* 20 GiB: large payloads are legal */
    case PP__FRAME_ERROR:
    case PP__FRAME_LOG:
      return 4 + 10;
    default:
      return 0;
  }
}

static void test_wire_little_endian_helpers(void **state) {
  unsigned char b[8];
  (void)state;
  pp__put_u16(b, 0x1234);
  assert_int_equal(b[0], 0x34);
  assert_int_equal(b[1], 0x12);
  assert_int_equal(pp__get_u16(b), 0x1234);
  pp__put_u32(b, 0xdeadbeefu);
  assert_int_equal(b[0], 0xef);
  assert_int_equal(b[3], 0xde);
  assert_true(pp__get_u32(b) == 0xdeadbeefu);
  pp__put_u64(b, 0x0102030405060708ull);
  assert_int_equal(b[0], 0x08);
  assert_int_equal(b[7], 0x01);
  assert_true(pp__get_u64(b) == 0x0102030405060708ull);
}

static void test_wire_header_roundtrip(void **state) {
  unsigned char h[PP__WIRE_HEADER];
  size_t i;
  (void)state;
  for (i = 0; i < sizeof(all_types) / sizeof(all_types[0]); i++) {
    pp__frame_t fr;
    uint64_t len = good_len(all_types[i]);
    memset(&fr, 0, sizeof(fr));
    pp__wire_put_header(h, all_types[i], 0xfedcba9876543210ull, len);
    assert_true(pp__get_u32(h) == PP__WIRE_MAGIC);
    assert_memory_equal(h, "PPW1", 4);
    assert_int_equal(h[4], PP__WIRE_VERSION);
    assert_int_equal(pp__wire_check_header(h, &fr), 0);
    assert_int_equal(fr.type, all_types[i]);
    assert_int_equal(fr.flags, 0);
    assert_true(fr.id == 0xfedcba9876543210ull);
    assert_true(fr.len == len);
  }
}

static void test_wire_bad_magic_is_eproto(void **state) {
  unsigned char h[PP__WIRE_HEADER];
  pp__frame_t fr;
  int byte;
  (void)state;
  for (byte = 0; byte < 4; byte++) {
    pp__wire_put_header(h, PP__FRAME_RESULT, 1, 10);
    h[byte] ^= 0x20;
    assert_int_equal(pp__wire_check_header(h, &fr), PP_EPROTO);
    assert_non_null(strstr(pp_last_error(), "magic"));
  }
}

static void test_wire_bad_version_is_eproto(void **state) {
  unsigned char h[PP__WIRE_HEADER];
  pp__frame_t fr;
  static const unsigned char versions[] = {0, PP__WIRE_VERSION + 1, 0xff};
  size_t i;
  (void)state;
  for (i = 0; i < sizeof(versions); i++) {
    pp__wire_put_header(h, PP__FRAME_RESULT, 1, 10);
    h[4] = versions[i];
    assert_int_equal(pp__wire_check_header(h, &fr), PP_EPROTO);
    assert_non_null(strstr(pp_last_error(), "version"));
  }
}

static void test_wire_unknown_type_is_eproto(void **state) {
  unsigned char h[PP__WIRE_HEADER];
  pp__frame_t fr;
  int type;
  (void)state;
  for (type = 0; type < 256; type++) {
    size_t i;
    int known = 0;
    for (i = 0; i < sizeof(all_types) / sizeof(all_types[0]); i++)
      known |= all_types[i] == type;
    if (known)
      continue;
    pp__wire_put_header(h, type, 1, 0);
    assert_int_equal(pp__wire_check_header(h, &fr), PP_EPROTO);
  }
}

static void test_wire_flags_must_be_zero(void **state) {
  unsigned char h[PP__WIRE_HEADER];
  pp__frame_t fr;
  (void)state;
  pp__wire_put_header(h, PP__FRAME_BYE, 0, 0);
  pp__put_u16(h + 6, 1);
  assert_int_equal(pp__wire_check_header(h, &fr), PP_EPROTO);
  pp__put_u16(h + 6, 0x8000);
  assert_int_equal(pp__wire_check_header(h, &fr), PP_EPROTO);
}

/* Each type has its own bounds; a length one past them (or one short of a
 * minimum) is refused before anyone allocates for it. */
static void test_wire_bad_lengths_are_eproto(void **state) {
  struct {
    int type;
    uint64_t len;
  } bad[] = {
      {PP__FRAME_HELLO, 0},
      {PP__FRAME_HELLO, PP__COOKIE_LEN + 7},
      {PP__FRAME_HELLO, PP__COOKIE_LEN + 9},
      {PP__FRAME_CALL, 0},
      {PP__FRAME_CALL, 2},
      {PP__FRAME_CALL, PP__PAYLOAD_MAX + 1},
      {PP__FRAME_INIT, 2},
      {PP__FRAME_INIT, UINT64_MAX},
      {PP__FRAME_RESULT, PP__PAYLOAD_MAX + 1},
      {PP__FRAME_RESULT, UINT64_MAX},
      {PP__FRAME_ERROR, 3},
      {PP__FRAME_ERROR, 4 + PP__MSG_MAX + 1},
      {PP__FRAME_LOG, 0},
      {PP__FRAME_LOG, 4 + PP__MSG_MAX + 1},
      {PP__FRAME_CANCEL, 1},
      {PP__FRAME_BYE, 1},
      {PP__FRAME_BYE, UINT64_MAX},
  };
  unsigned char h[PP__WIRE_HEADER];
  size_t i;
  (void)state;
  for (i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
    pp__frame_t fr;
    pp__wire_put_header(h, bad[i].type, 7, bad[i].len);
    assert_int_equal(pp__wire_check_header(h, &fr), PP_EPROTO);
  }
  /* The largest legal sizes pass. */
  {
    pp__frame_t fr;
    pp__wire_put_header(h, PP__FRAME_RESULT, 7, PP__PAYLOAD_MAX);
    assert_int_equal(pp__wire_check_header(h, &fr), 0);
    pp__wire_put_header(h, PP__FRAME_LOG, 7, 4 + PP__MSG_MAX);
    assert_int_equal(pp__wire_check_header(h, &fr), 0);
    pp__wire_put_header(h, PP__FRAME_CALL, 7, 3);
    assert_int_equal(pp__wire_check_header(h, &fr), 0);
  }
}

static void test_wire_call_prefix_roundtrip(void **state) {
  unsigned char payload[2 + PP__NAME_MAX + 16];
  char name[PP__NAME_MAX + 1];
  size_t n, off = 0;
  (void)state;
  n = pp__wire_call_prefix(payload, "square");
  assert_int_equal(n, 2 + 6);
  memcpy(payload + n, "ARG", 3);
  assert_int_equal(
      pp__wire_split_call(payload, n + 3, name, sizeof(name), &off), 0);
  assert_string_equal(name, "square");
  assert_int_equal(off, n);
  assert_memory_equal(payload + off, "ARG", 3);
}

static void test_wire_bad_call_payloads_are_eproto(void **state) {
  unsigned char p[64];
  char name[PP__NAME_MAX + 1];
  char small[4];
  size_t off;
  (void)state;
  memset(p, 0, sizeof(p));
  /* Too short for the name length. */
  assert_int_equal(pp__wire_split_call(p, 1, name, sizeof(name), &off),
                   PP_EPROTO);
  /* An empty name. */
  pp__put_u16(p, 0);
  assert_int_equal(pp__wire_split_call(p, 10, name, sizeof(name), &off),
                   PP_EPROTO);
  /* A name longer than the payload. */
  pp__put_u16(p, 20);
  memset(p + 2, 'a', 20);
  assert_int_equal(pp__wire_split_call(p, 21, name, sizeof(name), &off),
                   PP_EPROTO);
  /* A name longer than the limit. */
  pp__put_u16(p, PP__NAME_MAX + 1);
  assert_int_equal(pp__wire_split_call(p, 64, name, sizeof(name), &off),
                   PP_EPROTO);
  /* A name longer than the caller's buffer. */
  pp__put_u16(p, 4);
  assert_int_equal(pp__wire_split_call(p, 10, small, sizeof(small), &off),
                   PP_EPROTO);
  /* A NUL inside the name. */
  pp__put_u16(p, 4);
  memcpy(p + 2, "ab\0d", 4);
  assert_int_equal(pp__wire_split_call(p, 10, name, sizeof(name), &off),
                   PP_EPROTO);
}

int main(int argc, char **argv) {
  int rc;
  if (pp_worker_main(argc, argv, pp_test_tasks, &rc))
    return rc;
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_wire_little_endian_helpers),
      cmocka_unit_test(test_wire_header_roundtrip),
      cmocka_unit_test(test_wire_bad_magic_is_eproto),
      cmocka_unit_test(test_wire_bad_version_is_eproto),
      cmocka_unit_test(test_wire_unknown_type_is_eproto),
      cmocka_unit_test(test_wire_flags_must_be_zero),
      cmocka_unit_test(test_wire_bad_lengths_are_eproto),
      cmocka_unit_test(test_wire_call_prefix_roundtrip),
      cmocka_unit_test(test_wire_bad_call_payloads_are_eproto),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
