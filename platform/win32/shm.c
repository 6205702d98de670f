/*
 * shm.c (Win32) - shared memory between a parent and its workers: sections
 * backed by the paging file, and their hand-over as blobs.
 *
 * A section handle goes from one process to the other by DuplicateHandle,
 * always pushed by its sender into the receiver: the parent into a worker
 * (it holds a full-access handle to every worker it started), a worker
 * into its parent, through the handle to the parent that its boot block
 * gave it (PROCESS_DUP_HANDLE, SYNCHRONIZE and
 * PROCESS_QUERY_LIMITED_INFORMATION; spawn.c).  That handle gives a task
 * no power it lacked: a worker runs as the same user at the same
 * integrity level as its parent, so OpenProcess would grant it the same.
 *
 * Who owns a worker's result section, step by step:
 *   1. the worker creates it, `used` bytes of data and PP__SHM_TAG_LEN
 *      more, and writes a random tag past the data;
 *   2. it duplicates the section into the parent (pp__shm_send): from
 *      here the parent's handle keeps the section alive, whatever becomes
 *      of the worker, which keeps its own handle and view (a kept
 *      result, worker.c) or closes them;
 *   3. it names the handle in its control block, then in its RESULT
 *      record (worker.c, ring.h);
 *   4. the parent maps the handle it is told, checks the tag, clears it
 *      and owns the handle from then on (pp__shm_recv); a handle whose
 *      tag does not match, or that cannot be mapped, is never closed:
 *      the value comes from a worker, and might name any handle of the
 *      parent's (a scribbled record);
 *   5. a blob whose record is never taken (the worker was buried with its
 *      record unread, or died between steps 2 and 3) is closed by the
 *      parent when it buries the worker (pp__shm_drop), again only when
 *      its tag proves it.
 * What leaks: a worker that dies between step 2 and its store into the
 * control block (a few instructions) leaves one section in the parent,
 * for as long as the parent lives; a result whose tag was cleared (it was
 * taken) is never closed twice.
 *
 * A section the parent hands over carries only the rights to map and query
 * it, not SECTION_EXTEND_SIZE or WRITE_DAC.  Sections backed by the paging
 * file cannot shrink, so no worker can make the parent's view of a ring or
 * of a result fault; a section a worker hands over is checked to be such a
 * section (not a file's, whose I/O errors would fault in the parent, nor a
 * reserved one, whose pages need not exist) before it is mapped.
 */
#include "internal.h"

#include <bcrypt.h>
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

/* A function of a system DLL that older Windows lacks, looked up once.
 * InitOnceExecuteOnce makes the pointer visible to every thread that
 * returns from it: a flag set after the pointer guarantees nothing on
 * ARM64, where another thread may see the flag before the pointer. */
typedef struct lazy_fn_s {
  INIT_ONCE once;
  const WCHAR *module;
  const char *name;
  void (*fn)(void);
} lazy_fn_t;

static BOOL CALLBACK look_up(PINIT_ONCE once, PVOID param, PVOID *ctx) {
  lazy_fn_t *l = param;
  HMODULE module = GetModuleHandleW(l->module);
  (void)once;
  (void)ctx;
  if (module != NULL)
    l->fn = (void (*)(void))GetProcAddress(module, l->name);
  return TRUE;
}

/* Returns the function, or NULL where the system has none. */
static void (*lazy_fn(lazy_fn_t *l))(void) {
  InitOnceExecuteOnce(&l->once, look_up, l, NULL);
  return l->fn;
}

static lazy_fn_t query_lazy = {INIT_ONCE_STATIC_INIT, L"ntdll.dll",
                               "NtQuerySection", NULL};

/* Asks the system for a section's size and kind.  Returns 0, or -1 where
 * it cannot tell (no NtQuerySection, or no right to query). */
static int query_section(HANDLE section, uint64_t *size, ULONG *attributes) {
  section_basic_t info;
  SIZE_T got = 0;
  query_section_fn query = (query_section_fn)lazy_fn(&query_lazy);
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

/* The worker's handle to its parent, which its results are pushed into
 * (pp__win_shm_set_parent); NULL in a parent. */
static HANDLE parent_process;

void pp__win_shm_set_parent(HANDLE parent) {
  parent_process = parent;
}

/* Returns 1 if `process` has ended, or is ending: a process being torn
 * down refuses DuplicateHandle before its object is signalled, but its
 * exit code is set by then. */
static int process_ended(HANDLE process) {
  DWORD code = 0;
  if (WaitForSingleObject(process, 0) == WAIT_OBJECT_0)
    return 1;
  return GetExitCodeProcess(process, &code) && code != STILL_ACTIVE;
}

/* A tag for a blob: random where the system's generator answers, else
 * the time, the pid and a counter mixed (splitmix64).  It tells the
 * section from a handle value that a scribbled record names by accident;
 * it is no secret from the worker, which could do anything to its parent
 * through its handle anyway.  Never 0, which means "taken". */
static uint64_t new_tag(void) {
  static volatile LONG64 count;
  LARGE_INTEGER now;
  uint64_t z = 0;
  if (BCryptGenRandom(NULL, (PUCHAR)&z, sizeof(z),
                      BCRYPT_USE_SYSTEM_PREFERRED_RNG) < 0 ||
      z == 0) {
    QueryPerformanceCounter(&now);
    z = (uint64_t)now.QuadPart ^ ((uint64_t)GetCurrentProcessId() << 32) ^
        (uint64_t)InterlockedIncrement64(&count) * 0x9E3779B97F4A7C15ull;
    z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
    z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
    z ^= z >> 31;
  }
  return z != 0 ? z : 1;
}

int pp__shm_send(pp__chan_t *chan, pp__shm_t *s, pp__proc_t *peer,
                 uint64_t used, uint64_t *handle, uint64_t *tag) {
  HANDLE self = GetCurrentProcess(), target, copy = NULL;
  uint64_t t = 0;
  char why[160];

  (void)chan;
  *handle = 0;
  if (tag != NULL)
    *tag = 0;
  PP__FAULT_RETURN(PP_EIO);
  if (peer != NULL) {
    /* The parent puts a copy into the worker, which maps it and closes it
     * when the call is over; a worker dying first takes the copy with
     * it. */
    target = pp__win_proc_handle(peer);
  } else {
    /* A worker puts a copy into the parent (steps 1 and 2 above); its
     * pp__shm_t keeps the original. */
    target = parent_process;
    if (target == NULL)
      return pp__os_fail(PP_EIO, "handing over shared memory: this worker "
                                 "has no handle to its parent");
    if (used > s->size || s->size - used < PP__SHM_TAG_LEN)
      return pp__os_fail(PP_EINVAL,
                         "a blob of %llu bytes has no room for its tag "
                         "after %llu bytes of data",
                         (unsigned long long)s->size, (unsigned long long)used);
    t = new_tag();
    memcpy((unsigned char *)s->base + used, &t, sizeof(t));
  }
  if (!DuplicateHandle(self, s->section, target, &copy, SHM_RIGHTS, FALSE, 0)) {
    DWORD error = GetLastError();
    if (process_ended(target))
      return pp__os_fail(PP_ECLOSED, peer != NULL ? "the worker has ended"
                                                  : "the parent has ended");
    return pp__os_fail(PP_EIO, "handing over shared memory: %s",
                       pp__win_strerror(error, why, sizeof(why)));
  }
  *handle = (uint64_t)(uintptr_t)copy;
  if (tag != NULL)
    *tag = t;
  return 0;
}

/* Returns 1 if section handle `section` holds `tag` at offset `at`, after
 * clearing it there (so that it proves nothing a second time); else 0,
 * having changed nothing.  It maps only the allocation granule that
 * holds the tag, so it works where the whole blob cannot be mapped. */
static int tag_claim(HANDLE section, uint64_t at, uint64_t tag) {
  SYSTEM_INFO si;
  uint64_t have = 0, off;
  ULONG attributes = 0;
  unsigned char *p;
  int ok;

  if (query_section(section, &have, &attributes) == 0 &&
      ((attributes & (SEC_FILE | SEC_IMAGE | SEC_RESERVE)) ||
       have < PP__SHM_TAG_LEN || at > have - PP__SHM_TAG_LEN))
    return 0;
  GetSystemInfo(&si);
  off = at -
        at % (si.dwAllocationGranularity ? si.dwAllocationGranularity : 65536);
  p = MapViewOfFile(section, FILE_MAP_READ | FILE_MAP_WRITE, (DWORD)(off >> 32),
                    (DWORD)off, (SIZE_T)(at - off + PP__SHM_TAG_LEN));
  if (p == NULL)
    return 0;
  ok = memcmp(p + (at - off), &tag, sizeof(tag)) == 0;
  if (ok)
    memset(p + (at - off), 0, sizeof(tag));
  UnmapViewOfFile(p);
  return ok;
}

/* Returns 1 if a handle value, tag and size from a worker could name one
 * of its blobs at all. */
static int blob_named(uint64_t handle, uint64_t tag, uint64_t size) {
  return handle != 0 && handle <= (uint64_t)UINTPTR_MAX && tag != 0 &&
         size <= UINT64_MAX - PP__SHM_TAG_LEN;
}

void pp__shm_drop(uint64_t handle, uint64_t tag, uint64_t size) {
  HANDLE section = (HANDLE)(uintptr_t)handle;
  if (blob_named(handle, tag, size) && tag_claim(section, size, tag))
    CloseHandle(section);
}

/* The parent takes over the section a worker put into it (step 4 above):
 * `handle` is its value here. */
static int take_blob(uint64_t handle, uint64_t tag, uint64_t size,
                     pp__shm_t **out) {
  HANDLE section = (HANDLE)(uintptr_t)handle;
  pp__shm_t *s = NULL;
  void *base = NULL;
  uint64_t mapped = 0;
  int status;

  if (!blob_named(handle, tag, size))
    return pp__os_fail(PP_EPROTO, "a blob without a handle");
  status = pp__win_shm_map(section, size + PP__SHM_TAG_LEN, &base, &mapped);
  if (status != 0) {
    /* Out of address space here: the blob is closed if it is the
     * worker's, else left alone. */
    if (status == PP_ENOMEM && tag_claim(section, size, tag)) {
      CloseHandle(section);
      return status;
    }
    return pp__os_fail(PP_EPROTO,
                       "the handle of a worker's blob (0x%llX) could not be "
                       "mapped, and is left alone",
                       (unsigned long long)handle);
  }
  if (memcmp((unsigned char *)base + size, &tag, sizeof(tag)) != 0) {
    UnmapViewOfFile(base);
    return pp__os_fail(PP_EPROTO,
                       "handle 0x%llX, which a worker named for its blob, "
                       "is not that blob, and is left alone",
                       (unsigned long long)handle);
  }
  memset((unsigned char *)base + size, 0, sizeof(tag));
  s = pp__calloc(1, sizeof(*s));
  if (s == NULL) {
    UnmapViewOfFile(base);
    CloseHandle(section);
    return pp__os_fail(PP_ENOMEM, "out of memory for a blob");
  }
  s->section = section;
  s->base = base;
  s->size = mapped;
  s->serial = (uint64_t)InterlockedIncrement64(&serials);
  if (PP__FAULT_HIT("pp__shm_recv")) {
    /* As if the mapping failed: the handle came and is closed. */
    pp__shm_close(s);
    return pp__fault_fail(PP_ENOMEM, "pp__shm_recv");
  }
  *out = s;
  return 0;
}

typedef BOOL(WINAPI *compare_handles_fn)(HANDLE, HANDLE);

/* CompareObjectHandles: Windows 10 and later. */
static lazy_fn_t compare_lazy = {INIT_ONCE_STATIC_INIT, L"kernelbase.dll",
                                 "CompareObjectHandles", NULL};

/* Returns the index of the mapping in `known` whose section `section` is
 * another handle of (and that is at least `size` bytes), or -1.  Only
 * Windows 10 and later can tell (CompareObjectHandles); elsewhere nothing
 * matches. */
static int find_known(HANDLE section, uint64_t size, pp__shm_t *const *known,
                      int n) {
  compare_handles_fn compare;
  int i;
  if (n <= 0)
    return -1;
  compare = (compare_handles_fn)lazy_fn(&compare_lazy);
  if (compare == NULL)
    return -1;
  for (i = 0; i < n; i++)
    if (known[i] != NULL && known[i]->size >= size &&
        compare(section, known[i]->section))
      return i;
  return -1;
}

int pp__shm_recv(pp__chan_t *chan, uint64_t handle, uint64_t tag, uint64_t size,
                 pp__proc_t *peer, pp__shm_t **out) {
  int known_at;
  *out = NULL;
  if (peer != NULL)
    return take_blob(handle, tag, size, out);
  return pp__shm_recv_known(chan, handle, size, peer, NULL, 0, out, &known_at);
}

int pp__shm_recv_known(pp__chan_t *chan, uint64_t handle, uint64_t size,
                       pp__proc_t *peer, pp__shm_t *const *known, int n,
                       pp__shm_t **out, int *known_at) {
  HANDLE section = NULL;
  pp__shm_t *s = NULL;
  int status;

  (void)chan;
  *out = NULL;
  *known_at = -1;
  if (peer != NULL)
    return pp__os_fail(PP_EINVAL, "a worker's blob is taken with "
                                  "pp__shm_recv");
  if (handle == 0 || handle > (uint64_t)UINTPTR_MAX)
    return pp__os_fail(PP_EPROTO, "a blob without a handle");
  /* The parent has put it here already. */
  section = (HANDLE)(uintptr_t)handle;
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
