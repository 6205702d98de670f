/*
 * internal.h (POSIX) - helpers shared by the POSIX platform files.
 */
#ifndef PP_POSIX_INTERNAL_H
#define PP_POSIX_INTERNAL_H

#include "../../src/error.h"
#include "../platform.h"

/* Records "<what>: <strerror(err)>" as the last error and returns status.
 * This is where errno becomes a PP_E* code. */
int pp__posix_error(int status, int err, const char *fmt, ...) PP__PRINTF(3, 4);

/* Wraps a descriptor (close-on-exec, owned) in a channel.  On failure the
 * descriptor is left open for the caller to close. */
int pp__chan_wrap(int fd, pp__chan_t **chan);

#endif /* PP_POSIX_INTERNAL_H */
