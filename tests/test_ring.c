/*
 * test_ring.c - the rings a parent shares with its workers (src/ring.c):
 * records round-trip across the wrap, a full ring refuses a record instead
 * of overwriting, and every kind of corruption a task could leave in
 * shared memory is PP_EPROTO, never a read outside the ring.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "ring.h"

#include "helpers.h"
#include "tasks.h"

#define RING PP__RING_MIN

typedef struct shm_s {
  void *base;
  pp__ring_t prod, cons;
} shm_t;

/* The reason a ring function gives when it refuses (error.h). */
static pp__err_t err;

static void shm_open_ring(shm_t *s) {
  uint64_t size = pp__shm_size(RING);
  s->base = calloc(1, (size_t)size);
  assert_non_null(s->base);
  pp__shm_format(s->base, RING);
  assert_int_equal(pp__shm_check(s->base, size, &err), 0);
  pp__ring_bind(&s->prod, s->base, 1);
  pp__ring_bind(&s->cons, s->base, 1);
}

static void put(pp__ring_t *r, int kind, uint64_t id, size_t len,
                unsigned char fill) {
  unsigned char *p = pp__ring_begin(r, kind, 7, id, len);
  assert_non_null(p);
  memset(p, fill, len);
}

/* Thousands of records of changing sizes go through a small ring, many
 * times around: each arrives whole and in order. */
static void test_ring_records_cross_the_wrap(void **state) {
  shm_t s;
  uint64_t sent = 0, got = 0;
  int round;
  (void)state;
  shm_open_ring(&s);
  for (round = 0; round < 2000; round++) {
    size_t len = (size_t)(round * 37) % 3000;
    pp__rec_t rec;
    size_t i;
    while (pp__ring_fits(&s.prod, len)) {
      sent++;
      put(&s.prod, PP__REC_RESULT, sent, len, (unsigned char)sent);
      len = (len * 7 + 13) % 3000;
    }
    pp__ring_commit(&s.prod);
    while (pp__ring_next(&s.cons, &rec, &err) == 1) {
      got++;
      assert_int_equal(rec.kind, PP__REC_RESULT);
      assert_int_equal(rec.aux, 7);
      assert_true(rec.id == got);
      for (i = 0; i < rec.len; i++)
        assert_int_equal(rec.payload[i], (unsigned char)got);
      pp__ring_release(&s.cons, rec.end);
    }
  }
  assert_true(got == sent);
  assert_true(s.prod.hdr->head > 10 * (uint64_t)RING);
  free(s.base);
}

/* A consumer that binds after the producer has written (the parent's view
 * of a worker that said HELLO before spawn returned) still reads it all,
 * and a producer bound later goes on where the ring is. */
static void test_ring_late_binding_misses_nothing(void **state) {
  shm_t s;
  pp__ring_t late, prod2;
  pp__rec_t rec;
  (void)state;
  shm_open_ring(&s);
  put(&s.prod, PP__REC_HELLO, 1, 40, 1);
  put(&s.prod, PP__REC_RESULT, 2, 8, 2);
  pp__ring_commit(&s.prod);
  pp__ring_bind(&late, s.base, 1);
  assert_int_equal(pp__ring_next(&late, &rec, &err), 1);
  assert_int_equal(rec.kind, PP__REC_HELLO);
  pp__ring_release(&late, rec.end);
  pp__ring_bind(&prod2, s.base, 1);
  put(&prod2, PP__REC_RESULT, 3, 8, 3);
  pp__ring_commit(&prod2);
  assert_int_equal(pp__ring_next(&late, &rec, &err), 1);
  assert_true(rec.id == 2);
  assert_int_equal(pp__ring_next(&late, &rec, &err), 1);
  assert_true(rec.id == 3);
  assert_int_equal(pp__ring_next(&late, &rec, &err), 0);
  free(s.base);
}

/* A full ring refuses; room comes back only when the consumer releases. */
static void test_ring_full_ring_refuses(void **state) {
  shm_t s;
  pp__rec_t rec;
  int n = 0;
  (void)state;
  shm_open_ring(&s);
  assert_false(pp__ring_fits(&s.prod, pp__ring_max_payload(&s.prod) + 1));
  assert_null(pp__ring_begin(&s.prod, PP__REC_RESULT, 0, 1,
                             pp__ring_max_payload(&s.prod) + 1));
  while (pp__ring_begin(&s.prod, PP__REC_RESULT, 0, (uint64_t)n + 1, 1000))
    n++;
  pp__ring_commit(&s.prod);
  assert_true(n > 10);
  assert_false(pp__ring_fits(&s.prod, 1000));
  /* Reading is not enough: the space is the reader's until it releases. */
  assert_int_equal(pp__ring_next(&s.cons, &rec, &err), 1);
  assert_false(pp__ring_fits(&s.prod, 1000));
  pp__ring_release(&s.cons, rec.end);
  assert_true(pp__ring_fits(&s.prod, 1000));
  free(s.base);
}

/* A consumer that sleeps is woken; one that is awake costs no wake-up. */
static void test_ring_wake_only_a_sleeper(void **state) {
  shm_t s;
  pp__rec_t rec;
  (void)state;
  shm_open_ring(&s);
  put(&s.prod, PP__REC_LOG, 1, 4, 0);
  assert_int_equal(pp__ring_commit(&s.prod), 0);
  /* Data is there: no sleep. */
  assert_int_equal(pp__ring_sleep_prepare(&s.cons), 1);
  assert_int_equal(pp__ring_next(&s.cons, &rec, &err), 1);
  pp__ring_release(&s.cons, rec.end);
  assert_int_equal(pp__ring_sleep_prepare(&s.cons), 0);
  put(&s.prod, PP__REC_LOG, 2, 4, 0);
  assert_int_equal(pp__ring_commit(&s.prod), 1);
  pp__ring_awake(&s.cons);
  put(&s.prod, PP__REC_LOG, 3, 4, 0);
  assert_int_equal(pp__ring_commit(&s.prod), 0);
  free(s.base);
}

/* Corruption of every kind is PP_EPROTO. */
static void test_ring_corruption_is_eproto(void **state) {
  shm_t s;
  pp__rec_t rec;
  unsigned char *p;
  uint32_t len;
  uint16_t kind;
  (void)state;

  /* A head that runs ahead of the tail by more than the ring. */
  shm_open_ring(&s);
  s.prod.hdr->head = 2 * (uint64_t)RING;
  assert_int_equal(pp_future_wait(NULL, 0), PP_EINVAL);
  assert_int_equal(pp__ring_next(&s.cons, &rec, &err), PP_EPROTO);
  /* The reason comes back with the code; pp_last_error() is the public
   * edge's, and still tells of the last failed public call. */
  assert_int_equal(err.code, PP_EPROTO);
  assert_non_null(strstr(err.text, "is impossible"));
  assert_string_equal(pp_last_error(), "pp_future_wait: future is NULL");
  free(s.base);

  /* A head that is not aligned. */
  shm_open_ring(&s);
  s.prod.hdr->head = 12;
  assert_int_equal(pp__ring_next(&s.cons, &rec, &err), PP_EPROTO);
  free(s.base);

  /* A record longer than what was published. */
  shm_open_ring(&s);
  put(&s.prod, PP__REC_RESULT, 1, 64, 1);
  pp__ring_commit(&s.prod);
  p = s.prod.data;
  len = 4096;
  memcpy(p, &len, 4);
  assert_int_equal(pp__ring_next(&s.cons, &rec, &err), PP_EPROTO);
  free(s.base);

  /* A record that runs past the end of the buffer. */
  shm_open_ring(&s);
  s.prod.head = s.prod.tail = s.cons.tail = s.cons.seen = RING - 64;
  s.prod.hdr->head = s.prod.hdr->tail = RING - 64;
  put(&s.prod, PP__REC_RESULT, 1, 16, 1);
  pp__ring_commit(&s.prod);
  p = s.prod.data + RING - 64;
  len = 1000;
  memcpy(p, &len, 4);
  assert_int_equal(pp__ring_next(&s.cons, &rec, &err), PP_EPROTO);
  free(s.base);

  /* Padding that stops short of the end. */
  shm_open_ring(&s);
  put(&s.prod, PP__REC_RESULT, 1, 16, 1);
  pp__ring_commit(&s.prod);
  kind = PP__REC_PAD;
  memcpy(s.prod.data + 4, &kind, 2);
  assert_int_equal(pp__ring_next(&s.cons, &rec, &err), PP_EPROTO);
  free(s.base);

  /* A mapping of another layout. */
  shm_open_ring(&s);
  ((pp__shm_ctl_t *)s.base)->call_size = 12345;
  assert_int_equal(pp__shm_check(s.base, pp__shm_size(RING), &err), PP_EPROTO);
  ((pp__shm_ctl_t *)s.base)->call_size = RING;
  ((pp__shm_ctl_t *)s.base)->version = 99;
  assert_int_equal(pp__shm_check(s.base, pp__shm_size(RING), &err), PP_EPROTO);
  assert_int_equal(pp__shm_check(s.base, 100, &err), PP_EPROTO);
  free(s.base);
}

/* Call records: put, parse, cancel. */
static void test_ring_call_records(void **state) {
  static const char arg[] = "argument bytes";
  shm_t s;
  pp__ring_t planned;
  pp__call_rec_t c;
  pp__rec_t rec;
  uint64_t len = pp__call_rec_len(6, sizeof(arg), 0), at;
  unsigned char *p;
  uint16_t n;
  (void)state;
  shm_open_ring(&s);
  planned = s.prod;
  at = pp__ring_plan(&planned, len);
  p = pp__ring_begin(&s.prod, PP__REC_CALL, 0, 42, len);
  assert_true(planned.head == s.prod.head);
  pp__call_rec_put(p, "square", 6, arg, sizeof(arg), NULL);
  pp__ring_commit(&s.prod);
  assert_int_equal(pp__ring_next(&s.cons, &rec, &err), 1);
  assert_int_equal(pp__call_rec_parse(&rec, &c, &err), 0);
  assert_int_equal(c.name_len, 6);
  assert_memory_equal(c.name, "square", 6);
  assert_int_equal(c.arg_len, sizeof(arg));
  assert_memory_equal(c.arg, arg, sizeof(arg));
  assert_int_equal(*c.cancel, 0);
  /* The cancel lands on the call it names, and only on it. */
  pp__ring_set_cancel(&s.prod, at, 41);
  assert_int_equal(*c.cancel, 0);
  pp__ring_set_cancel(&s.prod, at, 42);
  assert_int_equal(*c.cancel, PP__CALL_CANCEL);
  /* A call is taken back only before the worker starts it, and only the
   * call named. */
  *c.cancel = 0;
  assert_int_equal(pp__ring_withdraw(&s.prod, at, 41), 0);
  assert_int_equal(pp__ring_withdraw(&s.prod, at, 42), 1);
  assert_int_equal(*c.cancel, PP__CALL_WITHDRAWN);
  *c.cancel = PP__CALL_STARTED;
  assert_int_equal(pp__ring_withdraw(&s.prod, at, 42), 0);
  assert_int_equal(*c.cancel, PP__CALL_STARTED);
  /* Bad names. */
  n = 0;
  memcpy((unsigned char *)rec.payload + 4, &n, 2);
  assert_int_equal(pp__call_rec_parse(&rec, &c, &err), PP_EPROTO);
  n = 5000;
  memcpy((unsigned char *)rec.payload + 4, &n, 2);
  assert_int_equal(pp__call_rec_parse(&rec, &c, &err), PP_EPROTO);
  n = 6;
  memcpy((unsigned char *)rec.payload + 4, &n, 2);
  ((unsigned char *)rec.payload)[PP__CALL_HEAD + 2] = '\0';
  assert_int_equal(pp__call_rec_parse(&rec, &c, &err), PP_EPROTO);
  rec.len = 4;
  assert_int_equal(pp__call_rec_parse(&rec, &c, &err), PP_EPROTO);
  free(s.base);
}

/* A blob call record carries its mapping and reply hint; one of a wrong
 * size, an unknown form or an argument outside its mapping is PP_EPROTO; a
 * refused one carries nothing. */
static void test_ring_blob_call_records(void **state) {
  shm_t s;
  pp__call_blob_t cb = {7, 24, (uint64_t)4 << 32, 1234, 1 << 20, 9, 99, 3};
  pp__call_rec_t c;
  pp__rec_t rec;
  uint64_t len = pp__call_rec_len(4, 0, 1);
  unsigned char *p;
  (void)state;
  shm_open_ring(&s);
  p = pp__ring_begin(&s.prod, PP__REC_CALL, 1, 5, len);
  pp__call_rec_put(p, "echo", 4, NULL, (uint64_t)3 << 32, &cb);
  p = pp__ring_begin(&s.prod, PP__REC_CALL, 2, 6, len);
  pp__call_rec_put(p, "echo", 4, NULL, 0, &cb);
  pp__ring_commit(&s.prod);
  assert_int_equal(pp__ring_next(&s.cons, &rec, &err), 1);
  assert_int_equal(pp__call_rec_parse(&rec, &c, &err), 0);
  assert_true(c.blob && !c.refused && c.arg == NULL);
  assert_true(c.arg_len == (uint64_t)3 << 32);
  assert_memory_equal(&c.b, &cb, sizeof(cb));
  rec.len -= 8;
  assert_int_equal(pp__call_rec_parse(&rec, &c, &err), PP_EPROTO);
  rec.len += 8;
  rec.aux = 3;
  assert_int_equal(pp__call_rec_parse(&rec, &c, &err), PP_EPROTO);
  rec.aux = 1;
  /* An argument that would end past its mapping. */
  memcpy((unsigned char *)rec.payload + rec.len - 72 + 16,
         &(uint64_t){((uint64_t)1 << 32) + 1}, 8);
  assert_int_equal(pp__call_rec_parse(&rec, &c, &err), PP_EPROTO);
  assert_int_equal(pp__ring_next(&s.cons, &rec, &err), 1);
  assert_int_equal(pp__call_rec_parse(&rec, &c, &err), 0);
  assert_true(c.refused && !c.blob && c.arg == NULL && c.b.hint_size == 0);
  free(s.base);
}

/* The bookkeeping of kept mappings: the most recently used stay, at most
 * PP__MAPCACHE_N and PP__MAPCACHE_BYTES of them, one too large is not kept,
 * and what is pushed out is handed back to be closed. */
static void test_ring_kept_mappings(void **state) {
  pp__mapcache_t c;
  void *obj, *out[PP__MAPCACHE_N];
  char tag[8];
  int n, i;
  (void)state;
  memset(&c, 0, sizeof(c));
  for (i = 0; i < PP__MAPCACHE_N; i++) {
    assert_int_equal(pp__mapcache_put(&c, 100 + (uint64_t)i, 1 << 20,
                                      &tag[i], out, &n), 1);
    assert_int_equal(n, 0);
  }
  /* 100 is used again, so 101 is the oldest when 200 comes. */
  assert_int_equal(pp__mapcache_find(&c, 100, &obj), 1);
  assert_ptr_equal(obj, &tag[0]);
  assert_int_equal(pp__mapcache_put(&c, 200, 1 << 20, &tag[4], out, &n), 1);
  assert_int_equal(n, 1);
  assert_ptr_equal(out[0], &tag[1]);
  assert_int_equal(pp__mapcache_find(&c, 101, &obj), 0);
  assert_int_equal(pp__mapcache_find(&c, 100, &obj), 1);
  /* Too large to keep at all; then one that pushes out the rest by size. */
  assert_int_equal(
      pp__mapcache_put(&c, 300, PP__MAPCACHE_BYTES + 1, &tag[5], out, &n), 0);
  assert_int_equal(n, 0);
  assert_int_equal(pp__mapcache_put(&c, 301, PP__MAPCACHE_BYTES - (1 << 20),
                                    &tag[6], out, &n),
                   1);
  assert_int_equal(n, PP__MAPCACHE_N - 1);
  assert_int_equal(pp__mapcache_find(&c, 100, &obj), 1);
  assert_int_equal(c.n, 2);
  assert_true(c.bytes == PP__MAPCACHE_BYTES);
}

int main(int argc, char **argv) {
  int rc;
  if (pp_worker_main(argc, argv, pp_test_tasks, &rc))
    return rc;
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_ring_records_cross_the_wrap),
      cmocka_unit_test(test_ring_full_ring_refuses),
      cmocka_unit_test(test_ring_late_binding_misses_nothing),
      cmocka_unit_test(test_ring_wake_only_a_sleeper),
      cmocka_unit_test(test_ring_corruption_is_eproto),
      cmocka_unit_test(test_ring_call_records),
      cmocka_unit_test(test_ring_blob_call_records),
      cmocka_unit_test(test_ring_kept_mappings),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
