/*
 * system.c - facts about the running process and machine on Windows
 * (executable path, CPU count, pid, debugger, free memory), and the text
 * helpers the other Win32 files share (UTF-8 <-> UTF-16, error messages).
 */
#include "internal.h"
#include "../../src/digest.h"

#include <fcntl.h>
#include <io.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <wchar.h>

int pp__win_utf8_to_wide(const char *s, WCHAR **out) {
  WCHAR *w;
  int n;

  *out = NULL;
  /* MB_ERR_INVALID_CHARS makes bad UTF-8 an error instead of U+FFFD, so a
   * path that cannot be what the caller meant is refused, not mangled. */
  n = MultiByteToWideChar(CP_UTF8, MB_ERR_INVALID_CHARS, s, -1, NULL, 0);
  if (n <= 0)
    return pp__os_fail(PP_EINVAL, "text is not valid UTF-8: \"%s\"", s);
  w = pp__malloc((size_t)n * sizeof(WCHAR));
  if (w == NULL)
    return pp__os_fail(PP_ENOMEM, "out of memory converting to UTF-16");
  if (MultiByteToWideChar(CP_UTF8, MB_ERR_INVALID_CHARS, s, -1, w, n) != n) {
    free(w);
    return pp__os_fail(PP_EINVAL, "text is not valid UTF-8: \"%s\"", s);
  }
  *out = w;
  return 0;
}

int pp__win_wide_to_utf8(const WCHAR *s, char **out) {
  char *u;
  int n;

  *out = NULL;
  n = WideCharToMultiByte(CP_UTF8, WC_ERR_INVALID_CHARS, s, -1, NULL, 0, NULL,
                          NULL);
  if (n <= 0)
    return pp__os_fail(PP_EINVAL, "UTF-16 text has unpaired surrogates");
  u = pp__malloc((size_t)n);
  if (u == NULL)
    return pp__os_fail(PP_ENOMEM, "out of memory converting to UTF-8");
  if (WideCharToMultiByte(CP_UTF8, WC_ERR_INVALID_CHARS, s, -1, u, n, NULL,
                          NULL) != n) {
    free(u);
    return pp__os_fail(PP_EINVAL, "UTF-16 text has unpaired surrogates");
  }
  *out = u;
  return 0;
}

int pp__win_status(DWORD code, int otherwise) {
  switch (code) {
    case ERROR_NOT_ENOUGH_MEMORY:
    case ERROR_OUTOFMEMORY:
    case ERROR_COMMITMENT_LIMIT:
    case ERROR_NO_SYSTEM_RESOURCES:
    case ERROR_NOT_ENOUGH_QUOTA:
      return PP_ENOMEM;
    case ERROR_TOO_MANY_OPEN_FILES:
      return PP_ESPAWN;
    default:
      return otherwise;
  }
}

const char *pp__win_strerror(DWORD code, char *buf, size_t size) {
  DWORD saved = GetLastError();
  DWORD flags = FORMAT_MESSAGE_FROM_SYSTEM | FORMAT_MESSAGE_IGNORE_INSERTS |
                FORMAT_MESSAGE_ALLOCATE_BUFFER;
  WCHAR *wide = NULL;
  char *text = NULL;
  DWORD n;
  size_t len = 0;

  if (size == 0)
    return buf;
  /* English first, so that logs from different machines read the same; the
   * user's language when no English table is installed.  The system sizes
   * the buffer: some messages (and most translations) are long. */
  n = FormatMessageW(flags, NULL, code,
                     MAKELANGID(LANG_ENGLISH, SUBLANG_ENGLISH_US),
                     (LPWSTR)&wide, 0, NULL);
  if (n == 0)
    n = FormatMessageW(flags, NULL, code, 0, (LPWSTR)&wide, 0, NULL);
  if (n > 0 && wide != NULL && pp__win_wide_to_utf8(wide, &text) == 0)
    len = strlen(text);
  /* System messages end in ".\r\n"; the number is appended after them. */
  while (len > 0 && (text[len - 1] == '\r' || text[len - 1] == '\n' ||
                     text[len - 1] == ' ' || text[len - 1] == '.'))
    text[--len] = '\0';
  if (len > 0)
    pp__format(buf, size, "%s (error %lu)", text, (unsigned long)code);
  else
    pp__format(buf, size, "error %lu", (unsigned long)code);
  free(text);
  if (wide != NULL)
    LocalFree(wide);
  SetLastError(saved);
  return buf;
}

int pp__exe_path(char **path) {
  WCHAR *buf = NULL;
  WCHAR *bigger;
  DWORD size = MAX_PATH;
  DWORD n;
  char why[160];
  int status;

  *path = NULL;
  /* GetModuleFileNameW truncates silently when the buffer is short (it
   * returns the buffer size), so grow until the answer fits.  Long paths
   * can reach 32767 characters.  Under Wine the answer is a "Z:\..." path,
   * which CreateProcessW accepts like any other. */
  for (;;) {
    bigger = pp__realloc(buf, (size_t)size * sizeof(WCHAR));
    if (bigger == NULL) {
      status = pp__os_fail(PP_ENOMEM, "out of memory for the exe path");
      goto cleanup;
    }
    buf = bigger;
    n = GetModuleFileNameW(NULL, buf, size);
    if (n == 0) {
      status = pp__os_fail(PP_EIO, "GetModuleFileNameW: %s",
                           pp__win_strerror(GetLastError(), why, sizeof(why)));
      goto cleanup;
    }
    if (n < size)
      break;
    if (size >= 65536) {
      status = pp__os_fail(PP_EIO, "the executable path is too long");
      goto cleanup;
    }
    size *= 2;
  }
  status = pp__win_wide_to_utf8(buf, path);

cleanup:
  free(buf);
  return status;
}

static int popcount_ptr(DWORD_PTR mask) {
  int n = 0;
  while (mask != 0) {
    mask &= mask - 1;
    n++;
  }
  return n;
}

int64_t pp__fd_limit(void) {
  /* Handles have no per-process limit worth checking (16 million). */
  return -1;
}

void pp__shared_lib_name(const char *base, char *buf, size_t cap) {
  snprintf(buf, cap, "%s.dll", base);
}

int pp__cpu_count(void) {
  DWORD_PTR process_mask;
  DWORD_PTR system_mask;
  int active;
  int allowed;

  active = (int)GetActiveProcessorCount(ALL_PROCESSOR_GROUPS);
  if (active < 1)
    active = 1;
  /* An affinity mask set by the user (start /affinity, a job) narrows what
   * we may use.  The masks only describe one processor group, so they are
   * trusted only when they show a real restriction within that group; on a
   * machine with more than 64 CPUs both masks are full and the count of all
   * groups stands. */
  if (GetProcessAffinityMask(GetCurrentProcess(), &process_mask,
                             &system_mask)) {
    allowed = popcount_ptr(process_mask);
    if (allowed >= 1 && allowed < popcount_ptr(system_mask) && allowed < active)
      return allowed;
  }
  return active;
}

int64_t pp__self_pid(void) {
  return (int64_t)GetCurrentProcessId();
}

int pp__debugger_attached(void) {
  return IsDebuggerPresent() ? 1 : 0;
}

uint64_t pp__mem_available(void) {
  MEMORYSTATUSEX ms;

  memset(&ms, 0, sizeof(ms));
  ms.dwLength = sizeof(ms);
  if (!GlobalMemoryStatusEx(&ms))
    return 0;
  return (uint64_t)ms.ullAvailPhys;
}

void pp__env_unset(const char *name) {
  WCHAR *wide = NULL;
  char *assign = pp__strdup_printf("%s=", name);
  /* Both the Win32 block (inherited by CreateProcess) and the C runtime's
   * copy (what getenv reads). */
  if (pp__win_utf8_to_wide(name, &wide) == 0)
    SetEnvironmentVariableW(wide, NULL);
  if (assign != NULL)
    _putenv(assign);
  free(assign);
  free(wide);
}

void pp__stdio_ensure(void) {
  /* Handles are not small numbers handed out lowest-first, so a closed
   * standard stream cannot be taken by a channel here. */
}

/* ---- a worker's stdout and stderr ------------------------------------ */

int pp__stdio_pending(FILE *fp) {
  /* The Microsoft C runtimes keep the FILE opaque (the Universal CRT) or
   * lay it out by version (msvcrt.dll): no count of buffered bytes to
   * trust, so capture.c streams the output (pp__stdio_stream). */
  (void)fp;
  return -1;
}

int pp__stdio_is_terminal(FILE *fp) {
  /* _isatty is true for any character device (NUL too); a console is what
   * a redrawn line needs. */
  HANDLE h = (HANDLE)_get_osfhandle(_fileno(fp));
  DWORD mode;
  return h != INVALID_HANDLE_VALUE && GetConsoleMode(h, &mode) != 0;
}

int pp__stdio_trylock(FILE *fp) {
  /* There is no _trylock_file; with pp__stdio_pending at -1 nobody asks
   * for it, and "not taken" is always a safe answer. */
  (void)fp;
  return 0;
}

void pp__stdio_unlock(FILE *fp) {
  (void)fp;
}

#if defined(__MINGW64_VERSION_MAJOR) && (defined(_UCRT) || defined(_MSC_VER))
/* The Universal CRT exports it and the SDK's <stdio.h> declares it;
 * mingw-w64's headers do not (they also stand in for the SDK in the CI's
 * MSVC-mode check). */
_CRTIMP int __cdecl _get_stream_buffer_pointers(FILE *stream, char ***base,
                                                char ***ptr, int **count);
#endif

/* Where a stream's buffer begins and how far it is filled: the Universal
 * CRT gives pointers to its fields, msvcrt.dll lays FILE out in the open
 * (_base, _ptr, _cnt).  Returns 0, or -1 if the runtime will not say. */
static int stream_fields(FILE *fp, char ***base, char ***ptr, int **count) {
#if defined(_UCRT) || defined(_MSC_VER)
  return _get_stream_buffer_pointers(fp, base, ptr, count) == 0 ? 0 : -1;
#else
  *base = &fp->_base;
  *ptr = &fp->_ptr;
  *count = &fp->_cnt;
  return 0;
#endif
}

void pp__stdio_salvage(FILE *fp, const char *buf) {
  /* Windows streams stdout through the C runtime's own buffer of
   * PP__STDIO_STREAM_BUF bytes (pp__stdio_stream), so `buf` is not the
   * buffer: the runtime's fields say where it is.  They are read without
   * the stream's lock, which the crashing thread may hold; nothing is
   * trusted beyond the size that was set.  The fields are then reset, so
   * that the C runtime's own flush at the process's end (ExitProcess runs
   * it, under Wine at least) cannot write the same bytes again. */
  char **base, **ptr;
  int *count;
  DWORD done;
  ptrdiff_t n;
  HANDLE h;
  (void)buf;
  if (fp == NULL || stream_fields(fp, &base, &ptr, &count) != 0 ||
      base == NULL || ptr == NULL || count == NULL || *base == NULL ||
      *ptr == NULL)
    return;
  n = *ptr - *base;
  if (n <= 0 || n > PP__STDIO_STREAM_BUF)
    return;
  h = (HANDLE)_get_osfhandle(_fileno(fp));
  if (h == INVALID_HANDLE_VALUE)
    return;
  (void)WriteFile(h, *base, (DWORD)n, &done, NULL);
  *ptr = *base;
  *count = 0;
}

/* Opens the write end of a stdout or stderr pipe the parent named, and
 * checks that the pipe's server is the process whose id is in the name
 * ("procpool-<pid>-..."), so that no other process's pipe of that name is
 * taken.  The handle is inheritable: processes a task starts write to the
 * worker's output, as they would to any program's.  NULL on failure. */
static HANDLE open_stdio_pipe(const WCHAR *name, size_t len) {
  static const char prefix[] = PP__PIPE_PREFIX;
  WCHAR path[PP__PIPE_NAME_MAX];
  SECURITY_ATTRIBUTES inherit;
  ULONGLONG deadline = GetTickCount64() + 1000;
  ULONG server = 0;
  DWORD pid = 0;
  size_t plen = sizeof(prefix) - 1, i;
  HANDLE h;

  if (len <= plen || len >= PP__PIPE_NAME_MAX)
    return NULL;
  for (i = 0; i < len; i++) {
    WCHAR c = name[i];
    if (i < plen ? c != (WCHAR)prefix[i]
                 : !((c >= L'0' && c <= L'9') || (c >= L'a' && c <= L'f') ||
                     c == L'-'))
      return NULL;
    path[i] = c;
  }
  path[len] = L'\0';
  for (i = plen; i < len && path[i] >= L'0' && path[i] <= L'9'; i++)
    pid = pid * 10 + (DWORD)(path[i] - L'0');
  inherit.nLength = sizeof(inherit);
  inherit.lpSecurityDescriptor = NULL;
  inherit.bInheritHandle = TRUE;
  for (;;) {
    /* Synchronous: the C runtime writes stdout with plain WriteFile calls.
     * FILE_READ_ATTRIBUTES lets it ask what kind of file stdout is. */
    h = CreateFileW(path, GENERIC_WRITE | FILE_READ_ATTRIBUTES, 0, &inherit,
                    OPEN_EXISTING,
                    SECURITY_SQOS_PRESENT | SECURITY_IDENTIFICATION, NULL);
    if (h != INVALID_HANDLE_VALUE)
      break;
    if (GetLastError() != ERROR_PIPE_BUSY || GetTickCount64() >= deadline)
      return NULL;
    WaitNamedPipeW(path, 100);
  }
  if (GetNamedPipeServerProcessId(h, &server) && server != pid) {
    CloseHandle(h);
    return NULL;
  }
  return h;
}

/* Makes `h` this process's standard handle `which` and the C runtime's
 * descriptor `fd` (text mode, as an inherited stdout is), so that both
 * WriteFile(GetStdHandle()) and printf reach the pipe. */
static void install_std(HANDLE h, DWORD which, int fd) {
  int tmp;

  SetStdHandle(which, h);
  tmp = _open_osfhandle((intptr_t)h, _O_TEXT);
  if (tmp < 0)
    return; /* `h` stays the standard handle, and stays open. */
  if (tmp == fd)
    return;
  /* _dup2 gives descriptor `fd` a copy of the handle (and closes what it
   * had, the null device); the standard handle follows the copy, and only
   * then is `tmp`, which owns `h`, closed.  If the copy fails, `tmp` is
   * kept for the life of the process: closing it would leave the standard
   * handle naming a closed handle, whose value the system may give to the
   * next object opened. */
  if (_dup2(tmp, fd) != 0)
    return;
  SetStdHandle(which, (HANDLE)_get_osfhandle(fd));
  _close(tmp);
}

/* A worker's stdout and stderr are pipes it opens by name: the parent's
 * pipes are never inheritable, so no other process the application starts
 * while a worker starts can take a copy (see spawn.c).  This runs before
 * main() (or, in procpool.dll, when the DLL is loaded), in every program
 * that links procpool, so that even a worker whose main() lacks the guard
 * writes its complaint where the parent reads it.  It does nothing unless
 * the command line carries the reserved argument with pipe names. */
static void adopt_stdio(void) {
  static const WCHAR option[] = PP__WIN_WORKER_OPTION;
  const WCHAR *line = GetCommandLineW(), *p, *names[3];
  size_t lens[3];
  int n = 0;
  HANDLE out, err;

  if (line == NULL)
    return;
  /* The option is an argument of its own, never quoted (it holds no space
   * or quote), after the program's path. */
  for (p = wcsstr(line, option); p != NULL; p = wcsstr(p + 1, option))
    if (p > line && (p[-1] == L' ' || p[-1] == L'\t'))
      break;
  if (p == NULL)
    return;
  p += wcslen(option);
  while (n < 3) {
    names[n] = p;
    lens[n] = wcscspn(p, L",: \t");
    p += lens[n];
    n++;
    if (*p != L',')
      break;
    p++;
  }
  if (n != 3 || *p != L':')
    return; /* Output is inherited, or this is not our argument. */
  /* Done already by another copy of procpool in this process (a program
   * that links it statically and loads a task library that links
   * procpool.dll); the pipe has one instance, taken by that copy. */
  if (GetFileType(GetStdHandle(STD_OUTPUT_HANDLE)) == FILE_TYPE_PIPE)
    return;
  out = open_stdio_pipe(names[1], lens[1]);
  err = open_stdio_pipe(names[2], lens[2]);
  if (out != NULL)
    install_std(out, STD_OUTPUT_HANDLE, 1);
  if (err != NULL)
    install_std(err, STD_ERROR_HANDLE, 2);
}

#if defined(_MSC_VER)
#pragma section(".CRT$XCU", read)
__declspec(allocate(".CRT$XCU")) void(__cdecl *pp__adopt_stdio_init)(void) =
    adopt_stdio;
#pragma comment(linker, "/include:pp__adopt_stdio_init")
#else
__attribute__((constructor)) static void adopt_stdio_init(void) {
  adopt_stdio();
}
#endif

/* ---- where things are ------------------------------------------------ */

#ifndef PP_WORKER_HOST_RELPATH
#define PP_WORKER_HOST_RELPATH "procpool-worker.exe"
#endif

int pp__worker_host_path(char **path) {
  /* Any object of this module tells GetModuleHandleExW which module;
   * a data object, because C has no conversion from a function's address
   * to a data pointer (MSVC's C4152). */
  static const char here = 0;
  HMODULE module = NULL;
  WCHAR *buf = NULL, *bigger, *slash;
  DWORD size = MAX_PATH, n;
  char *dir = NULL;
  char why[160];
  int status;

  *path = NULL;
  /* The module this function is in: procpool.dll, or the program that
   * links procpool statically.  The worker host is installed beside it
   * (in bin/, where the loader finds procpool.dll for it too). */
  if (!GetModuleHandleExW(GET_MODULE_HANDLE_EX_FLAG_FROM_ADDRESS |
                              GET_MODULE_HANDLE_EX_FLAG_UNCHANGED_REFCOUNT,
                          (LPCWSTR)(const void *)&here, &module))
    return pp__os_fail(PP_ESPAWN, "cannot find procpool's module: %s",
                       pp__win_strerror(GetLastError(), why, sizeof(why)));
  for (;;) {
    bigger = pp__realloc(buf, (size_t)size * sizeof(WCHAR));
    if (bigger == NULL) {
      status = pp__os_fail(PP_ENOMEM, "out of memory for a path");
      goto cleanup;
    }
    buf = bigger;
    n = GetModuleFileNameW(module, buf, size);
    if (n == 0) {
      status = pp__os_fail(PP_ESPAWN, "GetModuleFileNameW: %s",
                           pp__win_strerror(GetLastError(), why, sizeof(why)));
      goto cleanup;
    }
    if (n < size)
      break;
    if (size >= 65536) {
      status = pp__os_fail(PP_ESPAWN, "procpool's module path is too long");
      goto cleanup;
    }
    size *= 2;
  }
  slash = wcsrchr(buf, L'\\');
  if (slash != NULL)
    slash[1] = L'\0';
  else
    buf[0] = L'\0';
  status = pp__win_wide_to_utf8(buf, &dir);
  if (status != 0)
    goto cleanup;
  *path = pp__strdup_printf("%s%s", dir, PP_WORKER_HOST_RELPATH);
  if (*path == NULL)
    status = pp__os_fail(PP_ENOMEM, "out of memory for a path");

cleanup:
  free(dir);
  free(buf);
  return status;
}

int pp__path_absolute(const char *path, char **out) {
  WCHAR *wide = NULL, *full = NULL;
  DWORD n;
  char why[160];
  int status;

  *out = NULL;
  if (path == NULL || path[0] == '\0')
    return pp__os_fail(PP_EINVAL, "empty path");
  status = pp__win_utf8_to_wide(path, &wide);
  if (status != 0)
    return status;
  /* Asked twice: the first answer is the size the path needs. */
  n = GetFullPathNameW(wide, 0, NULL, NULL);
  if (n > 0)
    full = pp__malloc((size_t)n * sizeof(WCHAR));
  if (n == 0 || full == NULL ||
      GetFullPathNameW(wide, n, full, NULL) >= n) {
    status =
        full == NULL && n > 0
            ? pp__os_fail(PP_ENOMEM, "out of memory for a path")
            : pp__os_fail(PP_EINVAL, "GetFullPathNameW(%s): %s", path,
                          pp__win_strerror(GetLastError(), why, sizeof(why)));
    goto cleanup;
  }
  status = pp__win_wide_to_utf8(full, out);

cleanup:
  free(full);
  free(wide);
  return status;
}

/* Sums up a module from its headers and code: the PE headers name the
 * linker's time stamp, sizes and entry point, and every section's size and
 * place; the code is read as the file had it, with the spots that base
 * relocations changed at load time zeroed, so that the same file gives the
 * same id wherever it is loaded. */
static void digest_module(const unsigned char *base, pp__digest_t *d) {
  const IMAGE_DOS_HEADER *dos = (const IMAGE_DOS_HEADER *)base;
  const IMAGE_NT_HEADERS *nt =
      (const IMAGE_NT_HEADERS *)(base + dos->e_lfanew);
  const IMAGE_SECTION_HEADER *sec = IMAGE_FIRST_SECTION(nt);
  const IMAGE_DATA_DIRECTORY *rel_dir =
      &nt->OptionalHeader.DataDirectory[IMAGE_DIRECTORY_ENTRY_BASERELOC];
  WORD i;

  pp__digest_add(d, &nt->FileHeader, sizeof(nt->FileHeader));
  pp__digest_add(d, &nt->OptionalHeader.AddressOfEntryPoint,
                 sizeof(nt->OptionalHeader.AddressOfEntryPoint));
  pp__digest_add(d, &nt->OptionalHeader.SizeOfImage,
                 sizeof(nt->OptionalHeader.SizeOfImage));
  pp__digest_add(d, &nt->OptionalHeader.CheckSum,
                 sizeof(nt->OptionalHeader.CheckSum));
  for (i = 0; i < nt->FileHeader.NumberOfSections; i++) {
    const IMAGE_SECTION_HEADER *s = &sec[i];
    unsigned char *copy;
    DWORD size = s->Misc.VirtualSize < s->SizeOfRawData ? s->Misc.VirtualSize
                                                         : s->SizeOfRawData;
    DWORD off;
    pp__digest_add(d, s->Name, sizeof(s->Name));
    pp__digest_add(d, &s->VirtualAddress, sizeof(s->VirtualAddress));
    pp__digest_add(d, &s->Misc.VirtualSize, sizeof(s->Misc.VirtualSize));
    if (!(s->Characteristics & IMAGE_SCN_MEM_EXECUTE) || size == 0)
      continue;
    copy = pp__malloc(size);
    if (copy == NULL)
      continue;
    memcpy(copy, base + s->VirtualAddress, size);
    /* Undo the loader's fix-ups: each relocation block lists offsets in
     * one 4 KiB page; HIGHLOW is 4 bytes, DIR64 8. */
    for (off = 0; rel_dir->Size != 0 && off + sizeof(IMAGE_BASE_RELOCATION) <=
                                            rel_dir->Size;) {
      const IMAGE_BASE_RELOCATION *blk =
          (const IMAGE_BASE_RELOCATION *)(base + rel_dir->VirtualAddress +
                                          off);
      const WORD *entry = (const WORD *)(blk + 1);
      DWORD k, count;
      if (blk->SizeOfBlock < sizeof(*blk))
        break;
      count = (blk->SizeOfBlock - (DWORD)sizeof(*blk)) / sizeof(WORD);
      for (k = 0; k < count; k++) {
        DWORD type = entry[k] >> 12;
        DWORD rva = blk->VirtualAddress + (entry[k] & 0xFFF);
        DWORD width = type == IMAGE_REL_BASED_DIR64     ? 8
                      : type == IMAGE_REL_BASED_HIGHLOW ? 4
                                                        : 0;
        if (width != 0 && rva >= s->VirtualAddress &&
            rva + width <= s->VirtualAddress + size)
          memset(copy + (rva - s->VirtualAddress), 0, width);
      }
      off += blk->SizeOfBlock;
    }
    pp__digest_add(d, copy, size);
    free(copy);
  }
}

void pp__module_build_id(const void *addr, unsigned char id[PP__BUILD_ID_LEN]) {
  HMODULE module = NULL;
  pp__digest_t d;
  memset(id, 0, PP__BUILD_ID_LEN);
  if (!GetModuleHandleExW(GET_MODULE_HANDLE_EX_FLAG_FROM_ADDRESS |
                              GET_MODULE_HANDLE_EX_FLAG_UNCHANGED_REFCOUNT,
                          (LPCWSTR)addr, &module) ||
      module == NULL)
    return;
  pp__digest_init(&d);
  digest_module((const unsigned char *)module, &d);
  pp__digest_end(&d, id);
}
