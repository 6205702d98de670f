/*
 * wordfreq.h - the pieces of the word-frequency demo.
 *
 *   count.c   what a word is, the word table, counting one byte range of a
 *             file, the task that runs it in a worker and the compact form
 *             of its result
 *   corpus.c  the deterministic test corpus (Zipf-distributed words)
 *   main.c    options, splitting the file into ranges, the pool runs,
 *             merging, the report
 *
 * Words: a word is a maximal run of ASCII letters (A-Z, a-z), counted in
 * lower case.  Every other byte separates words: spaces, punctuation,
 * digits, control bytes and every byte >= 0x80 (so "naïve" in UTF-8 counts
 * as "na" and "ve").  A range [offset, offset + length) owns exactly the
 * words that *start* inside it: it skips a word that began before its
 * offset and reads past its end to finish its last word.  So any split of a
 * file into ranges counts every word once, whatever the range sizes.
 */
#ifndef WORDFREQ_H
#define WORDFREQ_H

/* fseeko/ftello and 64-bit file offsets on 32-bit POSIX systems.  These must
 * come before any system header, so every .c file includes this one first. */
#ifndef _WIN32
#ifndef _POSIX_C_SOURCE
#define _POSIX_C_SOURCE 200809L
#endif
#ifndef _FILE_OFFSET_BITS
#define _FILE_OFFSET_BITS 64
#endif
#endif

#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

#include "procpool.h"

#ifdef _WIN32
#define wf_fseek _fseeki64
#define wf_ftell _ftelli64
#else
#define wf_fseek fseeko
#define wf_ftell ftello
#endif

/* ---- the word table (count.c) ---- */

/* One distinct word; count 0 marks an empty slot. */
typedef struct wf_entry_s {
  uint64_t hash;
  uint64_t prefix; /* the word's first 8 bytes, zero-padded, little-endian */
  uint64_t count;
  size_t off; /* of the word's bytes in the table's key arena */
  size_t len;
} wf_entry_t;

/* An open-addressing hash table from word to count.  Keys live in one
 * growing arena so that a table is a handful of allocations. */
typedef struct wf_table_s {
  wf_entry_t *slots;
  size_t cap;     /* a power of two */
  size_t used;    /* distinct words */
  uint64_t total; /* words counted */
  char *keys;
  size_t keys_len;
  size_t keys_cap;
} wf_table_t;

/* Returns 0 or -1 when memory is short (for all wf_table_* functions). */
int wf_table_init(wf_table_t *t);
void wf_table_free(wf_table_t *t);
uint64_t wf_hash(const char *word, size_t len);
/* Adds n (> 0) occurrences of a word whose wf_hash() is `hash`. */
int wf_table_add(wf_table_t *t, const char *word, size_t len, uint64_t hash,
                 uint64_t n);
/* Returns the word's count, 0 if absent. */
uint64_t wf_table_get(const wf_table_t *t, const char *word, size_t len);
/* Returns 1 if both tables hold the same words with the same counts. */
int wf_table_equal(const wf_table_t *a, const wf_table_t *b);
/* A word of a table, for reports. */
typedef struct wf_word_s {
  const char *word; /* into the table's arena: not NUL-terminated */
  size_t len;
  uint64_t count;
} wf_word_t;

/* Returns a malloc'd array of the table's t->used words sorted by count
 * (descending), then by word, or NULL if memory is short.  It points into
 * the table, so it is valid while the table is unchanged. */
wf_word_t *wf_table_sorted(const wf_table_t *t);

/* ---- counting (count.c) ---- */

/* Ranges must start (and end, except at the end of the file) at multiples
 * of this, so that the checksum does not depend on the split. */
#define WF_ALIGN 8

/*
 * Counts the words that start in [off, off + len) of the file into `t`, and
 * adds the range's checksum (see wf_checksum) to *sum.  Returns 0, or -1
 * with a reason in err.
 */
int wf_count_range(const char *path, int64_t off, int64_t len, wf_table_t *t,
                   uint64_t *sum, char *err, size_t err_cap);

/* The checksum of `n` bytes that lie at file offset `pos` (a multiple of
 * WF_ALIGN): a sum over the file's aligned 8-byte words, each mixed with its
 * position, so the sums of the ranges of any aligned split add up to the
 * checksum of the whole file. */
uint64_t wf_checksum(const unsigned char *p, size_t n, int64_t pos);

/* The task: argument tuple ("s i i": path, offset, length); result: the
 * range's table and checksum in the form wf_merge() reads. */
int wf_count_task(pp_call_t *call, const void *arg, size_t len);

/* Adds a serialized range result to `t` and its checksum to *sum.  Returns
 * 0, or -1 if the bytes are malformed or memory is short. */
int wf_merge(wf_table_t *t, uint64_t *sum, const void *data, size_t len);

/* ---- the corpus (corpus.c) ---- */

/* Bumped whenever the generator's output changes; part of the file name, so
 * a cached corpus of an older generator is never reused. */
#define WF_CORPUS_VERSION 1

/*
 * Makes sure the corpus of `size` bytes exists in directory `dir` (it is
 * generated if it is missing, has another size, or `regen` is set) and
 * writes its path to `path`.  *generated says whether it was written now.
 * Returns 0, or -1 with a message on stderr.
 */
int wf_corpus_ensure(const char *dir, int64_t size, int regen, char *path,
                     size_t path_cap, int *generated);

/* Writes the size of the file at `path` to *size; returns 0 or -1. */
int wf_file_size(const char *path, int64_t *size);

#endif /* WORDFREQ_H */
