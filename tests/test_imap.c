/*
 * test_imap.c - pp_pool_imap(): arguments from a producer, results in
 * input order or as completed, the bound on arguments held (backpressure),
 * a producer that fails part-way, stopping, crashes, bad input, progress,
 * inline mode, and ten million arguments in flat memory.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "helpers.h"
#include "tasks.h"

/* What the producer and the callback of a test share. */
typedef struct feed_s {
  size_t n;            /* arguments to give */
  size_t fail_at;      /* the producer fails here (SIZE_MAX: never) */
  size_t act_at;       /* the argument that runs `act` (SIZE_MAX: none) */
  const char *act;     /* what it does: "fail", "segv" */
  size_t stop_at;      /* the callback stops the map here (SIZE_MAX: never) */
  size_t window;       /* the bound the producer checks (0: none) */
  pp_buf_t last;       /* the producer's previous argument, freed at the
                          next call: the map copies it before */
  size_t produced;     /* producer calls that gave an argument */
  size_t handed;       /* results the callback got */
  size_t next_index;   /* input order: the index expected next */
  int ordered;         /* check the order */
  int out_of_order;    /* a result came before a lower index */
  size_t max_held;     /* the most arguments held, as the producer saw it */
  unsigned char *seen; /* each index once (NULL: not tracked) */
  size_t twice;        /* indexes seen twice */
  size_t ok, failed, cancelled, died;
  size_t wrong; /* successes with a wrong value */
  uint64_t sum; /* of the squares, mod 2^64 */
} feed_t;

static void feed_init(feed_t *f, size_t n) {
  memset(f, 0, sizeof(*f));
  f->n = n;
  f->fail_at = SIZE_MAX;
  f->act_at = SIZE_MAX;
  f->stop_at = SIZE_MAX;
  f->ordered = 1;
  /* Up to a million, each index is marked; above, the input order check
   * alone proves each index came once, and the test's own memory stays
   * flat too. */
  if (n <= 1000000) {
    f->seen = calloc(n > 0 ? n : 1, 1);
    assert_non_null(f->seen);
  }
}

static void feed_free(feed_t *f) {
  pp_free((void *)f->last.data);
  free(f->seen);
}

static int produce(void *data, pp_next_arg_t *next) {
  feed_t *f = data;
  /* Arguments held once this one is read. */
  size_t held = next->index - f->handed + 1;
  if (held > f->max_held)
    f->max_held = held;
  pp_free((void *)f->last.data);
  f->last.data = NULL;
  if (next->index >= f->n)
    return 0;
  if (next->index == f->fail_at) {
    snprintf(next->message, sizeof(next->message),
             "record %zu of the input is torn", next->index);
    return PP_EIO;
  }
  if (next->index == f->act_at)
    assert_int_equal(pp_pack(&f->last, "si", f->act, (int64_t)next->index), 0);
  else if (f->act != NULL)
    /* Through "act" too, so that only one call does something else. */
    assert_int_equal(pp_pack(&f->last, "si", "square", (int64_t)next->index),
                     0);
  else
    assert_int_equal(pp_pack(&f->last, "i", (int64_t)next->index), 0);
  next->arg = f->last;
  f->produced++;
  return 1;
}

static int take(void *data, size_t index, pp_result_t *r) {
  feed_t *f = data;
  int stop = 0;
  if (f->seen == NULL) {
    /* Only the order is checked (feed_init). */
  } else if (index < f->n) {
    if (f->seen[index])
      f->twice++;
    f->seen[index] = 1;
  } else {
    f->twice++;
  }
  if (f->ordered && index != f->next_index)
    f->out_of_order = 1;
  f->next_index = index + 1;
  if (r->status == 0) {
    int64_t v = pp_test_int_result(r);
    f->ok++;
    f->sum += (uint64_t)v;
    if (index != f->act_at && v != (int64_t)index * (int64_t)index)
      f->wrong++;
  } else if (r->status == PP_ECANCELED) {
    f->cancelled++;
  } else if (r->status == PP_EWORKERDIED) {
    f->died++;
  } else {
    f->failed++;
  }
  f->handed++;
  if (index == f->stop_at)
    stop = 1;
  pp_results_free(r, 1);
  return stop;
}

/* The same work, arguments 0..n-1 squared, gives this sum (mod 2^64). */
static uint64_t sum_of_squares(size_t n) {
  uint64_t s = 0;
  size_t i;
  for (i = 0; i < n; i++)
    s += (uint64_t)i * (uint64_t)i;
  return s;
}

static void test_imap_ordered_results_for_10000_arguments(void **state) {
  pp_pool_t *pool = *state;
  feed_t f;
  feed_init(&f, 10000);
  PP_TEST_OK(pp_pool_imap(pool, "square", produce, &f, take, &f, NULL));
  assert_int_equal(f.handed, 10000);
  assert_int_equal(f.ok, 10000);
  assert_int_equal(f.wrong, 0);
  assert_int_equal(f.twice, 0);
  assert_false(f.out_of_order);
  assert_true(f.sum == sum_of_squares(10000));
  feed_free(&f);
}

/* A small window makes every call a round trip between the parent and a
 * worker, which a loaded machine's scheduler stretches most: these maps
 * are short. */
static void test_imap_unordered_gives_each_index_once(void **state) {
  enum { N = 1000 };
  pp_pool_t *pool = *state;
  pp_map_options_t mo;
  feed_t f;
  size_t i;
  memset(&mo, 0, sizeof(mo));
  mo.flags = PP_MAP_UNORDERED;
  mo.max_in_flight = 10;
  feed_init(&f, N);
  f.ordered = 0;
  PP_TEST_OK(pp_pool_imap(pool, "square", produce, &f, take, &f, &mo));
  assert_int_equal(f.handed, N);
  assert_int_equal(f.twice, 0);
  for (i = 0; i < N; i++)
    assert_true(f.seen[i]);
  assert_true(f.sum == sum_of_squares(N));
  assert_true(f.max_held <= 10);
  feed_free(&f);
}

/* The producer is never more than max_in_flight ahead of the results, in
 * either order, whatever the bound. */
static void test_imap_backpressure_bounds_arguments_held(void **state) {
  enum { N = 300 };
  pp_pool_t *pool = *state;
  size_t windows[] = {1, 2, 7, 64};
  size_t w, u;
  for (u = 0; u < 2; u++) {
    for (w = 0; w < sizeof(windows) / sizeof(windows[0]); w++) {
      pp_map_options_t mo;
      feed_t f;
      memset(&mo, 0, sizeof(mo));
      mo.max_in_flight = windows[w];
      mo.flags = u ? PP_MAP_UNORDERED : 0;
      feed_init(&f, N);
      f.ordered = !u;
      PP_TEST_OK(pp_pool_imap(pool, "square", produce, &f, take, &f, &mo));
      assert_int_equal(f.handed, N);
      assert_int_equal(f.ok, N);
      assert_true(f.max_held <= windows[w]);
      /* The bound is used, not just respected: more than one call is in
       * flight when it allows. */
      if (windows[w] > 1)
        assert_true(f.max_held > 1);
      assert_false(f.out_of_order);
      feed_free(&f);
    }
  }
}

static void test_imap_producer_failure_keeps_earlier_results(void **state) {
  pp_pool_t *pool = *state;
  feed_t f;
  size_t i;
  int rc;
  feed_init(&f, 100000);
  f.fail_at = 1500;
  rc = pp_pool_imap(pool, "square", produce, &f, take, &f, NULL);
  assert_int_equal(rc, PP_EIO);
  assert_non_null(strstr(pp_last_error(), "producer failed at argument 1500"));
  assert_non_null(strstr(pp_last_error(), "record 1500 of the input is torn"));
  /* Every argument read before the failure ran and was handed over. */
  assert_int_equal(f.handed, 1500);
  assert_int_equal(f.ok, 1500);
  for (i = 0; i < 1500; i++)
    assert_true(f.seen[i]);
  assert_true(f.sum == sum_of_squares(1500));
  feed_free(&f);
}

static void test_imap_failed_and_crashed_calls_fail_alone(void **state) {
  pp_pool_t *pool = *state;
  feed_t f;
  feed_init(&f, 3000);
  f.act_at = 1234;
  f.act = "fail";
  assert_int_equal(pp_pool_imap(pool, "act", produce, &f, take, &f, NULL),
                   PP_ETASK);
  assert_int_equal(f.failed, 1);
  assert_int_equal(f.ok, 2999);
  feed_free(&f);

  feed_init(&f, 3000);
  f.act_at = 2000;
  f.act = "segv";
  assert_int_equal(pp_pool_imap(pool, "act", produce, &f, take, &f, NULL),
                   PP_EWORKERDIED);
  assert_int_equal(f.died, 1);
  assert_int_equal(f.ok, 2999);
  assert_int_equal(f.twice, 0);
  assert_false(f.out_of_order);
  feed_free(&f);
}

/* A stop (the callback's word, or a failure with STOP_ON_ERROR) reads no
 * more input, and every argument read still gets exactly one result. */
static void test_imap_stop_reads_no_more_and_hands_every_result(void **state) {
  pp_pool_t *pool = *state;
  pp_map_options_t mo;
  feed_t f;
  int rc;
  memset(&mo, 0, sizeof(mo));
  mo.max_in_flight = 100;
  feed_init(&f, 1000000);
  f.stop_at = 300;
  rc = pp_pool_imap(pool, "square", produce, &f, take, &f, &mo);
  /* Calls stopped before they ran are cancelled, and the map says so,
   * as a map stopped by its callback does. */
  assert_int_equal(rc, f.cancelled > 0 ? PP_ECANCELED : 0);
  assert_true(f.produced < 300 + 100 + 1);
  assert_int_equal(f.handed, f.produced);
  assert_int_equal(f.twice, 0);
  assert_true(f.ok >= 301);
  assert_int_equal(f.ok + f.cancelled, f.handed);
  feed_free(&f);

  mo.flags = PP_MAP_STOP_ON_ERROR;
  feed_init(&f, 1000000);
  f.act_at = 200;
  f.act = "fail";
  assert_int_equal(pp_pool_imap(pool, "act", produce, &f, take, &f, &mo),
                   PP_ETASK);
  assert_true(f.produced < 200 + 100 + 1);
  assert_int_equal(f.handed, f.produced);
  assert_int_equal(f.failed, 1);
  assert_int_equal(f.twice, 0);
  feed_free(&f);
}

static int produce_bad(void *data, pp_next_arg_t *next) {
  (void)data;
  if (next->index < 5) {
    next->arg.data = "";
    next->arg.len = 0;
    return 1;
  }
  next->arg.data = NULL;
  next->arg.len = 8;
  return 1;
}

static int produce_none(void *data, pp_next_arg_t *next) {
  (void)data;
  (void)next;
  return 0;
}

static void test_imap_bad_input_is_refused(void **state) {
  pp_pool_t *pool = *state;
  pp_map_options_t mo;
  feed_t f;
  feed_init(&f, 10);
  assert_int_equal(pp_pool_imap(NULL, "square", produce, &f, take, &f, NULL),
                   PP_EINVAL);
  assert_int_equal(pp_pool_imap(pool, NULL, produce, &f, take, &f, NULL),
                   PP_EINVAL);
  assert_int_equal(pp_pool_imap(pool, "square", NULL, &f, take, &f, NULL),
                   PP_EINVAL);
  assert_int_equal(pp_pool_imap(pool, "square", produce, &f, NULL, &f, NULL),
                   PP_EINVAL);
  assert_int_equal(pp_pool_imap(pool, "nope", produce, &f, take, &f, NULL),
                   PP_ENOTASK);
  memset(&mo, 0, sizeof(mo));
  mo.flags = 1u << 20;
  assert_int_equal(pp_pool_imap(pool, "square", produce, &f, take, &f, &mo),
                   PP_EINVAL);
  /* Nothing was read or run. */
  assert_int_equal(f.produced, 0);
  assert_int_equal(f.handed, 0);
  /* PP_MAP_UNORDERED belongs to imap only. */
  {
    pp_buf_t a = pp_test_pack_int(3);
    pp_result_t r;
    mo.flags = PP_MAP_UNORDERED;
    assert_int_equal(pp_pool_map(pool, "square", &a, 1, &r, &mo), PP_EINVAL);
    pp_free((void *)a.data);
  }
  feed_free(&f);

  /* A producer that breaks its contract stops the map cleanly: the calls
   * read before still run ("length" of an empty argument). */
  feed_init(&f, 0);
  assert_int_equal(
      pp_pool_imap(pool, "length", produce_bad, NULL, take, &f, NULL),
      PP_EINVAL);
  assert_non_null(strstr(pp_last_error(), "argument 5"));
  assert_int_equal(f.handed, 5);
  feed_free(&f);

  feed_init(&f, 0);
  PP_TEST_OK(pp_pool_imap(pool, "square", produce_none, NULL, take, &f, NULL));
  assert_int_equal(f.handed, 0);
  feed_free(&f);
}

typedef struct seen_progress_s {
  size_t reports, finals, unknown_totals, last_total, last_done;
} seen_progress_t;

static int note_progress(void *data, const pp_progress_t *p) {
  seen_progress_t *s = data;
  s->reports++;
  if (p->final)
    s->finals++;
  if (p->total == 0 && !p->final)
    s->unknown_totals++;
  s->last_total = p->total;
  s->last_done = p->done;
  return 0;
}

static void test_imap_progress_total_is_known_at_the_end(void **state) {
  pp_pool_t *pool = *state;
  pp_map_options_t mo;
  seen_progress_t s;
  feed_t f;
  memset(&s, 0, sizeof(s));
  memset(&mo, 0, sizeof(mo));
  mo.progress = note_progress;
  mo.progress_data = &s;
  mo.progress_interval_ms = 1;
  mo.max_in_flight = 16;
  feed_init(&f, 400);
  f.act_at = SIZE_MAX;
  PP_TEST_OK(pp_pool_imap(pool, "square", produce, &f, take, &f, &mo));
  assert_int_equal(s.finals, 1);
  assert_int_equal(s.last_total, 400);
  assert_int_equal(s.last_done, 400);
  feed_free(&f);
}

static void test_imap_inline_mode(void **state) {
  pp_pool_t *pool = pp_test_make_pool(1, PP_POOL_INLINE, 0, NULL);
  pp_map_options_t mo;
  feed_t f;
  (void)state;
  memset(&mo, 0, sizeof(mo));
  mo.max_in_flight = 8;
  feed_init(&f, 500);
  f.fail_at = 300;
  assert_int_equal(pp_pool_imap(pool, "square", produce, &f, take, &f, &mo),
                   PP_EIO);
  assert_int_equal(f.ok, 300);
  assert_true(f.max_held <= 8);
  assert_false(f.out_of_order);
  feed_free(&f);
  PP_TEST_OK(pp_pool_destroy(pool, PP_DESTROY_WAIT));
}

/* The producer destroys the pool at argument 700 (as another thread
 * might): the destroy waits for the calls already counted, the map counts
 * no more and every argument read still gets one result. */
typedef struct doomed_s {
  feed_t f;
  pp_pool_t *pool;
  int destroy_rc;
} doomed_t;

static int produce_and_destroy(void *data, pp_next_arg_t *next) {
  doomed_t *d = data;
  if (next->index == 700)
    d->destroy_rc = pp_pool_destroy(d->pool, PP_DESTROY_WAIT);
  return produce(&d->f, next);
}

static void test_imap_pool_destroyed_while_reading(void **state) {
  doomed_t d;
  pp_map_options_t mo;
  int rc;
  (void)state;
  memset(&d, 0, sizeof(d));
  memset(&mo, 0, sizeof(mo));
  mo.max_in_flight = 64;
  d.pool = pp_test_make_pool(2, 0, 0, NULL);
  feed_init(&d.f, 5000);
  rc = pp_pool_imap(d.pool, "square", produce_and_destroy, &d, take, &d.f, &mo);
  assert_int_equal(rc, PP_ECLOSED);
  assert_non_null(strstr(pp_last_error(), "destroyed"));
  assert_int_equal(d.destroy_rc, 0);
  /* The map read argument 700 and no more; each one read has a result:
   * the ones counted before the destroy ran, the rest are PP_ECLOSED. */
  assert_int_equal(d.f.produced, 701);
  assert_int_equal(d.f.handed, 701);
  assert_int_equal(d.f.twice, 0);
  assert_false(d.f.out_of_order);
  assert_true(d.f.ok >= 1);
  assert_int_equal(d.f.ok + d.f.failed, 701);
  assert_int_equal(d.f.wrong, 0);
  feed_free(&d.f);
  /* The map freed the pool it outlived. */
}

/* The figure: ten million generated arguments, with the parent's
 * memory printed as the map goes.  An array map would hold every argument
 * and result at once (about 10 M x 80 bytes); the streaming map holds its
 * window.  PROCPOOL_IMAP_CALLS sets fewer for the slow legs (valgrind,
 * Wine). */
typedef struct big_feed_s {
  feed_t f;
  size_t every;
  int64_t rss_first; /* after the first tenth: everything is warm */
  int64_t rss_max;
} big_feed_t;

static int take_and_watch(void *data, size_t index, pp_result_t *r) {
  big_feed_t *b = data;
  int rc = take(&b->f, index, r);
  if ((index + 1) % b->every == 0) {
    int64_t rss = pp_test_rss_bytes();
    if (b->rss_first == 0)
      b->rss_first = rss;
    if (rss > b->rss_max)
      b->rss_max = rss;
    printf("imap: %10zu results, parent resident memory %7.1f MiB\n", index + 1,
           (double)rss / 1048576.0);
    fflush(stdout);
  }
  return rc;
}

static void test_imap_ten_million_arguments_in_flat_memory(void **state) {
  pp_pool_t *pool = *state;
  const char *env = getenv("PROCPOOL_IMAP_CALLS");
  size_t n = env != NULL ? (size_t)strtoull(env, NULL, 10) : 10000000;
  big_feed_t b;
  int64_t start = pp_test_rss_bytes();
  if (n < 10)
    n = 10;
  memset(&b, 0, sizeof(b));
  feed_init(&b.f, n);
  b.every = n / 10;
  printf("imap: %zu arguments, parent resident memory at the start %.1f "
         "MiB\n",
         n, (double)start / 1048576.0);
  PP_TEST_OK(
      pp_pool_imap(pool, "square", produce, &b.f, take_and_watch, &b, NULL));
  assert_int_equal(b.f.handed, n);
  assert_int_equal(b.f.ok, n);
  assert_int_equal(b.f.twice, 0);
  assert_false(b.f.out_of_order);
  assert_true(b.f.sum == sum_of_squares(n));
  printf("imap: growth from the first tenth to the end %.1f MiB (an array "
         "map would hold about %.0f MiB of arguments and results)\n",
         (double)(b.rss_max - b.rss_first) / 1048576.0,
         (double)n * (sizeof(pp_buf_t) + sizeof(pp_result_t) + 24) / 1048576.0);
#if !defined(__SANITIZE_ADDRESS__)
  /* The bound is loose for the allocator's sake; an array map would grow
   * by hundreds of MiB here.  A sanitizer's quarantine grows on its own. */
  if (n >= 1000000 && b.rss_first > 0)
    assert_true(b.rss_max - b.rss_first < 16 * 1048576);
#endif
  feed_free(&b.f);
}

int main(int argc, char **argv) {
  int rc;
  if (pp_worker_main(argc, argv, pp_test_tasks, &rc))
    return rc;
  const struct CMUnitTest tests[] = {
      PP_TEST_POOL_TEST(test_imap_ordered_results_for_10000_arguments),
      PP_TEST_POOL_TEST(test_imap_unordered_gives_each_index_once),
      PP_TEST_POOL_TEST(test_imap_backpressure_bounds_arguments_held),
      PP_TEST_POOL_TEST(test_imap_producer_failure_keeps_earlier_results),
      PP_TEST_POOL_TEST(test_imap_failed_and_crashed_calls_fail_alone),
      PP_TEST_POOL_TEST(test_imap_stop_reads_no_more_and_hands_every_result),
      PP_TEST_POOL_TEST(test_imap_bad_input_is_refused),
      PP_TEST_POOL_TEST(test_imap_progress_total_is_known_at_the_end),
      cmocka_unit_test(test_imap_inline_mode),
      cmocka_unit_test(test_imap_pool_destroyed_while_reading),
      PP_TEST_POOL_TEST(test_imap_ten_million_arguments_in_flat_memory),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
