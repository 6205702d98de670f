/*
 * life.c - one worker process's life, as the pool's I/O thread runs it:
 * spawn, HELLO, initializer, calls in flight, retirement, death, reaping.
 *
 * A worker is ready when its first record has carried the pool's cookie, its
 * own process id (so a process that is not the worker the pool started
 * cannot take its place) and the build id of its task table (so a worker
 * whose program was replaced on disk by another build is refused), and the
 * pool's initializer, if any, has run in it.
 *
 * When a worker's process ends, its calls are settled exactly: results it
 * published are read first and kept; the call whose id is in the control
 * block's running_id fails with the reason (signal, exit code, or the
 * timeout or cancel the pool killed it for); every other call still in
 * flight never started and goes back to its source, to run elsewhere.
 *
 * Every function here runs on the I/O thread, which owns the slots; it
 * takes pool->lock only for what callers share.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "internal.h"

/* Consecutive start failures after which a slot counts as broken.  When
 * every slot of a pool is broken, no worker can serve, and queued calls
 * fail with PP_ESPAWN instead of waiting.  A worker that something outside
 * the pool killed while it started (pp__exit_t.outside) is no start
 * failure: the program can start, and calls wait for it. */
#define PP__SPAWN_GIVE_UP 3
/* Ends of starting workers in a row that may have been kills from outside
 * (pp__exit_t.outside PP__EXIT_MAYBE_OUTSIDE) after which a slot counts as
 * broken all the same: with the back-off, some 20 s of nothing but such
 * ends. */
#define PP__SPAWN_GIVE_UP_UNCLEAR 20
/* Attempts at a worker's first start before pp_pool_create() fails. */
#define PP__START_TRIES 3
/* How long a worker that was sent BYE may take to exit before it is
 * killed. */
#define PP__RETIRE_WAIT_MS 2000
/* The most output read from a dead worker's pipes: a process its task
 * started may still be writing into them. */
#define PP__LEFTOVER_MAX (1 << 20)
/* How long a worker whose start failed may take to end once it is killed.
 * One that takes longer (a process the kernel cannot end yet, stuck in an
 * uninterruptible wait) is left to the system rather than hold the pool's
 * I/O thread. */
#define PP__REAP_WAIT_MS 5000

/* ---- the in-flight list ---- */

pp__flight_t *pp__flight_at(pp__slot_t *s, size_t i) {
  return &s->fl[(s->fl_head + i) % s->fl_cap];
}

int pp__flight_push(pp__slot_t *s, const pp__flight_t *f) {
  if (s->fl_n == s->fl_cap) {
    size_t cap = s->fl_cap ? 2 * s->fl_cap : 64, i;
    pp__flight_t *fl = pp__malloc(cap * sizeof(*fl));
    if (fl == NULL)
      return PP_ENOMEM;
    for (i = 0; i < s->fl_n; i++)
      fl[i] = *pp__flight_at(s, i);
    free(s->fl);
    s->fl = fl;
    s->fl_cap = cap;
    s->fl_head = 0;
  }
  s->fl[(s->fl_head + s->fl_n) % s->fl_cap] = *f;
  s->fl_n++;
  return 0;
}

static void flight_release(pp__flight_t *f) {
  pp__blob_release(f->arg_shared);
  pp__spare_give(f->arg_copy);
  pp__spare_give(f->hint);
  free(f->refused_why);
  f->arg_copy = NULL;
  f->arg_shared = NULL;
  f->hint = NULL;
  f->refused_why = NULL;
}

void pp__flight_clear(pp__slot_t *s) {
  size_t i;
  for (i = 0; i < s->fl_n; i++)
    flight_release(pp__flight_at(s, i));
  s->fl_n = 0;
}

void pp__flight_pop(pp__slot_t *s) {
  flight_release(pp__flight_at(s, 0));
  s->fl_head = (s->fl_head + 1) % s->fl_cap;
  s->fl_n--;
  /* The next call started about now; deadlines() reads the clock for it
   * when it looks (a clock read per call would cost more than the call). */
  s->head_since = 0;
  s->cancel_deadline = PP__NEVER;
}

/* ---- starting ---- */

static int pool_stopping(pp_pool_t *pool) {
  int stopping;
  pp__mutex_lock(pool->lock);
  stopping = pool->stopping;
  pp__mutex_unlock(pool->lock);
  return stopping;
}

/* Frees what a worker held, after its process has been reaped. */
static void release(pp__slot_t *s) {
  pp_pool_t *pool = s->pool;
  if (s->proc != NULL)
    pp__poller_remove_proc(pool->poller, s->proc);
  pp__chan_close(s->chan);
  pp__chan_close(s->out);
  pp__chan_close(s->err);
  pp__shm_close(s->shm);
  pp__wake_free(s->wake);
  pp__proc_free(s->proc);
  s->chan = s->out = s->err = NULL;
  s->shm = NULL;
  s->wake = NULL;
  s->proc = NULL;
  s->ctl = NULL;
  pp__flight_clear(s);
  memset(&s->maps, 0, sizeof(s->maps));
  s->state = PP__W_NONE;
  s->kill_status = 0;
  s->kill_id = 0;
  pp__mutex_lock(pool->lock);
  s->pid = 0;
  pp__mutex_unlock(pool->lock);
}

void pp__life_wake(pp__slot_t *s) {
  pp_pool_t *pool = s->pool;
  char why[512];
  if (pp__wake_signal(s->wake) == 0)
    return;
  /* The worker would sleep on with calls to run (it looks by itself only
   * every second or so): the pool's descriptors are no longer its own. */
  pp__format(why, sizeof(why), "cannot wake worker %d: %s", s->index,
             pp__os_reason());
  pp__mutex_lock(pool->lock);
  pp__pool_break_locked(pool, PP_EIO, why);
  pp__mutex_unlock(pool->lock);
}

void pp__life_spawn(pp__slot_t *s) {
  pp_pool_t *pool = s->pool;
  char token[128], libarg[4096];
  const char *extra[2] = {NULL, NULL};
  pp__spawn_req_t req;
  pp__spawned_t sp;
  pp__err_t err;
  int rc;

  pp__format(token, sizeof(token), "%s,%d", pool->token_base, s->index);
  if (pool->library != NULL) {
    pp__format(libarg, sizeof(libarg), "%s%s", PP__LIBRARY_ARG, pool->library);
    extra[0] = libarg;
  }
  rc = pp__shm_create(pp__shm_size(pool->ring_size), 0, &s->shm);
  if (rc == 0)
    rc = pp__wake_new(&s->wake);
  if (rc == 0) {
    pp__shm_format(pp__shm_base(s->shm), pool->ring_size);
    /* Bound before the worker exists, so that nothing it writes is
     * missed. */
    s->ctl = pp__shm_base(s->shm);
    pp__ring_bind(&s->calls, s->ctl, 0);
    pp__ring_bind(&s->results, s->ctl, 1);
    req.image = pool->image;
    req.token = token;
    req.extra_args = extra;
    req.inherit_output = pool->inherit_output;
    req.shm = s->shm;
    req.wake_worker = s->wake;
    req.wake_parent = pool->wake;
    memset(&sp, 0, sizeof(sp));
    rc = pp__spawn(&req, &sp);
  }
  if (rc == 0 && sp.note[0] != '\0')
    pp__log_text(pool, s->index, 0, PP_LOG_STDERR, 0, sp.note, strlen(sp.note));
  if (rc == 0) {
    s->proc = sp.proc;
    s->chan = sp.chan;
    s->out = sp.out;
    s->err = sp.err;
    pp__chan_bind_proc(s->chan, s->proc);
    rc = pp__poller_add_proc(pool->poller, s->proc, s);
  }
  if (rc != 0) {
    pp__err_os(&err, rc);
    pp__life_start_failed(s, &err);
    return;
  }
  s->state = PP__W_STARTING;
  s->deadline = pp__deadline_ms(pool->start_timeout_ms);
  s->ran = 0;
  s->fl_n = 0;
  s->cancel_deadline = PP__NEVER;
  pp__mutex_lock(pool->lock);
  s->pid = pp__proc_pid(s->proc);
  pool->stats.workers_started++;
  pp__mutex_unlock(pool->lock);
}

/* Fails every queued call when the pool is hopeless (no slot can start a
 * worker: PP_ESPAWN; or the pool broke), so callers are told at once
 * instead of waiting for a worker that will not come; pool->lock held. */
void pp__pool_fail_queue_locked(pp_pool_t *pool) {
  int failed = 0;
  while (pp__pool_hopeless_locked(pool) && !pp__queue_empty(&pool->pending)) {
    pp__src_t *src =
        pp__queue_data(pp__queue_head(&pool->pending), pp__src_t, link);
    size_t i;
    while (pp__src_take_locked(src, &i)) {
      char *msg;
      int status = pp__pool_hopeless_why_locked(pool, &msg);
      src->inflight--;
      pool->running--;
      pp__src_finish_locked(src, i, status, NULL, 0, msg, 0, 0);
      failed = 1;
    }
  }
  /* Their waiters wake now, not at their own time limit. */
  if (failed)
    pp__cond_broadcast(pool->done_cond);
}

/* The first start of a slot is over once it succeeded, failed for a reason
 * that will not pass (the initializer), or was tried PP__START_TRIES
 * times; pp_pool_create waits for that.  pool->lock held. */
static void first_start_over_locked(pp__slot_t *s, int status,
                                    const char *why) {
  if (s->started)
    return;
  if (status != 0 && status != PP_ETASK && status != PP_ENOTASK &&
      s->spawn_failures < PP__START_TRIES && !s->pool->stopping)
    return;
  s->started = 1;
  s->start_status = status;
  pp__format(s->start_error, sizeof(s->start_error), "%s", why);
  pp__cond_broadcast(s->pool->done_cond);
}

/* Waits for a worker that was killed or has ended, with a bound: one that
 * has not ended PP__REAP_WAIT_MS after its kill (stuck in the kernel, on
 * a dead network file system say) is let go with a log line rather than
 * waited for; s->proc is then NULL and *st says so. */
static void reap(pp__slot_t *s, pp__exit_t *st) {
  pp_pool_t *pool = s->pool;
  char line[256];
  if (pp__proc_wait(s->proc, PP__REAP_WAIT_MS, st) == 0)
    return;
  pp__format(line, sizeof(line),
             "procpool: worker %d (pid %lld) has not ended %d ms after it was "
             "killed; it is left to the system",
             s->index, (long long)pp__proc_pid(s->proc), PP__REAP_WAIT_MS);
  pp__log_text(pool, s->index, 0, PP_LOG_STDERR, 0, line, strlen(line));
  pp__poller_remove_proc(pool->poller, s->proc);
  pp__proc_abandon(s->proc);
  s->proc = NULL;
  memset(st, 0, sizeof(*st));
  st->exit_code = -1;
  st->killed = 1;
  pp__format(st->reason, sizeof(st->reason), "did not end when killed");
}

void pp__life_start_failed(pp__slot_t *s, const pp__err_t *err) {
  pp_pool_t *pool = s->pool;
  pp__exit_t st;
  char last[200] = "";
  char why[512];
  int n, status = err->code, outside = 0, tries;

  pp__format(why, sizeof(why), "%s", err->text);
  if (s->proc != NULL) {
    /* Whether the worker ended by itself is the system's to say (a process
     * that has ended is waited for at once), never the status's: PP_EIO or
     * PP_ENOMEM may be the parent's own failure (epoll_ctl while the
     * worker starts), with the worker alive and waiting for calls.  So it
     * is killed unless it has ended, and waited for with a bound. */
    int died = pp__proc_wait(s->proc, 0, &st) == 0;
    outside = died ? st.outside : 0;
    if (!died) {
      pp__proc_kill(s->proc);
      reap(s, &st);
    }
    /* A worker that died by itself may have said why on stderr (a missing
     * worker guard, a library that would not load). */
    if (s->err != NULL) {
      char buf[4096];
      size_t got, used = 0;
      while (used < sizeof(buf) - 1 && pp__chan_wait(s->err, 0) &&
             pp__chan_read_some(s->err, buf + used, sizeof(buf) - 1 - used,
                                &got) == 0)
        used += got;
      buf[used] = '\0';
      while (used > 0 && (buf[used - 1] == '\n' || buf[used - 1] == '\r'))
        buf[--used] = '\0';
      n = (int)used;
      while (n > 0 && buf[n - 1] != '\n')
        n--;
      pp__format(last, sizeof(last), "%s", buf + n);
    }
    if (died)
      pp__format(why, sizeof(why), "worker %d (%s) %s before it was ready%s%s",
                 s->index, pp__image_path(pool->image), st.reason,
                 last[0] ? "; its last line on stderr: " : "", last);
    else if (status == PP_ETIMEDOUT) {
      /* Say whether it was still running (stuck on a dialog, a debugger
       * prompt, a loader deadlock) or had just ended, and its last
       * words. */
      char first[512];
      pp__format(first, sizeof(first), "%s", why);
      pp__format(why, sizeof(why), "%s (%s)%s%s", first,
                 st.killed ? "it was still running and was killed" : st.reason,
                 last[0] ? "; its last line on stderr: " : "", last);
    }
    if (status == PP_ECLOSED || status == PP_EIO || status == PP_EPROTO ||
        status == PP_ETIMEDOUT)
      status = PP_ESPAWN;
  }
  release(s);
  /* Killed from outside (a kill storm, the OOM killer): the back-off still
   * grows, so that a storm is not met with a start every 50 ms, but the
   * slot does not come closer to being broken.  Where the system cannot
   * tell an outside kill from the program's own exit (Windows), such an
   * end counts as outside once a worker of this pool has been ready (the
   * program is known to start), but only up to PP__SPAWN_GIVE_UP_UNCLEAR
   * in a row: a program replaced by one that cannot serve still ends as
   * a broken slot, later.  Before any worker was ready it counts, so that
   * a program without its worker guard fails pp_pool_create at once. */
  if (outside == PP__EXIT_OUTSIDE) {
    s->outside_kills++;
  } else if (outside == PP__EXIT_MAYBE_OUTSIDE && pool->ever_ready &&
             ++s->unclear_exits < PP__SPAWN_GIVE_UP_UNCLEAR) {
    s->outside_kills++;
  } else {
    s->spawn_failures++;
  }
  tries = s->spawn_failures + s->outside_kills;
  s->deadline = pp__now_us() + ((int64_t)50000 << (tries < 5 ? tries : 5));
  pp__format(s->why, sizeof(s->why), "%s", why);
  pp__mutex_lock(pool->lock);
  if (s->spawn_failures >= PP__SPAWN_GIVE_UP) {
    if (!s->broken) {
      s->broken = 1;
      pool->broken_slots++;
    }
    pp__format(pool->broken_reason, sizeof(pool->broken_reason), "%s", why);
    pp__pool_fail_queue_locked(pool);
  }
  first_start_over_locked(s, status, why);
  pp__mutex_unlock(pool->lock);
}

/* The worker is ready to serve. */
static void ready(pp__slot_t *s) {
  pp_pool_t *pool = s->pool;
  s->state = PP__W_READY;
  s->spawn_failures = 0;
  s->outside_kills = 0;
  s->unclear_exits = 0;
  pool->ever_ready = 1;
  pp__mutex_lock(pool->lock);
  if (s->broken) {
    s->broken = 0;
    pool->broken_slots--;
  }
  first_start_over_locked(s, 0, "");
  pp__mutex_unlock(pool->lock);
}

/* Checks the HELLO payload: cookie, pid, build.  Returns 0 or PP_ESPAWN. */
static int check_hello(pp__slot_t *s, const pp__rec_t *rec, pp__err_t *err) {
  pp_pool_t *pool = s->pool;
  const unsigned char *p = rec->payload, *build;
  static const unsigned char zero[PP__BUILD_ID_LEN];
  if (rec->len != PP__HELLO_LEN)
    return pp__err_set(err, PP_ESPAWN, "worker %d sent a malformed hello",
                       s->index);
  build = p + PP__COOKIE_LEN + 8;
  if (memcmp(p, pool->cookie, PP__COOKIE_LEN) != 0)
    return pp__err_set(err, PP_ESPAWN, "worker %d sent a wrong cookie",
                       s->index);
  if ((int64_t)pp__get_u64(p + PP__COOKIE_LEN) != pp__proc_pid(s->proc))
    return pp__err_set(err, PP_ESPAWN, "worker %d claims another process id",
                       s->index);
  if (pool->build_check == PP__BUILD_ANY ||
      memcmp(build, zero, PP__BUILD_ID_LEN) == 0)
    return 0;
  if (pool->build_check == PP__BUILD_FIRST && !pool->build_known) {
    memcpy(pool->build_id, build, PP__BUILD_ID_LEN);
    pool->build_known = 1;
    return 0;
  }
  if (memcmp(build, pool->build_id, PP__BUILD_ID_LEN) == 0)
    return 0;
  return pp__err_set(
      err, PP_ESPAWN,
      "worker %d (%s%s%s) runs another build of its tasks than the %s (was "
      "the %s replaced on disk while it ran?)",
      s->index, pp__image_path(pool->image), pool->library ? " with " : "",
      pool->library ? pool->library : "",
      pool->build_check == PP__BUILD_PARENT ? "parent" : "pool's first worker",
      pool->library ? "task library" : "program");
}

/* Sends the initializer as record INIT (id 0). */
static int send_init(pp__slot_t *s, pp__err_t *err) {
  pp_pool_t *pool = s->pool;
  size_t name_len = strlen(pool->init_task);
  uint64_t len = pp__call_rec_len(name_len, pool->init_arg_len, 0);
  unsigned char *p;
  if (len > pp__ring_max_payload(&s->calls))
    return pp__err_set(err, PP_EINVAL,
                       "the initializer's argument of %zu bytes "
                       "is larger than a ring record",
                       pool->init_arg_len);
  p = pp__ring_begin(&s->calls, PP__REC_INIT, 0, 0, len);
  if (p == NULL)
    return pp__err_set(err, PP_EPROTO, "no room for the initializer");
  pp__call_rec_put(p, pool->init_task, name_len, pool->init_arg,
                   pool->init_arg_len, NULL);
  if (pp__ring_commit(&s->calls))
    pp__life_wake(s);
  return 0;
}

void pp__life_start_record(pp__slot_t *s, const pp__rec_t *rec) {
  pp_pool_t *pool = s->pool;
  pp__err_t err;
  int rc;
  /* No record of a start is taken further than this: a blob in one (a
   * large result of the initializer) is let go. */
  pp__record_drop(rec);
  if (s->state == PP__W_STARTING) {
    rc = rec->kind == PP__REC_HELLO
             ? check_hello(s, rec, &err)
             : pp__err_set(&err, PP_ESPAWN,
                           "worker %d's first record is not "
                           "its hello",
                           s->index);
    if (rc == 0 && pool->init_task == NULL) {
      ready(s);
      return;
    }
    if (rc == 0)
      rc = send_init(s, &err);
    if (rc != 0) {
      pp__life_start_failed(s, &err);
      return;
    }
    s->state = PP__W_INIT;
    s->deadline = PP__NEVER; /* the initializer takes what it takes */
    return;
  }
  /* PP__W_INIT: the initializer's outcome. */
  if (rec->id != 0 ||
      (rec->kind != PP__REC_RESULT && rec->kind != PP__REC_ERROR)) {
    pp__err_set(&err, PP_ESPAWN,
                "unexpected record %d from worker %d in "
                "start-up",
                rec->kind, s->index);
    pp__life_start_failed(s, &err);
    return;
  }
  if (rec->kind == PP__REC_ERROR) {
    int32_t status = PP_ETASK;
    if (rec->len >= 4)
      memcpy(&status, rec->payload, 4);
    pp__err_set(&err, PP_ETASK, "initializer '%s' failed in worker %d: %.*s",
                pool->init_task, s->index,
                (int)(rec->len >= 4 ? rec->len - 4 : 0),
                (const char *)rec->payload + 4);
    pp__life_start_failed(s, &err);
    return;
  }
  ready(s);
}

/* ---- the end ---- */

void pp__life_retire(pp__slot_t *s) {
  if (pp__ring_begin(&s->calls, PP__REC_BYE, 0, 0, 0) == NULL)
    return; /* No room: the next round tries again. */
  if (pp__ring_commit(&s->calls))
    pp__life_wake(s);
  s->state = PP__W_RETIRING;
  s->deadline = pp__deadline_ms(PP__RETIRE_WAIT_MS);
}

/* Reads what a dead worker left in its pipes and delivers it, under the call
 * that was running, then the last partial lines. */
static void deliver_leftovers(pp__slot_t *s, uint64_t running) {
  pp__chan_t *chans[2];
  char buf[16384];
  int i;
  chans[0] = s->out;
  chans[1] = s->err;
  for (i = 0; i < 2; i++) {
    size_t got, total = 0;
    if (chans[i] == NULL)
      continue;
    while (total < PP__LEFTOVER_MAX && pp__chan_wait(chans[i], 0) &&
           pp__chan_read_some(chans[i], buf, sizeof(buf), &got) == 0) {
      pp__lines_feed(s->pool, &s->lines[i], s->index,
                     i == 0 ? PP_LOG_STDOUT : PP_LOG_STDERR, running, buf, got);
      total += got;
    }
    pp__lines_end(s->pool, s->lines[i]);
    s->lines[i] = NULL;
  }
}

/* Returns 1 if the worker may have started call `f` before it ended, so
 * that running it again could run it twice.  The worker writes the call's
 * id into running_id and then sets STARTED in the record's state word
 * (worker.c) before it runs a task; either sign counts, and so does a
 * record that no longer holds the call (the worker gave its room back
 * after it ran it, or scribbled over it).  Which call the pool killed the
 * worker for says nothing here: a call that finished just as its timeout
 * fired leaves the worker in the next one.  A call whose argument could
 * not be handed over (refused: often because this very worker was dying)
 * is asked the same: unless the worker had begun to set it up, it runs
 * elsewhere. */
static int flight_started(pp__slot_t *s, const pp__flight_t *f,
                          uint64_t running) {
  return running == f->id || pp__ring_started(&s->calls, f->rec, f->id);
}

/* Fails call `f`, which the worker had started (flight_started), with the
 * reason the worker ended, and marks it so that it is not given back;
 * pool->lock held. */
static void fail_started_locked(pp__slot_t *s, pp__flight_t *f, int status,
                                const char *why, const pp__exit_t *st) {
  pp_pool_t *pool = s->pool;
  pp__src_t *src = f->src;
  int code = PP_EWORKERDIED;
  char *msg;
  const char *task = src->task;
  int64_t pid = s->pid; /* s->proc may be gone (reap) */
  if (f->refused) {
    code = f->refused;
    msg = pp__strdup_printf("%s", f->refused_why ? f->refused_why : "refused");
  } else if (s->kill_status == PP_ETIMEDOUT && s->kill_id == f->id) {
    code = PP_ETIMEDOUT;
    msg =
        pp__strdup_printf("call %llu of '%s' ran past its timeout of "
                          "%lld ms; worker %d (pid %lld) was killed",
                          (unsigned long long)f->id, task,
                          (long long)src->timeout_ms, s->index, (long long)pid);
  } else if (src->cancel || f->cancelled) {
    code = PP_ECANCELED;
    msg = pp__strdup_printf("call %llu of '%s' was cancelled; worker %d "
                            "(pid %lld) %s",
                            (unsigned long long)f->id, task, s->index,
                            (long long)pid, st->reason);
  } else if (status == PP_EPROTO || status == PP_ENOMEM) {
    code = status;
    msg = pp__strdup_printf("worker %d (pid %lld): %s; call %llu of '%s' had "
                            "started on it",
                            s->index, (long long)pid, why,
                            (unsigned long long)f->id, task);
  } else if (pool->fatal != 0) {
    code = pool->fatal;
    msg = pp__strdup_printf("call %llu of '%s' had started on worker %d (pid "
                            "%lld) when the pool broke: %s",
                            (unsigned long long)f->id, task, s->index,
                            (long long)pid, pool->fatal_why);
  } else if (s->kill_status != 0 && s->kill_id != f->id) {
    /* The call the pool killed the worker for had just finished, and the
     * worker had moved on to this one. */
    msg = pp__strdup_printf("worker %d (pid %lld) was killed for call %llu "
                            "(%s), which finished just then, while it ran "
                            "call %llu of '%s'",
                            s->index, (long long)pid,
                            (unsigned long long)s->kill_id,
                            s->kill_status == PP_ETIMEDOUT   ? "its timeout"
                            : s->kill_status == PP_ECANCELED ? "its cancel"
                                                             : "the pool's end",
                            (unsigned long long)f->id, task);
  } else {
    msg = pp__strdup_printf("worker %d (pid %lld) %s during call %llu of "
                            "'%s'",
                            s->index, (long long)pid, st->reason,
                            (unsigned long long)f->id, task);
  }
  src->inflight--;
  pool->running--;
  pp__src_finish_locked(src, f->index, code, NULL, 0, msg,
                        code == PP_EWORKERDIED ? st->exit_code : 0,
                        code == PP_EWORKERDIED ? st->term_signal : 0);
  /* Its source may be gone now: the flight only waits to be cleared. */
  f->withdrawn = 1;
  f->src = NULL;
}

void pp__life_bury(pp__slot_t *s, int status, const char *why) {
  pp_pool_t *pool = s->pool;
  pp__outcome_t *outs = NULL;
  size_t nouts = 0, capouts = 0, i;
  uint64_t running;
  pp__exit_t st;
  pp__rec_t rec;
  pp__err_t err; /* a broken record ends the salvage; the reason is moot */
  int rc, died = 0;

  /* Ended (the poller said so), or killed just now: a worker that does
   * not end even then is let go (reap), so a pid of the pool's remains
   * only when the system could not end it. */
  if (status != 0)
    pp__proc_kill(s->proc);
  reap(s, &st);
  /* What the worker finished before it ended is in the ring: keep it. */
  while (status == 0 && s->fl_n > 0 &&
         (rc = pp__ring_next(&s->results, &rec, &err)) == 1) {
    pp__flight_t *f = pp__flight_at(s, 0);
    if (pp__record_side(s, &rec))
      continue;
    if (rec.id != f->id) {
      pp__record_drop(&rec);
      break; /* a broken ring; what follows is not trusted */
    }
    pp__lines_call_end(pool, s->lines[0], rec.id);
    pp__lines_call_end(pool, s->lines[1], rec.id);
    if (nouts == capouts) {
      size_t cap = capouts ? 2 * capouts : 16;
      pp__outcome_t *o = pp__realloc(outs, cap * sizeof(*o));
      if (o == NULL) {
        pp__record_drop(&rec);
        break;
      }
      outs = o;
      capouts = cap;
    }
    if (pp__record_outcome(s, &rec, f, &outs[nouts], &err) != 0)
      break;
    if (f->withdrawn)
      pp__outcome_drop(&outs[nouts]); /* another worker's call now */
    else
      nouts++;
    pp__flight_pop(s);
  }
  /* Blobs in the records left unread, and the one the worker may have
   * handed over without publishing its record, would stay in this
   * process for good on Windows (pp__shm_drop).  Only their tags are
   * believed, so a broken ring does no harm here. */
  while (pp__ring_next(&s->results, &rec, &err) == 1)
    pp__record_drop(&rec);
  pp__record_drop_last(s);
  running = PP__LOAD_ACQ64(&s->ctl->running_id);
  deliver_leftovers(s, running);

  pp__mutex_lock(pool->lock);
  for (i = 0; i < nouts; i++) {
    pp__src_t *src = outs[i].f.src;
    src->inflight--;
    pool->running--;
    pp__src_finish_locked(src, outs[i].f.index, outs[i].status, outs[i].data,
                          outs[i].len, outs[i].message, 0, 0);
  }
  /* Calls taken back before they started are other workers' now; every
   * other call left either started on this worker, and fails with the
   * reason it ended, or never started, and goes back to its source. */
  for (i = 0; i < s->fl_n; i++) {
    pp__flight_t *f = pp__flight_at(s, i);
    if (f->withdrawn)
      continue;
    /* A worker that broke the protocol is not believed about which call
     * it ran: the oldest one fails, as documented (design.md, 4). */
    if (flight_started(s, f, running) || (status != 0 && !died)) {
      fail_started_locked(s, f, status, why, &st);
      died = 1;
    }
  }
  if (died)
    pool->stats.workers_died++;
  /* The rest never started: back to their sources, newest first, so that
   * each source hands them out again in their order. */
  for (i = s->fl_n; i-- > 0;) {
    pp__flight_t *f = pp__flight_at(s, i);
    if (!f->withdrawn && f->src != NULL)
      pp__src_give_back_locked(f->src, f->index);
  }
  pp__flight_clear(s);
  pp__cond_broadcast(pool->done_cond);
  pp__mutex_unlock(pool->lock);
  free(outs);
  release(s);
  /* A replacement starts at once (loop.c), unless the pool stops. */
  s->deadline = pool_stopping(pool) ? PP__NEVER : pp__now_us();
}
