/*
 * pool.c - pp_pool_create() and pp_pool_destroy(), statistics.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <apr_atomic.h>
#include <apr_general.h>
#include <apr_strings.h>

#include "engine.h"

/* Pools allocated and not yet freed (pp__pool_count). */
static volatile apr_uint32_t pools_alive;

static int env_is_set(const char *name) {
  const char *v = getenv(name);
  return v != NULL && v[0] != '\0' && strcmp(v, "0") != 0;
}

/* Picks and opens the executable the workers run, and how their build is
 * checked: against the parent's own when the workers run this program or
 * the task library the parent loaded too, else against the first worker. */
static int choose_exe(pp_pool_t *pool, const pp_pool_options_t *o,
                      pp__err_t *err) {
  const char *path = NULL;
  char *env = NULL, *host = NULL;
  int rc;
  if (o->worker_exe != NULL) {
    path = o->worker_exe;
  } else if (o->task_library != NULL) {
    /* A path, so read as the platform reads paths (UTF-8; on Windows
     * not through the ANSI code page). */
    rc = pp__env_path("PROCPOOL_WORKER_EXE", &env);
    if (rc == 0 && env == NULL)
      rc = pp__worker_host_path(&host);
    if (rc)
      return pp__err_os(err, rc);
    path = env != NULL ? env : host;
  }
  /* Workers report the build of the module that holds their task table:
   * the task library, or the program they run.  The parent knows the
   * former (it loaded the library too) and, for self re-exec, the latter;
   * another worker_exe is a program of its own. */
  pool->build_check = o->worker_exe != NULL && o->task_library == NULL
                          ? PP__BUILD_FIRST
                          : PP__BUILD_PARENT;
  if (pool->build_check == PP__BUILD_PARENT) {
    static const unsigned char zero[PP__BUILD_ID_LEN];
    pp__module_build_id(pool->tasks, pool->build_id);
    pool->build_known = memcmp(pool->build_id, zero, sizeof(zero)) != 0;
    if (!pool->build_known)
      pool->build_check = PP__BUILD_ANY;
  }
  rc = pp__image_open(path, &pool->image);
  free(env);
  free(host);
  return rc ? pp__err_os(err, rc) : 0;
}

static int check_options(const pp_pool_options_t *o, pp__err_t *err) {
  if (o->workers < 0 || o->workers > PP_POOL_MAX_WORKERS)
    return pp__err_set(err, PP_EINVAL,
                       "pp_pool_create: workers is %d; it must "
                       "be between 0 (one per CPU) and %d",
                       o->workers, PP_POOL_MAX_WORKERS);
  if (o->flags &
      ~(unsigned)(PP_POOL_INLINE | PP_POOL_NESTED | PP_POOL_INHERIT_OUTPUT))
    return pp__err_set(err, PP_EINVAL, "pp_pool_create: unknown flags 0x%x",
                       o->flags);
  if (o->call_timeout_ms < 0 || o->cancel_grace_ms < 0 ||
      o->start_timeout_ms < 0)
    return pp__err_set(err, PP_EINVAL, "pp_pool_create: negative timeout");
  if (o->init_arg == NULL && o->init_arg_len > 0)
    return pp__err_set(err, PP_EINVAL, "pp_pool_create: init_arg is NULL");
  if (o->backend < PP_BACKEND_DEFAULT || o->backend > PP_BACKEND_MPI)
    return pp__err_set(err, PP_EINVAL, "pp_pool_create: unknown backend %d",
                       o->backend);
  return 0;
}

/* Refuses a pool in a process that was started as a worker but never went
 * through pp_worker_main(): its main() lacks the worker guard, so every
 * worker would create a pool of its own, whose workers would do the same.
 * The message also goes to stderr, which is the only way a worker can tell
 * the developer (the parent logs it as the worker's output). */
static int check_not_unguarded_worker(pp__err_t *err) {
  const char *mark = getenv(PP__WORKER_ENV);
  if (mark == NULL || pp__worker_depth() > 0)
    return 0;
  fprintf(stderr,
          "procpool: this process was started as a pool's worker, but its "
          "main() does not begin with the worker guard "
          "`if (pp_worker_main(argc, argv, tasks, &rc)) return rc;`\n");
  fflush(stderr);
  return pp__err_set(err, PP_ENESTED,
                     "pp_pool_create: this process was started "
                     "as a pool's worker, but main() did not call "
                     "pp_worker_main() first (the worker guard is missing)");
}

/* Creates locks, the cookie and the fixed part of the workers' token. */
static int pool_setup(pp_pool_t *pool, pp__err_t *err) {
  apr_status_t rv;
  char hex[2 * PP__COOKIE_LEN + 1];
  int i, rc;
  rc = pp__mutex_new(&pool->lock);
  if (rc == 0)
    rc = pp__mutex_new(&pool->io_lock);
  if (rc == 0)
    rc = pp__mutex_new(&pool->log_lock);
  if (rc == 0)
    rc = pp__cond_new(&pool->done_cond);
  if (rc)
    return pp__err_os(err, rc);
  pp__queue_init(&pool->pending);
  pp__queue_init(&pool->cb_queue);
  rv = apr_generate_random_bytes(pool->cookie, sizeof(pool->cookie));
  if (rv != APR_SUCCESS)
    return pp__from_apr(err, rv, "apr_generate_random_bytes");
  for (i = 0; i < PP__COOKIE_LEN; i++)
    snprintf(hex + 2 * i, 3, "%02x", pool->cookie[i]);
  pp__format(pool->token_base, sizeof(pool->token_base), "%s,%lld,%d,%d", hex,
             (long long)pp__self_pid(), pool->depth, pool->inherit_output);
  return 0;
}

/* Starts the I/O thread, which starts the workers, and waits until each
 * worker is ready or its first start has failed. */
static int pool_start(pp_pool_t *pool, pp__err_t *err) {
  apr_status_t rv;
  int i, rc, ready;
  rc = pp__wake_new(&pool->wake);
  if (rc == 0)
    rc = pp__poller_new(&pool->poller);
  if (rc == 0)
    rc = pp__poller_add_wake(pool->poller, pool->wake, pool);
  if (rc)
    return pp__err_os(err, rc);
  if (pp__loop_new(pool, err) != 0)
    return err->code;
  for (i = 0; i < pool->nslots; i++) {
    pool->slots[i].pool = pool;
    pool->slots[i].index = i;
    pool->slots[i].deadline = 0; /* start at once */
  }
  rv = PP__FAULT_HIT("apr_thread_create")
           ? APR_EAGAIN
           : apr_thread_create(&pool->loop, NULL, pp__loop_main, pool,
                               pool->mem);
  if (rv != APR_SUCCESS)
    return pp__from_apr(err, rv, "starting the pool's I/O thread");
  rc = 0;
  pp__mutex_lock(pool->lock);
  do {
    ready = 0;
    for (i = 0; i < pool->nslots; i++) {
      if (pool->slots[i].started)
        ready++;
      if (pool->slots[i].started && pool->slots[i].start_status && rc == 0) {
        rc = pp__err_set(err, pool->slots[i].start_status, "%s",
                         pool->slots[i].start_error);
      }
    }
    if (ready < pool->nslots && rc == 0)
      pp__cond_wait(pool->done_cond, pool->lock);
  } while (ready < pool->nslots && rc == 0);
  pp__mutex_unlock(pool->lock);
  return rc;
}

/* Stops the I/O thread, which sends the workers away and reaps them; the
 * pool's calls must all be finished. */
static void pool_stop(pp_pool_t *pool) {
  apr_status_t rv;
  pp__mutex_lock(pool->lock);
  pool->stopping = 1;
  pp__pool_wake_locked(pool);
  pp__mutex_unlock(pool->lock);
  if (pool->loop != NULL)
    apr_thread_join(&rv, pool->loop);
  pool->loop = NULL;
}

int pp__pool_forked(const pp_pool_t *pool, const char *fn) {
  int64_t self = pp__self_pid();
  if (pool == NULL || pool->owner_pid == self)
    return 0;
  return pp__fail(PP_ECLOSED,
                  "%s: the pool was created by process %lld, and this is "
                  "process %lld, forked from it without exec: a pool's "
                  "threads and workers serve only the process that created "
                  "it, so here the pool and its futures and maps can only "
                  "be left alone (even pp_pool_destroy leaves them, and the "
                  "parent's workers, untouched)",
                  fn, (long long)pool->owner_pid, (long long)self);
}

int pp__pool_unused_locked(pp_pool_t *pool) {
  return pool->destroyed && pool->live_futures == 0;
}

void pp__pool_leave_unlock(pp_pool_t *pool) {
  int last;
  pool->live_futures--;
  last = pp__pool_unused_locked(pool);
  pp__mutex_unlock(pool->lock);
  if (last)
    pp__pool_free(pool);
}

int pp__pool_count(void) {
  return (int)apr_atomic_read32(&pools_alive);
}

void pp__pool_free(pp_pool_t *pool) {
  int i, spare_user;
  if (pool == NULL)
    return;
  spare_user = pool->spare_user;
  for (i = 0; pool->slots != NULL && i < pool->nslots; i++)
    free(pool->slots[i].fl);
  free(pool->slots);
  pp__loop_free(pool);
  pp__poller_free(pool->poller);
  pp__wake_free(pool->wake);
  pp__image_close(pool->image);
  pp__cond_free(pool->done_cond);
  pp__cond_free(pool->cb_cond);
  if (pool->cb_mem != NULL)
    apr_pool_destroy(pool->cb_mem);
  pp__mutex_free(pool->log_lock);
  pp__mutex_free(pool->io_lock);
  pp__mutex_free(pool->lock);
  if (pool->mem != NULL)
    apr_pool_destroy(pool->mem);
  free(pool);
  apr_atomic_dec32(&pools_alive);
  if (spare_user)
    pp__spare_users(-1);
}

/* A pool of another backend: returns 1 if the engine runs the pool now,
 * 0 if the pool is to be a local one (the reason is logged), or -1 with
 * the failure in *err. */
static int engine_start(pp_pool_t *pool, const pp_pool_options_t *o,
                        pp__err_t *err) {
  const pp__engine_t *engine = pp__engine_get(1);
  char line[640];
  int rc;
  if (engine == NULL) {
    pp__format(line, sizeof(line),
               "procpool: the MPI backend was asked for, but the component "
               "procpool_mpi is not there (call pp_mpi_enable() at the top "
               "of main, or put a shared libprocpool_mpi where the loader "
               "finds it); this pool runs its calls locally");
  } else if (o->initializer != NULL || o->task_library != NULL ||
             o->worker_exe != NULL) {
    pp__format(line, sizeof(line),
               "procpool: the %s backend does not take an initializer, a "
               "task library or a worker executable yet; this pool runs its "
               "calls locally",
               engine->name);
  } else {
    pool->engine = engine;
    rc = engine->start(pool, err);
    if (rc == 0)
      return 1;
    pool->engine = NULL;
    if (rc != PP__ENGINE_FALLBACK)
      return -1;
    pp__format(line, sizeof(line),
               "procpool: %s; this pool runs its calls locally", err->text);
  }
  pp__log_text(pool, -1, 0, PP_LOG_STDERR, 0, line, strlen(line));
  return 0;
}

int pp_pool_create(pp_pool_t **out, const pp_pool_options_t *options) {
  int64_t limit;
  pp_pool_options_t zero;
  const pp_pool_options_t *o = options;
  pp_pool_t *pool = NULL;
  apr_status_t rv;
  pp__err_t err;
  int rc, depth = pp__worker_depth();

  if (out != NULL)
    *out = NULL;
  if (o == NULL) {
    memset(&zero, 0, sizeof(zero));
    o = &zero;
  }
  if (out == NULL)
    return pp__fail(PP_EINVAL, "pp_pool_create: pool is NULL");
  if (check_options(o, &err) != 0 || check_not_unguarded_worker(&err) != 0)
    return pp__err_raise(&err);
  if (depth > 0 && !(o->flags & PP_POOL_NESTED))
    return pp__fail(PP_ENESTED, "pp_pool_create: called inside a worker; "
                                "set PP_POOL_NESTED to allow a nested pool");
  if (depth >= PP__MAX_DEPTH)
    return pp__fail(PP_ENESTED,
                    "pp_pool_create: pools nested %d deep; "
                    "the limit is %d",
                    depth, PP__MAX_DEPTH);

  if (pp__apr_init(&err) != 0)
    return pp__err_raise(&err);
  /* Before any channel exists, so none can be numbered 0, 1 or 2. */
  pp__stdio_ensure();
  pool = pp__calloc(1, sizeof(*pool));
  if (pool == NULL)
    return pp__fail(PP_ENOMEM, "pp_pool_create: out of memory");
  pool->owner_pid = pp__self_pid();
  apr_atomic_inc32(&pools_alive);
  if (pp__spare_users(1) != 0) {
    pp__err_os(&err, PP_ENOMEM);
    goto cleanup;
  }
  pool->spare_user = 1;
  rv = PP__FAULT_HIT("apr_pool_create") ? APR_ENOMEM
                                        : apr_pool_create(&pool->mem, NULL);
  if (rv != APR_SUCCESS) {
    pp__from_apr(&err, rv, "apr_pool_create");
    goto cleanup;
  }
  pool->depth = depth + 1;
  pool->inline_mode =
      (o->flags & PP_POOL_INLINE) || env_is_set("PROCPOOL_INLINE");
  pool->call_timeout_ms = o->call_timeout_ms;
  pool->grace_ms = o->cancel_grace_ms ? o->cancel_grace_ms
                                      : PP__DEFAULT_GRACE_MS;
  pool->start_timeout_ms = o->start_timeout_ms ? o->start_timeout_ms
                                               : PP__DEFAULT_START_TIMEOUT_MS;
  pool->max_calls = o->max_calls_per_worker;
  pool->ring_size = PP__RING_DEFAULT;
  pool->inherit_output = (o->flags & PP_POOL_INHERIT_OUTPUT) != 0;
  pool->log_cb = o->log_cb ? o->log_cb : pp_log_stderr;
  pool->log_data = o->log_cb ? o->log_data : NULL;

  if (o->task_library != NULL) {
    /* Absolute, so that the workers load the same file as the parent
     * (Windows' loader is undefined for relative paths here). */
    char *abs = NULL;
    rc = pp__path_absolute(o->task_library, &abs);
    if (rc != 0) {
      pp__err_os(&err, rc);
    } else {
      pool->library =
          PP__FAULT_ALLOC_HIT() ? NULL : apr_pstrdup(pool->mem, abs);
      free(abs);
      rc = pool->library == NULL
               ? pp__err_set(&err, PP_ENOMEM, "pp_pool_create: out of memory")
               : pp__tasks_load(pool->mem, pool->library, &pool->tasks, &err);
    }
  } else {
    pool->tasks = o->tasks ? o->tasks : pp__tasks_default();
    rc = pp__tasks_check(pool->tasks, &err);
  }
  if (rc)
    goto cleanup;
  if (o->initializer != NULL) {
    const pp_task_t *t = pp__task_find(pool->tasks, o->initializer);
    if (t == NULL) {
      pp__err_set(&err, PP_ENOTASK,
                  "pp_pool_create: no initializer task "
                  "named '%s'",
                  o->initializer);
      goto cleanup;
    }
    pool->init_task =
        PP__FAULT_ALLOC_HIT() ? NULL : apr_pstrdup(pool->mem, t->name);
    pool->init_arg_len = o->init_arg_len;
    pool->init_arg = o->init_arg_len && pool->init_task != NULL
                         ? apr_pmemdup(pool->mem, o->init_arg, o->init_arg_len)
                         : NULL;
    if (pool->init_task == NULL ||
        (o->init_arg_len > 0 && pool->init_arg == NULL)) {
      pp__err_set(&err, PP_ENOMEM, "pp_pool_create: out of memory");
      goto cleanup;
    }
  }
  if (pool_setup(pool, &err) != 0)
    goto cleanup;
  /* Not inside a worker: its pools are local, whatever it inherited.
   * Inline mode (a debugging switch) wins over the backend. */
  if (depth == 0 && !pool->inline_mode &&
      pp__engine_backend(o) == PP_BACKEND_MPI) {
    rc = engine_start(pool, o, &err);
    if (rc < 0)
      goto cleanup;
    if (rc > 0) {
      *out = pool;
      return 0;
    }
  }
  if (pool->inline_mode) {
    pool->nslots = 0;
    /* The calling process stands in for the workers, so it runs the
     * initializer too: tasks see the same state as in worker mode. */
    if (pool->init_task != NULL) {
      if (pp__inline_init(pool, &err) != 0)
        goto cleanup;
    }
    *out = pool;
    return 0;
  }
  if (choose_exe(pool, o, &err) != 0)
    goto cleanup;
  pool->nslots = o->workers ? o->workers : pp__cpu_count();
  if (pool->nslots > PP_POOL_MAX_WORKERS)
    pool->nslots = PP_POOL_MAX_WORKERS;
  /* Said up front, with the numbers, rather than as a failed socketpair()
   * halfway through the start. */
  limit = pp__fd_limit();
  if (limit >= 0 &&
      (int64_t)pool->nslots * PP__FDS_PER_WORKER + PP__FDS_SPARE > limit) {
    pp__err_set(&err, PP_ESPAWN,
                "a pool of %d workers needs about %lld file "
                "descriptors, and this process may open %lld "
                "(RLIMIT_NOFILE): raise the limit (ulimit -n, "
                "setrlimit) or use fewer workers",
                pool->nslots,
                (long long)pool->nslots * PP__FDS_PER_WORKER + PP__FDS_SPARE,
                (long long)limit);
    goto cleanup;
  }
  pool->slots = pp__calloc((size_t)pool->nslots, sizeof(pp__slot_t));
  if (pool->slots == NULL) {
    pp__err_set(&err, PP_ENOMEM,
                "pp_pool_create: out of memory for %d "
                "workers",
                pool->nslots);
    goto cleanup;
  }
  if (pool_start(pool, &err) != 0) {
    pool->closing = 1;
    pool_stop(pool);
    goto cleanup;
  }
  *out = pool;
  return 0;

cleanup:
  pp__pool_free(pool);
  return pp__err_raise(&err);
}

int pp_pool_destroy(pp_pool_t *pool, pp_destroy_mode_t mode) {
  pp__queue_t *q;
  pp__err_t err;
  int last;
  if (pool == NULL)
    return 0;
  if (pp__pool_forked(pool, "pp_pool_destroy") != 0)
    return PP_ECLOSED;
  if (mode != PP_DESTROY_WAIT && mode != PP_DESTROY_CANCEL)
    return pp__fail(PP_EINVAL, "pp_pool_destroy: unknown mode %d", (int)mode);
  /* A callback thread that the pool's own callback thread waits for (or
   * that is the pool's own) could never join it. */
  if (pp__cb_wait_begin(pool, &err) != 0)
    return pp__err_raise(&err);
  pp__mutex_lock(pool->lock);
  pool->closing = 1;
  if (mode == PP_DESTROY_CANCEL) {
    /* Every source with calls queued or on workers is cancelled; sources
     * that are not queued any more have their calls on workers, and the
     * I/O thread finds those through its in-flight lists. */
    while (!pp__queue_empty(&pool->pending)) {
      q = pp__queue_head(&pool->pending);
      pp__src_cancel_locked(pp__queue_data(q, pp__src_t, link));
    }
    pool->cancel_all = 1;
    pool->news = 1;
    pp__pool_wake_locked(pool);
  }
  while (pool->queued > 0 || pool->running > 0)
    pp__cond_wait(pool->done_cond, pool->lock);
  pp__mutex_unlock(pool->lock);
  /* Every call has finished: their callbacks run (a callback that submits
   * gets PP_ECLOSED), then the callback thread stops. */
  pp__cb_stop(pool);
  pp__cb_wait_end(pool);

  if (pool->engine != NULL)
    pool->engine->stop(pool);
  else
    pool_stop(pool);

  pp__mutex_lock(pool->lock);
  pool->destroyed = 1;
  last = pp__pool_unused_locked(pool);
  pp__mutex_unlock(pool->lock);
  if (last)
    pp__pool_free(pool);
  return 0;
}

int pp_pool_workers(const pp_pool_t *pool) {
  if (pool == NULL)
    return pp__fail(PP_EINVAL, "pp_pool_workers: pool is NULL");
  if (pp__pool_forked(pool, "pp_pool_workers") != 0)
    return PP_ECLOSED;
  return pool->inline_mode ? 1 : pp__pool_width(pool);
}

int pp_pool_stats(pp_pool_t *pool, pp_pool_stats_t *stats) {
  if (pool == NULL || stats == NULL)
    return pp__fail(PP_EINVAL, "pp_pool_stats: NULL argument");
  if (pp__pool_forked(pool, "pp_pool_stats") != 0)
    return PP_ECLOSED;
  pp__mutex_lock(pool->lock);
  *stats = pool->stats;
  pp__mutex_unlock(pool->lock);
  return 0;
}

int pp_pool_worker_pids(pp_pool_t *pool, int64_t *pids, size_t n) {
  int i, count = 0;
  if (pool == NULL || (pids == NULL && n > 0))
    return pp__fail(PP_EINVAL, "pp_pool_worker_pids: NULL argument");
  if (pp__pool_forked(pool, "pp_pool_worker_pids") != 0)
    return PP_ECLOSED;
  pp__mutex_lock(pool->lock);
  for (i = 0; i < pool->nslots; i++) {
    if (pool->slots[i].pid == 0)
      continue;
    if ((size_t)count < n)
      pids[count] = pool->slots[i].pid;
    count++;
  }
  pp__mutex_unlock(pool->lock);
  return count;
}
