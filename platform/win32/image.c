/*
 * image.c - the executable workers are started from, on Windows.
 *
 * Windows cannot start a process from an open file, so the image is its
 * path, in UTF-8 for messages and in UTF-16 for CreateProcessW (spawn.c).
 */
#include "internal.h"

#include <stdlib.h>
#include <string.h>

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
  free(im);
}
