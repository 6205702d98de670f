/*
 * digest.h - a small non-cryptographic digest, for build ids.
 *
 * Used by platform/ to sum up a module's code or headers when the linker
 * left no build id.  It tells builds apart; it is not meant to resist
 * anybody who crafts a collision on purpose (a worker is the application's
 * own code, which could lie about anything).
 */
#ifndef PP_DIGEST_H
#define PP_DIGEST_H

#include <stddef.h>
#include <stdint.h>

typedef struct pp__digest_s {
  uint64_t lane[4];
  uint64_t total;
} pp__digest_t;

void pp__digest_init(pp__digest_t *d);
void pp__digest_add(pp__digest_t *d, const void *data, size_t len);
/* Writes 32 bytes. */
void pp__digest_end(pp__digest_t *d, unsigned char out[32]);

#endif /* PP_DIGEST_H */
