/*
 * fault.h - fault injection, for procpool's own tests (the CMake option
 * PROCPOOL_FAULT, which defines PP_FAULT for the library).
 *
 * Every allocation of the library goes through pp__malloc, pp__calloc and
 * pp__realloc, and every platform function that can fail begins with
 * PP__FAULT_RETURN(status) (or tests PP__FAULT_HIT where a failure happens
 * in the middle of it).  Without PP_FAULT these are the C library's
 * functions and nothing: the option costs nothing when it is off.  With it,
 * each of them is a numbered "fallible call" of the process, and one
 * counter (fault.c) can make the Nth of them fail as it really could:
 * NULL from an allocation, the status and a sentence saying the fault was
 * injected from a platform function.  Environment variables choose which
 * (workers inherit them; docs/design.md, "Fault injection"):
 *
 *   PROCPOOL_FAULT_AT=N      fail the Nth fallible call (1, 2, ...); unset
 *                            or 0: count only
 *   PROCPOOL_FAULT_IN=...    where: parent (the default), worker, or any
 *   PROCPOOL_FAULT_SITE=...  count only the calls of one site: a function
 *                            name (pp__poller_add_proc, pp__flight_push),
 *                            or "alloc" / "os" for every allocation /
 *                            every platform call
 *   PROCPOOL_FAULT_TIMES=K   fail K calls from the Nth on (default 1;
 *                            0: every one from the Nth on)
 *   PROCPOOL_FAULT_LOG=path  append a line per injected fault ("fired
 *                            ...") and a worker's count at its end
 *                            ("count ...") to this file
 *
 * Each injected fault also writes one line to stderr, so a worker's fault
 * reaches the pool's log callback.
 */
#ifndef PP_FAULT_H
#define PP_FAULT_H

#include <stddef.h>
#include <stdlib.h>

#if defined(PP_FAULT)

#define PP__FAULT_ALLOC 1
#define PP__FAULT_OS 2

/* Counts one fallible call of `kind` at `site` (a function name), and
 * returns 1 if it is to fail.  Thread-safe. */
int pp__fault_hit(int kind, const char *site, const char *file, int line);
/* Records "<site>: injected fault" as the OS reason (error.h) and returns
 * `status`. */
int pp__fault_fail(int status, const char *site);
void *pp__fault_malloc(size_t size, const char *site, const char *file,
                       int line);
void *pp__fault_calloc(size_t n, size_t size, const char *site,
                       const char *file, int line);
void *pp__fault_realloc(void *p, size_t size, const char *site,
                        const char *file, int line);
/* Reads the settings, if that has not happened yet: pp_worker_main()
 * calls it before it removes the worker's mark from the environment. */
void pp__fault_setup(void);
/* Reads the environment again and starts counting from 0 (tests, between
 * cases; no other thread of the library may run). */
void pp__fault_reset(void);
/* From now on, fails `times` fallible calls (0: every one) from the
 * `after`th next one on (after 0: none), keeping the count and the other
 * settings: a test arms a fault while its pool runs. */
void pp__fault_arm(unsigned after, unsigned times);
/* The fallible calls this process has counted, and the faults injected. */
unsigned pp__fault_count(void);
unsigned pp__fault_fired(void);
/* Appends this process' count to PROCPOOL_FAULT_LOG, if set. */
void pp__fault_report(void);

#define pp__malloc(size) pp__fault_malloc((size), __func__, __FILE__, __LINE__)
#define pp__calloc(n, size)                                                    \
  pp__fault_calloc((n), (size), __func__, __FILE__, __LINE__)
#define pp__realloc(p, size)                                                   \
  pp__fault_realloc((p), (size), __func__, __FILE__, __LINE__)
/* At the top of a platform function (after its out-parameters are reset):
 * returns `status` when this call is to fail. */
#define PP__FAULT_RETURN(status)                                               \
  do {                                                                         \
    if (pp__fault_hit(PP__FAULT_OS, __func__, __FILE__, __LINE__))             \
      return pp__fault_fail((status), __func__);                               \
  } while (0)
/* 1 when this call of `site` is to fail (a failure in the middle of a
 * function, or of a library call such as apr_thread_create). */
#define PP__FAULT_HIT(site)                                                    \
  pp__fault_hit(PP__FAULT_OS, (site), __FILE__, __LINE__)
/* 1 when this allocation that does not go through pp__malloc (an APR
 * pool's) is to fail. */
#define PP__FAULT_ALLOC_HIT()                                                  \
  pp__fault_hit(PP__FAULT_ALLOC, __func__, __FILE__, __LINE__)

#else

#define pp__malloc(size) malloc(size)
#define pp__calloc(n, size) calloc((n), (size))
#define pp__realloc(p, size) realloc((p), (size))
#define PP__FAULT_RETURN(status) ((void)0)
#define PP__FAULT_HIT(site) 0
#define PP__FAULT_ALLOC_HIT() 0
#define pp__fault_fail(status, site) (status)
#define pp__fault_setup() ((void)0)
#define pp__fault_report() ((void)0)

#endif

#endif /* PP_FAULT_H */
