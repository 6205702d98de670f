/*
 * worker.c - the worker's side of the Win32 platform: quieting crash
 * reporting, opening the channel pipe the parent named on the command line,
 * dying with the parent, stdout buffering, the arguments in UTF-8 and
 * exiting at once.
 *
 * Windows needs no clean-up of inherited handles here: pp__spawn's handle
 * list let only the null device through.
 */
#include "internal.h"

#include <io.h>
#include <shellapi.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#if defined(_MSC_VER) && defined(_DEBUG)
#include <crtdbg.h>
#endif

/* How long to keep trying while the pipe is busy.  It has one instance and
 * this worker is its only rightful client, so busy means a race with a
 * stranger or a slow system; pp__spawn's own timeout is longer. */
#define OPEN_RETRY_MS 5000

/* An unhandled exception ends the process with the exception code as its
 * exit status, which is what the parent reports.  Returning
 * EXCEPTION_EXECUTE_HANDLER from the top-level filter does exactly that,
 * without Windows Error Reporting, a "stopped working" dialog, or, under
 * Wine, winedbg (which ignores SEM_NOGPFAULTERRORBOX and costs half a
 * second and a hundred lines of dump per crash).  A debugger that is
 * attached still gets the exception first. */
static void (*crash_hook)(void);

/* 1 once stdout streams through the C runtime's buffer (pp__stdio_stream):
 * a crash then writes out what that buffer holds. */
static volatile LONG stream_salvage;

static LONG WINAPI crash_filter(EXCEPTION_POINTERS *info) {
  (void)info;
  /* The process is about to end: what the hook saves (buffered output)
   * goes out first. */
  if (crash_hook != NULL)
    crash_hook();
  if (stream_salvage)
    pp__stdio_salvage(stdout, NULL);
  return EXCEPTION_EXECUTE_HANDLER;
}

void pp__worker_set_crash_hook(void (*hook)(void)) {
  /* crash_filter is the top-level filter from pp__worker_attach on (the
   * mingw-w64 runtime installs one of its own before main, so an earlier
   * filter cannot tell an application's handler apart).  A handler the
   * task installs later replaces it, and the hook with it. */
  crash_hook = hook;
}

#if !defined(_MSC_VER) && !defined(_UCRT)
typedef unsigned int(__cdecl *abort_behavior_fn)(unsigned int, unsigned int);
#endif

typedef HRESULT(WINAPI *wer_set_flags_fn)(DWORD);

/* werapi.h's value; Debian's mingw-w64 headers lack the name.  (0x4 is
 * WER_FAULT_REPORTING_FLAG_DISABLE_THREAD_SUSPENSION, which leaves the UI
 * on.) */
#ifndef WER_FAULT_REPORTING_NO_UI
#define WER_FAULT_REPORTING_NO_UI 0x20
#endif

static void quiet_crashes(void) {
  HMODULE kernel = GetModuleHandleW(L"kernel32.dll");
  wer_set_flags_fn wer_set_flags = NULL;

  /* The error mode is not inherited under Wine (it is on Windows), so each
   * worker sets its own: no dialog for a missing disk or DLL either. */
  SetErrorMode(SEM_FAILCRITICALERRORS | SEM_NOGPFAULTERRORBOX |
               SEM_NOOPENFILEERRORBOX);
  SetUnhandledExceptionFilter(crash_filter);
  /* A fast fail (the Universal CRT's abort() with fault reports on in
   * another CRT instance, /GS, heap corruption) bypasses the filter and
   * goes to Windows Error Reporting: no UI there either (WerSetFlags is
   * looked up, so that a system without it still runs workers). */
  if (kernel != NULL)
    wer_set_flags = (wer_set_flags_fn)(void (*)(void))GetProcAddress(
        kernel, "WerSetFlags");
  if (wer_set_flags != NULL)
    wer_set_flags(WER_FAULT_REPORTING_NO_UI);
  /* assert() and the C runtime's error messages go to stderr, never to a
   * message box, even in a worker of a GUI program. */
  _set_error_mode(_OUT_TO_STDERR);
#if defined(_MSC_VER) && defined(_DEBUG)
  /* Debug CRTs report assertions and errors in a dialog that waits for a
   * click: to stderr instead, as CPython's test suite does. */
  _CrtSetReportMode(_CRT_WARN, _CRTDBG_MODE_FILE);
  _CrtSetReportFile(_CRT_WARN, _CRTDBG_FILE_STDERR);
  _CrtSetReportMode(_CRT_ERROR, _CRTDBG_MODE_FILE);
  _CrtSetReportFile(_CRT_ERROR, _CRTDBG_FILE_STDERR);
  _CrtSetReportMode(_CRT_ASSERT, _CRTDBG_MODE_FILE);
  _CrtSetReportFile(_CRT_ASSERT, _CRTDBG_FILE_STDERR);
#endif
  /* abort() in the Universal CRT reports a fault (fast fail 0xC0000409,
   * and a WER report) and prints a message box text; without those it
   * exits with code 3, as msvcrt.dll's abort() always does, so every
   * runtime gives the same status.  msvcrt.dll builds (mingw's default)
   * cannot link _set_abort_behavior, so it is looked up, and skipped where
   * the DLL has none. */
#if defined(_MSC_VER) || defined(_UCRT)
  _set_abort_behavior(0, _WRITE_ABORT_MSG | _CALL_REPORTFAULT);
#else
  {
    HMODULE crt = GetModuleHandleW(L"msvcrt.dll");
    abort_behavior_fn fn = NULL;

    if (crt != NULL)
      fn = (abort_behavior_fn)(void (*)(void))GetProcAddress(
          crt, "_set_abort_behavior");
    if (fn != NULL)
      fn(0, 0x1 /* _WRITE_ABORT_MSG */ | 0x2 /* _CALL_REPORTFAULT */);
  }
#endif
}

/* Waits for the parent to end, then ends this worker.  The job object
 * already kills the workers of a pool whose process dies; this covers the
 * cases it does not, such as a worker whose job had to be left for a
 * nested pool's job.  TerminateProcess, not ExitProcess: ExitProcess would
 * run atexit handlers and DLL detach code while the task's threads are
 * frozen wherever they were, possibly holding the locks that code needs. */
static DWORD WINAPI watch_parent(LPVOID arg) {
  HANDLE parent = arg;

  if (WaitForSingleObject(parent, INFINITE) == WAIT_OBJECT_0)
    TerminateProcess(GetCurrentProcess(), PP__ORPHAN_EXIT_CODE);
  CloseHandle(parent);
  return 0;
}

/* Copies the pipe name at the start of `spec` (up to ';') into `name`,
 * after checking that it is one of ours (a worker must not open whatever
 * path its command line names), and reads the boot block's handle value
 * that follows it (";<hex>", internal.h) into *boot. */
static int parse_spec(const char *spec, WCHAR name[PP__PIPE_NAME_MAX],
                      uint64_t *boot) {
  static const char prefix[] = PP__PIPE_PREFIX;
  size_t plen = sizeof(prefix) - 1;
  uint64_t value = 0;
  size_t len;
  size_t i;
  char c;

  *boot = 0;
  if (spec == NULL)
    return pp__os_fail(PP_EINVAL, "no worker channel given");
  len = strcspn(spec, ":,;");
  if (len <= plen || len >= PP__PIPE_NAME_MAX ||
      strncmp(spec, prefix, plen) != 0)
    return pp__os_fail(PP_EINVAL, "\"%.*s\" is not a procpool pipe name",
                       (int)(len < 200 ? len : 200), spec);
  for (i = 0; i < len; i++) {
    c = spec[i];
    if (i >= plen &&
        !((c >= '0' && c <= '9') || (c >= 'a' && c <= 'f') || c == '-'))
      return pp__os_fail(PP_EINVAL, "\"%.*s\" is not a procpool pipe name",
                         (int)len, spec);
    name[i] = (WCHAR)(unsigned char)c;
  }
  name[len] = L'\0';
  if (spec[len] != ';')
    return pp__os_fail(PP_EINVAL, "no boot block after the channel %.*s",
                       (int)len, spec);
  for (i = len + 1; (c = spec[i]) != '\0' && c != ',' && c != ':'; i++) {
    if (i - len > 16 || !((c >= '0' && c <= '9') || (c >= 'a' && c <= 'f')))
      return pp__os_fail(PP_EINVAL, "a malformed boot block handle after "
                                    "the channel");
    value = value << 4 | (uint64_t)(c <= '9' ? c - '0' : c - 'a' + 10);
  }
  if (value == 0)
    return pp__os_fail(PP_EINVAL, "no boot block handle after the channel");
  /* Only a whole value: the caller closes it whatever happens next. */
  *boot = value;
  return 0;
}

static int open_pipe(const WCHAR *name, const char *spec, HANDLE *pipe) {
  ULONGLONG deadline = GetTickCount64() + OPEN_RETRY_MS;
  HANDLE h;
  char why[160];

  /* Overlapped, so that the worker too can read and write its channel
   * from two threads at once.  SECURITY_IDENTIFICATION lets the server
   * learn who we are but not act as us, should the name ever reach a
   * server that is not our parent. */
  for (;;) {
    h = CreateFileW(name, GENERIC_READ | GENERIC_WRITE, 0, NULL, OPEN_EXISTING,
                    FILE_FLAG_OVERLAPPED | SECURITY_SQOS_PRESENT |
                        SECURITY_IDENTIFICATION,
                    NULL);
    if (h != INVALID_HANDLE_VALUE)
      break;
    if (GetLastError() != ERROR_PIPE_BUSY || GetTickCount64() >= deadline)
      return pp__os_fail(PP_EIO, "opening the channel %.*s: %s",
                         (int)strcspn(spec, ":,;"), spec,
                         pp__win_strerror(GetLastError(), why, sizeof(why)));
    WaitNamedPipeW(name, 100);
  }
  *pipe = h;
  return 0;
}

/* Reads the boot block the parent wrote for this worker (see internal.h):
 * the values of the handles it put into this process.  The block's handle
 * was inherited, and so is inheritable here: it is closed in any case,
 * before a task could start a process that would take it. */
static int read_boot(uint64_t value, pp__win_boot_t *b) {
  HANDLE section = (HANDLE)(uintptr_t)value;
  void *view;
  char why[160];
  int status = 0;

  memset(b, 0, sizeof(*b));
  view = MapViewOfFile(section, FILE_MAP_READ, 0, 0, sizeof(*b));
  if (view == NULL) {
    status = pp__os_fail(PP_EIO, "mapping the boot block: %s",
                         pp__win_strerror(GetLastError(), why, sizeof(why)));
    goto cleanup;
  }
  memcpy(b, view, sizeof(*b));
  UnmapViewOfFile(view);
  /* Written for this very process, before it ran. */
  if (b->magic != PP__WIN_BOOT_MAGIC || b->pid != GetCurrentProcessId() ||
      b->shm == 0 || b->wake_worker == 0 || b->wake_parent == 0 ||
      b->parent == 0 || (b->out == 0) != (b->err == 0))
    status = pp__os_fail(PP_EIO, "the boot block is not this worker's");

cleanup:
  CloseHandle(section);
  return status;
}

static HANDLE boot_handle(uint64_t value) {
  return (HANDLE)(uintptr_t)value;
}

/* Takes over what the boot block names: maps the shared memory (and
 * closes its handle: the view keeps it), wraps the wake objects and the
 * read ends of stdout and stderr, and keeps the handle to the parent that
 * results go into (shm.c).  Handles not yet taken over are closed on
 * failure. */
static int take_boot(pp__win_boot_t *b, pp__attached_t *at) {
  int status;

  status = pp__win_shm_map(boot_handle(b->shm), b->shm_size, &at->shm_base,
                           &at->shm_size);
  CloseHandle(boot_handle(b->shm));
  if (status == 0 &&
      (status = pp__win_wake_wrap(boot_handle(b->wake_worker),
                                  &at->wake_worker)) == 0)
    b->wake_worker = 0;
  if (status == 0 &&
      (status = pp__win_wake_wrap(boot_handle(b->wake_parent),
                                  &at->wake_parent)) == 0)
    b->wake_parent = 0;
  if (status == 0 && b->out != 0 &&
      (status = pp__win_chan_wrap(boot_handle(b->out), &at->out)) == 0)
    b->out = 0;
  if (status == 0 && b->err != 0 &&
      (status = pp__win_chan_wrap(boot_handle(b->err), &at->err)) == 0)
    b->err = 0;
  if (status == 0) {
    pp__win_shm_set_parent(boot_handle(b->parent));
    b->parent = 0;
  }
  if (b->parent != 0)
    CloseHandle(boot_handle(b->parent));
  if (b->wake_worker != 0)
    CloseHandle(boot_handle(b->wake_worker));
  if (b->wake_parent != 0)
    CloseHandle(boot_handle(b->wake_parent));
  if (b->out != 0)
    CloseHandle(boot_handle(b->out));
  if (b->err != 0)
    CloseHandle(boot_handle(b->err));
  return status;
}

int pp__worker_attach(const char *spec, int64_t parent_pid, unsigned flags,
                      pp__attached_t *at) {
  WCHAR name[PP__PIPE_NAME_MAX];
  pp__win_boot_t boot;
  uint64_t boot_value = 0;
  HANDLE pipe = INVALID_HANDLE_VALUE;
  HANDLE parent = NULL;
  HANDLE watched = NULL;
  HANDLE self = GetCurrentProcess();
  HANDLE thread;
  ULONG server = 0;
  char why[160];
  int status;

  memset(at, 0, sizeof(*at));
  PP__FAULT_RETURN(PP_EIO);
  /* Windows has no terminal stops and no fork: inherited output needs
   * nothing, and only processes a task starts with inheritance on could
   * hold the channel, which is not inheritable. */
  (void)flags;
  /* First, so that a crash anywhere after this point is reported quietly
   * by exit code. */
  quiet_crashes();
  status = parse_spec(spec, name, &boot_value);
  if (status != 0)
    goto cleanup;
  if (parent_pid > 0xFFFFFFFFLL) {
    status = pp__os_fail(PP_EINVAL, "parent pid %lld is out of range",
                         (long long)parent_pid);
    goto cleanup;
  }
  /* Open the parent before the pipe.  If the pipe then opens, the parent
   * (its server) was alive after we had the handle, so the handle cannot
   * be to a different process that reused a dead parent's pid. */
  if (parent_pid > 0) {
    parent = OpenProcess(SYNCHRONIZE, FALSE, (DWORD)parent_pid);
    if (parent == NULL) {
      status = pp__os_fail(PP_EIO, "cannot watch parent process %lld: %s",
                           (long long)parent_pid,
                           pp__win_strerror(GetLastError(), why, sizeof(why)));
      goto cleanup;
    }
  }
  status = open_pipe(name, spec, &pipe);
  if (status != 0)
    goto cleanup;
  /* The pipe's server must be the parent.  Where the system cannot say
   * (GetNamedPipeServerProcessId fails), the name's randomness and DACL
   * stand alone. */
  if (GetNamedPipeServerProcessId(pipe, &server) && server != 0) {
    if (parent_pid > 0 && (DWORD)parent_pid != server) {
      status = pp__os_fail(PP_EIO,
                           "the channel belongs to process %lu, not to the "
                           "parent %lld",
                           (unsigned long)server, (long long)parent_pid);
      goto cleanup;
    }
    if (parent == NULL)
      parent = OpenProcess(SYNCHRONIZE, FALSE, server);
  }
  status = read_boot(boot_value, &boot);
  boot_value = 0;
  if (status == 0)
    status = take_boot(&boot, at);
  if (status != 0)
    goto cleanup;
  status = pp__win_chan_wrap(pipe, &at->chan);
  if (status != 0)
    goto cleanup;
  pipe = INVALID_HANDLE_VALUE;
  if (parent != NULL) {
    /* Two handles to the parent: the channel's, so that waits on it (the
     * worker's sleep, its watch thread) end when the parent does, and the
     * watch thread's below. */
    if (!DuplicateHandle(self, parent, self, &watched, 0, FALSE,
                         DUPLICATE_SAME_ACCESS)) {
      status = pp__os_fail(PP_EIO, "DuplicateHandle(parent): %s",
                           pp__win_strerror(GetLastError(), why, sizeof(why)));
      goto cleanup;
    }
    pp__win_chan_bind_parent(at->chan, parent);
    parent = NULL;
    /* A small stack: the thread only waits. */
    thread = CreateThread(NULL, 64 * 1024, watch_parent, watched,
                          STACK_SIZE_PARAM_IS_A_RESERVATION, NULL);
    if (thread == NULL) {
      status = pp__os_fail(PP_EIO, "cannot start the parent watch: %s",
                           pp__win_strerror(GetLastError(), why, sizeof(why)));
      goto cleanup;
    }
    watched = NULL; /* The thread owns it now. */
    CloseHandle(thread);
  }

cleanup:
  /* Not read (an earlier step failed): closed all the same. */
  if (boot_value != 0)
    CloseHandle((HANDLE)(uintptr_t)boot_value);
  if (pipe != INVALID_HANDLE_VALUE)
    CloseHandle(pipe);
  if (parent != NULL)
    CloseHandle(parent);
  if (watched != NULL)
    CloseHandle(watched);
  return status;
}

/* How often the flusher writes out what a task has printed. */
#define FLUSH_INTERVAL_MS 50

/* Writes out stdout's buffer every FLUSH_INTERVAL_MS while the worker
 * lives, so that the lines a task prints reach the parent while it runs.
 * The stream's own lock serializes it with the task's writes. */
static DWORD WINAPI flusher_main(LPVOID arg) {
  (void)arg;
  /* Our own process handle is signalled only once the process has ended,
   * so each wait is a pause. */
  while (WaitForSingleObject(GetCurrentProcess(), FLUSH_INTERVAL_MS) ==
         WAIT_TIMEOUT)
    fflush(stdout);
  return 0;
}

int pp__stdio_stream(void) {
  HANDLE thread;
  char why[160];

  /* The Microsoft C runtimes have no line buffering (_IOLBF is full
   * buffering), and the Universal CRT ends the process for a buffer size
   * below 2.  Unbuffered output would make mingw's C99 printf, which
   * writes one character at a time, one system call per character.  So
   * stdout is fully buffered and flushed by a thread a few times a second,
   * and after each call (capture.c); stderr is unbuffered. */
  if (setvbuf(stdout, NULL, _IOFBF, PP__STDIO_STREAM_BUF) != 0 ||
      setvbuf(stderr, NULL, _IONBF, 0) != 0)
    return pp__os_fail(PP_EIO, "setvbuf refused the stdout or stderr "
                               "buffering");
  InterlockedExchange(&stream_salvage, 1);
  /* A small stack: the thread only sleeps and flushes. */
  thread = CreateThread(NULL, 64 * 1024, flusher_main, NULL,
                        STACK_SIZE_PARAM_IS_A_RESERVATION, NULL);
  if (thread == NULL)
    return pp__os_fail(PP_EIO, "cannot start the stdout flusher: %s",
                       pp__win_strerror(GetLastError(), why, sizeof(why)));
  CloseHandle(thread);
  return 0;
}

void pp__exit_now(int code) {
  /* ExitProcess (which _Exit ends in) kills the other threads wherever
   * they are and then runs DLL_PROCESS_DETACH code, which can hang on a
   * lock a killed thread held; terminating ourselves runs nothing. */
  TerminateProcess(GetCurrentProcess(), (UINT)code);
  ExitProcess((UINT)code); /* Not reached. */
}

/* The arguments in UTF-8, made once and kept for the life of the process. */
static INIT_ONCE args_once = INIT_ONCE_STATIC_INIT;
static int args_count;
static char **args_utf8;

static BOOL CALLBACK init_args(PINIT_ONCE once, PVOID param, PVOID *ctx) {
  WCHAR **wide;
  char **utf8;
  int n, i;

  (void)once;
  (void)param;
  (void)ctx;
  wide = CommandLineToArgvW(GetCommandLineW(), &n);
  if (wide == NULL)
    return TRUE;
  utf8 = pp__calloc((size_t)n + 1, sizeof(*utf8));
  for (i = 0; utf8 != NULL && i < n; i++) {
    if (pp__win_wide_to_utf8(wide[i], &utf8[i]) != 0) {
      /* Unpaired surrogates: not an argument of ours, keep a placeholder. */
      utf8[i] = pp__strdup_printf("%s", "");
    }
  }
  LocalFree(wide);
  if (utf8 != NULL) {
    args_count = n;
    args_utf8 = utf8;
  }
  return TRUE;
}

void pp__worker_args(int *argc, char ***argv) {
  InitOnceExecuteOnce(&args_once, init_args, NULL, NULL);
  if (args_utf8 == NULL)
    return; /* Out of memory: the narrow argv is better than none. */
  *argc = args_count;
  *argv = args_utf8;
}
