/*
 * count.c - the word table, counting one byte range of a file, and the task
 * that does it in a worker and sends back a compact result.
 *
 * The result of a range is small next to the range itself (a 64 MiB range
 * of text holds a few tens of thousands of distinct words), so the parent
 * only ever holds merged counts, never file contents.
 */
#include "wordfreq.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>

/* How much of the file a task reads at a time.  A multiple of WF_ALIGN, so
 * every read inside a range starts at an aligned offset. */
#define WF_BUF ((size_t)1 << 20)
/* Reads past the end of a range only finish its last word, so they are
 * small. */
#define WF_TAIL_BUF ((size_t)4096)

/* ---- what a word is ---- */

/* lower[b] is the lower-case letter for an ASCII letter byte b, else 0. */
static unsigned char lower[256];

static void lower_init(void) {
  int c;
  if (lower['a'])
    return;
  for (c = 'a'; c <= 'z'; c++) {
    lower[c] = (unsigned char)c;
    lower[c - 'a' + 'A'] = (unsigned char)c;
  }
}

/* Reads 8 bytes little-endian, so hashes and checksums are the same on
 * every machine (compilers turn this into one load). */
static inline uint64_t load_le64(const unsigned char *p) {
  return (uint64_t)p[0] | (uint64_t)p[1] << 8 | (uint64_t)p[2] << 16 |
         (uint64_t)p[3] << 24 | (uint64_t)p[4] << 32 | (uint64_t)p[5] << 40 |
         (uint64_t)p[6] << 48 | (uint64_t)p[7] << 56;
}

/* Reads n < 8 bytes little-endian as if zeros followed them. */
static inline uint64_t load_le_tail(const unsigned char *p, size_t n) {
  uint64_t w = 0;
  size_t i;
  for (i = 0; i < n; i++)
    w |= (uint64_t)p[i] << (8 * i);
  return w;
}

/* The first 8 bytes of a word, zero-padded: kept in every table entry, so
 * that most words (8 letters or fewer) compare without touching the key
 * arena. */
static uint64_t word_prefix(const char *word, size_t len) {
  const unsigned char *p = (const unsigned char *)word;
  return len >= 8 ? load_le64(p) : load_le_tail(p, len);
}

static inline uint64_t hash_step(uint64_t h, uint64_t w) {
  h = (h ^ w) * 0xff51afd7ed558ccdu;
  return h ^ (h >> 32);
}

static uint64_t hash_final(uint64_t h) {
  h ^= h >> 29;
  h *= 0xc4ceb9fe1a85ec53u;
  return h ^ (h >> 32);
}

/* Hashes whole 8-byte pieces: words are short, so this costs one or two
 * multiplications per word instead of one per letter. */
uint64_t wf_hash(const char *word, size_t len) {
  const unsigned char *p = (const unsigned char *)word;
  uint64_t h = 0x9e3779b97f4a7c15u ^ len;
  size_t i;
  for (i = 0; len - i >= 8; i += 8)
    h = hash_step(h, load_le64(p + i));
  if (i < len)
    h = hash_step(h, load_le_tail(p + i, len - i));
  return hash_final(h);
}

/* wf_hash() of a word followed by at least 7 zero bytes: the same value
 * without the byte-by-byte tail. */
static uint64_t hash_padded(const char *word, size_t len) {
  const unsigned char *p = (const unsigned char *)word;
  uint64_t h = 0x9e3779b97f4a7c15u ^ len;
  size_t i;
  for (i = 0; i < len; i += 8)
    h = hash_step(h, load_le64(p + i));
  return hash_final(h);
}

uint64_t wf_checksum(const unsigned char *p, size_t n, int64_t pos) {
  uint64_t sum = 0, idx = (uint64_t)pos / WF_ALIGN, w, x;
  size_t i;
  for (i = 0; i < n; i += 8, idx++) {
    w = n - i >= 8 ? load_le64(p + i) : load_le_tail(p + i, n - i);
    /* splitmix64's finalizer of the word mixed with its index: moving,
     * swapping or changing any byte changes the sum. */
    x = w ^ (idx * 0x9e3779b97f4a7c15u);
    x = (x ^ (x >> 30)) * 0xbf58476d1ce4e5b9u;
    x = (x ^ (x >> 27)) * 0x94d049bb133111ebu;
    sum += x ^ (x >> 31);
  }
  return sum;
}

/* ---- the table ---- */

int wf_table_init(wf_table_t *t) {
  memset(t, 0, sizeof(*t));
  t->cap = 1024;
  t->slots = calloc(t->cap, sizeof(*t->slots));
  t->keys_cap = 16384;
  t->keys = malloc(t->keys_cap);
  if (t->slots == NULL || t->keys == NULL) {
    wf_table_free(t);
    return -1;
  }
  return 0;
}

void wf_table_free(wf_table_t *t) {
  free(t->slots);
  free(t->keys);
  memset(t, 0, sizeof(*t));
}

/* Doubles the slot array; the table stays at most half full, so linear
 * probing stays short. */
static int table_grow(wf_table_t *t) {
  size_t cap = t->cap * 2, i, j;
  wf_entry_t *slots = calloc(cap, sizeof(*slots));
  if (slots == NULL)
    return -1;
  for (i = 0; i < t->cap; i++) {
    if (t->slots[i].count == 0)
      continue;
    for (j = t->slots[i].hash & (cap - 1); slots[j].count != 0;
         j = (j + 1) & (cap - 1))
      ;
    slots[j] = t->slots[i];
  }
  free(t->slots);
  t->slots = slots;
  t->cap = cap;
  return 0;
}

/* Returns the slot of the word, or the empty slot where it would go. */
static inline wf_entry_t *table_slot(const wf_table_t *t, const char *word,
                                     size_t len, uint64_t hash,
                                     uint64_t prefix) {
  size_t mask = t->cap - 1, i = hash & mask;
  for (;; i = (i + 1) & mask) {
    wf_entry_t *e = &t->slots[i];
    if (e->count == 0 ||
        (e->hash == hash && e->prefix == prefix && e->len == len &&
         (len <= 8 || memcmp(t->keys + e->off + 8, word + 8, len - 8) == 0)))
      return e;
  }
}

static int table_add(wf_table_t *t, const char *word, size_t len, uint64_t hash,
                     uint64_t prefix, uint64_t n) {
  wf_entry_t *e = table_slot(t, word, len, hash, prefix);
  if (e->count == 0) {
    if (t->keys_len + len > t->keys_cap) {
      size_t cap = t->keys_cap * 2;
      char *keys;
      while (cap < t->keys_len + len)
        cap *= 2;
      keys = realloc(t->keys, cap);
      if (keys == NULL)
        return -1;
      t->keys = keys;
      t->keys_cap = cap;
    }
    memcpy(t->keys + t->keys_len, word, len);
    e->hash = hash;
    e->prefix = prefix;
    e->off = t->keys_len;
    e->len = len;
    t->keys_len += len;
    t->used++;
  }
  e->count += n;
  t->total += n;
  /* Grow after the insert, so the entry pointer above was still valid. */
  if (t->used * 2 > t->cap && table_grow(t) != 0)
    return -1;
  return 0;
}

int wf_table_add(wf_table_t *t, const char *word, size_t len, uint64_t hash,
                 uint64_t n) {
  return table_add(t, word, len, hash, word_prefix(word, len), n);
}

uint64_t wf_table_get(const wf_table_t *t, const char *word, size_t len) {
  return table_slot(t, word, len, wf_hash(word, len), word_prefix(word, len))
      ->count;
}

int wf_table_equal(const wf_table_t *a, const wf_table_t *b) {
  size_t i;
  if (a->used != b->used || a->total != b->total)
    return 0;
  for (i = 0; i < a->cap; i++) {
    const wf_entry_t *e = &a->slots[i];
    if (e->count != 0 && wf_table_get(b, a->keys + e->off, e->len) != e->count)
      return 0;
  }
  return 1;
}

static int word_cmp(const void *pa, const void *pb) {
  const wf_word_t *a = pa, *b = pb;
  size_t n = a->len < b->len ? a->len : b->len;
  int c;
  if (a->count != b->count)
    return a->count > b->count ? -1 : 1;
  c = memcmp(a->word, b->word, n);
  if (c != 0)
    return c;
  return a->len < b->len ? -1 : a->len > b->len;
}

wf_word_t *wf_table_sorted(const wf_table_t *t) {
  wf_word_t *w = malloc((t->used ? t->used : 1) * sizeof(*w));
  size_t i, n = 0;
  if (w == NULL)
    return NULL;
  for (i = 0; i < t->cap; i++) {
    const wf_entry_t *e = &t->slots[i];
    if (e->count == 0)
      continue;
    w[n].word = t->keys + e->off;
    w[n].len = e->len;
    w[n].count = e->count;
    n++;
  }
  qsort(w, n, sizeof(*w), word_cmp);
  return w;
}

/* ---- counting a range ---- */

static int range_fail(char *err, size_t cap, const char *what,
                      const char *path) {
  snprintf(err, cap, "%s %s: %s", what, path, strerror(errno));
  return -1;
}

/* Counts a word that sits in a buffer with room for 8 more bytes. */
static int count_word(wf_table_t *t, char *word, size_t len) {
  memset(word + len, 0, 8);
  return table_add(t, word, len, hash_padded(word, len),
                   load_le64((const unsigned char *)word), 1);
}

/* Appends a letter to the open word; the buffer keeps 8 spare bytes for
 * count_word()'s padding and grows for absurdly long words. */
static int append(char **word, size_t *len, size_t *cap, unsigned char ch) {
  (*word)[(*len)++] = (char)ch;
  if (*len + 8 == *cap) {
    char *bigger = realloc(*word, *cap * 2);
    if (bigger == NULL)
      return -1;
    *word = bigger;
    *cap *= 2;
  }
  return 0;
}

int wf_count_range(const char *path, int64_t off, int64_t len, wf_table_t *t,
                   uint64_t *sum, char *err, size_t err_cap) {
  FILE *f = NULL;
  unsigned char *buf = NULL;
  char *word = NULL;
  size_t wlen = 0, wcap = 256;
  int64_t pos = off, end = off + len;
  int skip = 0, rc = -1, c;

  lower_init();
  if (off < 0 || len < 0 || off % WF_ALIGN != 0 || end < off) {
    snprintf(err, err_cap, "bad range offset %lld length %lld", (long long)off,
             (long long)len);
    return -1;
  }
  buf = malloc(WF_BUF);
  word = malloc(wcap);
  if (buf == NULL || word == NULL)
    goto oom;
  f = fopen(path, "rb");
  if (f == NULL) {
    range_fail(err, err_cap, "cannot open", path);
    goto cleanup;
  }
  /* A word that runs across the offset belongs to the range before: look
   * at the byte in front of it and skip the rest of such a word. */
  if (wf_fseek(f, off > 0 ? off - 1 : 0, SEEK_SET) != 0) {
    range_fail(err, err_cap, "cannot seek in", path);
    goto cleanup;
  }
  if (off > 0) {
    c = fgetc(f);
    skip = c != EOF && lower[c] != 0;
  }

  /* Reads stop at the end of the range, so a read lies wholly inside it or
   * wholly past it; past it they only finish the word still open. */
  while (pos < end || wlen > 0) {
    size_t want = pos >= end                    ? WF_TAIL_BUF
                  : end - pos < (int64_t)WF_BUF ? (size_t)(end - pos)
                                                : WF_BUF;
    size_t n = fread(buf, 1, want, f), i = 0;
    if (n == 0) {
      if (ferror(f)) {
        range_fail(err, err_cap, "cannot read", path);
        goto cleanup;
      }
      break; /* the end of the file also ends the last word */
    }
    if (pos >= end) {
      for (; i < n && lower[buf[i]]; i++)
        if (append(&word, &wlen, &wcap, lower[buf[i]]) != 0)
          goto oom;
      pos += (int64_t)n;
      if (i < n)
        break; /* a separator ends it */
      continue;
    }
    *sum += wf_checksum(buf, n, pos);
    pos += (int64_t)n;
    if (skip) {
      while (i < n && lower[buf[i]])
        i++;
      skip = i == n;
    }
    /* The hot loop: inside the range every word that starts counts. */
    for (; i < n; i++) {
      unsigned char ch = lower[buf[i]];
      if (ch) {
        if (append(&word, &wlen, &wcap, ch) != 0)
          goto oom;
      } else if (wlen > 0) {
        if (count_word(t, word, wlen) != 0)
          goto oom;
        wlen = 0;
      }
    }
  }
  if (wlen > 0 && count_word(t, word, wlen) != 0)
    goto oom;
  rc = 0;
  goto cleanup;

oom:
  snprintf(err, err_cap, "out of memory");
cleanup:
  if (f != NULL)
    fclose(f);
  free(buf);
  free(word);
  return rc;
}

/* ---- the result of a range, on the wire ---- */

/*
 * Layout (little-endian): "WFR1", u64 words counted, u64 checksum, u64
 * number of distinct words, then per word: varint length, the letters,
 * varint count.  Varints are LEB128: 7 bits a byte, low bits first.
 */
#define WF_MAGIC "WFR1"
#define WF_HEAD 28

static size_t varint_len(uint64_t v) {
  size_t n = 1;
  while (v >= 0x80) {
    v >>= 7;
    n++;
  }
  return n;
}

static unsigned char *put_varint(unsigned char *p, uint64_t v) {
  while (v >= 0x80) {
    *p++ = (unsigned char)(v | 0x80);
    v >>= 7;
  }
  *p++ = (unsigned char)v;
  return p;
}

static void put_u64(unsigned char *p, uint64_t v) {
  int i;
  for (i = 0; i < 8; i++)
    p[i] = (unsigned char)(v >> (8 * i));
}

/* Reads a varint; returns NULL if it runs past `end` or over 64 bits. */
static const unsigned char *get_varint(const unsigned char *p,
                                       const unsigned char *end, uint64_t *v) {
  int shift;
  *v = 0;
  for (shift = 0; p < end && shift < 64; shift += 7) {
    *v |= (uint64_t)(*p & 0x7f) << shift;
    if (!(*p++ & 0x80))
      return p;
  }
  return NULL;
}

int wf_count_task(pp_call_t *call, const void *arg, size_t len) {
  const char *path;
  int64_t off, n;
  wf_table_t t;
  uint64_t sum = 0;
  char err[512];
  unsigned char *out, *p;
  size_t size = WF_HEAD, i;

  if (pp_unpack(arg, len, "s i i", &path, &off, &n) != 0)
    return pp_call_fail(call, "count_range wants (path, offset, length)");
  if (wf_table_init(&t) != 0)
    return pp_call_fail(call, "out of memory");
  if (wf_count_range(path, off, n, &t, &sum, err, sizeof(err)) != 0) {
    wf_table_free(&t);
    return pp_call_fail(call, "%s", err);
  }
  for (i = 0; i < t.cap; i++)
    if (t.slots[i].count != 0)
      size += varint_len(t.slots[i].len) + t.slots[i].len +
              varint_len(t.slots[i].count);
  /* Built in place in the reply buffer: no second copy. */
  out = pp_call_reply_alloc(call, size);
  if (out != NULL) {
    memcpy(out, WF_MAGIC, 4);
    put_u64(out + 4, t.total);
    put_u64(out + 12, sum);
    put_u64(out + 20, t.used);
    p = out + WF_HEAD;
    for (i = 0; i < t.cap; i++) {
      const wf_entry_t *e = &t.slots[i];
      if (e->count == 0)
        continue;
      p = put_varint(p, e->len);
      memcpy(p, t.keys + e->off, e->len);
      p = put_varint(p + e->len, e->count);
    }
  }
  wf_table_free(&t);
  return out != NULL ? 0 : PP_ENOMEM;
}

int wf_merge(wf_table_t *t, uint64_t *sum, const void *data, size_t len) {
  const unsigned char *p = data, *end = p + len;
  uint64_t total, distinct, seen = 0, wlen, count, i;
  if (len < WF_HEAD || memcmp(p, WF_MAGIC, 4) != 0)
    return -1;
  total = load_le64(p + 4);
  distinct = load_le64(p + 20);
  for (p += WF_HEAD, i = 0; i < distinct; i++) {
    const char *word;
    if ((p = get_varint(p, end, &wlen)) == NULL || wlen == 0 ||
        wlen > (uint64_t)(end - p))
      return -1;
    word = (const char *)p;
    if ((p = get_varint(p + wlen, end, &count)) == NULL || count == 0)
      return -1;
    if (wf_table_add(t, word, (size_t)wlen, wf_hash(word, (size_t)wlen),
                     count) != 0)
      return -1;
    seen += count;
  }
  if (p != end || seen != total)
    return -1;
  *sum += load_le64((const unsigned char *)data + 12);
  return 0;
}
