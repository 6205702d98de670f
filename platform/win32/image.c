/*
 * image.c - the executable workers are started from, on Windows.
 *
 * Windows cannot start a process from an open file, so the image is its
 * path, in UTF-8 for messages and in UTF-16 for CreateProcessW (spawn.c).
 * CreateProcessW starts no program from a path of MAX_PATH characters or
 * more as it is written; such a path is started by its short (8.3) name,
 * or, without one, in its extended ("\\?\") form (see pp__image_open).
 */
#include "internal.h"

#include <stdlib.h>
#include <string.h>
#include <wchar.h>

int pp__win_short_path(const WCHAR *path, WCHAR **out) {
  static const WCHAR prefix[] = L"\\\\?\\";
  static const WCHAR unc[] = L"\\\\?\\UNC";
  WCHAR *full = NULL, *ext = NULL, *brief = NULL;
  DWORD n;
  size_t len;
  char why[160];
  int status = 0;

  *out = NULL;
  /* Absolute and without "." or "..", which the extended form would keep
   * as names; then "\\?\" (or "\\?\UNC" for "\\server\share"), which
   * the file functions take at any length whether or not the process is
   * long-path aware. */
  n = GetFullPathNameW(path, 0, NULL, NULL);
  if (n > 0)
    full = pp__malloc((size_t)n * sizeof(WCHAR));
  if (n == 0 || full == NULL || GetFullPathNameW(path, n, full, NULL) >= n) {
    status =
        full == NULL && n > 0
            ? pp__os_fail(PP_ENOMEM, "out of memory for a path")
            : pp__os_fail(PP_EINVAL, "GetFullPathNameW: %s",
                          pp__win_strerror(GetLastError(), why, sizeof(why)));
    goto cleanup;
  }
  len = wcslen(full);
  ext = pp__malloc((len + 8) * sizeof(WCHAR));
  if (ext == NULL) {
    status = pp__os_fail(PP_ENOMEM, "out of memory for a path");
    goto cleanup;
  }
  if (wcsncmp(full, prefix, 4) == 0) {
    wcscpy(ext, full);
  } else if (full[0] == L'\\' && full[1] == L'\\') {
    wcscpy(ext, unc);
    wcscat(ext, full + 1);
  } else {
    wcscpy(ext, prefix);
    wcscat(ext, full);
  }
  n = GetShortPathNameW(ext, NULL, 0);
  if (n > 0)
    brief = pp__malloc((size_t)n * sizeof(WCHAR));
  if (n == 0 || brief == NULL || GetShortPathNameW(ext, brief, n) >= n) {
    /* Short names are off on the volume (fsutil 8dot3name), or the file
     * is gone: the extended form is all there is. */
    free(brief);
    brief = NULL;
  }
  if (brief != NULL && wcslen(brief) < wcslen(ext)) {
    *out = brief;
    brief = NULL;
  } else {
    *out = ext;
    ext = NULL;
  }

cleanup:
  free(brief);
  free(ext);
  free(full);
  return status;
}

void pp__win_path_plain(WCHAR *path) {
  size_t len = wcslen(path);
  if (wcsncmp(path, L"\\\\?\\UNC\\", 8) == 0)
    memmove(path + 1, path + 7, (len - 6) * sizeof(WCHAR));
  else if (wcsncmp(path, L"\\\\?\\", 4) == 0 && len >= 6 && path[5] == L':')
    memmove(path, path + 4, (len - 3) * sizeof(WCHAR));
}

int pp__image_open(const char *path, pp__image_t **out) {
  pp__image_t *im;
  char *self = NULL;
  DWORD attrs;
  char why[160];
  int status;

  *out = NULL;
  PP__FAULT_RETURN(PP_ESPAWN);
  if (path == NULL) {
    status = pp__exe_path(&self);
    if (status != 0)
      return status;
    path = self;
  }
  im = pp__calloc(1, sizeof(*im));
  if (im == NULL || (im->path = pp__strdup_printf("%s", path)) == NULL) {
    status = pp__os_fail(PP_ENOMEM, "out of memory for the worker "
                                    "executable");
    goto cleanup;
  }
  status = pp__win_utf8_to_wide(path, &im->wide);
  if (status != 0)
    goto cleanup;
  attrs = GetFileAttributesW(im->wide);
  if (attrs == INVALID_FILE_ATTRIBUTES || (attrs & FILE_ATTRIBUTE_DIRECTORY)) {
    status =
        pp__os_fail(PP_ESPAWN, "cannot start worker '%s': %s", path,
                    attrs == INVALID_FILE_ATTRIBUTES
                        ? pp__win_strerror(GetLastError(), why, sizeof(why))
                        : "it is a directory");
    goto cleanup;
  }
  /* CreateProcessW refuses a program's path of MAX_PATH characters or
   * more as it is written (ERROR_INVALID_NAME, or ERROR_FILENAME_EXCED_RANGE)
   * even in a long-path-aware process.  Its short name fits, where the
   * volume keeps short names; otherwise the extended form, which Windows
   * 10 takes (Wine does not: its error then names the path). */
  if (wcslen(im->wide) >= MAX_PATH) {
    status = pp__win_short_path(im->wide, &im->launch);
    if (status != 0)
      goto cleanup;
  }
  *out = im;
  im = NULL;

cleanup:
  pp__image_close(im);
  free(self);
  return status;
}

int pp__env_path(const char *name, char **value) {
  WCHAR *wname = NULL, *buf = NULL, *bigger;
  DWORD size = MAX_PATH, n;
  int status;

  *value = NULL;
  PP__FAULT_RETURN(PP_ENOMEM);
  status = pp__win_utf8_to_wide(name, &wname);
  if (status != 0)
    goto cleanup;
  /* The variable may grow between two calls (another thread sets it):
   * asked again with the size it said it needs, until it fits. */
  for (;;) {
    bigger = pp__realloc(buf, (size_t)size * sizeof(WCHAR));
    if (bigger == NULL) {
      status = pp__os_fail(PP_ENOMEM, "out of memory reading %s", name);
      goto cleanup;
    }
    buf = bigger;
    n = GetEnvironmentVariableW(wname, buf, size);
    if (n == 0)
      goto cleanup; /* unset (ERROR_ENVVAR_NOT_FOUND) or empty */
    if (n < size)
      break;
    size = n; /* too small: n counts the NUL as well */
  }
  status = pp__win_wide_to_utf8(buf, value);
  if (status == PP_EINVAL)
    status = pp__os_fail(PP_EINVAL,
                         "%s is not valid Unicode (unpaired surrogates)", name);

cleanup:
  free(wname);
  free(buf);
  return status;
}

const char *pp__image_path(const pp__image_t *im) {
  return im->path;
}

void pp__image_close(pp__image_t *im) {
  if (im == NULL)
    return;
  free(im->path);
  free(im->wide);
  free(im->launch);
  free(im);
}
