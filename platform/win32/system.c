/*
 * system.c - facts about the running process and machine on Windows
 * (executable path, CPU count, pid, debugger, free memory), and the text
 * helpers the other Win32 files share (UTF-8 <-> UTF-16, error messages).
 */
#include "internal.h"
#include "../../src/digest.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

int pp__win_utf8_to_wide(const char *s, WCHAR **out) {
  WCHAR *w;
  int n;

  *out = NULL;
  /* MB_ERR_INVALID_CHARS makes bad UTF-8 an error instead of U+FFFD, so a
   * path that cannot be what the caller meant is refused, not mangled. */
  n = MultiByteToWideChar(CP_UTF8, MB_ERR_INVALID_CHARS, s, -1, NULL, 0);
  if (n <= 0)
    return pp__set_error(PP_EINVAL, "text is not valid UTF-8: \"%s\"", s);
  w = malloc((size_t)n * sizeof(WCHAR));
  if (w == NULL)
    return pp__set_error(PP_ENOMEM, "out of memory converting to UTF-16");
  if (MultiByteToWideChar(CP_UTF8, MB_ERR_INVALID_CHARS, s, -1, w, n) != n) {
    free(w);
    return pp__set_error(PP_EINVAL, "text is not valid UTF-8: \"%s\"", s);
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
    return pp__set_error(PP_EINVAL, "UTF-16 text has unpaired surrogates");
  u = malloc((size_t)n);
  if (u == NULL)
    return pp__set_error(PP_ENOMEM, "out of memory converting to UTF-8");
  if (WideCharToMultiByte(CP_UTF8, WC_ERR_INVALID_CHARS, s, -1, u, n, NULL,
                          NULL) != n) {
    free(u);
    return pp__set_error(PP_EINVAL, "UTF-16 text has unpaired surrogates");
  }
  *out = u;
  return 0;
}

const char *pp__win_strerror(DWORD code, char *buf, size_t size) {
  DWORD saved = GetLastError();
  WCHAR wide[256];
  char text[512];
  DWORD n;
  int m;
  size_t len;

  if (size == 0)
    return buf;
  text[0] = '\0';
  /* English first, so that logs from different machines read the same; the
   * user's language when no English table is installed. */
  n = FormatMessageW(FORMAT_MESSAGE_FROM_SYSTEM | FORMAT_MESSAGE_IGNORE_INSERTS,
                     NULL, code, MAKELANGID(LANG_ENGLISH, SUBLANG_ENGLISH_US),
                     wide, sizeof(wide) / sizeof(wide[0]), NULL);
  if (n == 0)
    n = FormatMessageW(
        FORMAT_MESSAGE_FROM_SYSTEM | FORMAT_MESSAGE_IGNORE_INSERTS, NULL, code,
        0, wide, sizeof(wide) / sizeof(wide[0]), NULL);
  if (n > 0) {
    m = WideCharToMultiByte(CP_UTF8, 0, wide, (int)n, text,
                            (int)sizeof(text) - 1, NULL, NULL);
    text[m > 0 ? m : 0] = '\0';
  }
  /* System messages end in ".\r\n"; the number is appended after them. */
  len = strlen(text);
  while (len > 0 && (text[len - 1] == '\r' || text[len - 1] == '\n' ||
                     text[len - 1] == ' ' || text[len - 1] == '.'))
    text[--len] = '\0';
  if (len > 0)
    pp__format(buf, size, "%s (error %lu)", text, (unsigned long)code);
  else
    pp__format(buf, size, "error %lu", (unsigned long)code);
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
    bigger = realloc(buf, (size_t)size * sizeof(WCHAR));
    if (bigger == NULL) {
      status = pp__set_error(PP_ENOMEM, "out of memory for the exe path");
      goto cleanup;
    }
    buf = bigger;
    n = GetModuleFileNameW(NULL, buf, size);
    if (n == 0) {
      status =
          pp__set_error(PP_EIO, "GetModuleFileNameW: %s",
                        pp__win_strerror(GetLastError(), why, sizeof(why)));
      goto cleanup;
    }
    if (n < size)
      break;
    if (size >= 65536) {
      status = pp__set_error(PP_EIO, "the executable path is too long");
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
    copy = malloc(size);
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
