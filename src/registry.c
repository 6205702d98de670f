/*
 * registry.c - task tables (lookup by name, task libraries) and APR set-up.
 *
 * Only functions in a table can run: a frame names a task, and the worker
 * looks the name up here; it can never name an arbitrary symbol.
 */
#include <string.h>

#include <apr_errno.h>
#include <apr_general.h>
#include <apr_strings.h>

#include "internal.h"

static const pp_task_t *default_tasks;

void pp__tasks_set_default(const pp_task_t *table) {
  default_tasks = table;
}

const pp_task_t *pp__tasks_default(void) {
  return default_tasks;
}

const pp_task_t *pp__task_find(const pp_task_t *table, const char *name) {
  if (table == NULL || name == NULL)
    return NULL;
  for (; table->name != NULL; table++)
    if (strcmp(table->name, name) == 0)
      return table->fn != NULL ? table : NULL;
  return NULL;
}

int pp__tasks_check(const pp_task_t *table, pp__err_t *err) {
  const pp_task_t *a, *b;
  if (table == NULL)
    return pp__err_set(err, PP_EINVAL,
                       "no task table: pass one to pp_worker_main() or set "
                       "pp_pool_options_t.tasks");
  for (a = table; a->name != NULL; a++) {
    size_t n = strlen(a->name);
    if (n == 0 || n > PP__NAME_MAX)
      return pp__err_set(err, PP_EINVAL, "task table entry %d has a bad name",
                         (int)(a - table));
    if (a->fn == NULL)
      return pp__err_set(err, PP_EINVAL, "task '%s' has no function", a->name);
    for (b = table; b != a; b++)
      if (strcmp(a->name, b->name) == 0)
        return pp__err_set(err, PP_EINVAL, "task name '%s' appears twice",
                           a->name);
  }
  return 0;
}

int pp__tasks_load(apr_pool_t *mem, const char *path, const pp_task_t **table,
                   pp__err_t *err) {
  apr_dso_handle_t *dso = NULL;
  apr_dso_handle_sym_t sym = NULL;
  const pp_task_t *(*get)(void);
  char why[256];
  apr_status_t rv;

  *table = NULL;
  rv = apr_dso_load(&dso, path, mem);
  if (rv != APR_SUCCESS)
    return pp__err_set(err, PP_EDSO, "cannot load task library '%s': %s", path,
                       apr_dso_error(dso, why, sizeof(why)));
  rv = apr_dso_sym(&sym, dso, PP_TASK_LIBRARY_SYMBOL);
  if (rv != APR_SUCCESS)
    return pp__err_set(err, PP_EDSO,
                       "task library '%s' has no %s() (use PP_TASK_LIBRARY)",
                       path, PP_TASK_LIBRARY_SYMBOL);
  /* A data-to-function pointer conversion through memcpy, which ISO C allows
   * where a cast would warn. */
  memcpy(&get, &sym, sizeof(get));
  *table = get();
  return pp__tasks_check(*table, err) == 0
             ? 0
             : pp__err_set(err, PP_EDSO, "task library '%s': %s", path,
                           err->text);
}

/* APR's own reference count is a plain int, so apr_initialize() and
 * apr_terminate() from several threads race (and terminating while another
 * thread's pool still lives destroys memory it uses).  APR is therefore set
 * up once per process, under the platform's one-time lock, and never torn
 * down: the operating system reclaims it with the process. */
static int apr_setup(void) {
  char buf[200];
  apr_status_t rv;
  if (PP__FAULT_HIT("apr_initialize"))
    return pp__fault_fail(PP_ENOMEM, "apr_initialize");
  rv = apr_initialize();
  if (rv == APR_SUCCESS)
    return 0;
  /* APR counted the call before it failed: apr_terminate() takes the count
   * back and frees what it set up, so that the next pp__once() starts
   * over instead of finding APR "initialized" half-way. */
  apr_terminate();
  return pp__os_fail(APR_STATUS_IS_ENOMEM(rv) || rv == APR_ENOPOOL ? PP_ENOMEM
                                                                   : PP_EIO,
                     "apr_initialize: %s", apr_strerror(rv, buf, sizeof(buf)));
}

int pp__apr_init(pp__err_t *err) {
  static pp__once_t once = PP__ONCE_INIT;
  int rc = pp__once(&once, apr_setup);
  return rc == 0 ? 0
                 : pp__err_set(err, rc, "APR could not be initialized (%s)",
                               pp__os_reason());
}

int pp__from_apr(pp__err_t *err, apr_status_t rv, const char *what) {
  char buf[200];
  int status = PP_EIO;
  /* Running out of memory, threads or descriptors: the statuses
   * pp_pool_create() lists for it (as pp__posix_status does). */
  if (APR_STATUS_IS_ENOMEM(rv) || APR_STATUS_IS_EAGAIN(rv))
    status = PP_ENOMEM;
  else if (APR_STATUS_IS_EMFILE(rv) || APR_STATUS_IS_ENFILE(rv))
    status = PP_ESPAWN;
  else if (APR_STATUS_IS_EINVAL(rv))
    status = PP_EINVAL;
  return pp__err_set(err, status, "%s: %s", what,
                     apr_strerror(rv, buf, sizeof(buf)));
}
