/*
 * error.h - recording the detailed reason of a failure (pp_last_error()).
 *
 * Used by the core and by platform/: whoever detects a failure records one
 * sentence with pp__set_error() and returns the PP_E* status, so the caller
 * gets both a code it can switch on and a message it can show.
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

/* Records a printf-style message as the calling thread's last error and
 * returns `status`, so that `return pp__set_error(PP_EINVAL, "...")` works. */
int pp__set_error(int status, const char *fmt, ...) PP__PRINTF(2, 3);

/* Like snprintf, but always NUL-terminates and never fails: the text is cut
 * to fit.  Returns `buf`. */
char *pp__format(char *buf, size_t size, const char *fmt, ...) PP__PRINTF(3, 4);

/* Returns a malloc'd copy of printf-style text, or NULL if memory is short. */
char *pp__strdup_printf(const char *fmt, ...) PP__PRINTF(1, 2);

#endif /* PP_ERROR_H */
