/*
 * start.c - starting a slot's worker: spawn, handshake, initializer.
 *
 * A worker is ready when its first frame has carried the pool's cookie and
 * its own process id (so a process that is not the worker the pool started
 * cannot take its place) and the pool's initializer, if any, has run in it.
 */
#include <stdlib.h>
#include <string.h>

#include "internal.h"

/* Reads frames until the reply of `id`; LOG frames are delivered on the way.
 * Used for the initializer.  Returns 0 or PP_ETASK with the task's message,
 * or a channel error. */
static int read_init_reply(pp__slot_t *s, uint64_t id) {
  pp__frame_t fr;
  void *payload = NULL;
  int err, status;
  char *msg = NULL;

  for (;;) {
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

/* Starts a worker, checks its hello and runs the initializer. */
int pp__slot_spawn(pp__slot_t *s) {
  pp_pool_t *pool = s->pool;
  char token[128];
  char libarg[4096];
  const char *extra[2] = {NULL, NULL};
  pp__spawn_req_t req;
  pp__chan_t *chan = NULL, *out = NULL, *err = NULL;
  pp__frame_t fr;
  void *payload = NULL;
  pp__exit_t st;
  int rc;

  pp__format(token, sizeof(token), "%s,%d", pool->token_base, s->index);
  if (pool->library != NULL) {
    pp__format(libarg, sizeof(libarg), "%s%s", PP__LIBRARY_ARG, pool->library);
    extra[0] = libarg;
  }
  req.exe = pool->exe;
  req.token = token;
  req.extra_args = extra;
  req.inherit_output = pool->inherit_output;
  rc = pp__spawn(&req, &s->proc, &chan, &out, &err);
  if (rc != 0)
    return rc;

  apr_thread_mutex_lock(s->wlock);
  s->chan = chan;
  apr_thread_mutex_unlock(s->wlock);
  pp__reader_init(s->rd, chan);
  if (out != NULL) {
    rc = pp__drain_start(pool, s->index, PP_LOG_STDOUT, out, &s->out);
    if (rc == 0)
      rc = pp__drain_start(pool, s->index, PP_LOG_STDERR, err, &s->err);
    else
      pp__chan_close(err);
  }
  if (rc != 0)
    goto cleanup;

  apr_thread_mutex_lock(pool->lock);
  s->pid = pp__proc_pid(s->proc);
  s->calls = 0;
  pool->stats.workers_started++;
  apr_thread_mutex_unlock(pool->lock);

  /* The worker's first frame must carry the pool's cookie and its own pid:
   * a process that is not the worker we started is refused. */
  rc = pp__wire_recv_header(s->rd, &fr);
  if (rc == 0 && fr.type != PP__FRAME_HELLO)
    rc = pp__set_error(PP_EPROTO, "worker's first frame is not HELLO");
  if (rc == 0)
    rc = pp__wire_recv_payload(s->rd, &fr, &payload);
  if (rc == 0 && memcmp(payload, pool->cookie, PP__COOKIE_LEN) != 0)
    rc = pp__set_error(PP_ESPAWN, "worker %d sent a wrong cookie", s->index);
  if (rc == 0 && (int64_t)pp__get_u64((unsigned char *)payload +
                                      PP__COOKIE_LEN) != s->pid)
    rc = pp__set_error(PP_ESPAWN, "worker %d claims another process id",
                       s->index);
  free(payload);
  if (rc == PP_ECLOSED || rc == PP_EIO) {
    pp__slot_reap(s, 0, &st);
    return pp__set_error(PP_ESPAWN, "worker %d (%s) %s before it was ready",
                         s->index, pool->exe, st.reason);
  }
  if (rc == 0 && pool->init_task != NULL) {
    unsigned char prefix[2 + PP__NAME_MAX];
    size_t plen = pp__wire_call_prefix(prefix, pool->init_task);
    apr_thread_mutex_lock(s->wlock);
    rc = pp__wire_send(chan, PP__FRAME_INIT, 0, prefix, plen, pool->init_arg,
                       pool->init_arg_len, NULL, 0);
    apr_thread_mutex_unlock(s->wlock);
    if (rc == 0)
      rc = read_init_reply(s, 0);
    if (rc == PP_ECLOSED || rc == PP_EIO) {
      pp__slot_reap(s, 0, &st);
      return pp__set_error(PP_ETASK, "worker %d %s while running initializer "
                           "'%s'", s->index, st.reason, pool->init_task);
    }
  }

cleanup:
  if (rc != 0) {
    int saved = rc;
    char msg[512];
    pp__format(msg, sizeof(msg), "%s", pp_last_error());
    pp__slot_reap(s, 1, &st);
    rc = pp__set_error(saved == PP_EPROTO ? PP_ESPAWN : saved, "%s", msg);
  }
  return rc;
}

