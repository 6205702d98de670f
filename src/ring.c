/*
 * ring.c - the shared control block and the record rings (see ring.h).
 */
#include <string.h>

#include "error.h"
#include "ring.h"

/* Records are 8-byte aligned; payload bytes are padded up to that. */
#define ALIGN8(n) (((n) + 7) & ~(uint64_t)7)

uint64_t pp__shm_size(uint64_t ring_size) {
  return PP__SHM_CTL_SIZE + 2 * (PP__RING_HDR_SIZE + ring_size);
}

void pp__shm_format(void *base, uint64_t ring_size) {
  pp__shm_ctl_t *ctl = base;
  ctl->magic = PP__SHM_MAGIC;
  ctl->version = PP__SHM_VERSION;
  ctl->size = pp__shm_size(ring_size);
  ctl->call_off = PP__SHM_CTL_SIZE;
  ctl->call_size = ring_size;
  ctl->result_off = PP__SHM_CTL_SIZE + PP__RING_HDR_SIZE + ring_size;
  ctl->result_size = ring_size;
}

static int pow2(uint64_t v) {
  return v != 0 && (v & (v - 1)) == 0;
}

int pp__shm_check(const void *base, uint64_t size, pp__err_t *err) {
  const pp__shm_ctl_t *ctl = base;
  if (size < PP__SHM_CTL_SIZE || ctl->magic != PP__SHM_MAGIC ||
      ctl->version != PP__SHM_VERSION)
    return pp__err_set(err, PP_EPROTO, "shared memory of another version");
  if (ctl->size != size || !pow2(ctl->call_size) ||
      ctl->call_size < PP__RING_MIN || ctl->call_size != ctl->result_size ||
      ctl->call_off != PP__SHM_CTL_SIZE ||
      ctl->result_off != PP__SHM_CTL_SIZE + PP__RING_HDR_SIZE + ctl->call_size ||
      pp__shm_size(ctl->call_size) != size)
    return pp__err_set(err, PP_EPROTO, "shared memory with a bad layout");
  return 0;
}

void pp__ring_bind(pp__ring_t *r, void *base, int which) {
  pp__shm_ctl_t *ctl = base;
  uint64_t off = which == 0 ? ctl->call_off : ctl->result_off;
  memset(r, 0, sizeof(*r));
  r->hdr = (pp__ring_hdr_t *)((unsigned char *)base + off);
  r->data = (unsigned char *)base + off + PP__RING_HDR_SIZE;
  r->size = which == 0 ? ctl->call_size : ctl->result_size;
  /* Each side starts at its own position in the shared header: the
   * producer where it last wrote, the consumer where it last released.
   * (Starting the consumer at the producer's head would skip what was
   * written before this view was bound: a worker's HELLO can be in the
   * ring before the parent's spawn returns.) */
  r->head = PP__LOAD_ACQ64(&r->hdr->head);
  r->tail = r->seen = PP__LOAD_ACQ64(&r->hdr->tail);
}

uint64_t pp__ring_max_payload(const pp__ring_t *r) {
  /* A quarter of the ring: a record that large still leaves room for
   * others, and the wrap padding never needs more than the ring. */
  return r->size / 4 - PP__REC_HEADER;
}

/* The position where a record may start at or after `pos`: a position with
 * fewer than a header's bytes before the end skips to the start. */
static uint64_t start_at(const pp__ring_t *r, uint64_t pos) {
  uint64_t left = r->size - (pos & (r->size - 1));
  return left < PP__REC_HEADER ? pos + left : pos;
}

static void put_header(unsigned char *p, int kind, uint16_t aux, uint64_t id,
                       uint32_t len) {
  uint16_t k = (uint16_t)kind;
  memcpy(p, &len, 4);
  memcpy(p + 4, &k, 2);
  memcpy(p + 6, &aux, 2);
  memcpy(p + 8, &id, 8);
}

/* Where the record of `need` bytes would start, after any skip or padding,
 * and whether a PAD record is needed first. */
static uint64_t place(const pp__ring_t *r, uint64_t need, int *pad) {
  uint64_t pos = start_at(r, r->head);
  uint64_t left = r->size - (pos & (r->size - 1));
  *pad = need > left;
  return *pad ? pos + left : pos;
}

int pp__ring_fits(pp__ring_t *r, uint64_t len) {
  uint64_t need = PP__REC_HEADER + ALIGN8(len), at;
  int pad;
  if (len > pp__ring_max_payload(r))
    return 0;
  at = place(r, need, &pad);
  if (at + need - r->tail <= r->size)
    return 1;
  /* Only the consumer's progress can make room: look at it again. */
  r->tail = PP__LOAD_ACQ64(&r->hdr->tail);
  return at + need - r->tail <= r->size;
}

uint64_t pp__ring_plan(pp__ring_t *r, uint64_t len) {
  uint64_t need = PP__REC_HEADER + ALIGN8(len), at;
  int pad;
  if (!pp__ring_fits(r, len))
    return UINT64_MAX;
  at = place(r, need, &pad);
  r->head = at + need;
  return at;
}

/* The state word of call `id`'s record at `pos`, or NULL if the record
 * there is no longer that call's. */
static uint32_t *call_state(pp__ring_t *r, uint64_t pos, uint64_t id) {
  unsigned char *p = r->data + (pos & (r->size - 1));
  uint64_t rec_id;
  uint16_t kind;
  memcpy(&kind, p + 4, 2);
  memcpy(&rec_id, p + 8, 8);
  if (kind != PP__REC_CALL || rec_id != id)
    return NULL;
  return (uint32_t *)(void *)(p + PP__REC_HEADER);
}

void pp__ring_set_cancel(pp__ring_t *r, uint64_t pos, uint64_t id) {
  uint32_t *w = call_state(r, pos, id);
  if (w != NULL)
    PP__OR32(w, PP__CALL_CANCEL);
}

int pp__ring_withdraw(pp__ring_t *r, uint64_t pos, uint64_t id) {
  uint32_t *w = call_state(r, pos, id);
  return w != NULL && PP__CAS32(w, 0, PP__CALL_WITHDRAWN);
}

int pp__ring_started(pp__ring_t *r, uint64_t pos, uint64_t id) {
  uint32_t *w = call_state(r, pos, id);
  return w == NULL || (PP__LOAD_ACQ32(w) & PP__CALL_STARTED) != 0;
}

int pp__ring_has_data(pp__ring_t *r) {
  return r->tail != r->seen || PP__LOAD_ACQ64(&r->hdr->head) != r->seen;
}

void *pp__ring_begin(pp__ring_t *r, int kind, uint16_t aux, uint64_t id,
                     uint64_t len) {
  uint64_t need = PP__REC_HEADER + ALIGN8(len), at, pos;
  int pad;
  unsigned char *p;
  if (!pp__ring_fits(r, len))
    return NULL;
  at = place(r, need, &pad);
  if (pad) {
    pos = start_at(r, r->head);
    put_header(r->data + (pos & (r->size - 1)), PP__REC_PAD, 0, 0,
               (uint32_t)(at - pos - PP__REC_HEADER));
  }
  p = r->data + (at & (r->size - 1));
  put_header(p, kind, aux, id, (uint32_t)len);
  r->head = at + need;
  return p + PP__REC_HEADER;
}

int pp__ring_commit(pp__ring_t *r) {
  PP__STORE_REL64(&r->hdr->head, r->head);
  /* The consumer sets its flag, then looks at head; we set head, then look
   * at its flag.  With a full fence on both sides one of the two sees the
   * other's write, so no wake-up is lost. */
  PP__FENCE();
  return PP__LOAD_ACQ32(&r->hdr->consumer_waiting) != 0;
}

int pp__ring_next(pp__ring_t *r, pp__rec_t *rec, pp__err_t *err) {
  uint64_t pos, left, len, size;
  uint32_t len32;
  uint16_t kind, aux;
  const unsigned char *p;
  for (;;) {
    if (r->tail == r->seen) {
      uint64_t head = PP__LOAD_ACQ64(&r->hdr->head);
      /* The producer's head can only grow, by at most a ring's worth. */
      if (head - r->tail > r->size || (head & 7) != 0)
        return pp__err_set(err, PP_EPROTO,
                           "ring position %llu is impossible "
                           "after %llu",
                           (unsigned long long)head,
                           (unsigned long long)r->tail);
      r->seen = head;
      if (head == r->tail)
        return 0;
    }
    pos = start_at(r, r->tail);
    left = r->size - (pos & (r->size - 1));
    if (pos + PP__REC_HEADER > r->seen)
      return pp__err_set(err, PP_EPROTO, "ring record cut short");
    p = r->data + (pos & (r->size - 1));
    memcpy(&len32, p, 4);
    memcpy(&kind, p + 4, 2);
    memcpy(&aux, p + 6, 2);
    len = len32;
    size = PP__REC_HEADER + ALIGN8(len);
    if (size > left || pos + size > r->seen)
      return pp__err_set(err, PP_EPROTO,
                         "ring record of %llu bytes does not "
                         "fit",
                         (unsigned long long)len);
    if (kind == PP__REC_PAD) {
      /* Padding runs exactly to the end of the buffer. */
      if (size != left)
        return pp__err_set(err, PP_EPROTO, "ring padding of a wrong size");
      r->tail = pos + size;
      continue;
    }
    rec->kind = kind;
    rec->aux = aux;
    memcpy(&rec->id, p + 8, 8);
    rec->len = len;
    rec->payload = p + PP__REC_HEADER;
    rec->end = pos + size;
    r->tail = rec->end;
    return 1;
  }
}

int pp__ring_release(pp__ring_t *r, uint64_t end) {
  PP__STORE_REL64(&r->hdr->tail, end);
  PP__FENCE();
  return PP__LOAD_ACQ32(&r->hdr->producer_waiting) != 0;
}

int pp__ring_sleep_prepare(pp__ring_t *r) {
  PP__STORE_REL32(&r->hdr->consumer_waiting, 1);
  PP__FENCE();
  if (PP__LOAD_ACQ64(&r->hdr->head) != r->seen || r->tail != r->seen) {
    PP__STORE_REL32(&r->hdr->consumer_waiting, 0);
    return 1;
  }
  return 0;
}

void pp__ring_awake(pp__ring_t *r) {
  PP__STORE_REL32(&r->hdr->consumer_waiting, 0);
}

int pp__ring_wait_room_prepare(pp__ring_t *r, uint64_t len) {
  PP__STORE_REL32(&r->hdr->producer_waiting, 1);
  PP__FENCE();
  if (pp__ring_fits(r, len)) {
    PP__STORE_REL32(&r->hdr->producer_waiting, 0);
    return 1;
  }
  return 0;
}

void pp__ring_room_awake(pp__ring_t *r) {
  PP__STORE_REL32(&r->hdr->producer_waiting, 0);
}

/* ---- call records ---- */

uint64_t pp__call_rec_len(size_t name_len, uint64_t arg_len, int blob) {
  return PP__CALL_HEAD + ALIGN8(name_len) +
         (blob ? PP__CALL_BLOB_TAIL : arg_len);
}

void pp__call_rec_put(unsigned char *p, const char *name, size_t name_len,
                      const void *arg, uint64_t arg_len,
                      const pp__call_blob_t *blob) {
  uint32_t cancel = 0;
  uint16_t n = (uint16_t)name_len, zero = 0;
  memcpy(p, &cancel, 4);
  memcpy(p + 4, &n, 2);
  memcpy(p + 6, &zero, 2);
  memcpy(p + PP__CALL_HEAD, name, name_len);
  p += PP__CALL_HEAD + ALIGN8(name_len);
  if (blob != NULL) {
    uint64_t tail[9];
    tail[0] = arg_len;
    tail[1] = blob->handle;
    tail[2] = blob->offset;
    tail[3] = blob->map_size;
    tail[4] = blob->serial;
    tail[5] = blob->hint_size;
    tail[6] = blob->hint_handle;
    tail[7] = blob->hint_serial;
    tail[8] = blob->flags;
    memcpy(p, tail, sizeof(tail));
  } else if (arg_len > 0) {
    memcpy(p, arg, (size_t)arg_len);
  }
}

int pp__call_rec_parse(const pp__rec_t *rec, pp__call_rec_t *c,
                       pp__err_t *err) {
  uint16_t n;
  uint64_t off;
  if (rec->len < PP__CALL_HEAD)
    return pp__err_set(err, PP_EPROTO, "call record too short");
  memcpy(&n, rec->payload + 4, 2);
  if (n == 0 || n > PP__NAME_MAX)
    return pp__err_set(err, PP_EPROTO, "call record with a bad name length");
  off = PP__CALL_HEAD + ALIGN8(n);
  if (off > rec->len)
    return pp__err_set(err, PP_EPROTO, "call record with a bad name length");
  c->cancel = (uint32_t *)(void *)rec->payload;
  c->name = (const char *)rec->payload + PP__CALL_HEAD;
  c->name_len = n;
  if (memchr(c->name, '\0', n) != NULL)
    return pp__err_set(err, PP_EPROTO, "call record with a NUL in the name");
  c->blob = rec->aux == 1;
  c->refused = rec->aux == 2;
  if (rec->aux > 2)
    return pp__err_set(err, PP_EPROTO, "call record of an unknown form");
  memset(&c->b, 0, sizeof(c->b));
  c->arg = NULL;
  c->arg_len = 0;
  if (c->blob) {
    uint64_t tail[9];
    if (rec->len - off != PP__CALL_BLOB_TAIL)
      return pp__err_set(err, PP_EPROTO, "blob call record of a wrong size");
    memcpy(tail, rec->payload + off, sizeof(tail));
    c->arg_len = tail[0];
    c->b.handle = tail[1];
    c->b.offset = tail[2];
    c->b.map_size = tail[3];
    c->b.serial = tail[4];
    c->b.hint_size = tail[5];
    c->b.hint_handle = tail[6];
    c->b.hint_serial = tail[7];
    c->b.flags = tail[8];
    if (c->b.offset > c->b.map_size ||
        c->arg_len > c->b.map_size - c->b.offset)
      return pp__err_set(err, PP_EPROTO, "a blob argument outside its mapping");
  } else if (!c->refused) {
    c->arg = rec->payload + off;
    c->arg_len = rec->len - off;
  }
  return 0;
}

/* ---- the mappings a worker keeps ---- */

int pp__mapcache_find(pp__mapcache_t *c, uint64_t serial, void **obj) {
  int i;
  for (i = 0; i < c->n; i++)
    if (c->serial[i] == serial)
      break;
  if (i == c->n)
    return 0;
  /* First in line: the others move down one. */
  {
    uint64_t se = c->serial[i], sz = c->size[i];
    void *o = c->obj[i];
    memmove(&c->serial[1], &c->serial[0], (size_t)i * sizeof(c->serial[0]));
    memmove(&c->size[1], &c->size[0], (size_t)i * sizeof(c->size[0]));
    memmove(&c->obj[1], &c->obj[0], (size_t)i * sizeof(c->obj[0]));
    c->serial[0] = se;
    c->size[0] = sz;
    c->obj[0] = o;
  }
  *obj = c->obj[0];
  return 1;
}

int pp__mapcache_put(pp__mapcache_t *c, uint64_t serial, uint64_t size,
                     void *obj, void **out, int *nout) {
  *nout = 0;
  if (size > PP__MAPCACHE_BYTES)
    return 0;
  while (c->n > 0 &&
         (c->n == PP__MAPCACHE_N || c->bytes + size > PP__MAPCACHE_BYTES)) {
    c->n--;
    c->bytes -= c->size[c->n];
    out[(*nout)++] = c->obj[c->n];
  }
  memmove(&c->serial[1], &c->serial[0], (size_t)c->n * sizeof(c->serial[0]));
  memmove(&c->size[1], &c->size[0], (size_t)c->n * sizeof(c->size[0]));
  memmove(&c->obj[1], &c->obj[0], (size_t)c->n * sizeof(c->obj[0]));
  c->serial[0] = serial;
  c->size[0] = size;
  c->obj[0] = obj;
  c->n++;
  c->bytes += size;
  return 1;
}
