/*
 * wire.h - little-endian byte helpers, for the tuple format (tuple.c) and
 * the records parent and worker share (ring.c), and the bound on payloads.
 */
#ifndef PP_WIRE_H
#define PP_WIRE_H

#include <stddef.h>
#include <stdint.h>

/* The largest argument or result: far above any machine's memory, but a
 * bound, so that a corrupted length cannot pass as a huge allocation. */
#define PP__PAYLOAD_MAX ((uint64_t)1 << 46)

void pp__put_u32(unsigned char *p, uint32_t v);
void pp__put_u64(unsigned char *p, uint64_t v);
uint32_t pp__get_u32(const unsigned char *p);
uint64_t pp__get_u64(const unsigned char *p);

#endif /* PP_WIRE_H */
