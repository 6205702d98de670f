/*
 * error.c - status names and messages, the thread-local last error, version.
 */
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "../platform/platform.h"
#include "error.h"
#include "fault.h"

/* Written only at the public edge (error.h). */
static PP__THREAD_LOCAL char last_error[512];
/* Written by platform/, read by the core right after (pp__err_os). */
static PP__THREAD_LOCAL char os_reason[512];

unsigned pp_version(void) {
  return PP_VERSION_HEX;
}

#define PP__STR2(x) #x
#define PP__STR(x) PP__STR2(x)

const char *pp_version_string(void) {
  return PP__STR(PP_VERSION_MAJOR) "." PP__STR(PP_VERSION_MINOR) "." PP__STR(
      PP_VERSION_PATCH);
}

const char *pp_strerror(int status) {
  switch (status) {
    case 0:
      return "success";
#define PP__STRERROR_GEN(name, value, text)                                    \
  case PP_##name:                                                              \
    return text;
      PP_ERRNO_MAP(PP__STRERROR_GEN)
#undef PP__STRERROR_GEN
    default:
      return "unknown error";
  }
}

const char *pp_err_name(int status) {
  switch (status) {
    case 0:
      return "PP_OK";
#define PP__NAME_GEN(name, value, text)                                        \
  case PP_##name:                                                              \
    return "PP_" #name;
      PP_ERRNO_MAP(PP__NAME_GEN)
#undef PP__NAME_GEN
    default:
      return "PP_UNKNOWN";
  }
}

const char *pp_last_error(void) {
  return last_error;
}

/* vsnprintf that leaves an empty text, not garbage, if it fails. */
static void vformat(char *buf, size_t cap, const char *fmt, va_list ap) {
  if (vsnprintf(buf, cap, fmt, ap) < 0)
    buf[0] = '\0';
}

int pp__err_set(pp__err_t *err, int code, const char *fmt, ...) {
  char text[sizeof(err->text)];
  va_list ap;
  va_start(ap, fmt);
  vformat(text, sizeof(text), fmt, ap);
  va_end(ap);
  memcpy(err->text, text, sizeof(text));
  err->code = code;
  return code;
}

int pp__err_os(pp__err_t *err, int code) {
  return pp__err_set(err, code, "%s", os_reason);
}

int pp__err_raise(const pp__err_t *err) {
  pp__format(last_error, sizeof(last_error), "%s", err->text);
  return err->code;
}

int pp__fail(int code, const char *fmt, ...) {
  va_list ap;
  va_start(ap, fmt);
  vformat(last_error, sizeof(last_error), fmt, ap);
  va_end(ap);
  return code;
}

int pp__fail_os(int code) {
  pp__format(last_error, sizeof(last_error), "%s", os_reason);
  return code;
}

int pp__os_fail(int status, const char *fmt, ...) {
  va_list ap;
  va_start(ap, fmt);
  vformat(os_reason, sizeof(os_reason), fmt, ap);
  va_end(ap);
  return status;
}

const char *pp__os_reason(void) {
  return os_reason;
}

char *pp__format(char *buf, size_t size, const char *fmt, ...) {
  va_list ap;
  if (size == 0)
    return buf;
  va_start(ap, fmt);
  vformat(buf, size, fmt, ap);
  va_end(ap);
  return buf;
}

char *pp__strdup_printf(const char *fmt, ...) {
  va_list ap;
  int n;
  char *s;
  va_start(ap, fmt);
  n = vsnprintf(NULL, 0, fmt, ap);
  va_end(ap);
  if (n < 0)
    return NULL;
  s = pp__malloc((size_t)n + 1);
  if (s == NULL)
    return NULL;
  va_start(ap, fmt);
  vsnprintf(s, (size_t)n + 1, fmt, ap);
  va_end(ap);
  return s;
}
