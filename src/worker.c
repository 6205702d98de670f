/*
 * worker.c - pp_worker_main(): the worker side of a pool.
 *
 * A worker has two threads.  The reader takes every frame from the parent:
 * calls go into a small queue, CANCEL marks a call, BYE ends the queue, and
 * the end of the channel means the parent is gone, so the worker exits at
 * once, even in the middle of a task (no orphans).  The main thread runs the
 * queued calls one after another and sends each reply; pp_log() from any
 * thread sends LOG frames under the same write lock.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <apr_atomic.h>
#include <apr_general.h>
#include <apr_time.h>

#include "internal.h"

typedef struct job_s {
  int type;
  uint64_t id;
  unsigned char *payload;
  uint64_t len;
  int cancelled;
  struct job_s *next;
} job_t;

/* The state of this process as a worker; index < 0 in a parent. */
static struct {
  int index;
  int depth;
  pp__chan_t *chan;
  apr_pool_t *mem;
  pp__mutex_t *wlock;  /* serializes writes to chan */
  pp__mutex_t *rlock;  /* the right to read chan */
  pp__mutex_t *lock;   /* the fields below */
  pp__cond_t *wcond;   /* the watcher waits for a running task */
  job_t *head, *tail;
  int bye;                    /* BYE arrived: run what is queued, then end */
  int running;                /* the main thread runs a task */
  int watcher_idle;           /* the watcher waits on wcond */
  int exiting;                /* the watcher must end */
  volatile apr_uint32_t current_cancelled;
  volatile apr_uint64_t current_id;
  const pp_task_t *tasks;
  int mark_output;
  uint64_t mark_key;          /* random; proves a marker is ours */
} W = {.index = -1, .mark_output = 1};

/* Frames are read through this buffer by whichever thread holds W.rlock. */
static pp__reader_t reader;

int pp__worker_depth(void) {
  return W.depth;
}

int pp_worker_index(void) {
  return W.index;
}

int pp_call_cancelled(void) {
  return W.chan != NULL && apr_atomic_read32(&W.current_cancelled) != 0;
}

int pp__worker_log(int level, const char *text, size_t len) {
  unsigned char lv[4];
  int rc;
  if (W.chan == NULL)
    return -1;
  if (len > PP__MSG_MAX)
    len = PP__MSG_MAX;
  pp__put_u32(lv, (uint32_t)level);
  pp__mutex_lock(W.wlock);
  rc = pp__wire_send(W.chan, PP__FRAME_LOG, W.current_id, lv, 4, text, len,
                     NULL, 0);
  pp__mutex_unlock(W.wlock);
  return rc == 0 ? 0 : -1;
}

/* Exits at once: the parent is gone or spoke nonsense.  pp__exit_now skips
 * the application's atexit handlers, which may wait for work that will
 * never come. */
static void worker_abort(const char *why, int code) {
  fprintf(stderr, "procpool worker %d: %s\n", W.index, why);
  fflush(stderr);
  pp__exit_now(code);
}

/* Reads one frame and acts on it: a call joins the queue, CANCEL marks a
 * call, BYE ends the queue.  The caller holds W.rlock.  Returns 1 after BYE,
 * else 0; the end of the channel exits the worker at once. */
static int read_one(void) {
  pp__frame_t fr;
  job_t *job;
  int rc;

  rc = pp__wire_recv_header(&reader, &fr);
  if (rc == PP_ECLOSED)
    pp__exit_now(0); /* The parent has gone: nobody wants our results. */
  if (rc == 0 && fr.type != PP__FRAME_CALL && fr.type != PP__FRAME_INIT &&
      fr.type != PP__FRAME_CANCEL && fr.type != PP__FRAME_BYE)
    rc = pp__set_error(PP_EPROTO, "unexpected frame type %d", fr.type);
  if (rc)
    worker_abort(pp_last_error(), 70);
  if (fr.type == PP__FRAME_BYE) {
    pp__mutex_lock(W.lock);
    W.bye = 1;
    pp__mutex_unlock(W.lock);
    return 1;
  }
  if (fr.type == PP__FRAME_CANCEL) {
    pp__mutex_lock(W.lock);
    if (apr_atomic_read64(&W.current_id) == fr.id)
      apr_atomic_set32(&W.current_cancelled, 1);
    for (job = W.head; job != NULL; job = job->next)
      if (job->id == fr.id)
        job->cancelled = 1;
    pp__mutex_unlock(W.lock);
    return 0;
  }
  job = calloc(1, sizeof(*job));
  if (job == NULL)
    worker_abort("out of memory", 71);
  job->type = fr.type;
  job->id = fr.id;
  job->len = fr.len;
  rc = pp__wire_recv_payload(&reader, &fr, (void **)&job->payload);
  if (rc == PP_ECLOSED)
    pp__exit_now(0);
  if (rc)
    worker_abort(pp_last_error(), 71);
  pp__mutex_lock(W.lock);
  if (W.tail)
    W.tail->next = job;
  else
    W.head = job;
  W.tail = job;
  pp__mutex_unlock(W.lock);
  return 0;
}

/* The watcher reads the channel while a task runs, so a CANCEL, the next
 * pipelined calls and the end of the channel (the parent died) are seen at
 * once.  While no task runs the main thread reads the channel itself, which
 * saves a thread hand-off on every call's critical path.  W.rlock gives one
 * thread at a time the right to read. */
static void *APR_THREAD_FUNC watcher_main(apr_thread_t *thread, void *data) {
  int running, ready;
  (void)data;
  pp__mutex_lock(W.lock);
  for (;;) {
    while (!W.running && !W.exiting) {
      W.watcher_idle = 1;
      pp__cond_wait(W.wcond, W.lock);
    }
    W.watcher_idle = 0;
    if (W.exiting)
      break;
    pp__mutex_unlock(W.lock);
    /* Buffered bytes count as ready: the channel alone would not show them. */
    pp__mutex_lock(W.rlock);
    ready = reader.pos < reader.len;
    pp__mutex_unlock(W.rlock);
    if (!ready)
      ready = pp__chan_wait(W.chan, 100) != 0;
    if (ready) {
      pp__mutex_lock(W.rlock);
      pp__mutex_lock(W.lock);
      running = W.running;
      pp__mutex_unlock(W.lock);
      /* The main thread may have finished and read what was there; check
       * again, without waiting, before a read that could block. */
      if (running && (reader.pos < reader.len || pp__chan_wait(W.chan, 0) != 0))
        read_one();
      pp__mutex_unlock(W.rlock);
    }
    pp__mutex_lock(W.lock);
  }
  pp__mutex_unlock(W.lock);
  /* Returned, not apr_thread_exit(): see pp__slot_main. */
  (void)thread;
  return NULL;
}

/* Writes the call marker to stdout and stderr (see output.c), after what
 * earlier calls wrote. */
static void mark_streams(uint64_t id) {
  char mark[PP__MARK_LEN + 1];
  mark[0] = '\0';
  snprintf(mark + 1, sizeof(mark) - 1, "PP%016llx%016llx\n",
           (unsigned long long)id, (unsigned long long)W.mark_key);
  fflush(stdout);
  fwrite(mark, 1, PP__MARK_LEN, stdout);
  fflush(stdout);
  fwrite(mark, 1, PP__MARK_LEN, stderr);
  fflush(stderr);
}

static int send_reply(uint64_t id, int status, pp_call_t *call) {
  unsigned char st[4];
  const char *msg;
  size_t len;
  int rc;
  pp__mutex_lock(W.wlock);
  if (status == 0) {
    rc = pp__wire_send(W.chan, PP__FRAME_RESULT, id, call->reply,
                       call->reply_len, NULL, 0, NULL, 0);
  } else {
    msg = call->fail_message ? call->fail_message : pp_last_error();
    len = strlen(msg);
    if (len > PP__MSG_MAX)
      len = PP__MSG_MAX;
    pp__put_u32(st, (uint32_t)status);
    rc = pp__wire_send(W.chan, PP__FRAME_ERROR, id, st, 4, msg, len, NULL, 0);
  }
  pp__mutex_unlock(W.wlock);
  return rc;
}

static void run_job(job_t *job) {
  char name[PP__NAME_MAX + 1];
  const pp_task_t *task;
  pp_call_t call;
  size_t off;
  int status;

  memset(&call, 0, sizeof(call));
  call.id = job->id;
  status = pp__wire_split_call(job->payload, job->len, name, sizeof(name),
                               &off);
  if (status)
    worker_abort(pp_last_error(), 70);
  task = pp__task_find(W.tasks, name);
  if (task == NULL) {
    /* The parent checks names at submit, so this means the parent and the
     * worker were built from different tables. */
    status = pp__set_error(PP_ENOTASK, "worker %d has no task named '%s'",
                           W.index, name);
  } else if (job->cancelled) {
    status = pp__set_error(PP_ECANCELED, "call %llu cancelled before it ran",
                           (unsigned long long)job->id);
  } else {
    apr_atomic_set64(&W.current_id, job->id);
    if (W.mark_output)
      mark_streams(job->id);
    status = pp__call_run(task, &call, job->payload + off, job->len - off);
    fflush(stdout);
    fflush(stderr);
  }
  free(job->payload);
  job->payload = NULL;
  if (send_reply(job->id, status, &call) != 0)
    pp__exit_now(0);
  pp__mutex_lock(W.lock);
  apr_atomic_set64(&W.current_id, 0);
  apr_atomic_set32(&W.current_cancelled, 0);
  W.running = 0;
  pp__mutex_unlock(W.lock);
  pp__call_clear(&call);
}

/* Parses "<spec>:<cookie hex>,<parent pid>,<depth>,<inherit output>,<index>". */
static int parse_arg(const char *arg, char *spec, size_t spec_cap,
                     unsigned char *cookie, int64_t *ppid) {
  const char *colon = strrchr(arg, ':');
  char hex[2 * PP__COOKIE_LEN + 1];
  long long pid;
  int depth, inherit, index, i;
  if (colon == NULL || (size_t)(colon - arg) >= spec_cap)
    return -1;
  memcpy(spec, arg, (size_t)(colon - arg));
  spec[colon - arg] = '\0';
  if (sscanf(colon + 1, "%32[0-9a-f],%lld,%d,%d,%d", hex, &pid, &depth,
             &inherit, &index) != 5 ||
      strlen(hex) != 2 * PP__COOKIE_LEN || depth < 1 || index < 0)
    return -1;
  /* With inherited output nobody reads call markers. */
  W.mark_output = inherit == 0;
  for (i = 0; i < PP__COOKIE_LEN; i++) {
    unsigned v;
    sscanf(hex + 2 * i, "%2x", &v);
    cookie[i] = (unsigned char)v;
  }
  *ppid = pid;
  W.depth = depth;
  W.index = index;
  return 0;
}

static void wait_for_debugger(void) {
  const char *v = getenv("PROCPOOL_WAIT_DEBUGGER");
  int i;
  if (v == NULL || v[0] == '\0' || strcmp(v, "0") == 0)
    return;
  fprintf(stderr,
          "procpool worker %d: pid %lld waiting for a debugger "
          "(e.g. gdb -p %lld)\n",
          W.index, (long long)pp__self_pid(), (long long)pp__self_pid());
  fflush(stderr);
  for (i = 0; i < 3000 && !pp__debugger_attached(); i++)
    apr_sleep(apr_time_from_msec(100));
}

static int serve(const unsigned char *cookie) {
  unsigned char hello[PP__HELLO_LEN];
  unsigned char key[8];
  apr_thread_t *watcher = NULL;
  apr_status_t rv;

  if (apr_pool_create(&W.mem, NULL) != APR_SUCCESS ||
      pp__mutex_new(&W.wlock) || pp__mutex_new(&W.lock) ||
      pp__mutex_new(&W.rlock) || pp__cond_new(&W.wcond))
    worker_abort("cannot create locks", 71);
  /* The marker key is never 0 (0 means "no key yet" to the parent). */
  if (apr_generate_random_bytes(key, sizeof(key)) != APR_SUCCESS)
    worker_abort("cannot generate the marker key", 71);
  W.mark_key = pp__get_u64(key) | 1;
  memcpy(hello, cookie, PP__COOKIE_LEN);
  pp__put_u64(hello + PP__COOKIE_LEN, (uint64_t)pp__self_pid());
  pp__module_build_id(W.tasks, hello + PP__COOKIE_LEN + 8);
  pp__put_u64(hello + PP__COOKIE_LEN + 8 + PP__BUILD_ID_LEN, W.mark_key);
  if (pp__wire_send(W.chan, PP__FRAME_HELLO, 0, hello, sizeof(hello), NULL, 0,
                    NULL, 0) != 0)
    pp__exit_now(0);
  pp__reader_init(&reader, W.chan);
  rv = apr_thread_create(&watcher, NULL, watcher_main, NULL, W.mem);
  if (rv != APR_SUCCESS)
    worker_abort("cannot start the watcher thread", 71);

  for (;;) {
    job_t *job;
    int idle;
    pp__mutex_lock(W.lock);
    job = W.head;
    if (job != NULL) {
      W.head = job->next;
      if (W.head == NULL)
        W.tail = NULL;
      W.running = 1;
      if (W.watcher_idle)
        pp__cond_signal(W.wcond);
    }
    idle = job == NULL && !W.bye;
    pp__mutex_unlock(W.lock);
    if (job != NULL) {
      run_job(job);
      free(job);
      continue;
    }
    if (!idle)
      break; /* BYE and nothing left to run. */
    /* Nothing to run: read the next frame here.  The watcher may hold the
     * right to read (it saw data while the last task ran); the queue is
     * checked again once we have it. */
    pp__mutex_lock(W.rlock);
    pp__mutex_lock(W.lock);
    idle = W.head == NULL && !W.bye;
    pp__mutex_unlock(W.lock);
    if (idle)
      read_one();
    pp__mutex_unlock(W.rlock);
  }
  /* The watcher may be waiting for data that the main thread has already
   * read (up to 100 ms); aborting the channel, whose replies are all sent,
   * ends that wait at once.  It is joined, not left running while the
   * process exits (Wine can hang when a thread ends during ExitProcess). */
  pp__mutex_lock(W.lock);
  W.exiting = 1;
  pp__cond_signal(W.wcond);
  pp__mutex_unlock(W.lock);
  pp__chan_abort(W.chan);
  apr_thread_join(&rv, watcher);
  return 0;
}

int pp_worker_main(int argc, char **argv, const pp_task_t *tasks, int *rc) {
  const char *arg = NULL, *lib = NULL;
  char spec[1024];
  unsigned char cookie[PP__COOKIE_LEN];
  int64_t ppid = 0;
  int i;

  if (tasks != NULL)
    pp__tasks_set_default(tasks);
  /* UTF-8 on every system, and there even when main has no narrow argv. */
  pp__worker_args(&argc, &argv);
  for (i = 1; argv != NULL && i < argc; i++) {
    if (argv[i] == NULL)
      continue;
    if (strncmp(argv[i], PP__WORKER_ARG, strlen(PP__WORKER_ARG)) == 0)
      arg = argv[i] + strlen(PP__WORKER_ARG);
    else if (strncmp(argv[i], PP__LIBRARY_ARG, strlen(PP__LIBRARY_ARG)) == 0)
      lib = argv[i] + strlen(PP__LIBRARY_ARG);
  }
  if (arg == NULL)
    return 0;
  /* This process is a worker now (or fails as one), so the mark that lets
   * pp_pool_create() catch a missing guard goes; the processes a task
   * starts must not inherit it either. */
  pp__env_unset(PP__WORKER_ENV);
  if (rc == NULL || parse_arg(arg, spec, sizeof(spec), cookie, &ppid) != 0) {
    fprintf(stderr, "procpool: malformed %s argument\n", PP__WORKER_ARG);
    if (rc)
      *rc = 64;
    return 1;
  }
  if (pp__worker_attach(spec, ppid,
                        W.mark_output ? 0 : PP__ATTACH_INHERIT_OUTPUT,
                        &W.chan) != 0) {
    fprintf(stderr, "procpool worker %d: %s\n", W.index, pp_last_error());
    *rc = 65;
    return 1;
  }
  /* Lines reach the parent while the task runs, not when it ends. */
  if (pp__worker_stdio() != 0 || pp__apr_init() != 0) {
    fprintf(stderr, "procpool worker %d: %s\n", W.index, pp_last_error());
    *rc = 66;
    return 1;
  }
  W.tasks = tasks;
  if (lib != NULL) {
    apr_pool_t *mem = NULL;
    if (apr_pool_create(&mem, NULL) != APR_SUCCESS ||
        pp__tasks_load(mem, lib, &W.tasks) != 0) {
      fprintf(stderr, "procpool worker %d: %s\n", W.index, pp_last_error());
      *rc = 67;
      return 1;
    }
  }
  if (W.tasks == NULL) {
    fprintf(stderr, "procpool worker %d: no task table\n", W.index);
    *rc = 67;
    return 1;
  }
  wait_for_debugger();
  *rc = serve(cookie);
  pp__chan_close(W.chan);
  W.chan = NULL;
  fflush(stdout);
  fflush(stderr);
  return 1;
}
