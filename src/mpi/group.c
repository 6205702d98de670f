/*
 * group.c - a serving rank's calls: the records of a batch from rank 0
 * become groups, each run as one async map of the rank's local pool, and
 * their results become result records on their way back.
 *
 * The calls of one batch that come from one source on rank 0 (a map's
 * calls, or a future's one) form a *group*: its calls reach the local
 * pool's workers in chunks, as a local map's do, without a future and a
 * callback per call, which cost several thread wake-ups each.  A group's
 * results go back together when it has ended, as the results of one chunk
 * of Python's map do.  A cancel record cancels its call's group, which
 * rank 0 cancels as a whole anyway (a source).
 *
 * Every call of a batch gets a result record, whatever fails here: a call
 * that cannot start (no memory for its group or its argument, an argument
 * that does not arrive whole, a task the rank lacks) fails with a status
 * and a sentence.  Only a result that cannot be kept at all breaks the
 * service (ppm_serve_break): rank 0 would wait for it for ever.
 */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE /* clock_gettime, PATH_MAX for apr.h */
#endif
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "serve.h"

/* ---- result records ---- */

/* Appends the record of one result (its data too, unless `separate`);
 * returns 0, or PP_ENOMEM with nothing appended. */
static int put_record(uint64_t id, const pp_result_t *r, const char *msg,
                      int separate) {
  ppm_result_t h;
  size_t mark = S.results.len;
  memset(&h, 0, sizeof(h));
  h.id = id;
  h.status = r->status;
  h.exit_code = r->exit_code;
  h.term_signal = r->term_signal;
  h.flags = separate ? PPM_SEPARATE : 0;
  h.msg_len = msg ? (uint32_t)strlen(msg) : 0;
  h.len = r->len;
  if (ppm_buf_put(&S.results, "results", &h, sizeof(h)) != 0 ||
      ppm_buf_put(&S.results, "results", msg, h.msg_len) != 0 ||
      (!separate && ppm_buf_put(&S.results, "results", r->data, r->len) != 0)) {
    S.results.len = mark;
    return PP_ENOMEM;
  }
  return 0;
}

/* Appends one result record, taking its data if it travels on its own.  A
 * result too large for one MPI message (2 GiB) becomes a failure that
 * says so; one that cannot be kept for want of memory becomes a
 * PP_ENOMEM failure, and if even that cannot be kept, the service ends. */
static void put_result(uint64_t id, pp_result_t *r) {
  const char *msg = r->message;
  char why[192];
  int separate;
  if (r->len > INT_MAX) {
    snprintf(why, sizeof(why),
             "the result of %zu bytes is larger than the MPI backend "
             "sends in one message (2 GiB)",
             r->len);
    pp_free(r->data);
    r->data = NULL;
    r->len = 0;
    r->status = PP_EINVAL;
    msg = why;
  }
  separate = r->len > PPM_BIG;
  if (separate && S.nrdata == S.caprdata) {
    size_t cap = S.caprdata ? 2 * S.caprdata : 16;
    rdata_t *v = ppm_realloc("results", S.rdata, cap * sizeof(*v));
    if (v != NULL) {
      S.rdata = v;
      S.caprdata = cap;
    }
  }
  if ((!separate || S.nrdata < S.caprdata) &&
      put_record(id, r, msg, separate) == 0) {
    if (separate) {
      S.rdata[S.nrdata].data = r->data;
      S.rdata[S.nrdata].len = r->len;
      S.nrdata++;
      r->data = NULL;
    }
    return;
  }
  snprintf(why, sizeof(why),
           "MPI rank %d had no memory to keep the result of call %llu (%zu "
           "bytes)",
           S.rank, (unsigned long long)id, r->len);
  pp_free(r->data);
  r->data = NULL;
  r->len = 0;
  r->status = PP_ENOMEM;
  r->exit_code = r->term_signal = 0;
  if (put_record(id, r, why, 0) != 0)
    ppm_serve_break(PP_ENOMEM,
                    "MPI rank %d had no memory to keep the result of call "
                    "%llu",
                    S.rank, (unsigned long long)id);
}

/* A call that never reached the local pool fails with `status`. */
static void fail_call(uint64_t id, int status, const char *why) {
  pp_result_t r;
  memset(&r, 0, sizeof(r));
  r.status = status;
  r.message = (char *)why;
  put_result(id, &r);
}

/* ---- arguments and groups ---- */

/* Receives the large argument of `want` bytes that follows its batch
 * from rank 0 (it is on its way).  It goes straight into shared memory,
 * which the local pool hands to its worker without a copy
 * (pp_shared_alloc), and whose mappings the pool keeps for reuse, so a
 * stream of large arguments does not fault in fresh pages every time.
 * Rank 0 may die meanwhile: the wait is bounded by the deadline.  Returns
 * 0, PP_ENOMEM (it was received into nothing) or PP_EPROTO (it did not
 * arrive, or not whole). */
static int recv_arg(void **out, uint64_t want) {
  int64_t end = ppm_now_us() + S.deadline_us;
  struct timespec ts = {0, 50000};
  MPI_Message msg;
  MPI_Status st;
  MPI_Request req;
  int flag = 0, n = 0;
  *out = NULL;
  for (;;) {
    if (MPI_Improbe(0, PPM_TAG_ARG, S.comm, &flag, &msg, &st) != MPI_SUCCESS)
      return PP_EPROTO;
    if (flag)
      break;
    if (ppm_now_us() > end)
      return PP_EPROTO;
    nanosleep(&ts, NULL);
  }
  MPI_Get_count(&st, MPI_BYTE, &n);
  if (n < 0 || (uint64_t)n != want) {
    ppm_discard(&msg, &st, end);
    return PP_EPROTO;
  }
  if (!ppm_fail_here("arg")) {
    *out = pp_shared_alloc(n > 0 ? (size_t)n : 1);
    if (*out == NULL)
      *out = malloc(n > 0 ? (size_t)n : 1);
  }
  if (*out == NULL) {
    ppm_discard(&msg, &st, end);
    return PP_ENOMEM;
  }
  if (MPI_Imrecv(*out, n, MPI_BYTE, &msg, &req) != MPI_SUCCESS) {
    pp_free(*out);
    *out = NULL;
    return PP_EPROTO;
  }
  for (flag = 0; !flag;) {
    if (MPI_Test(&req, &flag, MPI_STATUS_IGNORE) != MPI_SUCCESS) {
      pp_free(*out);
      *out = NULL;
      return PP_EPROTO;
    }
    if (!flag && ppm_now_us() > end) {
      /* The buffer stays MPI's: it may still be written into. */
      *out = NULL;
      return PP_EPROTO;
    }
  }
  return 0;
}

static void batch_unref(unsigned char *batch, int *refs) {
  if (--*refs == 0) {
    free(batch);
    free(refs);
  }
}

static void group_free(group_t *g) {
  size_t i;
  for (i = 0; g->owned != NULL && i < g->n; i++)
    pp_free(g->owned[i]);
  batch_unref(g->batch, g->batch_refs);
  free(g->ids);
  free(g->args);
  free(g->owned);
  free(g->res);
  free(g);
}

/* A group for up to `count` calls, using the batch `p`; NULL without
 * memory. */
static group_t *group_new(size_t count, unsigned char *p, int *refs) {
  group_t *g = ppm_calloc("group", 1, sizeof(*g));
  if (g == NULL)
    return NULL;
  g->ids = ppm_calloc("group", count, sizeof(uint64_t));
  g->args = ppm_calloc("group", count, sizeof(pp_buf_t));
  g->res = ppm_calloc("group", count, sizeof(pp_result_t));
  g->owned = ppm_calloc("group", count, sizeof(void *));
  g->batch = p;
  g->batch_refs = refs;
  ++*refs;
  if (g->ids == NULL || g->args == NULL || g->res == NULL || g->owned == NULL) {
    group_free(g);
    return NULL;
  }
  return g;
}

/* Starts a group as a map; if it cannot start, its calls fail here. */
static void group_start(pp_pool_t *local, const pp_task_t *tasks,
                        uint32_t ntasks, group_t *g, uint32_t task,
                        int64_t timeout_ms) {
  pp_map_options_t mo;
  size_t i;
  int rc = PP_EPROTO;
  const char *why = "rank 0 named a task this rank lacks";
  memset(&mo, 0, sizeof(mo));
  mo.timeout_ms = timeout_ms > 0 ? timeout_ms : -1;
  if (task < ntasks) {
    rc = pp_pool_map_async(local, tasks[task].name, g->args, g->n, g->res, &mo,
                           &g->m);
    why = pp_last_error();
  }
  if (rc == 0) {
    g->next = NULL;
    *S.tail = g;
    S.tail = &g->next;
    return;
  }
  for (i = 0; i < g->n; i++)
    fail_call(g->ids[i], rc, why);
  group_free(g);
}

void ppm_handle_calls(pp_pool_t *local, const pp_task_t *tasks, uint32_t ntasks,
                      unsigned char *p, size_t n) {
  size_t off = 0;
  char why[160];
  /* The batch's memory stays while a group uses arguments in it. */
  int *refs = ppm_malloc("group", sizeof(*refs));
  if (refs != NULL)
    *refs = 1; /* this function's */
  while (off + sizeof(ppm_call_t) <= n) {
    ppm_call_t first, c;
    size_t k, at = off, count = 0;
    group_t *g = NULL;
    /* How many records of this group follow (they are contiguous). */
    memcpy(&first, p + off, sizeof(first));
    while (at + sizeof(c) <= n) {
      memcpy(&c, p + at, sizeof(c));
      if (c.group != first.group || c.task != first.task ||
          c.timeout_ms != first.timeout_ms)
        break;
      at += sizeof(c) + ((c.flags & PPM_SEPARATE) ? 0 : PPM_PAD8(c.len));
      if (at > n)
        break;
      count++;
    }
    if (count == 0)
      break; /* a broken batch: nothing more in it can be trusted */
    if (refs != NULL)
      g = group_new(count, p, refs);
    for (k = 0; k < count; k++) {
      void *arg = NULL;
      size_t len;
      int rc = 0;
      memcpy(&c, p + off, sizeof(c));
      off += sizeof(c);
      len = (size_t)c.len;
      if (c.flags & PPM_SEPARATE) {
        /* Received whatever happens: the next message must be the next
         * argument. */
        rc = recv_arg(&arg, c.len);
      } else {
        arg = p + off;
        off += PPM_PAD8(c.len);
      }
      if (g == NULL || rc != 0) {
        if (g == NULL)
          snprintf(why, sizeof(why),
                   "MPI rank %d had no memory to start the call", S.rank);
        else if (rc == PP_ENOMEM)
          snprintf(why, sizeof(why),
                   "MPI rank %d had no memory for the argument of %zu bytes",
                   S.rank, len);
        else
          snprintf(why, sizeof(why),
                   "the argument of %zu bytes did not arrive whole at MPI "
                   "rank %d from rank 0",
                   len, S.rank);
        if (c.flags & PPM_SEPARATE)
          pp_free(arg);
        fail_call(c.id, g == NULL ? PP_ENOMEM : rc, why);
        continue;
      }
      g->ids[g->n] = c.id;
      g->args[g->n].data = arg;
      g->args[g->n].len = len;
      if (c.flags & PPM_SEPARATE)
        g->owned[g->n] = arg;
      g->n++;
    }
    if (g != NULL && g->n == 0)
      group_free(g);
    else if (g != NULL)
      group_start(local, tasks, ntasks, g, first.task, first.timeout_ms);
  }
  if (refs != NULL)
    batch_unref(p, refs);
  else
    free(p);
}

void ppm_handle_cancel(const unsigned char *p, size_t n) {
  size_t off, i;
  for (off = 0; off + 8 <= n; off += 8) {
    uint64_t id;
    group_t *g;
    memcpy(&id, p + off, 8);
    for (g = S.groups; g != NULL; g = g->next)
      for (i = 0; i < g->n; i++)
        if (g->ids[i] == id) {
          pp_map_cancel(g->m);
          goto next;
        }
  next:;
  }
}

int ppm_reap_groups(void) {
  group_t **pg = &S.groups, *g;
  size_t i;
  int any = 0;
  while ((g = *pg) != NULL) {
    if (pp_map_status(g->m) == PP_EAGAIN) {
      pg = &g->next;
      continue;
    }
    *pg = g->next;
    if (S.tail == &g->next)
      S.tail = pg;
    for (i = 0; i < g->n; i++) {
      put_result(g->ids[i], &g->res[i]);
      pp_free(g->res[i].data);
      free(g->res[i].message);
    }
    pp_map_free(g->m);
    group_free(g);
    any = 1;
  }
  return any;
}

void ppm_cancel_groups(void) {
  group_t *g;
  for (g = S.groups; g != NULL; g = g->next) {
    pp_map_cancel(g->m);
    pp_map_wait(g->m, -1);
  }
  ppm_reap_groups();
}
