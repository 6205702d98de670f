/*
 * helpers_proc.c - processes, descriptors and files for the tests that look
 * at what a pool leaves behind or where it can run (see helpers.h).
 *
 * Paths are UTF-8 throughout.  Windows converts them to UTF-16 and uses the
 * wide-character functions, because the ANSI ones cannot name a file whose
 * name is outside the user's code page, which is what test_paths checks.
 */
#if defined(__linux__)
#ifndef _GNU_SOURCE
#define _GNU_SOURCE
#endif
#elif !defined(_WIN32) && !defined(__APPLE__) && !defined(_POSIX_C_SOURCE)
#define _POSIX_C_SOURCE 200809L
#endif

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#ifdef _WIN32
#include <windows.h>
/* After windows.h; PSAPI_VERSION 2 names K32GetProcessMemoryInfo, which
 * kernel32 exports, so no psapi library is needed. */
#ifndef PSAPI_VERSION
#define PSAPI_VERSION 2
#endif
#include <psapi.h>
#else
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <spawn.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>
extern char **environ;
#endif
#if defined(__APPLE__)
#include <mach-o/dyld.h>
#endif

#include "helpers.h"

/* ---- descriptors and handles ---- */

#if defined(__linux__)
static int cmp_int(const void *a, const void *b) {
  int x = *(const int *)a, y = *(const int *)b;
  return (x > y) - (x < y);
}
#endif

int pp_test_fd_list(int64_t pid, int *fds, size_t cap) {
#if defined(__linux__)
  char path[64];
  DIR *d;
  struct dirent *e;
  size_t n = 0;
  int own;
  if (pid == 0)
    snprintf(path, sizeof(path), "/proc/self/fd");
  else
    snprintf(path, sizeof(path), "/proc/%lld/fd", (long long)pid);
  d = opendir(path);
  if (d == NULL)
    return -1;
  own = pid == 0 ? dirfd(d) : -1;
  while ((e = readdir(d)) != NULL) {
    int fd;
    if (e->d_name[0] == '.')
      continue;
    fd = atoi(e->d_name);
    if (fd == own)
      continue;
    if (n < cap)
      fds[n] = fd;
    n++;
  }
  closedir(d);
  qsort(fds, n < cap ? n : cap, sizeof(int), cmp_int);
  return (int)n;
#else
  (void)pid, (void)fds, (void)cap;
  return -1;
#endif
}

int pp_test_fd_target(int64_t pid, int fd, char *buf, size_t cap) {
#if defined(__linux__)
  char path[64];
  ssize_t n;
  if (cap == 0)
    return -1;
  if (pid == 0)
    snprintf(path, sizeof(path), "/proc/self/fd/%d", fd);
  else
    snprintf(path, sizeof(path), "/proc/%lld/fd/%d", (long long)pid, fd);
  n = readlink(path, buf, cap - 1);
  if (n < 0)
    return -1;
  buf[n] = '\0';
  return 0;
#else
  (void)pid, (void)fd;
  if (cap > 0)
    buf[0] = '\0';
  return -1;
#endif
}

#ifdef _WIN32
/* SystemExtendedHandleInformation (64) of NtQuerySystemInformation: every
 * handle of every process, with full process ids.  Declared here, as the
 * SDK headers do not have it. */
typedef struct handle_entry_s {
  PVOID object;
  ULONG_PTR pid;
  ULONG_PTR value;
  ULONG access;
  USHORT backtrace;
  USHORT type;
  ULONG attributes;
  ULONG reserved;
} handle_entry_t;

typedef struct handle_table_s {
  ULONG_PTR count;
  ULONG_PTR reserved;
  handle_entry_t entries[1];
} handle_table_t;

typedef LONG(WINAPI *query_system_fn)(ULONG, PVOID, ULONG, PULONG);

static int cmp_u64(const void *a, const void *b) {
  uint64_t x = *(const uint64_t *)a, y = *(const uint64_t *)b;
  return (x > y) - (x < y);
}
#endif

int pp_test_handle_list(uint64_t *vals, size_t cap) {
#ifdef _WIN32
  query_system_fn query = (query_system_fn)(void (*)(void))GetProcAddress(
      GetModuleHandleW(L"ntdll.dll"), "NtQuerySystemInformation");
  ULONG size = 1u << 20, needed = 0;
  ULONG_PTR self = GetCurrentProcessId(), i;
  handle_table_t *table = NULL;
  size_t n = 0;
  LONG status;
  if (query == NULL)
    return -1;
  for (;;) {
    table = malloc(size);
    if (table == NULL)
      return -1;
    status = query(64, table, size, &needed);
    /* STATUS_INFO_LENGTH_MISMATCH: the system's handles did not fit. */
    if (status != (LONG)0xC0000004 || size >= (1u << 28))
      break;
    free(table);
    size *= 2;
  }
  if (status != 0) {
    free(table);
    return -1;
  }
  for (i = 0; i < table->count; i++) {
    if (table->entries[i].pid != self)
      continue;
    if (n < cap)
      vals[n] = table->entries[i].value;
    n++;
  }
  free(table);
  qsort(vals, n < cap ? n : cap, sizeof(*vals), cmp_u64);
  return (int)n;
#else
  (void)vals, (void)cap;
  return -1;
#endif
}

/* ---- processes ---- */

const char *pp_test_proc_stat(int64_t pid, char *buf, size_t cap) {
#if defined(__linux__)
  char path[64], *p;
  FILE *f;
  size_t n;
  snprintf(path, sizeof(path), "/proc/%lld/stat", (long long)pid);
  f = fopen(path, "r");
  if (f == NULL)
    return NULL;
  n = fread(buf, 1, cap - 1, f);
  fclose(f);
  buf[n] = '\0';
  /* "pid (comm) state ppid ...": the command name may hold spaces and
   * parentheses, so the fields are counted from the last ')'. */
  p = strrchr(buf, ')');
  return p != NULL && p[1] == ' ' ? p + 2 : NULL;
#else
  (void)pid;
  (void)buf;
  (void)cap;
  return NULL;
#endif
}

double pp_test_cpu_seconds(int64_t pid) {
  char buf[1024];
  const char *p = pp_test_proc_stat(pid, buf, sizeof(buf));
  unsigned long ut = 0, st = 0;
  /* State, then fields 4..13, then utime and stime. */
  if (p == NULL ||
      sscanf(p, "%*c %*d %*d %*d %*d %*d %*u %*u %*u %*u %*u %lu %lu", &ut,
             &st) != 2)
    return -1;
#if defined(__linux__)
  return (double)(ut + st) / (double)sysconf(_SC_CLK_TCK);
#else
  return -1;
#endif
}

int64_t pp_test_pid_parent(int64_t pid) {
#if defined(__linux__)
  char buf[512];
  const char *p = pp_test_proc_stat(pid, buf, sizeof(buf));
  long long ppid;
  if (p == NULL || sscanf(p, "%*c %lld", &ppid) != 1)
    return -1;
  return (int64_t)ppid;
#else
  (void)pid;
  return -1;
#endif
}

int64_t pp_test_read_bytes(int64_t pid) {
#if defined(_WIN32)
  IO_COUNTERS io;
  HANDLE h = OpenProcess(PROCESS_QUERY_LIMITED_INFORMATION, FALSE, (DWORD)pid);
  BOOL ok;
  if (h == NULL)
    return -1;
  ok = GetProcessIoCounters(h, &io);
  CloseHandle(h);
  return ok ? (int64_t)io.ReadTransferCount : -1;
#elif defined(__linux__)
  char path[64], line[128];
  long long v = -1;
  FILE *f;
  snprintf(path, sizeof(path), "/proc/%lld/io", (long long)pid);
  f = fopen(path, "r");
  if (f == NULL)
    return -1;
  while (fgets(line, sizeof(line), f) != NULL)
    if (sscanf(line, "rchar: %lld", &v) == 1)
      break;
  fclose(f);
  return (int64_t)v;
#else
  (void)pid;
  return -1;
#endif
}

int64_t pp_test_rss_bytes(void) {
#if defined(_WIN32)
  PROCESS_MEMORY_COUNTERS pmc;
  if (!GetProcessMemoryInfo(GetCurrentProcess(), &pmc, sizeof(pmc)))
    return -1;
  return (int64_t)pmc.WorkingSetSize;
#elif defined(__linux__)
  char line[128];
  long long kb = -1;
  FILE *f = fopen("/proc/self/status", "r");
  if (f == NULL)
    return -1;
  while (fgets(line, sizeof(line), f) != NULL)
    if (sscanf(line, "VmRSS: %lld kB", &kb) == 1)
      break;
  fclose(f);
  return kb < 0 ? -1 : (int64_t)kb * 1024;
#else
  return -1;
#endif
}

int pp_test_kill(int64_t pid) {
#ifdef _WIN32
  HANDLE h = OpenProcess(PROCESS_TERMINATE, FALSE, (DWORD)pid);
  BOOL ok;
  if (h == NULL)
    return -1;
  ok = TerminateProcess(h, 9);
  CloseHandle(h);
  return ok ? 0 : -1;
#else
  return kill((pid_t)pid, SIGKILL) == 0 ? 0 : -1;
#endif
}

/* ---- files ---- */

#ifdef _WIN32
/* Returns a malloc'd UTF-16 copy of UTF-8 text, or NULL. */
static WCHAR *wide(const char *s) {
  int n = MultiByteToWideChar(CP_UTF8, MB_ERR_INVALID_CHARS, s, -1, NULL, 0);
  WCHAR *w;
  if (n <= 0 || (w = malloc((size_t)n * sizeof(WCHAR))) == NULL)
    return NULL;
  MultiByteToWideChar(CP_UTF8, MB_ERR_INVALID_CHARS, s, -1, w, n);
  return w;
}

static int to_utf8(const WCHAR *w, char *buf, size_t cap) {
  int n = WideCharToMultiByte(CP_UTF8, 0, w, -1, buf, (int)cap, NULL, NULL);
  return n > 0 ? 0 : -1;
}
#endif

int pp_test_getcwd(char *buf, size_t cap) {
#ifdef _WIN32
  WCHAR w[MAX_PATH];
  DWORD n = GetCurrentDirectoryW(MAX_PATH, w);
  if (n == 0 || n >= MAX_PATH)
    return -1;
  return to_utf8(w, buf, cap);
#else
  return getcwd(buf, cap) != NULL ? 0 : -1;
#endif
}

int pp_test_copy_file(const char *src, const char *dst) {
#ifdef _WIN32
  WCHAR *wsrc = wide(src), *wdst = wide(dst);
  int rc = -1;
  if (wsrc != NULL && wdst != NULL && CopyFileW(wsrc, wdst, FALSE))
    rc = 0;
  else
    fprintf(stderr, "CopyFileW(%s, %s): error %lu\n", src, dst,
            (unsigned long)GetLastError());
  free(wsrc);
  free(wdst);
  return rc;
#else
  char buf[65536];
  int in, out, rc = -1;
  ssize_t n;
  in = open(src, O_RDONLY | O_CLOEXEC);
  out = open(dst, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0700);
  if (in < 0 || out < 0) {
    fprintf(stderr, "copy(%s, %s): %s\n", src, dst, strerror(errno));
    goto cleanup;
  }
  while ((n = read(in, buf, sizeof(buf))) > 0)
    if (write(out, buf, (size_t)n) != n) {
      fprintf(stderr, "write(%s): %s\n", dst, strerror(errno));
      goto cleanup;
    }
  rc = n < 0 ? -1 : 0;
cleanup:
  if (in >= 0)
    close(in);
  /* Closed before the copy runs: exec of a file open for writing fails
   * with ETXTBSY. */
  if (out >= 0 && close(out) != 0)
    rc = -1;
  return rc;
#endif
}

int pp_test_rename(const char *from, const char *to) {
#ifdef _WIN32
  WCHAR *wfrom = wide(from), *wto = wide(to);
  int rc = wfrom != NULL && wto != NULL &&
                   MoveFileExW(wfrom, wto, MOVEFILE_REPLACE_EXISTING)
               ? 0
               : -1;
  free(wfrom);
  free(wto);
  return rc;
#else
  return rename(from, to) == 0 ? 0 : -1;
#endif
}

int pp_test_make_dir(const char *dir) {
#ifdef _WIN32
  WCHAR *wdir = wide(dir);
  int rc = wdir != NULL && (CreateDirectoryW(wdir, NULL) ||
                            GetLastError() == ERROR_ALREADY_EXISTS)
               ? 0
               : -1;
  if (rc != 0)
    fprintf(stderr, "CreateDirectoryW(%s): error %lu\n", dir,
            (unsigned long)GetLastError());
  free(wdir);
  return rc;
#else
  if (mkdir(dir, 0700) != 0 && errno != EEXIST) {
    fprintf(stderr, "mkdir(%s): %s\n", dir, strerror(errno));
    return -1;
  }
  return 0;
#endif
}

int pp_test_copy_self(const char *dir, const char *name, char *path,
                      size_t cap) {
  char dst[4096], self[4096];
#ifdef _WIN32
  WCHAR wself[MAX_PATH];
  snprintf(dst, sizeof(dst), "%s\\%s.exe", dir, name);
  if (GetModuleFileNameW(NULL, wself, MAX_PATH) == 0 ||
      to_utf8(wself, self, sizeof(self)) != 0) {
    fprintf(stderr, "copy_self: cannot convert the paths\n");
    return -1;
  }
#else
  snprintf(dst, sizeof(dst), "%s/%s", dir, name);
#if defined(__APPLE__)
  {
    uint32_t size = sizeof(self);
    if (_NSGetExecutablePath(self, &size) != 0)
      return -1;
  }
#else
  {
    /* The link's target, not the link: under valgrind only readlink of it
     * is translated to the program valgrind runs. */
    ssize_t n = readlink("/proc/self/exe", self, sizeof(self) - 1);
    if (n <= 0) {
      fprintf(stderr, "readlink(/proc/self/exe): %s\n", strerror(errno));
      return -1;
    }
    self[n] = '\0';
  }
#endif
#endif
  if (pp_test_make_dir(dir) != 0 || pp_test_copy_file(self, dst) != 0)
    return -1;
  snprintf(path, cap, "%s", dst);
  return 0;
}

int pp_test_run(const char *exe, const char *arg, char *out, size_t cap) {
  return pp_test_run_limit(exe, arg, -1, out, cap);
}

int pp_test_run_limit(const char *exe, const char *arg, int64_t limit_ms,
                      char *out, size_t cap) {
  int64_t timeout_ms = limit_ms > 0 ? PP_TEST_MS(limit_ms) : limit_ms;
  int64_t waited = 0;
  size_t got = 0;
#ifdef _WIN32
  SECURITY_ATTRIBUTES sa = {sizeof(sa), NULL, TRUE};
  STARTUPINFOW si;
  PROCESS_INFORMATION pi;
  HANDLE rd = NULL, wr = NULL;
  char cmd[8192];
  WCHAR *wexe = wide(exe), *wcmd;
  DWORD code = (DWORD)-1;
  BOOL ok;
  /* The program's own path starts its command line, quoted for the spaces
   * in it; CreateProcessW gets the path separately too, so nothing is
   * looked up in PATH. */
  snprintf(cmd, sizeof(cmd), "\"%s\" %s", exe, arg);
  wcmd = wide(cmd);
  if (wexe == NULL || wcmd == NULL || cap == 0 ||
      !CreatePipe(&rd, &wr, &sa, 0)) {
    free(wexe);
    free(wcmd);
    return -1;
  }
  SetHandleInformation(rd, HANDLE_FLAG_INHERIT, 0);
  memset(&si, 0, sizeof(si));
  si.cb = sizeof(si);
  si.dwFlags = STARTF_USESTDHANDLES;
  si.hStdInput = GetStdHandle(STD_INPUT_HANDLE);
  si.hStdOutput = wr;
  si.hStdError = GetStdHandle(STD_ERROR_HANDLE);
  ok = CreateProcessW(wexe, wcmd, NULL, NULL, TRUE, 0, NULL, NULL, &si, &pi);
  CloseHandle(wr);
  free(wexe);
  free(wcmd);
  if (!ok) {
    fprintf(stderr, "CreateProcessW(%s): error %lu\n", exe,
            (unsigned long)GetLastError());
    CloseHandle(rd);
    return -1;
  }
  CloseHandle(pi.hThread);
  for (;;) {
    char sink[512];
    DWORD n = 0, avail = 0;
    /* Only what is there is read, so that the time limit holds; what does
     * not fit is read and dropped, so the child never blocks on a full
     * pipe. */
    if (!PeekNamedPipe(rd, NULL, 0, NULL, &avail, NULL))
      break;
    if (avail == 0) {
      if (timeout_ms >= 0 && waited >= timeout_ms) {
        TerminateProcess(pi.hProcess, 9);
        WaitForSingleObject(pi.hProcess, INFINITE);
        CloseHandle(pi.hProcess);
        CloseHandle(rd);
        out[got] = '\0';
        return -2;
      }
      Sleep(10);
      waited += 10;
      continue;
    }
    if (got + 1 < cap)
      ok = ReadFile(rd, out + got, (DWORD)(cap - 1 - got < avail ? cap - 1 - got
                                                                  : avail),
                    &n, NULL);
    else
      ok = ReadFile(rd, sink, avail < sizeof(sink) ? avail : sizeof(sink), &n,
                    NULL);
    if (!ok || n == 0)
      break;
    if (got + 1 < cap)
      got += n;
  }
  CloseHandle(rd);
  out[got] = '\0';
  if (WaitForSingleObject(pi.hProcess,
                          timeout_ms < 0 ? INFINITE
                                         : (DWORD)(waited >= timeout_ms
                                                       ? 0
                                                       : timeout_ms - waited)) !=
      WAIT_OBJECT_0) {
    TerminateProcess(pi.hProcess, 9);
    WaitForSingleObject(pi.hProcess, INFINITE);
    CloseHandle(pi.hProcess);
    return -2;
  }
  GetExitCodeProcess(pi.hProcess, &code);
  CloseHandle(pi.hProcess);
  return (int)code;
#else
  posix_spawn_file_actions_t fa;
  char *argv[3];
  int fds[2], rc, status;
  pid_t pid;
  if (cap == 0 || pipe(fds) != 0)
    return -1;
  argv[0] = (char *)exe;
  argv[1] = (char *)arg;
  argv[2] = NULL;
  posix_spawn_file_actions_init(&fa);
  posix_spawn_file_actions_adddup2(&fa, fds[1], 1);
  posix_spawn_file_actions_addclose(&fa, fds[0]);
  posix_spawn_file_actions_addclose(&fa, fds[1]);
  rc = posix_spawn(&pid, exe, &fa, NULL, argv, environ);
  posix_spawn_file_actions_destroy(&fa);
  close(fds[1]);
  if (rc != 0) {
    fprintf(stderr, "posix_spawn(%s): %s\n", exe, strerror(rc));
    close(fds[0]);
    return -1;
  }
  for (;;) {
    char sink[512];
    ssize_t n;
    struct pollfd p = {fds[0], POLLIN, 0};
    int r = poll(&p, 1, 10);
    if (r < 0 && errno == EINTR)
      continue;
    if (r == 0) {
      waited += 10;
      if (timeout_ms >= 0 && waited >= timeout_ms) {
        kill(pid, SIGKILL);
        waitpid(pid, &status, 0);
        close(fds[0]);
        out[got] = '\0';
        return -2;
      }
      continue;
    }
    if (got + 1 < cap)
      n = read(fds[0], out + got, cap - 1 - got);
    else
      n = read(fds[0], sink, sizeof(sink));
    if (n < 0 && errno == EINTR)
      continue;
    if (n <= 0)
      break;
    if (got + 1 < cap)
      got += (size_t)n;
  }
  close(fds[0]);
  out[got] = '\0';
  /* A program can close its stdout long before it ends: the time limit
   * holds for the rest too. */
  for (;;) {
    pid_t r = waitpid(pid, &status, timeout_ms < 0 ? 0 : WNOHANG);
    if (r == pid)
      break;
    if (r < 0 && errno != EINTR)
      return -1;
    if (r == 0) {
      if (waited >= timeout_ms) {
        kill(pid, SIGKILL);
        waitpid(pid, &status, 0);
        return -2;
      }
      usleep(10000);
      waited += 10;
    }
  }
  return WIFEXITED(status) ? WEXITSTATUS(status) : -1;
#endif
}

int pp_test_remove_file(const char *path) {
#ifdef _WIN32
  WCHAR *w = wide(path);
  BOOL ok = w != NULL && DeleteFileW(w);
  free(w);
  return ok ? 0 : -1;
#else
  return unlink(path) == 0 ? 0 : -1;
#endif
}

int pp_test_remove_dir(const char *path) {
#ifdef _WIN32
  WCHAR *w = wide(path);
  BOOL ok = w != NULL && RemoveDirectoryW(w);
  free(w);
  return ok ? 0 : -1;
#else
  return rmdir(path) == 0 ? 0 : -1;
#endif
}
