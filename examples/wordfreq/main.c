/*
 * wordfreq - counts word frequencies in a text file of any size with a pool
 * of worker processes: procpool's main demo.
 *
 *   wordfreq [--size=1G] [--workers=N] [--top=20] [--check] [--no-inline]
 * [--quiet]
 *            [--chunk=SIZE] [--cache-dir=DIR] [--regen]
 *            [--expect-checksum=HEX] [FILE]
 *
 * The file is cut into byte ranges; each range is one call of the task
 * "count_range" with the tuple (path, offset, length), made when a worker
 * can take it (pp_pool_imap: a streaming map, so the ranges of any file
 * take a few tuples of memory).  A worker opens the
 * file itself, counts the words of its range and sends back only the
 * distinct words and their counts, which the parent merges as the results
 * come in.  So the parent never reads the text, and the file may be far
 * larger than memory.
 *
 * Without FILE a deterministic corpus of --size bytes is generated once and
 * cached in $TMPDIR (see corpus.c).  The same ranges are then counted again
 * by an inline pool (PP_POOL_INLINE: the same task code and serialization,
 * in this process) to show the speed-up of the worker processes; --check
 * also counts the whole file as one range in this process and requires
 * equal counts and checksums.
 */
#include "wordfreq.h"

#include <ctype.h>
#include <errno.h>
#include <inttypes.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <apr_time.h>

#ifdef WF_HAVE_MPI
#include "procpool_mpi.h"
#endif

#define MIB ((int64_t)1 << 20)

static const pp_task_t tasks[] = {{"count_range", wf_count_task}, PP_TASK_END};

typedef struct options_s {
  int64_t size;
  int workers;
  int top;
  int check;
  int inline_run;
  int quiet; /* no progress bar */
  int64_t chunk;
  const char *cache_dir;
  int regen;
  int expect;
  uint64_t expected_sum;
  const char *file;
  int mpi; /* the pool runs on the other ranks of an MPI job */
} options_t;

/* The words, total and checksum of one run over the ranges. */
typedef struct merge_s {
  wf_table_t table;
  uint64_t sum;
  int failed;
} merge_t;

/* APR's clock: procpool already depends on APR, and msvcrt lacks C11's
 * timespec_get. */
static double now(void) {
  return (double)apr_time_now() * 1e-6;
}

static void usage(FILE *f) {
  fprintf(f,
          "usage: wordfreq [options] [FILE]\n"
          "Counts the words (runs of ASCII letters, lower-cased) of FILE, or\n"
          "of a generated corpus, with a pool of worker processes.\n"
          "  --size=SIZE        corpus size without FILE (K, M, G suffixes;"
          " default 1G)\n"
          "  --workers=N        worker processes (default: one per CPU)\n"
          "  --top=N            words to list (default 20)\n"
          "  --check            compare with a count of the whole file in "
          "this process\n"
          "  --quiet            no progress bar on stderr\n"
          "  --no-inline        skip the inline run that measures the "
          "speed-up\n"
          "  --chunk=SIZE       bytes per range (default: 1M to 64M)\n"
          "  --cache-dir=DIR    where the corpus is kept (default $TMPDIR)\n"
          "  --regen            generate the corpus even if it is cached\n"
          "  --expect-checksum=HEX  fail unless the file has this checksum\n"
          "  --mpi              run the calls on the other ranks of an MPI\n"
          "                     job (mpirun -n N wordfreq --mpi; the file\n"
          "                     must be at the same path on every node)\n");
}

/* Parses "123", "64K", "8M", "1G" (powers of 1024). */
static int parse_size(const char *s, int64_t *out) {
  static const char units[] = "KMGT";
  const char *unit;
  char *end;
  unsigned long long v;
  int shift = 0;
  errno = 0;
  v = strtoull(s, &end, 10);
  if (end == s || errno != 0)
    return -1;
  if (*end != '\0' && (unit = strchr(units, toupper((unsigned char)*end)))) {
    shift = 10 * (int)(unit - units + 1);
    end++;
  }
  if (*end != '\0' || v > (unsigned long long)(INT64_MAX >> shift))
    return -1;
  *out = (int64_t)(v << shift);
  return 0;
}

static int parse_args(int argc, char **argv, options_t *o) {
  int i;
  memset(o, 0, sizeof(*o));
  o->size = (int64_t)1 << 30;
  o->top = 20;
  o->inline_run = 1;
  for (i = 1; i < argc; i++) {
    const char *a = argv[i], *v = strchr(a, '=');
    v = v ? v + 1 : "";
    if (strcmp(a, "--help") == 0 || strcmp(a, "-h") == 0) {
      usage(stdout);
      exit(0);
    } else if (strncmp(a, "--size=", 7) == 0) {
      if (parse_size(v, &o->size) != 0 || o->size <= 0)
        goto bad;
    } else if (strncmp(a, "--workers=", 10) == 0) {
      o->workers = atoi(v);
      if (o->workers <= 0)
        goto bad;
    } else if (strncmp(a, "--top=", 6) == 0) {
      o->top = atoi(v);
    } else if (strcmp(a, "--check") == 0) {
      o->check = 1;
    } else if (strcmp(a, "--no-inline") == 0) {
      o->inline_run = 0;
    } else if (strcmp(a, "--quiet") == 0) {
      o->quiet = 1;
    } else if (strncmp(a, "--chunk=", 8) == 0) {
      if (parse_size(v, &o->chunk) != 0 || o->chunk <= 0)
        goto bad;
    } else if (strncmp(a, "--cache-dir=", 12) == 0) {
      o->cache_dir = v;
    } else if (strcmp(a, "--mpi") == 0) {
      o->mpi = 1;
    } else if (strcmp(a, "--regen") == 0) {
      o->regen = 1;
    } else if (strncmp(a, "--expect-checksum=", 18) == 0) {
      char *end;
      o->expect = 1;
      o->expected_sum = strtoull(v, &end, 16);
      if (*v == '\0' || *end != '\0')
        goto bad;
    } else if (a[0] == '-' || o->file != NULL) {
      goto bad;
    } else {
      o->file = a;
    }
  }
  return 0;
bad:
  fprintf(stderr, "wordfreq: bad argument '%s'\n", argv[i]);
  usage(stderr);
  return -1;
}

static const char *cache_dir(const options_t *o) {
  const char *names[] = {"TMPDIR", "TEMP", "TMP"}, *v;
  size_t i;
  if (o->cache_dir != NULL)
    return o->cache_dir;
  for (i = 0; i < sizeof(names) / sizeof(names[0]); i++)
    if ((v = getenv(names[i])) != NULL && v[0] != '\0')
      return v;
  return "/tmp";
}

/* Formats a byte count as "1 GiB", "64 MiB", or bytes if it is not round. */
static const char *human(int64_t n, char *buf, size_t cap) {
  static const char *const units[] = {"bytes", "KiB", "MiB", "GiB", "TiB"};
  int u = 0;
  while (u < 4 && n >= 1024 && n % 1024 == 0) {
    n /= 1024;
    u++;
  }
  snprintf(buf, cap, "%lld %s", (long long)n, units[u]);
  return buf;
}

/* Ranges of about an eighth of a worker's share, so that a slow range does
 * not leave the other workers idle at the end, between 1 and 64 MiB: large
 * enough that a call's cost is noise, small enough to keep results and
 * buffers small. */
static int64_t default_chunk(int64_t size, int workers) {
  int64_t c = size / (8 * (int64_t)workers);
  if (c < MIB)
    c = MIB;
  if (c > 64 * MIB)
    c = 64 * MIB;
  return c - c % (64 * 1024);
}

/* The byte ranges of a file, read one at a time by the streaming map
 * (pp_pool_imap): the tuple (path, offset, length) of a range is packed
 * when a worker can take it, so the parent holds a few ranges at once,
 * however large the file. */
typedef struct ranges_s {
  const char *path;
  int64_t size;
  int64_t chunk; /* a multiple of WF_ALIGN, which the checksum needs */
  size_t n;
  pp_buf_t last; /* the tuple given last; the map has copied it */
} ranges_t;

static void ranges_init(ranges_t *r, const char *path, int64_t size,
                        int64_t chunk) {
  memset(r, 0, sizeof(*r));
  if (chunk < WF_ALIGN)
    chunk = WF_ALIGN;
  chunk += (WF_ALIGN - chunk % WF_ALIGN) % WF_ALIGN;
  r->path = path;
  r->size = size;
  r->chunk = chunk;
  r->n = (size_t)((size + chunk - 1) / chunk);
}

/* The producer: the tuple of range next->index, or 0 after the last. */
static int next_range(void *data, pp_next_arg_t *next) {
  ranges_t *r = data;
  int64_t off = (int64_t)next->index * r->chunk;
  int64_t len = r->size - off < r->chunk ? r->size - off : r->chunk;
  int rc;
  pp_free((void *)r->last.data);
  r->last.data = NULL;
  if (next->index >= r->n)
    return 0;
  rc = pp_pack(&r->last, "s i i", r->path, off, len);
  if (rc != 0) {
    snprintf(next->message, sizeof(next->message),
             "cannot pack range %zu: %s", next->index, pp_last_error());
    return rc;
  }
  next->arg = r->last;
  return 1;
}

/* Merges each range's result as soon as it arrives (in any order: adding
 * counts commutes), so the parent holds one result at a time. */
static int merge_cb(void *data, size_t index, pp_result_t *r) {
  merge_t *m = data;
  if (r->status != 0) {
    fprintf(stderr, "wordfreq: range %zu failed (%s): %s\n", index,
            pp_err_name(r->status), r->message ? r->message : "");
    m->failed = 1;
  } else if (wf_merge(&m->table, &m->sum, r->data, r->len) != 0) {
    fprintf(stderr, "wordfreq: range %zu: malformed result or no memory\n",
            index);
    m->failed = 1;
  }
  pp_results_free(r, 1);
  return m->failed;
}

/* Counts every range over `pool` into a fresh *m and times it. */
static int count_all(pp_pool_t *pool, ranges_t *ranges, merge_t *m,
                     double *secs, int quiet) {
  pp_map_options_t mo;
  double t0 = now();
  int rc;
  memset(m, 0, sizeof(*m));
  if (wf_table_init(&m->table) != 0) {
    fprintf(stderr, "wordfreq: out of memory\n");
    return -1;
  }
  /* A bar on stderr while it runs (plain lines when stderr is a log);
   * results as they complete, since adding counts commutes. */
  memset(&mo, 0, sizeof(mo));
  mo.flags = PP_MAP_UNORDERED | (quiet ? 0 : PP_MAP_PROGRESS_BAR);
  rc = pp_pool_imap(pool, "count_range", next_range, ranges, merge_cb, m,
                    &mo);
  pp_free((void *)ranges->last.data);
  ranges->last.data = NULL;
  *secs = now() - t0;
  if (rc != 0 && !m->failed)
    fprintf(stderr, "wordfreq: %s\n", pp_last_error());
  return rc != 0 || m->failed ? -1 : 0;
}

static int make_pool(pp_pool_t **pool, int workers, unsigned flags, int mpi) {
  pp_pool_options_t o;
  memset(&o, 0, sizeof(o));
  o.workers = workers;
  o.flags = flags;
  o.backend = mpi ? PP_BACKEND_MPI : PP_BACKEND_DEFAULT;
  if (pp_pool_create(pool, &o) != 0) {
    fprintf(stderr, "wordfreq: cannot create a pool: %s\n", pp_last_error());
    return -1;
  }
  return 0;
}

static void report(const merge_t *m, int top) {
  wf_word_t *words = wf_table_sorted(&m->table);
  size_t i;
  if (words == NULL)
    return;
  printf("top %d words:\n", top);
  for (i = 0; i < m->table.used && i < (size_t)top; i++)
    printf("  %3zu. %-16.*s %12" PRIu64 "  %5.2f%%\n", i + 1, (int)words[i].len,
           words[i].word, words[i].count,
           100.0 * (double)words[i].count / (double)m->table.total);
  printf("total words:    %" PRIu64 "\n", m->table.total);
  printf("distinct words: %zu\n", m->table.used);
  printf("checksum:       %016" PRIx64 "\n", m->sum);
  free(words);
}

static int same(const merge_t *a, const merge_t *b) {
  return a->sum == b->sum && wf_table_equal(&a->table, &b->table);
}

int main(int argc, char **argv) {
  options_t o;
  char corpus[4200], hs[32], hc[32];
  const char *path;
  pp_pool_t *pool = NULL, *inl = NULL;
  ranges_t ranges, whole;
  merge_t par, seq, ref;
  int64_t size, chunk;
  double t0, start_secs, pool_secs, seq_secs = 0, ref_secs = 0;
  int rc, generated = 0, workers, status = 1;

#ifdef WF_HAVE_MPI
  /* Under mpirun, ranks other than 0 serve rank 0's pool inside the guard
   * (--mpi); elsewhere this changes nothing. */
  pp_mpi_enable();
#endif
  /* The worker guard: in a worker this serves calls and returns 1. */
  if (pp_worker_main(argc, argv, tasks, &rc))
    return rc;
  if (parse_args(argc, argv, &o) != 0)
    return 2;
  memset(&par, 0, sizeof(par));
  memset(&seq, 0, sizeof(seq));
  memset(&ref, 0, sizeof(ref));

  t0 = now();
  if (o.file != NULL) {
    path = o.file;
    if (wf_file_size(path, &size) != 0) {
      fprintf(stderr, "wordfreq: cannot open %s: %s\n", path, strerror(errno));
      return 1;
    }
  } else {
    if (wf_corpus_ensure(cache_dir(&o), o.size, o.regen, corpus, sizeof(corpus),
                         &generated) != 0)
      return 1;
    path = corpus;
    size = o.size;
  }
  printf("file: %s (%s, %s)\n", path, human(size, hs, sizeof(hs)),
         o.file      ? "given"
         : generated ? "generated"
                     : "cached corpus");
  if (generated)
    printf("generated in %.2f s\n", now() - t0);

  t0 = now();
  if (make_pool(&pool, o.workers, 0, o.mpi) != 0)
    goto cleanup;
  start_secs = now() - t0;
  workers = pp_pool_workers(pool);
  chunk = o.chunk ? o.chunk : default_chunk(size, workers);
  ranges_init(&ranges, path, size, chunk);
  printf("ranges: %zu of up to %s over %d workers, read as they are needed "
         "(pool started in %.3f s)\n",
         ranges.n, human(ranges.chunk, hc, sizeof(hc)), workers, start_secs);
  fflush(stdout);
  if (count_all(pool, &ranges, &par, &pool_secs, o.quiet) != 0)
    goto cleanup;
  pp_pool_destroy(pool, PP_DESTROY_WAIT);
  pool = NULL;

  /* The same calls in this process, through the same serialization. */
  if ((o.inline_run || o.check) && make_pool(&inl, 1, PP_POOL_INLINE, 0) != 0)
    goto cleanup;
  if (o.inline_run && count_all(inl, &ranges, &seq, &seq_secs, o.quiet) != 0)
    goto cleanup;
  if (o.check) {
    ranges_init(&whole, path, size, size);
    if (count_all(inl, &whole, &ref, &ref_secs, o.quiet) != 0)
      goto cleanup;
  }

  report(&par, o.top);
  printf("pool run:       %.3f s with %d workers, %.0f MiB/s\n", pool_secs,
         workers, (double)size / MIB / pool_secs);
  if (o.inline_run) {
    printf("inline run:     %.3f s in this process, %.0f MiB/s\n", seq_secs,
           (double)size / MIB / seq_secs);
    printf("speed-up:       %.2fx (%.2fx counting the pool's start-up)\n",
           seq_secs / pool_secs, seq_secs / (pool_secs + start_secs));
  }
  status = 0;
  if (o.inline_run && !same(&par, &seq)) {
    printf("check: FAILED: the inline run counted differently\n");
    status = 1;
  }
  if (o.check) {
    int ok = same(&par, &ref);
    printf("check: %s: the pool's counts and checksum %s a count of the "
           "whole file in this process (%.3f s)\n",
           ok ? "OK" : "FAILED", ok ? "equal" : "differ from", ref_secs);
    if (!ok)
      status = 1;
  }
  if (o.expect && par.sum != o.expected_sum) {
    printf("checksum: FAILED: expected %016" PRIx64 "\n", o.expected_sum);
    status = 1;
  }

cleanup:
  pp_pool_destroy(pool, PP_DESTROY_CANCEL);
  pp_pool_destroy(inl, PP_DESTROY_WAIT);
  wf_table_free(&par.table);
  wf_table_free(&seq.table);
  wf_table_free(&ref.table);
  return status;
}
