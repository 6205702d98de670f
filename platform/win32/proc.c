/*
 * proc.c - a running worker process on Windows: waiting for it, killing it,
 * telling how it ended (exit code, exception, or the pool's kill), and
 * freeing its handle.  spawn.c starts it.
 */
#include "internal.h"

#include <stdlib.h>
#include <string.h>

/* ---- exit status ------------------------------------------------------ */

static const struct {
  DWORD code;
  const char *name;
} exceptions[] = {
    {0x80000002u, "misaligned data"},
    {0x80000003u, "breakpoint"},
    {0x80000004u, "single step"},
    {0xC0000005u, "access violation"},
    {0xC0000006u, "in-page error"},
    {0xC000001Du, "illegal instruction"},
    {0xC0000025u, "noncontinuable exception"},
    {0xC000008Cu, "array bounds exceeded"},
    {0xC000008Eu, "float divide by zero"},
    {0xC0000090u, "invalid float operation"},
    {0xC0000094u, "integer divide by zero"},
    {0xC0000095u, "integer overflow"},
    {0xC0000096u, "privileged instruction"},
    {0xC00000FDu, "stack overflow"},
    {0xC0000135u, "a DLL it needs was not found"},
    {0xC0000139u, "entry point not found"},
    {0xC0000142u, "DLL initialization failed"},
    {0xC000013Au, "Ctrl+C"},
    {0xC0000374u, "heap corruption"},
    /* The Universal CRT's abort() (when it reports faults), an invalid
     * argument to a CRT function, and /GS failures all end here. */
    {0xC0000409u, "abort()/fast fail"},
    {0xC0000417u, "invalid argument to a C runtime function"},
    {0xE06D7363u, "uncaught C++ exception"},
};

/* Tells an exit code that is an NTSTATUS exception code from one a program
 * chose.  Exceptions have severity "error" (both top bits) and the reserved
 * bit 28 clear; exit(-1) gives 0xFFFFFFFF, which has bit 28 set and so stays
 * an exit code.  Warnings 0x8000xxxx are breakpoints and the like. */
static int is_exception(DWORD code) {
  if ((code & 0xC0000000u) == 0xC0000000u && (code & 0x10000000u) == 0)
    return 1;
  return (code & 0xFFFF0000u) == 0x80000000u && code != 0x80000000u;
}

static void describe_exit(DWORD code, int killed, pp__exit_t *st) {
  const char *name = "unknown exception";
  size_t i;

  memset(st, 0, sizeof(*st));
  /* The killed flag alone is not enough: the worker may have ended on its
   * own just before TerminateProcess, which then fails.  Only our code in
   * the exit status proves that the kill did it. */
  if (killed && code == PP__KILLED_EXIT_CODE) {
    st->exit_code = -1;
    st->killed = 1;
    pp__format(st->reason, sizeof(st->reason), "killed by the pool");
  } else if (is_exception(code)) {
    for (i = 0; i < sizeof(exceptions) / sizeof(exceptions[0]); i++)
      if (exceptions[i].code == code)
        name = exceptions[i].name;
    st->exit_code = -1;
    st->term_signal = (int)code;
    /* The loader ends a process whose DLLs it cannot load or initialize
     * before any of its code runs: that is no crash of the program. */
    if (code == 0xC0000135u || code == 0xC0000139u || code == 0xC0000142u)
      pp__format(st->reason, sizeof(st->reason),
                 "could not start: %s (0x%08lX)", name, (unsigned long)code);
    else
      pp__format(st->reason, sizeof(st->reason),
                 "crashed with exception 0x%08lX (%s)", (unsigned long)code,
                 name);
  } else {
    st->exit_code = (int)code;
    /* Another process's TerminateProcess gives any code it likes: a plain
     * code may be that, or the program's own exit. */
    st->outside = PP__EXIT_MAYBE_OUTSIDE;
    /* The Microsoft C runtime's abort() ends the process with exit code 3
     * once _CALL_REPORTFAULT is off (pp__worker_attach turns it off), so
     * an abort looks like exit(3).  Say so, since it is usually that. */
    pp__format(st->reason, sizeof(st->reason), "exited with code %d%s",
               (int)code, code == 3 ? " (abort() exits with 3)" : "");
  }
}

/* ---- the running worker ----------------------------------------------- */

HANDLE pp__win_proc_handle(const pp__proc_t *proc) {
  return proc->process;
}

int64_t pp__proc_pid(const pp__proc_t *proc) {
  return proc ? (int64_t)proc->pid : 0;
}

int pp__proc_wait(pp__proc_t *proc, int64_t timeout_ms, pp__exit_t *st) {
  int64_t left = timeout_ms;
  DWORD slice;
  DWORD code;
  char why[160];

  /* WaitForSingleObject takes a DWORD with INFINITE at its top, so long
   * limits are waited for in slices. */
  for (;;) {
    slice = timeout_ms < 0 ? INFINITE
                           : (DWORD)(left > 0x7FFFFFFF ? 0x7FFFFFFF : left);
    switch (WaitForSingleObject(proc->process, slice)) {
      case WAIT_OBJECT_0:
        goto ended;
      case WAIT_TIMEOUT:
        left -= slice;
        if (timeout_ms >= 0 && left <= 0)
          return pp__os_fail(PP_ETIMEDOUT,
                             "worker %lu still running after %lld ms",
                             (unsigned long)proc->pid, (long long)timeout_ms);
        break;
      default:
        return pp__os_fail(PP_EIO, "WaitForSingleObject: %s",
                           pp__win_strerror(GetLastError(), why, sizeof(why)));
    }
  }

ended:
  if (!GetExitCodeProcess(proc->process, &code))
    return pp__os_fail(PP_EIO, "GetExitCodeProcess: %s",
                       pp__win_strerror(GetLastError(), why, sizeof(why)));
  /* Note for readers of the result: a worker that its job killed (when a
   * parent died) shows exit code 0 under Wine.  The core never takes an
   * exit without a RESULT for success, so that needs no special case. */
  describe_exit(code, proc->killed != 0, st);
  proc->reaped = 1;
  return 0;
}

int pp__proc_kill(pp__proc_t *proc) {
  char why[160];
  DWORD error;

  InterlockedExchange(&proc->killed, 1);
  if (TerminateProcess(proc->process, PP__KILLED_EXIT_CODE))
    return 0;
  error = GetLastError();
  /* A process that has already ended refuses TerminateProcess with
   * ERROR_ACCESS_DENIED; that is the harmless case of the contract. */
  if (WaitForSingleObject(proc->process, 0) == WAIT_OBJECT_0)
    return 0;
  return pp__os_fail(PP_EIO, "TerminateProcess(%lu): %s",
                     (unsigned long)proc->pid,
                     pp__win_strerror(error, why, sizeof(why)));
}

void pp__proc_abandon(pp__proc_t *proc) {
  if (proc == NULL)
    return;
  CloseHandle(proc->process);
  free(proc);
}

void pp__proc_free(pp__proc_t *proc) {
  if (proc == NULL)
    return;
  if (!proc->reaped) {
    pp__proc_kill(proc);
    WaitForSingleObject(proc->process, INFINITE);
  }
  CloseHandle(proc->process);
  free(proc);
}
