/*
 * shm.c (Win32) - shared memory between a parent and its workers: sections
 * backed by the paging file, and their hand-over as blobs.
 *
 * A section handle goes from one process to the other by DuplicateHandle,
 * and it is always the parent that duplicates: into the worker (it holds a
 * full-access handle to every worker it started) and out of it (a worker's
 * result).  A worker never gets PROCESS_DUP_HANDLE on its parent, which
 * would let a task take any handle the parent has, its own process handle
 * included, and so anything the parent may do.
 *
 * A section the parent hands over carries only the rights to map and query
 * it, not SECTION_EXTEND_SIZE or WRITE_DAC.  Sections backed by the paging
 * file cannot shrink, so no worker can make the parent's view of a ring or
 * of a result fault; a section a worker hands over is checked to be such a
 * section (not a file's, whose I/O errors would fault in the parent, nor a
 * reserved one, whose pages need not exist) before it is mapped.
 */
#include "internal.h"

#include <stdlib.h>
#include <string.h>

/* The rights of a handed-over section: map it, and ask its size. */
#define SHM_RIGHTS (SECTION_QUERY | SECTION_MAP_READ | SECTION_MAP_WRITE)

/* Serials of this process' mappings (pp__shm_serial). */
static volatile LONG64 serials;

struct pp__shm_s {
  uint64_t serial;
  HANDLE section;
  void *base;
  uint64_t size;
};

/* NtQuerySection's basic information, which the SDK headers lack. */
typedef struct {
  PVOID base;
  ULONG attributes;
  LARGE_INTEGER size;
} section_basic_t;
typedef LONG(NTAPI *query_section_fn)(HANDLE, int, PVOID, SIZE_T, PSIZE_T);

#ifndef SEC_FILE
#define SEC_FILE 0x800000
#endif

/* NtQuerySection, looked up once.  InitOnceExecuteOnce makes the pointer
 * visible to every thread that returns from it: a flag set after the
 * pointer guarantees nothing on ARM64, where another thread may see the
 * flag before the pointer. */
static query_section_fn query;
static INIT_ONCE query_once = INIT_ONCE_STATIC_INIT;

static BOOL CALLBACK look_up_query(PINIT_ONCE once, PVOID param, PVOID *ctx) {
  HMODULE ntdll = GetModuleHandleW(L"ntdll.dll");
  (void)once;
  (void)param;
  (void)ctx;
  if (ntdll != NULL)
    query = (query_section_fn)(void (*)(void))GetProcAddress(ntdll,
                                                             "NtQuerySection");
  return TRUE;
}

/* Asks the system for a section's size and kind.  Returns 0, or -1 where
 * it cannot tell (no NtQuerySection, or no right to query). */
static int query_section(HANDLE section, uint64_t *size, ULONG *attributes) {
  section_basic_t info;
  SIZE_T got = 0;
  InitOnceExecuteOnce(&query_once, look_up_query, NULL, NULL);
  memset(&info, 0, sizeof(info));
  if (query == NULL || query(section, 0 /* SectionBasicInformation */, &info,
                             sizeof(info), &got) < 0)
    return -1;
  *size = (uint64_t)info.size.QuadPart;
  *attributes = info.attributes;
  return 0;
}

static int map_error(DWORD error) {
  return pp__win_status(error, PP_EIO);
}

int pp__shm_create(uint64_t size, unsigned flags, pp__shm_t **out) {
  pp__shm_t *s;
  char why[160];
  int status = 0;

  (void)flags; /* SEC_COMMIT: the pages exist; Windows maps them on touch */
  *out = NULL;
  if (size == 0 || size > (uint64_t)SIZE_MAX)
    return pp__os_fail(PP_EINVAL, "shared memory of %llu bytes",
                       (unsigned long long)size);
  PP__FAULT_RETURN(PP_ENOMEM);
  s = pp__calloc(1, sizeof(*s));
  if (s == NULL)
    return pp__os_fail(PP_ENOMEM, "out of memory for shared memory");
  /* Backed by the paging file and committed in full (SEC_COMMIT), so every
   * page exists for both processes; fresh pages read as zero.  The size is
   * given as two DWORDs, so sections above 4 GiB work.  Not inheritable:
   * it reaches a worker only by DuplicateHandle. */
  s->section = CreateFileMappingW(INVALID_HANDLE_VALUE, NULL,
                                  PAGE_READWRITE | SEC_COMMIT,
                                  (DWORD)(size >> 32), (DWORD)size, NULL);
  if (s->section == NULL) {
    DWORD error = GetLastError();
    status = pp__os_fail(map_error(error), "CreateFileMappingW(%llu bytes): %s",
                         (unsigned long long)size,
                         pp__win_strerror(error, why, sizeof(why)));
    goto cleanup;
  }
  s->base = MapViewOfFile(s->section, FILE_MAP_READ | FILE_MAP_WRITE, 0, 0,
                          (SIZE_T)size);
  if (s->base == NULL) {
    DWORD error = GetLastError();
    status = pp__os_fail(map_error(error),
                         "mapping %llu bytes of shared "
                         "memory: %s",
                         (unsigned long long)size,
                         pp__win_strerror(error, why, sizeof(why)));
    goto cleanup;
  }
  s->size = size;
  s->serial = (uint64_t)InterlockedIncrement64(&serials);
  *out = s;
  s = NULL;

cleanup:
  pp__shm_close(s);
  return status;
}

void *pp__shm_base(const pp__shm_t *s) {
  return s->base;
}

uint64_t pp__shm_len(const pp__shm_t *s) {
  return s->size;
}

uint64_t pp__shm_serial(const pp__shm_t *s) {
  return s->serial;
}

HANDLE pp__win_shm_handle(const pp__shm_t *s) {
  return s->section;
}

void pp__shm_close(pp__shm_t *s) {
  if (s == NULL)
    return;
  if (s->base != NULL)
    UnmapViewOfFile(s->base);
  if (s->section != NULL)
    CloseHandle(s->section);
  free(s);
}

int pp__win_shm_map(HANDLE section, uint64_t want, void **base,
                    uint64_t *size) {
  uint64_t have = 0;
  ULONG attributes = 0;
  char why[160];
  void *p;

  *base = NULL;
  *size = 0;
  if (query_section(section, &have, &attributes) == 0) {
    if (attributes & (SEC_FILE | SEC_IMAGE | SEC_RESERVE))
      return pp__os_fail(PP_EPROTO,
                         "a blob that is not committed memory "
                         "(section attributes 0x%lX)",
                         (unsigned long)attributes);
    if (have < want || have == 0 || have > (uint64_t)SIZE_MAX)
      return pp__os_fail(PP_EPROTO,
                         "a blob of %llu bytes where %llu were "
                         "announced",
                         (unsigned long long)have, (unsigned long long)want);
  } else if (want == 0) {
    return pp__os_fail(PP_EIO,
                       "the size of a shared memory section is "
                       "unknown: %s",
                       pp__win_strerror(GetLastError(), why, sizeof(why)));
  } else {
    /* The view below is exactly `want` bytes, which the system refuses
     * for a smaller section. */
    have = want;
  }
  /* Only what was announced is mapped: a worker's larger section costs the
   * parent no more address space. */
  if (want != 0)
    have = want;
  p = MapViewOfFile(section, FILE_MAP_READ | FILE_MAP_WRITE, 0, 0,
                    (SIZE_T)have);
  if (p == NULL) {
    DWORD error = GetLastError();
    return pp__os_fail(
        error == ERROR_INVALID_HANDLE ? PP_EPROTO : map_error(error),
        "mapping %llu bytes of shared memory: %s", (unsigned long long)have,
        pp__win_strerror(error, why, sizeof(why)));
  }
  *base = p;
  *size = have;
  return 0;
}

int pp__shm_send(pp__chan_t *chan, pp__shm_t *s, pp__proc_t *peer,
                 uint64_t *handle) {
  HANDLE self = GetCurrentProcess(), target, copy = NULL;
  char why[160];

  (void)chan;
  *handle = 0;
  PP__FAULT_RETURN(PP_EIO);
  /* The parent puts a copy into the worker, which maps it and closes it
   * when the call is over; a worker dying first takes the copy with it.
   * A worker makes a copy of its own for the parent to take over (with
   * DUPLICATE_CLOSE_SOURCE); its pp__shm_t keeps the original. */
  target = peer != NULL ? pp__win_proc_handle(peer) : self;
  if (!DuplicateHandle(self, s->section, target, &copy, SHM_RIGHTS, FALSE, 0)) {
    DWORD error = GetLastError();
    if (peer != NULL && WaitForSingleObject(target, 0) == WAIT_OBJECT_0)
      return pp__os_fail(PP_ECLOSED, "the worker has ended");
    return pp__os_fail(PP_EIO, "handing over shared memory: %s",
                       pp__win_strerror(error, why, sizeof(why)));
  }
  *handle = (uint64_t)(uintptr_t)copy;
  return 0;
}

typedef BOOL(WINAPI *compare_handles_fn)(HANDLE, HANDLE);

/* CompareObjectHandles, looked up once (as NtQuerySection above). */
static compare_handles_fn compare;
static INIT_ONCE compare_once = INIT_ONCE_STATIC_INIT;

static BOOL CALLBACK look_up_compare(PINIT_ONCE once, PVOID param, PVOID *ctx) {
  HMODULE kernelbase = GetModuleHandleW(L"kernelbase.dll");
  (void)once;
  (void)param;
  (void)ctx;
  if (kernelbase != NULL)
    compare = (compare_handles_fn)(void (*)(void))GetProcAddress(
        kernelbase, "CompareObjectHandles");
  return TRUE;
}

/* Returns the index of the mapping in `known` whose section `section` is
 * another handle of (and that is at least `size` bytes), or -1.  Only
 * Windows 10 and later can tell (CompareObjectHandles); elsewhere nothing
 * matches. */
static int find_known(HANDLE section, uint64_t size, pp__shm_t *const *known,
                      int n) {
  int i;
  if (n <= 0)
    return -1;
  InitOnceExecuteOnce(&compare_once, look_up_compare, NULL, NULL);
  if (compare == NULL)
    return -1;
  for (i = 0; i < n; i++)
    if (known[i] != NULL && known[i]->size >= size &&
        compare(section, known[i]->section))
      return i;
  return -1;
}

int pp__shm_recv(pp__chan_t *chan, uint64_t handle, uint64_t size,
                 pp__proc_t *peer, pp__shm_t **out) {
  int known_at;
  return pp__shm_recv_known(chan, handle, size, peer, NULL, 0, out, &known_at);
}

int pp__shm_recv_known(pp__chan_t *chan, uint64_t handle, uint64_t size,
                       pp__proc_t *peer, pp__shm_t *const *known, int n,
                       pp__shm_t **out, int *known_at) {
  HANDLE self = GetCurrentProcess(), section = NULL;
  pp__shm_t *s = NULL;
  char why[160];
  int status;

  (void)chan;
  *out = NULL;
  *known_at = -1;
  if (handle == 0 || handle > (uint64_t)UINTPTR_MAX)
    return pp__os_fail(PP_EPROTO, "a blob without a handle");
  if (peer != NULL) {
    /* Taken out of the worker, which loses its copy even if the blob is
     * refused below, so nothing is left behind there. */
    if (!DuplicateHandle(pp__win_proc_handle(peer), (HANDLE)(uintptr_t)handle,
                         self, &section, SHM_RIGHTS, FALSE,
                         DUPLICATE_CLOSE_SOURCE)) {
      DWORD error = GetLastError();
      if (WaitForSingleObject(pp__win_proc_handle(peer), 0) == WAIT_OBJECT_0)
        return pp__os_fail(PP_ECLOSED, "the worker has ended");
      return pp__os_fail(PP_EPROTO, "taking over a blob: %s",
                         pp__win_strerror(error, why, sizeof(why)));
    }
  } else {
    /* The parent has put it here already. */
    section = (HANDLE)(uintptr_t)handle;
  }
  if (PP__FAULT_HIT("pp__shm_recv")) {
    /* As if the mapping failed: the handle came and is closed. */
    CloseHandle(section);
    return pp__fault_fail(PP_ENOMEM, "pp__shm_recv");
  }
  *known_at = find_known(section, size, known, n);
  if (*known_at >= 0) {
    CloseHandle(section);
    return 0;
  }
  s = pp__calloc(1, sizeof(*s));
  if (s == NULL) {
    status = pp__os_fail(PP_ENOMEM, "out of memory for a blob");
    goto cleanup;
  }
  s->section = section;
  section = NULL;
  status = pp__win_shm_map(s->section, size, &s->base, &s->size);
  if (status != 0)
    goto cleanup;
  s->serial = (uint64_t)InterlockedIncrement64(&serials);
  *out = s;
  s = NULL;

cleanup:
  if (section != NULL)
    CloseHandle(section);
  pp__shm_close(s);
  return status;
}
