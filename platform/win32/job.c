/*
 * job.c - creating a worker's process on Windows inside the pool's job
 * object: the one job of this process, the ways into it from the best
 * down, and the CreateProcessW call itself (spawn.c prepares the worker's
 * handles, environment and command line, and writes its boot block).
 */
#include "internal.h"

#include <versionhelpers.h>

#include <stdlib.h>
#include <string.h>
#include <wchar.h>

/* ---- the job object --------------------------------------------------- */

/* One job per process holds every worker of every pool.  Closing it kills
 * them all, and the system closes it when this process ends in any way, so
 * no worker outlives the program.  The handle is not inheritable: if a
 * worker held it, the job would outlive us.
 *
 * JOB_OBJECT_LIMIT_BREAKAWAY_OK is for nested pools on Windows 7 only.  A
 * worker that creates a pool puts its own workers into its own job.
 * Windows 8 and later (and Wine) nest that job inside ours, which needs no
 * flag.  Windows 7 cannot nest jobs, so there the grandchild has to be
 * created with CREATE_BREAKAWAY_FROM_JOB, which our job must allow.  It
 * still dies with us: it is in the worker's job, which dies with the
 * worker.  Elsewhere the flag is not set, since it would let any process a
 * task starts with CREATE_BREAKAWAY_FROM_JOB outlive the program.
 *
 * JOB_OBJECT_LIMIT_DIE_ON_UNHANDLED_EXCEPTION keeps Windows Error Reporting
 * out of a worker that crashes before pp__worker_attach installed its own
 * exception filter. */
static INIT_ONCE job_once = INIT_ONCE_STATIC_INIT;
static HANDLE job_handle;

/* How a worker gets into the job, from the best way down; job_way holds
 * the first way that has worked here, so that later spawns begin with it
 * instead of failing the better ones again.
 *
 * JOB_BORN: created in it, with PROC_THREAD_ATTRIBUTE_JOB_LIST (Windows 10
 * and Wine).  There is no moment when the worker is outside the job: if
 * this process dies right after CreateProcessW, the job's end kills the
 * suspended worker too.
 * JOB_ASSIGN: created suspended, then AssignProcessToJobObject, as before
 * Windows 10; a worker whose parent dies between the two stays suspended
 * outside any job for ever.
 * JOB_BREAKAWAY: the same with CREATE_BREAKAWAY_FROM_JOB, for Windows 7 in
 * a job of its own, which cannot nest ours (the outer job must allow it).
 * JOB_NONE: the last resort, when this process is in a job that neither
 * nests ours nor lets workers break away (on Windows 8 and later a job
 * with UI limits).  The worker is in no job of ours; it still ends with
 * this process (its watch on it, worker.c, and its channel), but what its
 * tasks start may outlive the program.  The first spawn that comes to it
 * says so in one log line (pp__spawned_t.note), once per process. */
enum { JOB_BORN, JOB_ASSIGN, JOB_BREAKAWAY, JOB_NONE };
static volatile LONG job_way = JOB_BORN;
static volatile LONG job_none_noted;

/* PROC_THREAD_ATTRIBUTE_JOB_LIST, ProcThreadAttributeValue(13, FALSE,
 * TRUE, FALSE): the SDK and mingw-w64 define it only for _WIN32_WINNT
 * 0x0A00, and this file is built for Windows 7, where
 * UpdateProcThreadAttribute refuses it (JOB_ASSIGN then). */
#ifndef PROC_THREAD_ATTRIBUTE_JOB_LIST
#define PROC_THREAD_ATTRIBUTE_JOB_LIST 0x0002000D
#endif

static BOOL CALLBACK init_job(PINIT_ONCE once, PVOID param, PVOID *ctx) {
  JOBOBJECT_EXTENDED_LIMIT_INFORMATION info;
  DWORD *error = param;
  HANDLE job;

  (void)once;
  (void)ctx;
  job = CreateJobObjectW(NULL, NULL);
  if (job == NULL) {
    *error = GetLastError();
    return FALSE;
  }
  memset(&info, 0, sizeof(info));
  info.BasicLimitInformation.LimitFlags =
      JOB_OBJECT_LIMIT_KILL_ON_JOB_CLOSE |
      JOB_OBJECT_LIMIT_DIE_ON_UNHANDLED_EXCEPTION;
  if (!IsWindows8OrGreater())
    info.BasicLimitInformation.LimitFlags |= JOB_OBJECT_LIMIT_BREAKAWAY_OK;
  if (!SetInformationJobObject(job, JobObjectExtendedLimitInformation, &info,
                               sizeof(info))) {
    *error = GetLastError();
    CloseHandle(job);
    return FALSE;
  }
  job_handle = job;
  return TRUE;
}

int pp__win_job_get(HANDLE *job) {
  DWORD error = 0;
  char why[160];

  if (!InitOnceExecuteOnce(&job_once, init_job, &error, NULL))
    return pp__os_fail(PP_ESPAWN, "cannot create the worker job object: %s",
                       pp__win_strerror(error, why, sizeof(why)));
  *job = job_handle;
  return 0;
}

/* The error mode a new process starts with is its parent's (unless
 * CREATE_DEFAULT_ERROR_MODE, which gives the system default).  A worker
 * whose DLL is missing is stopped by the loader before any of its code
 * runs, and without SEM_FAILCRITICALERRORS the loader shows a modal "System
 * Error" box and waits on it.  So the flag is on while CreateProcessW runs
 * (and only then: the application's own mode is not ours to change), and
 * the worker reports exit code 0xC0000135 instead.  The lock keeps two
 * spawns from restoring each other's mode; another thread of the
 * application that changes the mode in between keeps its change. */
static SRWLOCK error_mode_lock = SRWLOCK_INIT;

static BOOL create_quietly(const WCHAR *exe, WCHAR *line, DWORD flags,
                           WCHAR *env, const WCHAR *dir, STARTUPINFOEXW *si,
                           PROCESS_INFORMATION *pi) {
  UINT old, quiet;
  DWORD error;
  BOOL ok;

  AcquireSRWLockExclusive(&error_mode_lock);
  old = GetErrorMode();
  quiet = old | SEM_FAILCRITICALERRORS | SEM_NOGPFAULTERRORBOX |
          SEM_NOOPENFILEERRORBOX;
  if (quiet != old)
    SetErrorMode(quiet);
  ok = CreateProcessW(exe, line, NULL, NULL, TRUE, flags, env, dir,
                      &si->StartupInfo, pi);
  error = GetLastError();
  if (quiet != old && GetErrorMode() == quiet)
    SetErrorMode(old);
  ReleaseSRWLockExclusive(&error_mode_lock);
  SetLastError(error);
  return ok;
}

/* An attribute list with the handle list `handles` and, if `job` is not
 * NULL, the job list {job}.  Returns 0, PP_ENOMEM, PP_ESPAWN, or 1 when
 * the system does not take a job list (before Windows 10). */
static int attrs_new(HANDLE *handles, DWORD nhandles, HANDLE *job,
                     LPPROC_THREAD_ATTRIBUTE_LIST *out) {
  LPPROC_THREAD_ATTRIBUTE_LIST list;
  SIZE_T size = 0;
  DWORD count = job != NULL ? 2 : 1;
  char why[160];
  int status = 0;

  *out = NULL;
  InitializeProcThreadAttributeList(NULL, count, 0, &size);
  list = pp__malloc(size);
  if (list == NULL)
    return pp__os_fail(PP_ENOMEM, "out of memory for the attribute list");
  if (!InitializeProcThreadAttributeList(list, count, 0, &size)) {
    status = pp__os_fail(PP_ESPAWN, "InitializeProcThreadAttributeList: %s",
                         pp__win_strerror(GetLastError(), why, sizeof(why)));
    free(list);
    return status;
  }
  if (!UpdateProcThreadAttribute(list, 0, PROC_THREAD_ATTRIBUTE_HANDLE_LIST,
                                 handles, nhandles * sizeof(HANDLE), NULL,
                                 NULL))
    status = pp__os_fail(PP_ESPAWN, "UpdateProcThreadAttribute: %s",
                         pp__win_strerror(GetLastError(), why, sizeof(why)));
  else if (job != NULL &&
           !UpdateProcThreadAttribute(list, 0, PROC_THREAD_ATTRIBUTE_JOB_LIST,
                                      job, sizeof(HANDLE), NULL, NULL))
    status = 1;
  if (status != 0) {
    DeleteProcThreadAttributeList(list);
    free(list);
    return status;
  }
  *out = list;
  return 0;
}

static void attrs_free(LPPROC_THREAD_ATTRIBUTE_LIST list) {
  if (list == NULL)
    return;
  DeleteProcThreadAttributeList(list);
  free(list);
}

int pp__win_job_start(const WCHAR *exe, const WCHAR *cmdline, WCHAR *env,
                      const WCHAR *dir, STARTUPINFOEXW *si, HANDLE *handles,
                      DWORD nhandles, HANDLE job, PROCESS_INFORMATION *pi,
                      char *note, size_t note_cap) {
  DWORD flags = CREATE_SUSPENDED | CREATE_NO_WINDOW |
                CREATE_UNICODE_ENVIRONMENT | EXTENDED_STARTUPINFO_PRESENT;
  DWORD error;
  WCHAR *line = NULL;
  size_t len = wcslen(cmdline) + 1;
  char why[160], refused[200] = "";
  char *exe_utf8 = NULL;
  LONG way = job_way;
  int status;
  BOOL ok;

  memset(pi, 0, sizeof(*pi));
  si->lpAttributeList = NULL;
  line = pp__malloc(len * sizeof(WCHAR));
  if (line == NULL)
    return pp__os_fail(PP_ENOMEM, "out of memory for the command line");
  for (;;) {
    attrs_free(si->lpAttributeList);
    si->lpAttributeList = NULL;
    status = attrs_new(handles, nhandles, way == JOB_BORN ? &job : NULL,
                       &si->lpAttributeList);
    if (status == 1) {
      way = JOB_ASSIGN;
      continue;
    }
    if (status != 0)
      goto cleanup;
    /* A fresh copy each time, since CreateProcessW may write to it. */
    memcpy(line, cmdline, len * sizeof(WCHAR));
    /* Fault injection (PROCPOOL_FAULT_SITE=pp__win_job): the system
     * refuses the job, each way in turn. */
    if (way == JOB_BORN && PP__FAULT_HIT("pp__win_job")) {
      ok = FALSE;
      SetLastError(ERROR_ACCESS_DENIED);
    } else {
      ok = create_quietly(
          exe, line,
          flags | (way == JOB_BREAKAWAY ? CREATE_BREAKAWAY_FROM_JOB : 0), env,
          dir, si, pi);
    }
    if (!ok) {
      error = GetLastError();
      if (way == JOB_BORN ||
          (way == JOB_BREAKAWAY && error == ERROR_ACCESS_DENIED)) {
        pp__format(refused, sizeof(refused), "%s: %s",
                   way == JOB_BORN ? "CreateProcessW with the job list"
                                   : "CREATE_BREAKAWAY_FROM_JOB",
                   pp__win_strerror(error, why, sizeof(why)));
        way++;
        continue;
      }
      pp__win_wide_to_utf8(exe, &exe_utf8);
      status = pp__os_fail(PP_ESPAWN, "CreateProcessW(\"%s\"): %s",
                           exe_utf8 != NULL ? exe_utf8 : "?",
                           pp__win_strerror(error, why, sizeof(why)));
      goto cleanup;
    }
    if (way == JOB_BORN || way == JOB_NONE)
      break;
    if (PP__FAULT_HIT("pp__win_job"))
      error = ERROR_ACCESS_DENIED;
    else if (AssignProcessToJobObject(job, pi->hProcess))
      break;
    else
      error = GetLastError();
    TerminateProcess(pi->hProcess, PP__KILLED_EXIT_CODE);
    WaitForSingleObject(pi->hProcess, INFINITE);
    CloseHandle(pi->hThread);
    CloseHandle(pi->hProcess);
    memset(pi, 0, sizeof(*pi));
    if (error != ERROR_ACCESS_DENIED) {
      status = pp__os_fail(PP_ESPAWN, "AssignProcessToJobObject: %s",
                           pp__win_strerror(error, why, sizeof(why)));
      goto cleanup;
    }
    pp__format(refused, sizeof(refused), "AssignProcessToJobObject: %s",
               pp__win_strerror(error, why, sizeof(why)));
    way++;
  }
  status = 0;
  /* Later spawns begin with the way that worked (never a better one: a way
   * refused once is refused for good, as this process' job stays). */
  if (way > job_way)
    InterlockedExchange(&job_way, way);
  if (way == JOB_NONE && InterlockedExchange(&job_none_noted, 1) == 0)
    pp__format(note, note_cap,
               "procpool: workers run outside the pool's job object, since "
               "this process is in a job that neither nests it nor lets "
               "them break away (%s); they still end with this process, but "
               "processes their tasks start may outlive it",
               refused);

cleanup:
  attrs_free(si->lpAttributeList);
  si->lpAttributeList = NULL;
  free(exe_utf8);
  free(line);
  return status;
}
