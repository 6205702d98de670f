/*
 * engine.c - the core's side of engines (engine.h): registration, the
 * choice of a pool's backend, and the table of core functions an engine
 * uses.
 *
 * An engine comes from a component library (procpool_mpi) that the core
 * never links: the application registers it (pp_mpi_enable(), which works
 * with static linking too), or, for PROCPOOL_BACKEND=mpi in a program that
 * did not, the core loads the shared component at run time and calls its
 * pp_mpi_enable() itself.  The second way needs a shared procpool: a
 * component loaded into a program linked with the static library would
 * register with a second copy of the core.
 */
#include <stdlib.h>
#include <string.h>

#include <apr_atomic.h>
#include <apr_dso.h>

#include "engine.h"

/* The registered engine; written by pp__engine_register (at the top of
 * main, before any pool) and read by pool creation. */
static const pp__engine_t *volatile registered;
/* A component loaded at run time stays loaded for the process' life. */
static apr_pool_t *dso_mem;
static volatile apr_uint32_t dso_tried;

static void core_lock(pp_pool_t *pool) {
  pp__mutex_lock(pool->lock);
}

static void core_unlock(pp_pool_t *pool) {
  pp__mutex_unlock(pool->lock);
}

static void core_broadcast(pp_pool_t *pool) {
  pp__cond_broadcast(pool->done_cond);
}

static const pp__core_t core = {
    PP__ENGINE_ABI,           core_lock,           core_unlock,
    core_broadcast,           pp__src_take_locked, pp__src_finish_locked,
    pp__src_give_back_locked, pp__log_text_from,        pp__tasks_default,
};

const pp__core_t *pp__engine_register(const pp__engine_t *engine) {
  if (engine == NULL || engine->abi != PP__ENGINE_ABI)
    return NULL;
  registered = engine;
  return &core;
}

/* Loads the shared MPI component and calls its registration.  Once per
 * process; failures leave no engine (the pool says so in its log). */
static void load_component(void) {
  char name[64];
  apr_dso_handle_t *dso;
  apr_dso_handle_sym_t sym;
  pp__err_t err;
  if (apr_atomic_cas32(&dso_tried, 1, 0) != 0)
    return;
  if (pp__apr_init(&err) != 0 || apr_pool_create(&dso_mem, NULL) != 0)
    return;
  pp__shared_lib_name("procpool_mpi", name, sizeof(name));
  if (apr_dso_load(&dso, name, dso_mem) != APR_SUCCESS)
    return;
  if (apr_dso_sym(&sym, dso, "pp_mpi_enable") == APR_SUCCESS)
    ((int (*)(void))sym)();
}

int pp__engine_backend(const pp_pool_options_t *o) {
  const char *env;
  if (o != NULL && o->backend != PP_BACKEND_DEFAULT)
    return o->backend;
  env = getenv("PROCPOOL_BACKEND");
  if (env != NULL && strcmp(env, "mpi") == 0)
    return PP_BACKEND_MPI;
  return PP_BACKEND_LOCAL;
}

const pp__engine_t *pp__engine_get(int load) {
  if (registered == NULL && load)
    load_component();
  return registered;
}

int pp__pool_width(const pp_pool_t *pool) {
  if (pool->engine != NULL)
    return pool->engine->workers(pool);
  return pool->nslots > 0 ? pool->nslots : 1;
}
