/*
 * progress.c - when a map reports its progress (pp__reporter_*), and
 * pp_progress_bar(), the ready display.
 *
 * The display keeps
 * nothing of its own: what it must remember between two reports (when the
 * last plain line went out, whether a bar is on the screen) lives in the
 * caller's pp_progress_bar_t, so that maps in several threads can each
 * show their own.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "internal.h"

/* Progress reports, by default: often enough to look alive, rare enough
 * to cost nothing. */
#define PP__PROGRESS_INTERVAL_MS 200

/* Width of the bar itself, in characters: the whole line stays under 80
 * columns with every field at its widest. */
#define PP__BAR_WIDTH 20
/* The fields after it are padded to this width. */
#define PP__FIELDS_WIDTH 54
/* Plain lines, by default: one every 10 s keeps a CI log readable. */
#define PP__LINE_INTERVAL_MS 10000

/* Writes a rate in calls per second in at most 7 characters: "950/s",
 * "12.5k/s", "1.2M/s". */
static void format_rate(char *buf, size_t cap, double rate) {
  if (rate >= 1e6)
    pp__format(buf, cap, "%.1fM/s", rate / 1e6);
  else if (rate >= 1e4)
    pp__format(buf, cap, "%.0fk/s", rate / 1e3);
  else if (rate >= 1e3)
    pp__format(buf, cap, "%.1fk/s", rate / 1e3);
  else
    pp__format(buf, cap, "%.0f/s", rate);
}

/* Writes a duration in seconds as "m:ss", or "h:mm:ss" from an hour. */
static void format_duration(char *buf, size_t cap, int64_t s) {
  if (s >= 3600)
    pp__format(buf, cap, "%lld:%02lld:%02lld", (long long)(s / 3600),
               (long long)(s / 60 % 60), (long long)(s % 60));
  else
    pp__format(buf, cap, "%lld:%02lld", (long long)(s / 60),
               (long long)(s % 60));
}

/* The fields every form of the display shares: percent, counts, rate,
 * time left (or taken, at the end) and failures. */
static void format_fields(char *buf, size_t cap, const pp_progress_t *p) {
  char rate[16], eta[24], failed[32] = "";
  double secs = (double)p->elapsed_ms / 1000.0;
  double r = secs > 0 ? (double)p->done / secs : 0.0;
  /* A streaming map does not know its total before its input ends. */
  int known = p->total > 0 || p->final;
  double pct = p->total > 0 ? 100.0 * (double)p->done / (double)p->total
                            : 100.0;
  format_rate(rate, sizeof(rate), r);
  if (p->final) {
    char took[16];
    format_duration(took, sizeof(took), p->elapsed_ms / 1000);
    pp__format(eta, sizeof(eta), "in %s", took);
  } else if (r > 0 && known && p->total >= p->done) {
    char left[16];
    format_duration(left, sizeof(left),
                    (int64_t)((double)(p->total - p->done) / r + 0.5));
    pp__format(eta, sizeof(eta), "ETA %s", left);
  } else {
    pp__format(eta, sizeof(eta), "ETA ?");
  }
  if (p->failed > 0)
    pp__format(failed, sizeof(failed), "  %zu failed", p->failed);
  if (!known)
    pp__format(buf, cap, "  ?%%  %zu/?  %s  %s%s", p->done, rate, eta, failed);
  else
    pp__format(buf, cap, "%3.0f%%  %zu/%zu  %s  %s%s", pct, p->done,
               p->total, rate, eta, failed);
}

int pp_progress_bar(void *data, const pp_progress_t *p) {
  pp_progress_bar_t none, *bar = data;
  FILE *out;
  char fields[160];
  int tty;

  if (p == NULL)
    return 0;
  if (bar == NULL) {
    /* No state: a bar can still be redrawn, plain lines only at the end. */
    memset(&none, 0, sizeof(none));
    none.line_interval_ms = INT64_MAX;
    bar = &none;
  }
  out = bar->out != NULL ? (FILE *)bar->out : stderr;
  switch (bar->mode) {
    case PP_PROGRESS_QUIET:
      return 0;
    case PP_PROGRESS_BAR:
      tty = 1;
      break;
    case PP_PROGRESS_LINES:
      tty = 0;
      break;
    default:
      tty = pp__stdio_is_terminal(out);
      break;
  }
  format_fields(fields, sizeof(fields), p);
  if (tty) {
    char cells[PP__BAR_WIDTH + 1];
    size_t filled = p->total > 0 ? p->done * PP__BAR_WIDTH / p->total
                    : p->final   ? PP__BAR_WIDTH
                                 : 0;
    size_t i;
    if (filled > PP__BAR_WIDTH)
      filled = PP__BAR_WIDTH;
    for (i = 0; i < PP__BAR_WIDTH; i++)
      cells[i] = i < filled ? '#' : '.';
    cells[PP__BAR_WIDTH] = '\0';
    /* Back to the start of the line; the padding covers what a longer
     * line left (an escape sequence to erase it is not understood by
     * every Windows console), and keeps the line under 80 columns. */
    fprintf(out, "\r[%s] %-*s%s", cells, PP__FIELDS_WIDTH, fields,
            p->final ? "\n" : "");
    bar->drawn = !p->final;
  } else {
    int64_t every = bar->line_interval_ms > 0 ? bar->line_interval_ms
                                              : PP__LINE_INTERVAL_MS;
    /* A map shorter than the interval prints its final line only. */
    if (!p->final && p->elapsed_ms - bar->last_line_ms < every)
      return 0;
    bar->last_line_ms = p->elapsed_ms;
    fprintf(out, "procpool: %s\n", fields);
  }
  fflush(out);
  return 0;
}

void pp__reporter_init(pp__reporter_t *r, const pp_map_options_t *o) {
  const char *env;
  memset(r, 0, sizeof(*r));
  r->started = pp__now_us();
  if (o == NULL)
    return;
  if (o->progress != NULL) {
    r->cb = o->progress;
    r->data = o->progress_data;
  } else if (o->flags & PP_MAP_PROGRESS_BAR) {
    env = getenv("PROCPOOL_PROGRESS");
    if (env != NULL && strcmp(env, "0") == 0)
      return;
    r->cb = pp_progress_bar;
    r->data = &r->bar;
  }
  r->every_us = 1000 * (o->progress_interval_ms > 0 ? o->progress_interval_ms
                                                     : PP__PROGRESS_INTERVAL_MS);
  r->next = r->started + r->every_us;
}

int pp__reporter_due(pp__reporter_t *r, int final) {
  int64_t now;
  if (r->cb == NULL)
    return 0;
  now = pp__now_us();
  if (!final && now < r->next)
    return 0;
  /* The report says this moment, from which the next one is counted, so
   * that two reports are never closer than the interval. */
  r->due_at = now;
  r->next = now + r->every_us;
  return 1;
}

int pp__reporter_call(pp__reporter_t *r, size_t done, size_t failed,
                      size_t total, int final) {
  pp_progress_t p;
  p.done = done;
  p.failed = failed;
  p.total = total;
  p.elapsed_ms = (r->due_at - r->started) / 1000;
  p.final = final;
  return r->cb(r->data, &p);
}
