/*
 * corpus.c - a deterministic text corpus of any size.
 *
 * The words follow Zipf's law (the word of rank r has weight 1 / (r + 1)),
 * as they do in natural language, so that the top of the count is the same
 * short list of frequent words and the tail is long.  The vocabulary is the
 * hundred most frequent English words followed by made-up words built from
 * syllables.  Sentences start with a capital letter and end with a full
 * stop, some words carry a comma, lines wrap at 72 columns, paragraphs are
 * separated by blank lines, and one token in 128 is a number: a realistic
 * mix of separators for the counter.
 *
 * Everything comes from one fixed-seed PRNG (splitmix64) and integer
 * arithmetic; the only floating point is correctly rounded division and
 * addition in a fixed order, so the same size gives the same bytes on every
 * machine.  Changing the output means bumping WF_CORPUS_VERSION.
 */
#include "wordfreq.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>

#ifdef _WIN32
#include <process.h>
#define wf_getpid _getpid
#else
#include <unistd.h>
#define wf_getpid getpid
#endif

#define WF_SEED 0x70726f63706f6f6cu /* "procpool" */
#define WF_VOCAB 50000
#define WF_GUIDE_BITS 16
#define WF_LINE 72
#define WF_OUT ((size_t)1 << 20)
#define WF_WORD_MAX 32

/* The most frequent English words, most frequent first. */
static const char *const common_words[] = {
    "the",   "of",   "and",   "to",     "a",     "in",    "is",    "you",
    "that",  "it",   "he",    "was",    "for",   "on",    "are",   "as",
    "with",  "his",  "they",  "i",      "at",    "be",    "this",  "have",
    "from",  "or",   "one",   "had",    "by",    "word",  "but",   "not",
    "what",  "all",  "were",  "we",     "when",  "your",  "can",   "said",
    "there", "use",  "an",    "each",   "which", "she",   "do",    "how",
    "their", "if",   "will",  "up",     "other", "about", "out",   "many",
    "then",  "them", "these", "so",     "some",  "her",   "would", "make",
    "like",  "him",  "into",  "time",   "has",   "look",  "two",   "more",
    "write", "go",   "see",   "number", "no",    "way",   "could", "people",
    "my",    "than", "first", "water",  "been",  "call",  "who",   "oil",
    "its",   "now",  "find",  "long",   "down",  "day",   "did",   "get",
    "come",  "made", "may",   "part"};

#define WF_COMMON (sizeof(common_words) / sizeof(common_words[0]))

static uint64_t rng_next(uint64_t *state) {
  uint64_t z = (*state += 0x9e3779b97f4a7c15u);
  z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9u;
  z = (z ^ (z >> 27)) * 0x94d049bb133111ebu;
  return z ^ (z >> 31);
}

typedef struct vocab_s {
  char words[WF_VOCAB][WF_WORD_MAX];
  unsigned char len[WF_VOCAB];
  /* cdf[r]: the upper end (exclusive) of rank r's share of [0, 2^32). */
  uint64_t cdf[WF_VOCAB];
  /* guide[k]: the first rank whose share reaches k << (32 - WF_GUIDE_BITS),
   * so a sample needs only a short scan. */
  uint32_t guide[1u << WF_GUIDE_BITS];
} vocab_t;

/* Makes a word of 1 to 4 syllables, consonant + vowel + maybe a final
 * consonant: pronounceable, and distinct enough from English. */
static size_t made_up_word(uint64_t *rng, char *out) {
  static const char onset[] = "bcdfghjklmnprstvwz";
  static const char vowel[] = "aeiou";
  static const char coda[] = "lmnrst";
  static const int syllables[8] = {1, 2, 2, 2, 3, 3, 3, 4};
  int i, count = syllables[rng_next(rng) & 7];
  size_t n = 0;
  for (i = 0; i < count; i++) {
    uint64_t y = rng_next(rng);
    out[n++] = onset[y % (sizeof(onset) - 1)];
    out[n++] = vowel[(y >> 8) % (sizeof(vowel) - 1)];
    if (((y >> 16) & 3) == 0)
      out[n++] = coda[(y >> 24) % (sizeof(coda) - 1)];
  }
  return n;
}

static int vocab_build(vocab_t *v, uint64_t *rng) {
  wf_table_t seen;
  double total = 0, cum = 0;
  size_t r, n = 0;
  uint32_t k;

  if (wf_table_init(&seen) != 0)
    return -1;
  /* Common words first, then made-up words that are not already taken. */
  while (n < WF_VOCAB) {
    char w[WF_WORD_MAX];
    size_t len;
    if (n < WF_COMMON) {
      len = strlen(common_words[n]);
      memcpy(w, common_words[n], len);
    } else {
      len = made_up_word(rng, w);
    }
    if (wf_table_get(&seen, w, len) != 0)
      continue;
    if (wf_table_add(&seen, w, len, wf_hash(w, len), 1) != 0) {
      wf_table_free(&seen);
      return -1;
    }
    memcpy(v->words[n], w, len);
    v->len[n++] = (unsigned char)len;
  }
  wf_table_free(&seen);

  for (r = 0; r < WF_VOCAB; r++)
    total += 1.0 / (double)(r + 1);
  for (r = 0; r < WF_VOCAB; r++) {
    cum += 1.0 / (double)(r + 1);
    v->cdf[r] = (uint64_t)(cum / total * 4294967296.0);
  }
  v->cdf[WF_VOCAB - 1] = (uint64_t)1 << 32;
  for (r = 0, k = 0; k < (1u << WF_GUIDE_BITS); k++) {
    uint64_t at = (uint64_t)k << (32 - WF_GUIDE_BITS);
    while (v->cdf[r] <= at)
      r++;
    v->guide[k] = (uint32_t)r;
  }
  return 0;
}

static size_t vocab_sample(const vocab_t *v, uint32_t u) {
  size_t r = v->guide[u >> (32 - WF_GUIDE_BITS)];
  while (v->cdf[r] <= u)
    r++;
  return r;
}

/* The writer's state between tokens. */
typedef struct gen_s {
  uint64_t rng;
  int col;           /* column of the line being written; 0 = line start */
  int sentence_left; /* tokens left in the sentence; 0 = start a new one */
} gen_t;

/* Appends one token with the separator in front of it and the punctuation
 * behind it; writes at most 2 * WF_WORD_MAX bytes. */
static size_t gen_token(gen_t *g, const vocab_t *v, char *out) {
  uint64_t x = rng_next(&g->rng);
  char tok[WF_WORD_MAX];
  size_t len, n = 0;
  int capital = 0;

  if (g->sentence_left == 0) {
    g->sentence_left = 4 + (int)(rng_next(&g->rng) % 16);
    capital = 1;
  }
  if ((x & 127) == 0) {
    len =
        (size_t)snprintf(tok, sizeof(tok), "%u", (unsigned)((x >> 8) % 10000));
  } else {
    size_t r = vocab_sample(v, (uint32_t)(x >> 32));
    len = v->len[r];
    memcpy(tok, v->words[r], len);
  }
  if (g->col > 0) {
    if (g->col + 1 + (int)len > WF_LINE) {
      out[n++] = '\n';
      g->col = 0;
    } else {
      out[n++] = ' ';
      g->col++;
    }
  }
  if (capital && tok[0] >= 'a' && tok[0] <= 'z')
    tok[0] = (char)(tok[0] - 'a' + 'A');
  memcpy(out + n, tok, len);
  n += len;
  g->col += (int)len;
  if (--g->sentence_left == 0) {
    out[n++] = '.';
    g->col++;
    if (((x >> 16) & 7) == 0) {
      memcpy(out + n, "\n\n", 2);
      n += 2;
      g->col = 0;
    }
  } else if (((x >> 20) & 15) == 0) {
    out[n++] = ',';
    g->col++;
  }
  return n;
}

/* Writes the corpus to a temporary name and renames it, so that an
 * interrupted run never leaves a partial file under the final name. */
static int generate(const char *path, int64_t size) {
  char tmp[4096 + 64];
  vocab_t *v = malloc(sizeof(*v));
  char *buf = malloc(WF_OUT + 2 * WF_WORD_MAX);
  gen_t g = {WF_SEED, 0, 0};
  int64_t written = 0;
  FILE *f = NULL;
  int rc = -1;

  snprintf(tmp, sizeof(tmp), "%s.partial-%ld", path, (long)wf_getpid());
  if (v == NULL || buf == NULL || vocab_build(v, &g.rng) != 0) {
    fprintf(stderr, "wordfreq: out of memory\n");
    goto cleanup;
  }
  f = fopen(tmp, "wb");
  if (f == NULL) {
    fprintf(stderr, "wordfreq: cannot create %s: %s\n", tmp, strerror(errno));
    goto cleanup;
  }
  while (written < size) {
    size_t len = 0;
    while (len < WF_OUT && written + (int64_t)len < size)
      len += gen_token(&g, v, buf + len);
    if (written + (int64_t)len >= size) {
      len = (size_t)(size - written);
      buf[len - 1] = '\n'; /* the file ends with a whole line */
    }
    if (fwrite(buf, 1, len, f) != len) {
      fprintf(stderr, "wordfreq: cannot write %s: %s\n", tmp, strerror(errno));
      goto cleanup;
    }
    written += (int64_t)len;
  }
  if (fclose(f) != 0) {
    f = NULL;
    fprintf(stderr, "wordfreq: cannot write %s: %s\n", tmp, strerror(errno));
    goto cleanup;
  }
  f = NULL;
#ifdef _WIN32
  remove(path); /* rename() does not replace a file on Windows */
#endif
  if (rename(tmp, path) != 0) {
    fprintf(stderr, "wordfreq: cannot rename %s to %s: %s\n", tmp, path,
            strerror(errno));
    goto cleanup;
  }
  rc = 0;

cleanup:
  if (f != NULL)
    fclose(f);
  if (rc != 0)
    remove(tmp);
  free(v);
  free(buf);
  return rc;
}

int wf_file_size(const char *path, int64_t *size) {
  FILE *f = fopen(path, "rb");
  int rc = -1;
  if (f == NULL)
    return -1;
  if (wf_fseek(f, 0, SEEK_END) == 0) {
    *size = (int64_t)wf_ftell(f);
    rc = *size < 0 ? -1 : 0;
  }
  fclose(f);
  return rc;
}

int wf_corpus_ensure(const char *dir, int64_t size, int regen, char *path,
                     size_t path_cap, int *generated) {
  int64_t have;
  int n;
  *generated = 0;
  if (size <= 0) {
    fprintf(stderr, "wordfreq: the corpus size must be positive\n");
    return -1;
  }
  n = snprintf(path, path_cap, "%s/procpool-wordfreq-v%d-%lld.txt", dir,
               WF_CORPUS_VERSION, (long long)size);
  if (n < 0 || (size_t)n >= path_cap || (size_t)n > 4096) {
    fprintf(stderr, "wordfreq: cache directory name too long\n");
    return -1;
  }
  if (!regen && wf_file_size(path, &have) == 0 && have == size)
    return 0;
  if (generate(path, size) != 0)
    return -1;
  *generated = 1;
  return 0;
}
