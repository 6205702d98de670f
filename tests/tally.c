/*
 * tally.c - a tally of call starts that outlives the workers: counters in
 * a file mapping that the test and every worker map, so that a test can
 * tell how often each call really started, whatever the pool reports (see
 * helpers.h).  The task "tally" counts its start, then keeps its worker
 * busy for a while.
 */
#if defined(__linux__)
#ifndef _GNU_SOURCE
#define _GNU_SOURCE
#endif
#elif !defined(_WIN32) && !defined(_POSIX_C_SOURCE)
#define _POSIX_C_SOURCE 200809L
#endif

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#ifdef _WIN32
#include <windows.h>
#else
#include <fcntl.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>
#endif

#include <apr_time.h>

#include "helpers.h"
#include "tasks.h"

struct pp_test_tally_s {
  uint32_t *counts;
  size_t n;
  char path[512];
#ifdef _WIN32
  HANDLE file, mapping;
#endif
};

/* Maps the counters of the file at `path`: creates it with `n` zeroed
 * counters if `create`, else maps all the counters it has.  Returns NULL
 * if that fails. */
static pp_test_tally_t *tally_map(const char *path, size_t n, int create) {
  pp_test_tally_t *t = calloc(1, sizeof(*t));
  size_t len = n * sizeof(uint32_t);
  if (t == NULL || (create && n == 0))
    goto fail;
  snprintf(t->path, sizeof(t->path), "%s", path);
#ifdef _WIN32
  t->file = CreateFileA(path, GENERIC_READ | GENERIC_WRITE,
                        FILE_SHARE_READ | FILE_SHARE_WRITE | FILE_SHARE_DELETE,
                        NULL, create ? CREATE_ALWAYS : OPEN_EXISTING,
                        FILE_ATTRIBUTE_NORMAL, NULL);
  if (t->file == INVALID_HANDLE_VALUE)
    goto fail;
  if (!create) {
    LARGE_INTEGER size;
    if (!GetFileSizeEx(t->file, &size) || size.QuadPart < 4)
      goto fail;
    len = (size_t)size.QuadPart / 4 * 4;
  }
  t->mapping =
      CreateFileMappingA(t->file, NULL, PAGE_READWRITE,
                         (DWORD)((uint64_t)len >> 32), (DWORD)len, NULL);
  if (t->mapping == NULL)
    goto fail;
  t->counts = MapViewOfFile(t->mapping, FILE_MAP_WRITE, 0, 0, len);
  if (t->counts == NULL)
    goto fail;
#else
  {
    int fd = open(path, create ? O_RDWR | O_CREAT | O_TRUNC : O_RDWR, 0600);
    struct stat st;
    void *p;
    if (fd < 0)
      goto fail;
    if (create && ftruncate(fd, (off_t)len) != 0) {
      close(fd);
      goto fail;
    }
    if (!create) {
      if (fstat(fd, &st) != 0 || st.st_size < 4) {
        close(fd);
        goto fail;
      }
      len = (size_t)st.st_size / 4 * 4;
    }
    p = mmap(NULL, len, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
    close(fd);
    if (p == MAP_FAILED)
      goto fail;
    t->counts = p;
  }
#endif
  t->n = len / sizeof(uint32_t);
  return t;
fail:
  if (t != NULL) {
#ifdef _WIN32
    if (t->mapping != NULL)
      CloseHandle(t->mapping);
    if (t->file != NULL && t->file != INVALID_HANDLE_VALUE)
      CloseHandle(t->file);
#endif
    free(t);
  }
  return NULL;
}

pp_test_tally_t *pp_test_tally_new(const char *name, size_t n) {
  char path[512];
  snprintf(path, sizeof(path), "pp_tally_%s_%lld.bin", name,
           (long long)pp_test_self_pid());
  return tally_map(path, n, 1);
}

const char *pp_test_tally_path(const pp_test_tally_t *t) {
  return t->path;
}

uint32_t pp_test_tally_get(const pp_test_tally_t *t, size_t i) {
  return i < t->n ? __atomic_load_n(&t->counts[i], __ATOMIC_ACQUIRE) : 0;
}

void pp_test_tally_free(pp_test_tally_t *t, int remove) {
  if (t == NULL)
    return;
#ifdef _WIN32
  UnmapViewOfFile(t->counts);
  CloseHandle(t->mapping);
  CloseHandle(t->file);
#else
  munmap(t->counts, t->n * sizeof(uint32_t));
#endif
  if (remove)
    pp_test_remove_file(t->path);
  free(t);
}

pp_buf_t pp_test_tally_arg(const pp_test_tally_t *t, size_t i,
                           int64_t busy_us) {
  pp_buf_t b;
  if (pp_pack(&b, "sii", t->path, (int64_t)i, busy_us) != 0) {
    fprintf(stderr, "pp_test_tally_arg: out of memory\n");
    exit(1);
  }
  return b;
}

/* The task: "sii" path, index, busy_us -> "i" index.  A worker keeps the
 * mapping of the last file it was given. */
int pp_test_task_tally(pp_call_t *call, const void *arg, size_t len) {
  static pp_test_tally_t *mine;
  const char *path;
  int64_t index, busy_us, until;
  if (pp_unpack(arg, len, "sii", &path, &index, &busy_us) != 0 || index < 0)
    return pp_call_fail(call, "tally wants (path, index, busy_us)");
  if (mine == NULL || strcmp(mine->path, path) != 0) {
    pp_test_tally_t *t = tally_map(path, 0, 0);
    if (t == NULL)
      return pp_call_fail(call, "tally: cannot map %s", path);
    pp_test_tally_free(mine, 0);
    mine = t;
  }
  if ((size_t)index >= mine->n)
    return pp_call_fail(call, "tally: index %lld beyond the file",
                        (long long)index);
  __atomic_fetch_add(&mine->counts[index], 1, __ATOMIC_ACQ_REL);
  /* Busy, not asleep: the call takes its time even when the machine is
   * loaded and a sleep would end late, which is what a test of a timeout
   * that falls as the call ends needs. */
  until = (int64_t)apr_time_now() + busy_us;
  while ((int64_t)apr_time_now() < until)
    ;
  return pp_call_replyf(call, "i", index);
}
