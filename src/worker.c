/*
 * worker.c - pp_worker_main(): the worker side of a pool.
 *
 * The parent writes calls into the call ring of the memory it shares with
 * this worker (ring.h); the main thread takes them in order and runs each
 * on itself, so thread-local state an initializer set up stays valid.
 * Before a call starts, its id goes into the control block (running_id);
 * when it ends, its result is published in the result ring, and only then
 * is the call's record given back.  So if the worker dies, the parent knows
 * exactly which call was running, which finished (their results are in the
 * ring), and which never started (their records are still there).
 *
 * Nothing here makes a system call per call: the worker spins briefly when
 * it runs out of calls and only then sleeps on its wake object, which the
 * parent signals only if it sees the worker asleep.  A cancel is a word in
 * the call's own record; pp_call_cancelled() reads it.
 *
 * The channel to the parent carries no messages: its end tells the worker
 * that the parent has gone (the watch thread in capture.c, or the sleeping
 * main thread, exits at once), and on POSIX it passes the descriptors of
 * blobs, the shared mappings of arguments and results too large for a
 * ring.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <apr_general.h>
#include <apr_time.h>

#include "engine.h"

/* The worker's state; index < 0 in a parent.  The main thread owns it,
 * except: `plock` guards the result ring (any thread may log), and
 * `cancel` and `current_id` are read by any thread. */
static struct {
  int index;
  int depth;
  int inherit;
  const pp_task_t *tasks;
  pp__attached_t at;
  pp__shm_ctl_t *ctl;
  pp__ring_t calls;
  pp__ring_t results;
  pp__mutex_t *plock;
  uint32_t *volatile cancel;      /* the running call's cancel word */
  volatile uint64_t current_id;   /* the running call, 0 between calls */
  const pp_task_t *last_task;     /* lookup cache */
  pp__mapcache_t maps;            /* mappings kept from earlier calls */
  pp__shm_t *kept[PP__KEPT_N];    /* our own results, oldest first */
  int nkept;
  uint64_t kept_bytes;
} W = {.index = -1};

int pp__worker_depth(void) {
  return W.depth;
}

int pp_worker_index(void) {
  return W.index;
}

int pp_call_cancelled(void) {
  uint32_t *c = W.cancel;
  return c != NULL && (PP__LOAD_ACQ32(c) & PP__CALL_CANCEL) != 0;
}

/* Exits at once: the parent is gone or spoke nonsense.  pp__exit_now skips
 * the application's atexit handlers, which may wait for work that will
 * never come. */
static void worker_abort(const char *why, int code) {
  fprintf(stderr, "procpool worker %d: %s\n", W.index, why);
  fflush(stderr);
  pp__fault_report();
  pp__exit_now(code);
}

int pp__worker_put(int kind, uint16_t aux, uint64_t id, const void *p1,
                   size_t n1, const void *p2, size_t n2) {
  unsigned char *p;
  int wake = 0;
  if (W.ctl == NULL)
    return -1;
  pp__mutex_lock(W.plock);
  p = pp__ring_begin(&W.results, kind, aux, id, (uint64_t)n1 + n2);
  while (p == NULL) {
    /* The parent has not kept up.  A ticket, then one more look: the
     * parent's signal for room it makes after that look is not lost
     * (platform.h).  Not before the first look, which almost always finds
     * room: the ticket's lock would cost every result. */
    uint64_t ticket = pp__wake_ticket(W.at.wake_worker);
    int rc;
    p = pp__ring_begin(&W.results, kind, aux, id, (uint64_t)n1 + n2);
    /* Tell the parent, then wait for it to make room; the slice is a
     * safety net, as the main thread's (next_record). */
    if (p != NULL || pp__ring_wait_room_prepare(&W.results, (uint64_t)n1 + n2))
      continue;
    rc = pp__wake_wait(W.at.wake_worker, ticket, W.at.chan, 10);
    pp__ring_room_awake(&W.results);
    if (rc == PP_ECLOSED)
      pp__exit_now(0); /* The parent has gone: nobody wants our results. */
    if (rc < 0)
      worker_abort(pp__os_reason(), 70); /* No wait left but a spin. */
  }
  if (n1)
    memcpy(p, p1, n1);
  if (n2)
    memcpy(p + n1, p2, n2);
  wake = pp__ring_commit(&W.results);
  pp__mutex_unlock(W.plock);
  /* A signal that fails is not waited for: the parent never sleeps long
   * while it has calls on a worker (loop.c), and reads the ring then. */
  if (wake)
    (void)pp__wake_signal(W.at.wake_parent);
  return 0;
}

void pp__worker_corrupt_results(void) {
  static const char junk[] = "not a record....";
  uint32_t huge = 0x7fffff00u;
  unsigned char *p;
  if (W.ctl == NULL)
    return;
  pp__mutex_lock(W.plock);
  /* A record header whose length runs far past the ring, as a task that
   * scribbles over the worker's memory might leave it. */
  p = pp__ring_begin(&W.results, PP__REC_LOG, 0, W.current_id, 16);
  if (p != NULL) {
    memcpy(p - PP__REC_HEADER, &huge, 4);
    memcpy(p, junk, 16);
    if (pp__ring_commit(&W.results))
      (void)pp__wake_signal(W.at.wake_parent);
  }
  pp__mutex_unlock(W.plock);
}

void pp__worker_zero_shared(void) {
  /* The control block and the result ring, header and records, as a task
   * writing through a stray pointer might: the flag that says the parent
   * sleeps goes with them.  The call ring is spared, so that the worker
   * lives on (a broken call ring ends it, which the parent would notice).
   * The worker's own view of its rings (W.results) is private and stays
   * as it was. */
  if (W.ctl != NULL)
    memset(W.ctl, 0, (size_t)W.ctl->call_off);
  if (W.results.hdr != NULL)
    memset(W.results.hdr, 0, PP__RING_HDR_SIZE + (size_t)W.results.size);
}

void pp__worker_clear_sleep_flag(void) {
  /* The flag that tells the parent this worker sleeps waiting for calls:
   * with it cleared, the parent does not signal, as if a signal were lost
   * (a task's thread calls it while the worker's main thread sleeps). */
  if (W.ctl != NULL)
    PP__STORE_REL32(&W.calls.hdr->consumer_waiting, 0);
}

pp__wake_t *pp__worker_parent_wake(void) {
  return W.ctl != NULL ? W.at.wake_parent : NULL;
}

int pp__worker_log(int level, const char *text, size_t len) {
  unsigned char lv[4];
  int32_t l = level;
  if (W.ctl == NULL)
    return -1;
  if (len > PP__MSG_MAX)
    len = PP__MSG_MAX;
  memcpy(lv, &l, 4);
  return pp__worker_put(PP__REC_LOG, 0, W.current_id, lv, 4, text, len);
}

/* Takes kept mapping `i` out of the list (to close it, or to use it
 * again) and returns it. */
static pp__shm_t *kept_take(int i) {
  pp__shm_t *shm = W.kept[i];
  W.kept_bytes -= pp__shm_len(shm);
  memmove(&W.kept[i], &W.kept[i + 1],
          (size_t)(--W.nkept - i) * sizeof(*W.kept));
  return shm;
}

/* Keeps the mapping of a large result we sent, pushing out the oldest
 * kept ones beyond PP__KEPT_N or PP__MAPCACHE_BYTES.  When the parent is
 * done with the result it becomes one of its spares, and it comes back as
 * the reply hint of a later call (blob.c); with the mapping still here,
 * that call writes into pages that are in place instead of faulting in
 * every page of a fresh mapping once more, which costs far more than the
 * copy itself on a virtual machine. */
static void keep_result(pp__shm_t *shm) {
  uint64_t len = pp__shm_len(shm);
  if (len > PP__MAPCACHE_BYTES) {
    pp__shm_close(shm);
    return;
  }
  while (W.nkept > 0 &&
         (W.nkept == PP__KEPT_N || W.kept_bytes + len > PP__MAPCACHE_BYTES))
    pp__shm_close(kept_take(0));
  W.kept[W.nkept++] = shm;
  W.kept_bytes += len;
}

/* Sends the call's outcome: RESULT (inline, or a blob for a large one) or
 * ERROR.  The reason of an ERROR is the task's pp_call_fail() message, else
 * `why` (the worker's own reason), else pp_last_error(): a task that
 * returns a failed public call's status leaves that call's reason there. */
static void send_reply(uint64_t id, int status, pp_call_t *call,
                       const char *why) {
  if (status == 0 && call->reply_len <= pp__ring_max_payload(&W.results)) {
    pp__worker_put(PP__REC_RESULT, 0, id, call->reply, call->reply_len, NULL,
                   0);
  } else if (status == 0 && call->reply_in_arg) {
    /* A part of the argument's mapping: where it is, and how long. */
    uint64_t where[2];
    where[0] = (uint64_t)((const unsigned char *)call->reply - call->arg_map);
    where[1] = call->reply_len;
    pp__worker_put(PP__REC_RESULT, 3, id, where, sizeof(where), NULL, 0);
  } else if (status == 0 && call->reply_in_hint) {
    /* Written into the parent's spare: nothing to hand over but the
     * length. */
    uint64_t len = call->reply_len;
    pp__worker_put(PP__REC_RESULT, 2, id, &len, sizeof(len), NULL, 0);
  } else if (status == 0) {
    pp__shm_t *blob = call->reply_shm;
    uint64_t meta[3];
    int rc = 0;
    if (blob == NULL) {
      /* With room for the tag after the data (pp__shm_send). */
      rc =
          call->reply_len > SIZE_MAX - PP__SHM_TAG_LEN
              ? pp__os_fail(PP_ENOMEM, "a result of %zu bytes", call->reply_len)
              : pp__shm_create((uint64_t)call->reply_len + PP__SHM_TAG_LEN,
                               PP__SHM_POPULATE, &blob);
      if (rc == 0)
        memcpy(pp__shm_base(blob), call->reply, call->reply_len);
    }
    if (rc == 0) {
      rc = pp__shm_send(W.at.chan, blob, NULL, call->reply_len, &meta[1],
                        &meta[2]);
      if (rc == PP_ECLOSED)
        pp__exit_now(0);
    }
    if (rc == 0) {
      /* On Windows the blob is the parent's from here on, whatever becomes
       * of this worker; the control block names it until the record
       * does (ring.h). */
      PP__STORE_REL64(&W.ctl->blob_size, call->reply_len);
      PP__STORE_REL64(&W.ctl->blob_tag, meta[2]);
      PP__STORE_REL64(&W.ctl->blob_handle, meta[1]);
    }
    if (blob == call->reply_shm) {
      /* Ours now (kept or closed), no longer the call's. */
      call->reply_shm = NULL;
      call->reply = NULL;
    }
    if (rc == 0)
      keep_result(blob);
    else
      pp__shm_close(blob);
    if (rc == 0) {
      meta[0] = call->reply_len;
      pp__worker_put(PP__REC_RESULT, 1, id, meta, sizeof(meta), NULL, 0);
    } else {
      status = rc == PP_ENOMEM ? PP_ENOMEM : PP_ETASK;
      free(call->fail_message);
      call->fail_message =
          pp__strdup_printf("cannot hand over a result of %zu bytes: %s",
                            call->reply_len, pp__os_reason());
    }
  }
  if (status != 0) {
    const char *msg = call->fail_message ? call->fail_message
                      : why              ? why
                                         : pp_last_error();
    size_t len = strlen(msg);
    int32_t st = status;
    if (len > PP__MSG_MAX)
      len = PP__MSG_MAX;
    pp__worker_put(PP__REC_ERROR, 0, id, &st, 4, msg, len);
  }
}

/* Finds a task by the name in a call record; the last one found is tried
 * first, since a map calls the same task over and over. */
static const pp_task_t *find_task(const char *name, size_t len) {
  const pp_task_t *t = W.last_task;
  if (t != NULL && strlen(t->name) == len && memcmp(t->name, name, len) == 0)
    return t;
  for (t = W.tasks; t != NULL && t->name != NULL; t++)
    if (strlen(t->name) == len && memcmp(t->name, name, len) == 0 &&
        t->fn != NULL)
      return W.last_task = t;
  return NULL;
}

/* The mappings a call uses and those it leaves to be closed after it. */
typedef struct maps_s {
  pp__shm_t *close[2 * PP__MAPCACHE_N + 2];
  int nclose;
} maps_t;

/* Returns the mapping a blob record names: the one that comes with it
 * (`sent`), kept for later calls if it may be, or the one kept from an
 * earlier call under `serial`.  Mappings that are not kept, or that are
 * pushed out, go to m->close, to be closed after the call. */
static pp__shm_t *blob_map(maps_t *m, int sent, uint64_t handle,
                           uint64_t size, uint64_t serial) {
  void *obj = NULL;
  pp__shm_t *shm = NULL;
  int rc, n;
  if (!sent) {
    if (!pp__mapcache_find(&W.maps, serial, &obj))
      worker_abort("a call names a mapping it was never sent", 70);
    return obj;
  }
  rc = pp__shm_recv_known(W.at.chan, handle, size, NULL, W.kept, W.nkept,
                          &shm, &n);
  if (rc == PP_ECLOSED)
    pp__exit_now(0);
  if (rc != 0)
    worker_abort(pp__os_reason(), 70);
  if (n >= 0)
    shm = kept_take(n); /* one of our own results: its mapping is warm */
  if (!pp__mapcache_put(&W.maps, serial, size, shm,
                        (void **)&m->close[m->nclose], &n))
    m->close[m->nclose++] = shm;
  else
    m->nclose += n;
  return shm;
}

/* Runs one CALL or INIT record and publishes its outcome. */
static void run_record(const pp__rec_t *rec) {
  pp__call_rec_t c;
  maps_t m;
  const pp_task_t *task;
  const void *arg;
  pp_call_t call;
  pp__err_t err;
  const char *why = NULL; /* the worker's reason for a failure */
  int status, i;

  if (pp__call_rec_parse(rec, &c, &err) != 0)
    worker_abort(err.text, 70);
  /* From here the call counts as started if this process ends: mapping
   * its argument may end it (worker_abort), and a call that ends every
   * worker it reaches must fail, not go back to the queue for the next
   * one (life.c settles a dead worker's calls by whether they started). */
  PP__STORE_REL64(&W.ctl->running_id, rec->id);
  memset(&call, 0, sizeof(call));
  call.id = rec->id;
  call.blob_min = pp__ring_max_payload(&W.results) + 1;
  arg = c.arg;
  m.nclose = 0;
  if (c.blob) {
    /* The argument's mapping, then the hint's, as the parent sent them
     * (ring.h: both sides keep the same mappings). */
    pp__shm_t *blob = blob_map(&m, (c.b.flags & PP__BLOB_SENT_ARG) != 0,
                               c.b.handle, c.b.map_size, c.b.serial);
    if (pp__shm_len(blob) < c.b.map_size)
      worker_abort("a blob argument outside its mapping", 70);
    arg = (unsigned char *)pp__shm_base(blob) + c.b.offset;
    call.arg_map = pp__shm_base(blob);
    call.arg_map_len = c.b.map_size;
    if (c.b.hint_size > 0)
      call.hint = blob_map(&m, (c.b.flags & PP__BLOB_SENT_HINT) != 0,
                           c.b.hint_handle, c.b.hint_size, c.b.hint_serial);
  }
  W.current_id = rec->id;
  W.cancel = c.cancel;
  task = find_task(c.name, c.name_len);
  if (task == NULL) {
    /* The parent checks names at submit, so this means the parent and the
     * worker were built from different tables. */
    status = pp__err_set(&err, PP_ENOTASK, "worker %d has no task named '%.*s'",
                         W.index, (int)c.name_len, c.name);
    why = err.text;
  } else if (c.refused || !PP__CAS32(c.cancel, 0, PP__CALL_STARTED)) {
    /* Cancelled, or taken back for another worker (whose outcome the
     * parent keeps; it drops this one). */
    status =
        pp__err_set(&err, PP_ECANCELED, "call %llu cancelled before it ran",
                    (unsigned long long)rec->id);
    why = err.text;
  } else {
    pp__capture_call_start(rec->id);
    status = pp__call_run(task, &call, arg, (size_t)c.arg_len);
  }
  pp__capture_call_end(rec->id);
  send_reply(rec->id, status, &call, why);
  W.cancel = NULL;
  W.current_id = 0;
  pp__ring_release(&W.calls, rec->end);
  pp__call_clear(&call);
  for (i = 0; i < m.nclose; i++)
    pp__shm_close(m.close[i]);
}

/* Waits for the next record: a short spin first (a busy parent refills the
 * ring within microseconds, and a sleep and wake-up would cost more), then
 * a sleep on the wake object.  The spin is bounded in time, not in turns,
 * so that it costs the same on every machine.  Exits when the parent has
 * gone. */
static int next_record(pp__rec_t *rec, pp__err_t *err) {
  uint64_t ticket;
  unsigned turn;
  int rc;
  for (;;) {
    int64_t until = pp__now_us() + PP__SPIN_US;
    for (turn = 0;;) {
      rc = pp__ring_next(&W.calls, rec, err);
      if (rc != 0)
        return rc;
      pp__spin_turn(turn);
      if ((turn & 15) == 0 && pp__now_us() >= until)
        break;
    }
    /* The ticket comes before the last look at the ring, so that a
     * signal for a call published after it is not lost (platform.h). */
    ticket = pp__wake_ticket(W.at.wake_worker);
    if (pp__ring_sleep_prepare(&W.calls))
      continue;
    /* Never asleep for good: the parent signals only when it sees our
     * flag in shared memory, which a task may have scribbled over; a look
     * every PP__WORKER_SLEEP_MS finds calls that came without a signal. */
    rc =
        pp__wake_wait(W.at.wake_worker, ticket, W.at.chan, PP__WORKER_SLEEP_MS);
    pp__ring_awake(&W.calls);
    if (rc == PP_ECLOSED)
      pp__exit_now(0); /* The parent has gone. */
    if (rc < 0)
      worker_abort(pp__os_reason(), 70); /* No wait left but a spin. */
  }
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
  W.inherit = inherit != 0;
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
  pp__rec_t rec;
  pp__err_t err;
  int rc;

  if (pp__mutex_new(&W.plock) != 0)
    worker_abort("cannot create a lock", 71);
  if (pp__shm_check(W.at.shm_base, W.at.shm_size, &err) != 0)
    worker_abort(err.text, 70);
  W.ctl = W.at.shm_base;
  pp__ring_bind(&W.calls, W.at.shm_base, 0);
  pp__ring_bind(&W.results, W.at.shm_base, 1);
  if (pp__capture_start(W.at.chan, W.at.out, W.at.err, pp__worker_put, &err) !=
      0)
    worker_abort(err.text, 71);
  memcpy(hello, cookie, PP__COOKIE_LEN);
  pp__put_u64(hello + PP__COOKIE_LEN, (uint64_t)pp__self_pid());
  pp__module_build_id(W.tasks, hello + PP__COOKIE_LEN + 8);
  pp__worker_put(PP__REC_HELLO, 0, 0, hello, sizeof(hello), NULL, 0);

  for (;;) {
    rc = next_record(&rec, &err);
    if (rc < 0)
      worker_abort(err.text, 70);
    if (rec.kind == PP__REC_BYE)
      break;
    if (rec.kind != PP__REC_CALL && rec.kind != PP__REC_INIT)
      worker_abort("unexpected record in the call ring", 70);
    run_record(&rec);
  }
  pp__capture_stop();
  return 0;
}

int pp_worker_main(int argc, char **argv, const pp_task_t *tasks, int *rc) {
  const char *arg = NULL, *lib = NULL;
  char spec[1024];
  unsigned char cookie[PP__COOKIE_LEN];
  int64_t ppid = 0;
  pp__err_t err;
  int i;

  /* Before the worker's mark leaves the environment: fault injection
   * (fault.h) tells a worker from a parent by it. */
  pp__fault_setup();
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
  if (arg == NULL) {
    /* No worker of a local pool.  With the MPI backend enabled (registered,
     * or asked for by PROCPOOL_BACKEND), a rank other than 0 of an MPI job
     * serves rank 0's pools here and ends. */
    const pp__engine_t *engine =
        pp__engine_get(pp__engine_backend(NULL) == PP_BACKEND_MPI);
    if (engine != NULL && engine->serve != NULL && rc != NULL)
      return engine->serve(argc, argv, tasks, rc);
    return 0;
  }
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
  if (pp__worker_attach(spec, ppid, W.inherit ? PP__ATTACH_INHERIT_OUTPUT : 0,
                        &W.at) != 0) {
    fprintf(stderr, "procpool worker %d: %s\n", W.index, pp__os_reason());
    *rc = 65;
    return 1;
  }
  if (pp__apr_init(&err) != 0) {
    fprintf(stderr, "procpool worker %d: %s\n", W.index, err.text);
    *rc = 66;
    return 1;
  }
  W.tasks = tasks;
  if (lib != NULL) {
    apr_pool_t *mem = NULL;
    int loaded = apr_pool_create(&mem, NULL) != APR_SUCCESS
                     ? pp__err_set(&err, PP_ENOMEM,
                                   "no memory for the task "
                                   "library")
                     : pp__tasks_load(mem, lib, &W.tasks, &err);
    if (loaded != 0) {
      fprintf(stderr, "procpool worker %d: %s\n", W.index, err.text);
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
  pp__fault_report();
  fflush(stdout);
  fflush(stderr);
  return 1;
}
