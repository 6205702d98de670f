/*
 * bench.h - what procpool-bench's two files (bench.c, raw.c) share.
 */
#ifndef PROCPOOL_BENCH_H
#define PROCPOOL_BENCH_H

#include <stddef.h>

#include "procpool.h"

/* The options of one run; parse_args() in bench.c fills them. */
typedef struct bench_opts_s {
  int workers;        /* worker processes (or raw children) */
  long calls;         /* tiny calls in a map */
  long futures;       /* futures of the as_completed figures */
  size_t big;         /* bytes of the large echo */
  const char *figure; /* which figure to measure */
} bench_opts_t;

/* Seconds on a monotonic clock. */
double bench_now(void);

/* The median of v[0..n-1]; sorts v. */
double bench_median(double *v, int n);

/* Prints one row: "key value unit description". */
void bench_row(const char *key, double value, const char *unit,
               const char *what);

/* The process' peak resident memory in MB (0 where unknown). */
double bench_peak_mb(void);

/* The eight bytes of a tiny call. */
extern const char bench_tiny[8];

/* as_completed.c: the figure named in o->figure (as_completed,
 * as_completed_one, as_completed_many); returns the exit code. */
int bench_as_completed(const bench_opts_t *o);

/* raw.c: the floor with plain sockets.  bench_raw_child() runs the child
 * side when argv says so (and returns 1 with its exit code in *rc);
 * bench_raw_init() remembers the program to start; bench_raw_figure()
 * measures the raw_* figure named in o->figure and returns the exit code. */
int bench_raw_child(int argc, char **argv, int *rc);
void bench_raw_init(const char *argv0);
int bench_raw_figure(const bench_opts_t *o);

#endif
