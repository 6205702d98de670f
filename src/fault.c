/*
 * fault.c - the counter behind fault injection (fault.h), compiled only
 * with the CMake option PROCPOOL_FAULT.
 *
 * The settings are read from the environment once, at the first fallible
 * call (a worker inherits them, and tells itself apart from a parent by
 * the mark its pool put in its environment, PP__WORKER_ENV, which is still
 * there at its first allocation).  The counter is a word that every
 * thread increments atomically, so the Nth call is one call even when
 * several threads allocate at once, although which call that is may
 * differ from one run to the next.
 */
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "../platform/platform.h"
#include "error.h"
#include "fault.h"

/* The build compiles this file only with PROCPOOL_FAULT; a build that
 * compiles every source (ci/test-windows.sh's clang check) gets nothing. */
#if defined(PP_FAULT)

enum { UNREAD, READING, READY };

static struct {
  uint32_t state; /* UNREAD, READING or READY (atomic) */
  int here;       /* this process is where faults are injected */
  int worker;     /* this process is a pool's worker */
  uint32_t at;    /* the first call that fails; 0: none */
  uint32_t times; /* how many fail; 0: every one from `at` on */
  char site[128]; /* "" (all), "alloc", "os" or a function name */
  char log[1024]; /* "" or the file that gets a line per fault */
} F;
static uint32_t counted; /* atomic */
static uint32_t fired;   /* atomic */

static uint32_t add1(uint32_t *word) {
  uint32_t old;
  do
    old = PP__LOAD_ACQ32(word);
  while (!PP__CAS32(word, old, old + 1));
  return old + 1;
}

static uint32_t env_u32(const char *name, uint32_t otherwise) {
  const char *v = getenv(name);
  char *end = NULL;
  unsigned long n;
  if (v == NULL || *v == '\0')
    return otherwise;
  n = strtoul(v, &end, 10);
  return end != v && *end == '\0' && n <= 0xffffffffUL ? (uint32_t)n
                                                       : otherwise;
}

static void env_str(const char *name, char *buf, size_t cap) {
  const char *v = getenv(name);
  pp__format(buf, cap, "%s", v != NULL ? v : "");
}

static void read_settings(void) {
  char in[32];
  F.worker = getenv(PP__WORKER_ENV) != NULL;
  env_str("PROCPOOL_FAULT_IN", in, sizeof(in));
  F.here = strcmp(in, "any") == 0 ||
           (F.worker ? strcmp(in, "worker") == 0
                     : in[0] == '\0' || strcmp(in, "parent") == 0);
  F.at = env_u32("PROCPOOL_FAULT_AT", 0);
  F.times = env_u32("PROCPOOL_FAULT_TIMES", 1);
  env_str("PROCPOOL_FAULT_SITE", F.site, sizeof(F.site));
  env_str("PROCPOOL_FAULT_LOG", F.log, sizeof(F.log));
}

/* Reads the settings once; a thread that comes while another reads them
 * waits (only the first call of the process can meet this). */
void pp__fault_setup(void) {
  if (PP__LOAD_ACQ32(&F.state) == READY)
    return;
  if (PP__CAS32(&F.state, UNREAD, READING)) {
    read_settings();
    PP__STORE_REL32(&F.state, READY);
    return;
  }
  while (PP__LOAD_ACQ32(&F.state) != READY)
    pp__cpu_relax();
}

static void log_line(const char *fmt, ...) PP__PRINTF(1, 2);
static void log_line(const char *fmt, ...) {
  FILE *fp;
  va_list ap;
  if (F.log[0] == '\0')
    return;
  fp = fopen(F.log, "a");
  if (fp == NULL)
    return;
  va_start(ap, fmt);
  vfprintf(fp, fmt, ap);
  va_end(ap);
  fclose(fp);
}

int pp__fault_hit(int kind, const char *site, const char *file, int line) {
  uint32_t n;
  pp__fault_setup();
  if (F.site[0] != '\0' &&
      !(strcmp(F.site, "alloc") == 0 ? kind == PP__FAULT_ALLOC
        : strcmp(F.site, "os") == 0  ? kind == PP__FAULT_OS
                                     : strcmp(F.site, site) == 0))
    return 0;
  n = add1(&counted);
  if (!F.here || F.at == 0 || n < F.at || (F.times != 0 && n - F.at >= F.times))
    return 0;
  add1(&fired);
  /* Said on stderr too: a worker's stderr reaches the pool's log. */
  fprintf(stderr,
          "procpool: injected fault #%u: %s %s (%s:%d) fails in the %s, "
          "pid %lld\n",
          n, kind == PP__FAULT_ALLOC ? "an allocation in" : "the call", site,
          file, line, F.worker ? "worker" : "parent",
          (long long)pp__self_pid());
  log_line("fired %s %lld %u %s %s:%d\n", F.worker ? "worker" : "parent",
           (long long)pp__self_pid(), n, site, file, line);
  return 1;
}

int pp__fault_fail(int status, const char *site) {
  return pp__os_fail(status, "%s: injected fault (%s, PROCPOOL_FAULT_AT=%u)",
                     site, pp_err_name(status), F.at);
}

void *pp__fault_malloc(size_t size, const char *site, const char *file,
                       int line) {
  return pp__fault_hit(PP__FAULT_ALLOC, site, file, line) ? NULL : malloc(size);
}

void *pp__fault_calloc(size_t n, size_t size, const char *site,
                       const char *file, int line) {
  return pp__fault_hit(PP__FAULT_ALLOC, site, file, line) ? NULL
                                                          : calloc(n, size);
}

void *pp__fault_realloc(void *p, size_t size, const char *site,
                        const char *file, int line) {
  return pp__fault_hit(PP__FAULT_ALLOC, site, file, line) ? NULL
                                                          : realloc(p, size);
}

void pp__fault_reset(void) {
  PP__STORE_REL32(&counted, 0);
  PP__STORE_REL32(&fired, 0);
  PP__STORE_REL32(&F.state, UNREAD);
}

void pp__fault_arm(unsigned after, unsigned times) {
  pp__fault_setup();
  F.here = 1;
  F.times = times;
  F.at = after == 0 ? 0 : PP__LOAD_ACQ32(&counted) + after;
}

unsigned pp__fault_count(void) {
  return PP__LOAD_ACQ32(&counted);
}

unsigned pp__fault_fired(void) {
  return PP__LOAD_ACQ32(&fired);
}

void pp__fault_report(void) {
  pp__fault_setup();
  log_line("count %s %lld %u\n", F.worker ? "worker" : "parent",
           (long long)pp__self_pid(), pp__fault_count());
}

#else
typedef int pp__fault_off_t; /* ISO C wants a declaration in every file */
#endif /* PP_FAULT */
