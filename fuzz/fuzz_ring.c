/*
 * fuzz_ring.c - libFuzzer target for the records a worker leaves in shared
 * memory (src/ring.c), which the parent must never trust.
 *
 * The input becomes a result ring: its first 8 bytes the producer's head,
 * the rest the ring's bytes.  The consumer reads records until the ring is
 * empty or refused: every record it hands out must lie inside the buffer,
 * every call record it parses must have its name and argument inside the
 * record, and nothing may read outside the mapping (ASan watches).
 */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "ring.h"

/* A small ring, so that inputs wrap around it often. */
#define FUZZ_RING 4096

int LLVMFuzzerTestOneInput(const unsigned char *data, size_t size);

static void inside(const unsigned char *lo, const unsigned char *hi,
                   const void *p, uint64_t n) {
  const unsigned char *q = p;
  if (q < lo || q > hi || n > (uint64_t)(hi - q))
    abort();
}

int LLVMFuzzerTestOneInput(const unsigned char *data, size_t size) {
  uint64_t total = pp__shm_size(FUZZ_RING), head;
  unsigned char *base;
  pp__ring_t r;
  pp__err_t err;
  int i;
  if (size < 8)
    return 0;
  base = calloc(1, (size_t)total);
  if (base == NULL)
    return 0;
  pp__shm_format(base, FUZZ_RING);
  pp__ring_bind(&r, base, 1);
  memcpy(&head, data, 8);
  size -= 8;
  memcpy(r.data, data + 8, size < FUZZ_RING ? size : FUZZ_RING);
  r.hdr->head = head;
  for (i = 0; i < 2000; i++) {
    pp__rec_t rec;
    pp__call_rec_t c;
    int rc = pp__ring_next(&r, &rec, &err);
    /* A refusal is PP_EPROTO, and says why. */
    if (rc < 0 && (rc != PP_EPROTO || err.code != rc || err.text[0] == '\0'))
      abort();
    if (rc != 1)
      break;
    inside(r.data, r.data + r.size, rec.payload, rec.len);
    if ((rec.kind == PP__REC_CALL || rec.kind == PP__REC_INIT) &&
        pp__call_rec_parse(&rec, &c, &err) == 0) {
      inside(rec.payload, rec.payload + rec.len, c.name, c.name_len);
      if (!c.blob && !c.refused)
        inside(rec.payload, rec.payload + rec.len, c.arg, c.arg_len);
    }
    pp__ring_release(&r, rec.end);
  }
  free(base);
  return 0;
}
