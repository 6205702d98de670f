/*
 * image.c (POSIX) - the executable workers are started from.
 *
 * On Linux the file is held open from the pool's creation, and spawn.c
 * starts every worker from that open file (/proc/self/fd/<n>), which keeps
 * working after the file is deleted or replaced; the program itself is
 * opened as /proc/self/exe, so it may even have been deleted before the
 * pool was created.  Elsewhere, or without /proc, the image is its path.
 */
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "internal.h"

int pp__image_open(const char *path, pp__image_t **out) {
  pp__image_t *im = NULL;
  char *self = NULL;
  int rc = 0;

  *out = NULL;
  PP__FAULT_RETURN(PP_ESPAWN);
  if (path == NULL) {
    rc = pp__exe_path(&self);
    if (rc)
      return rc;
    path = self;
  }
  im = pp__calloc(1, sizeof(*im));
  /* Before anything can fail: pp__image_close() closes a descriptor >= 0,
   * and the 0 that calloc left is the application's stdin. */
  if (im != NULL)
    im->fd = -1;
  if (im == NULL || (im->path = pp__strdup_printf("%s", path)) == NULL) {
    rc = pp__os_fail(PP_ENOMEM, "out of memory for the worker executable");
    goto cleanup;
  }
#if defined(__linux__)
  /* Our own image is opened as /proc/self/exe itself, not by the path
   * readlink gave: that path names a file that may be gone (deleted or
   * replaced before this pool was created: readlink then says
   * "... (deleted)"), while /proc/self/exe is the program this process
   * runs, whatever became of its name.  Another program is opened by its
   * path. */
  im->fd = open(self != NULL ? "/proc/self/exe" : path, O_RDONLY | O_CLOEXEC);
  if (im->fd >= 0 && pp__posix_move_high(&im->fd) == 0) {
    char fd_path[40];
    snprintf(fd_path, sizeof(fd_path), "/proc/self/fd/%d", im->fd);
    /* Without /proc (a chroot, a sandbox) the path is all there is. */
    im->by_fd = access(fd_path, X_OK) == 0;
  }
#endif
  /* posix_spawn reports a failed exec on current glibc, musl and macOS, but
   * not where it falls back to fork and exec (old glibc, valgrind); checking
   * first gives the same clear reason everywhere.  Workers started from the
   * open file need only that file. */
  if (!im->by_fd && access(path, X_OK) != 0) {
    rc = pp__posix_error(PP_ESPAWN, errno, "cannot start worker '%s'", path);
    goto cleanup;
  }
  *out = im;
  im = NULL;

cleanup:
  pp__image_close(im);
  free(self);
  return rc;
}

int pp__env_path(const char *name, char **value) {
  const char *v;

  *value = NULL;
  PP__FAULT_RETURN(PP_ENOMEM);
  v = getenv(name);
  if (v == NULL || *v == '\0')
    return 0;
  *value = pp__strdup_printf("%s", v);
  if (*value == NULL)
    return pp__os_fail(PP_ENOMEM, "out of memory reading %s", name);
  return 0;
}

const char *pp__image_path(const pp__image_t *im) {
  return im->path;
}

void pp__image_close(pp__image_t *im) {
  if (im == NULL)
    return;
  if (im->fd >= 0)
    close(im->fd);
  free(im->path);
  free(im);
}
