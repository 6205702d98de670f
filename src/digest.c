/*
 * digest.c - see digest.h.  Four 64-bit lanes, each a multiply-and-rotate
 * mix of the bytes fed to it, finished with an avalanche step; fast enough
 * to sum a few megabytes of code when a pool starts.
 */
#include <string.h>

#include "digest.h"

#define PP__PRIME1 0x9E3779B185EBCA87ull
#define PP__PRIME2 0xC2B2AE3D27D4EB4Full

static uint64_t rotl(uint64_t v, int r) {
  return (v << r) | (v >> (64 - r));
}

static uint64_t mix(uint64_t acc, uint64_t v) {
  acc += v * PP__PRIME2;
  return rotl(acc, 31) * PP__PRIME1;
}

void pp__digest_init(pp__digest_t *d) {
  int i;
  for (i = 0; i < 4; i++)
    d->lane[i] = PP__PRIME1 * (uint64_t)(i + 1) + PP__PRIME2;
  d->total = 0;
}

void pp__digest_add(pp__digest_t *d, const void *data, size_t len) {
  const unsigned char *p = data;
  size_t i;
  for (i = 0; i + 8 <= len; i += 8) {
    uint64_t v;
    memcpy(&v, p + i, 8);
    d->lane[(d->total / 8) % 4] = mix(d->lane[(d->total / 8) % 4], v);
    d->total += 8;
  }
  for (; i < len; i++) {
    d->lane[d->total % 4] = mix(d->lane[d->total % 4], p[i]);
    d->total++;
  }
}

void pp__digest_end(pp__digest_t *d, unsigned char out[32]) {
  int i, b;
  for (i = 0; i < 4; i++) {
    uint64_t h = d->lane[i] ^ d->total ^ d->lane[(i + 1) % 4];
    h ^= h >> 33;
    h *= PP__PRIME2;
    h ^= h >> 29;
    h *= PP__PRIME1;
    h ^= h >> 32;
    for (b = 0; b < 8; b++)
      out[8 * i + b] = (unsigned char)(h >> (8 * b));
  }
}
