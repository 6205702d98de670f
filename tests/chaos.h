/*
 * chaos.h - the calls of the chaos test (test_chaos.c): what the test
 * knows of each call, and one batch of calls through each way into a pool
 * (chaos_calls.c), with every outcome checked as it is reported.
 */
#ifndef PP_TEST_CHAOS_H
#define PP_TEST_CHAOS_H

#include <stddef.h>
#include <stdint.h>

#include <apr_thread_mutex.h>

#include "procpool.h"

/* How a call was made. */
enum {
  A_MAP,
  A_STARMAP,
  A_UNORDERED,
  A_FUTURE,
  A_FUTURE_CB,
  A_ASYNC,
  A_IMAP,
  A_CLEAN,
  A_COUNT
};
extern const char *const chaos_api_names[A_COUNT];

/* The breaches of the contract the test tells apart. */
enum {
  V_RERUN_OK,   /* reported PP_OK, started more than once */
  V_PHANTOM,    /* reported PP_OK, never started */
  V_RERUN_FAIL, /* failed, started more than once */
  V_STATUS,     /* a status the storm cannot explain */
  V_REASON,     /* a timeout without one, a cancel without one, a message
                   or signal that does not fit */
  V_VALUE,      /* PP_OK with another call's value */
  V_TWICE,      /* two outcomes */
  V_NONE,       /* no outcome */
  V_UNMADE,     /* a call that the test never handed over started */
  V_MAP,        /* a map's status or result count is wrong */
  V_HUNG,       /* a wait ran out */
  V_CALLBACK,   /* a completion callback did not run exactly once */
  V_AFTER,      /* the pool did not serve after the storm */
  V_COUNT
};
extern const char *const chaos_v_names[V_COUNT];

typedef struct call_s {
  unsigned char api;
  unsigned char timed;  /* it had a timeout */
  unsigned char cancel; /* it (or its map) was cancelled or stopped */
  unsigned char unmade; /* an imap stopped before it read this one */
  unsigned char seen;   /* outcomes reported */
  int status;
} call_t;

typedef struct chaos_s {
  size_t n, used; /* counters in the file; keys handed out */
  call_t *calls;
  uint32_t *starts;
  char path[1024];
  uint64_t rng;
  apr_thread_mutex_t *lock; /* callbacks report from the callback thread */
  size_t by_status[-PP_ERRNO_MIN + 1];
  size_t by_api[A_COUNT];
  size_t batches, violations;
  size_t v_count[V_COUNT];
  char v_first[V_COUNT][2][512]; /* the first two of each kind */
} chaos_t;

/* A number below n from the splitmix64 generator at *state. */
unsigned chaos_pick(uint64_t *state, unsigned n);

/* Records a breach of the contract of kind V_*; ch->lock held. */
void chaos_note(chaos_t *ch, int kind, const char *fmt, ...) PP_PRINTF(3, 4);

/* Runs one batch of m calls (m > 0) and checks every outcome: a map or
 * starmap (api A_MAP, A_STARMAP; A_CLEAN: a map without timeouts), an
 * unordered map or an imap (A_UNORDERED, A_IMAP), futures, an async
 * map. */
void chaos_run_map(chaos_t *ch, pp_pool_t *pool, int api, size_t m);
void chaos_run_streaming(chaos_t *ch, pp_pool_t *pool, int api, size_t m);
void chaos_run_futures(chaos_t *ch, pp_pool_t *pool, size_t m);
void chaos_run_async(chaos_t *ch, pp_pool_t *pool, size_t m);

#endif /* PP_TEST_CHAOS_H */
