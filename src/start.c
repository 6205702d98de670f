/*
 * start.c - starting a slot's worker: spawn, handshake, initializer.
 *
 * A worker is ready when its first frame has carried the pool's cookie, its
 * own process id (so a process that is not the worker the pool started
 * cannot take its place) and the build id of its task table (so a worker
 * whose program was replaced on disk by another build is refused instead of
 * serving calls it was not built for), and the pool's initializer, if any,
 * has run in it.
 *
 * Every wait here has a way out: the HELLO must come within the pool's start
 * timeout, and a pool that is being destroyed ends the wait (for the HELLO
 * or the initializer) by aborting the channel (pool_stop).  A worker that
 * dies is seen at once, since the channel is bound to its process.
 */
#include <stdlib.h>
#include <string.h>

#include "internal.h"

static int pool_stopping(pp_pool_t *pool) {
  int stopping;
  pp__mutex_lock(pool->lock);
  stopping = pool->stopping;
  pp__mutex_unlock(pool->lock);
  return stopping;
}

/* Waits until a frame can be read without blocking, the deadline passes
 * (PP_ETIMEDOUT) or the pool stops (PP_ECANCELED). */
static int await_frame(pp__slot_t *s, int64_t deadline) {
  for (;;) {
    int64_t left = pp__us_left(deadline);
    if (s->rd->pos < s->rd->len)
      return 0;
    if (pp__chan_wait(s->chan, left > 100000 ? 100 : (left + 999) / 1000))
      return 0;
    if (pool_stopping(s->pool))
      return pp__set_error(PP_ECANCELED, "the pool is being destroyed");
    if (deadline != PP__NEVER && pp__now_us() >= deadline)
      return PP_ETIMEDOUT;
  }
}

/* Reads frames until the reply of `id`; LOG frames are delivered on the way.
 * Used for the initializer.  Returns 0 or PP_ETASK with the task's message,
 * or a channel error. */
static int read_init_reply(pp__slot_t *s, uint64_t id) {
  pp__frame_t fr;
  void *payload = NULL;
  int err, status;
  char *msg = NULL;

  for (;;) {
    err = await_frame(s, PP__NEVER);
    if (err == 0)
      err = pp__wire_recv_header(s->rd, &fr);
    if (err)
      return err;
    err = pp__wire_recv_payload(s->rd, &fr, &payload);
    if (err)
      return err;
    if (fr.type == PP__FRAME_LOG) {
      pp__log_frame(s->pool, s->index, &fr, payload);
      free(payload);
      continue;
    }
    if (fr.id != id ||
        (fr.type != PP__FRAME_RESULT && fr.type != PP__FRAME_ERROR)) {
      free(payload);
      return pp__set_error(PP_EPROTO, "unexpected frame type %d in start-up",
                           fr.type);
    }
    if (fr.type == PP__FRAME_RESULT) {
      free(payload);
      return 0;
    }
    err = pp__wire_parse_error(payload, fr.len, &status, &msg);
    free(payload);
    if (err)
      return err;
    err = pp__set_error(status, "initializer '%s' failed in worker %d: %s",
                        s->pool->init_task, s->index, msg);
    free(msg);
    return err;
  }
}

/* Checks the HELLO payload: cookie, pid, build.  Returns 0 or PP_ESPAWN. */
static int check_hello(pp__slot_t *s, const unsigned char *p) {
  pp_pool_t *pool = s->pool;
  const unsigned char *build = p + PP__COOKIE_LEN + 8;
  static const unsigned char zero[PP__BUILD_ID_LEN];
  int rc = 0;
  if (memcmp(p, pool->cookie, PP__COOKIE_LEN) != 0)
    return pp__set_error(PP_ESPAWN, "worker %d sent a wrong cookie", s->index);
  if ((int64_t)pp__get_u64(p + PP__COOKIE_LEN) != s->pid)
    return pp__set_error(PP_ESPAWN, "worker %d claims another process id",
                         s->index);
  pp__drain_set_key(s->out, pp__get_u64(build + PP__BUILD_ID_LEN));
  pp__drain_set_key(s->err, pp__get_u64(build + PP__BUILD_ID_LEN));
  if (pool->build_check == PP__BUILD_ANY ||
      memcmp(build, zero, PP__BUILD_ID_LEN) == 0)
    return 0;
  pp__mutex_lock(pool->lock);
  if (pool->build_check == PP__BUILD_FIRST && !pool->build_known) {
    memcpy(pool->build_id, build, PP__BUILD_ID_LEN);
    pool->build_known = 1;
  } else if (memcmp(build, pool->build_id, PP__BUILD_ID_LEN) != 0) {
    rc = pp__set_error(
        PP_ESPAWN,
        "worker %d (%s%s%s) runs another build of its tasks than the %s "
        "(was the %s replaced on disk while it ran?)",
        s->index, pp__image_path(pool->image),
        pool->library ? " with " : "", pool->library ? pool->library : "",
        pool->build_check == PP__BUILD_PARENT ? "parent" : "pool's first worker",
        pool->library ? "task library" : "program");
  }
  pp__mutex_unlock(pool->lock);
  return rc;
}

/* Reads the HELLO within the pool's start timeout. */
static int read_hello(pp__slot_t *s) {
  pp_pool_t *pool = s->pool;
  int64_t deadline = pp__deadline_ms(pool->start_timeout_ms);
  pp__frame_t fr;
  void *payload = NULL;
  int rc = await_frame(s, deadline);
  if (rc == PP_ETIMEDOUT) {
    /* Say whether it was still running (stuck on a dialog, a debugger
     * prompt, a loader deadlock) or had just ended, and its last words. */
    char last[200];
    pp__exit_t st;
    pp__slot_reap(s, 1, &st, last, sizeof(last));
    return pp__set_error(PP_ETIMEDOUT, "worker %d (%s) did not say hello "
                         "within %lld ms (%s)%s%s", s->index,
                         pp__image_path(pool->image),
                         (long long)pool->start_timeout_ms,
                         st.killed ? "it was still running and was killed"
                                   : st.reason,
                         last[0] ? "; its last line on stderr: " : "", last);
  }
  if (rc == 0)
    rc = pp__wire_recv_header(s->rd, &fr);
  if (rc == 0 && fr.type != PP__FRAME_HELLO)
    rc = pp__set_error(PP_EPROTO, "worker's first frame is not HELLO");
  if (rc == 0)
    rc = pp__wire_recv_payload(s->rd, &fr, &payload);
  if (rc == 0)
    rc = check_hello(s, payload);
  free(payload);
  return rc;
}

/* Starts the drains of a captured worker's stdout and stderr. */
static int start_drains(pp__slot_t *s, pp__chan_t *out, pp__chan_t *err) {
  int rc;
  if (out == NULL)
    return 0;
  rc = pp__drain_start(s->pool, s->index, PP_LOG_STDOUT, out, &s->out);
  if (rc == 0)
    rc = pp__drain_start(s->pool, s->index, PP_LOG_STDERR, err, &s->err);
  else
    pp__chan_close(err);
  return rc;
}

/* Starts a worker, checks its hello and runs the initializer. */
int pp__slot_spawn(pp__slot_t *s) {
  pp_pool_t *pool = s->pool;
  char token[128];
  char libarg[4096];
  char last[200];
  const char *extra[2] = {NULL, NULL};
  pp__spawn_req_t req;
  pp__proc_t *proc = NULL;
  pp__chan_t *chan = NULL, *out = NULL, *err = NULL;
  pp__exit_t st;
  int rc;

  pp__format(token, sizeof(token), "%s,%d", pool->token_base, s->index);
  if (pool->library != NULL) {
    pp__format(libarg, sizeof(libarg), "%s%s", PP__LIBRARY_ARG, pool->library);
    extra[0] = libarg;
  }
  req.image = pool->image;
  req.token = token;
  req.extra_args = extra;
  req.inherit_output = pool->inherit_output;
  rc = pp__spawn(&req, &proc, &chan, &out, &err);
  if (rc != 0)
    return rc;
  pp__chan_bind_proc(chan, proc);
  pp__slot_publish(s, proc, chan);
  pp__reader_init(s->rd, chan);
  rc = start_drains(s, out, err);
  if (rc != 0)
    goto cleanup;

  pp__mutex_lock(pool->lock);
  s->calls = 0;
  pool->stats.workers_started++;
  pp__mutex_unlock(pool->lock);

  rc = read_hello(s);
  if ((rc == PP_ECLOSED || rc == PP_EIO) && !pool_stopping(pool)) {
    pp__slot_reap(s, 0, &st, last, sizeof(last));
    return pp__set_error(PP_ESPAWN, "worker %d (%s) %s before it was ready%s%s",
                         s->index, pp__image_path(pool->image), st.reason,
                         last[0] ? "; its last line on stderr: " : "", last);
  }
  if (rc == 0 && pool->init_task != NULL) {
    unsigned char prefix[2 + PP__NAME_MAX];
    size_t plen = pp__wire_call_prefix(prefix, pool->init_task);
    pp__mutex_lock(s->wlock);
    rc = pp__wire_send(chan, PP__FRAME_INIT, 0, prefix, plen, pool->init_arg,
                       pool->init_arg_len, NULL, 0);
    pp__mutex_unlock(s->wlock);
    if (rc == 0)
      rc = read_init_reply(s, 0);
    if ((rc == PP_ECLOSED || rc == PP_EIO) && !pool_stopping(pool)) {
      pp__slot_reap(s, 0, &st, last, sizeof(last));
      return pp__set_error(PP_ETASK, "worker %d %s while running initializer "
                           "'%s'%s%s", s->index, st.reason, pool->init_task,
                           last[0] ? "; its last line on stderr: " : "", last);
    }
  }

cleanup:
  if (rc != 0) {
    int saved = rc;
    char msg[512];
    pp__format(msg, sizeof(msg), "%s", pp_last_error());
    pp__slot_reap(s, 1, &st, NULL, 0);
    rc = pp__set_error(saved == PP_EPROTO || saved == PP_ETIMEDOUT ? PP_ESPAWN
                                                                   : saved,
                       "%s", msg);
  }
  return rc;
}
