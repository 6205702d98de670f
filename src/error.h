/*
 * error.h - how the reason of a failure travels to pp_last_error().
 *
 * Three rules, so that a cleanup can never overwrite the reason it is
 * about to report:
 *   - pp_last_error()'s text is written only at the public edge: a public
 *     function that fails records its reason as it returns (pp__fail,
 *     pp__err_raise, pp__fail_os).  No internal path writes it, and a
 *     public function that succeeds leaves it alone.
 *   - Internal functions that can fail take a pp__err_t and fill it
 *     (pp__err_set); their caller passes it on, adds to it, or turns it
 *     into a call's outcome or a worker's reason, explicitly.
 *   - platform/ reports like errno: a negative PP_E* status, and a
 *     sentence in the thread's OS reason (pp__os_fail), valid until the
 *     thread's next platform call.  The core takes it at once into its
 *     pp__err_t (pp__err_os).
 */
#ifndef PP_ERROR_H
#define PP_ERROR_H

#include "procpool.h"

/* gnu_printf for GCC only: see PP_PRINTF in procpool.h. */
#if defined(__MINGW32__) && !defined(__clang__)
#define PP__PRINTF(a, b) __attribute__((format(gnu_printf, a, b)))
#elif defined(__GNUC__)
#define PP__PRINTF(a, b) __attribute__((format(printf, a, b)))
#else
#define PP__PRINTF(a, b)
#endif

/* A failure on its way to the public edge. */
typedef struct pp__err_s {
  int code;       /* 0, or the negative PP_E* status */
  char text[512]; /* the sentence that says why */
} pp__err_t;

/* Fills `err` with `code` and a printf-style sentence; returns `code`, so
 * that `return pp__err_set(err, PP_EPROTO, "...")` works.  The arguments
 * may name err->text (it is formatted into a copy first). */
int pp__err_set(pp__err_t *err, int code, const char *fmt, ...)
    PP__PRINTF(3, 4);
/* Fills `err` with `code` and the OS reason a platform function has just
 * recorded (pp__os_fail); returns `code`. */
int pp__err_os(pp__err_t *err, int code);

/* The public edge: records err's sentence as the calling thread's last
 * error and returns its code. */
int pp__err_raise(const pp__err_t *err);
/* The public edge: records a printf-style sentence as the calling thread's
 * last error and returns `code`. */
int pp__fail(int code, const char *fmt, ...) PP__PRINTF(2, 3);
/* The public edge: records the OS reason a platform function has just
 * recorded as the last error and returns `code`. */
int pp__fail_os(int code);

/* platform/ only: records a printf-style sentence as the thread's OS
 * reason and returns `status`. */
int pp__os_fail(int status, const char *fmt, ...) PP__PRINTF(2, 3);
/* The OS reason last recorded on this thread. */
const char *pp__os_reason(void);

/* Like snprintf, but always NUL-terminates and never fails: the text is cut
 * to fit.  Returns `buf`. */
char *pp__format(char *buf, size_t size, const char *fmt, ...) PP__PRINTF(3, 4);

/* Returns a malloc'd copy of printf-style text, or NULL if memory is short. */
char *pp__strdup_printf(const char *fmt, ...) PP__PRINTF(1, 2);

#endif /* PP_ERROR_H */
