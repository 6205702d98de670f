/*
 * fuzz_frame.c - libFuzzer target for the frame decoder.
 *
 * The input is what a worker (or a parent) might put on a channel: any
 * bytes.  It is read through the real pp__wire_recv_header() and
 * pp__wire_recv_payload() over an in-memory channel, and each payload goes
 * through the parsers the parent and the worker apply to it (call name
 * split, ERROR/LOG status and text).  Nothing may crash, leak or read out of
 * bounds, whatever the bytes.
 */
#include <stdlib.h>
#include <string.h>

#include "../src/internal.h"

struct pp__chan_s {
  const unsigned char *data;
  size_t len;
  size_t off;
};

int pp__chan_read(pp__chan_t *chan, void *buf, size_t len) {
  if (chan->len - chan->off < len)
    return PP_ECLOSED;
  memcpy(buf, chan->data + chan->off, len);
  chan->off += len;
  return 0;
}

/* Hands out the input in pieces of up to 7 bytes, so frames straddle the
 * reader's refills as they do on a real channel. */
int pp__chan_read_some(pp__chan_t *chan, void *buf, size_t cap, size_t *got) {
  size_t n = chan->len - chan->off;
  if (n == 0)
    return PP_ECLOSED;
  if (n > 7)
    n = 7;
  if (n > cap)
    n = cap;
  memcpy(buf, chan->data + chan->off, n);
  chan->off += n;
  *got = n;
  return 0;
}

/* Nothing is sent while decoding; wire.c still links against a writer. */
int pp__chan_write(pp__chan_t *chan, const void *buf, size_t len) {
  (void)chan;
  (void)buf;
  (void)len;
  return PP_ECLOSED;
}

int LLVMFuzzerTestOneInput(const unsigned char *data, size_t size);

int LLVMFuzzerTestOneInput(const unsigned char *data, size_t size) {
  pp__chan_t chan = {data, size, 0};
  static pp__reader_t rd;
  pp__frame_t fr;
  char name[PP__NAME_MAX + 1];
  int frames = 0;

  pp__reader_init(&rd, &chan);
  while (frames++ < 64 && pp__wire_recv_header(&rd, &fr) == 0) {
    void *payload = NULL;
    size_t off;
    /* A real channel would end here too; checking first keeps the fuzzer
     * from asking malloc for the terabytes a bad length may claim (the
     * parent's answer to that is PP_ENOMEM and the end of that worker). */
    if (fr.len > (chan.len - chan.off) + (rd.len - rd.pos))
      break;
    if (pp__wire_recv_payload(&rd, &fr, &payload) != 0)
      break;
    switch (fr.type) {
      case PP__FRAME_CALL:
      case PP__FRAME_INIT:
        if (pp__wire_split_call(payload, fr.len, name, sizeof(name), &off) ==
            0)
          (void)pp_tuple_count((unsigned char *)payload + off,
                               (size_t)fr.len - off);
        break;
      case PP__FRAME_ERROR:
      case PP__FRAME_LOG:
        (void)pp__get_u32(payload);
        (void)strlen((char *)payload + 4);
        break;
      default:
        break;
    }
    free(payload);
  }
  return 0;
}
