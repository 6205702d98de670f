/*
 * clock.c - deadlines on the monotonic clock.
 *
 * Users pass timeouts in milliseconds as int64_t, and INT64_MAX is a
 * natural way to say "forever"; converting that to microseconds and adding
 * the current time would overflow.  Every deadline is therefore computed
 * here, saturating to PP__NEVER.
 */
#include "internal.h"

int64_t pp__deadline_ms(int64_t ms) {
  int64_t now = pp__now_us();
  if (ms <= 0)
    return now;
  if (ms >= (PP__NEVER - now) / 1000)
    return PP__NEVER;
  return now + ms * 1000;
}

int64_t pp__us_left(int64_t deadline) {
  int64_t now = pp__now_us();
  return deadline > now ? deadline - now : 0;
}
