/*
 * spawn.c - starting worker processes on Windows (waiting for them and
 * killing them is proc.c's).
 *
 * A worker is the executable started again with CreateProcessW.  It is
 * created suspended in the pool's kill-on-close job object (born in it
 * where the system can, else put into it before it runs; see job.c), and
 * only then resumed, so it cannot run (or start processes of its own)
 * outside the job.  It inherits two handles, named in a
 * PROC_THREAD_ATTRIBUTE_HANDLE_LIST: the null device, as its stdin, stdout
 * and stderr until it starts, and a read-only one to its unnamed boot
 * block (internal.h).  Its channel and its stdout and stderr pipes are not
 * inherited: the worker opens the named pipes given on its command line
 * (stdout and stderr before main() runs, see system.c).  So no handle
 * that matters is ever inheritable in this process, and a CreateProcess
 * with inheritance in another thread of the application (system(), _popen,
 * a library) cannot take a copy that would keep a worker's pipe open.
 * pp__spawn does not wait for the worker to connect: each pipe completes
 * the connection when it is first used (channel.c), and checks that its
 * client is the worker process.
 */
#include "internal.h"

#include <stdlib.h>
#include <string.h>
#include <wchar.h>

/* Compares two environment variable names up to '=' the way Windows sorts
 * an environment block: case-insensitively, in code unit order. */
static int env_name_cmp(const WCHAR *a, const WCHAR *b) {
  for (;; a++, b++) {
    WCHAR ca = *a == L'=' ? 0 : *a, cb = *b == L'=' ? 0 : *b;
    if (ca >= L'a' && ca <= L'z')
      ca = (WCHAR)(ca - L'a' + L'A');
    if (cb >= L'a' && cb <= L'z')
      cb = (WCHAR)(cb - L'a' + L'A');
    if (ca != cb || ca == 0)
      return (int)ca - (int)cb;
  }
}

/* Builds the worker's environment block: ours without any PP__WORKER_ENV,
 * with PP__WORKER_ENV=<token> in its sorted place (CreateProcessW expects
 * the block sorted by name). */
static int worker_env(const char *token, WCHAR **out) {
  WCHAR *env = GetEnvironmentStringsW(), *block = NULL, *p, *mark = NULL;
  char *mark8 = NULL;
  size_t total = 0, mark_len, n;
  const WCHAR *e;
  int status, placed = 0;

  *out = NULL;
  if (env == NULL)
    return pp__os_fail(PP_ENOMEM, "GetEnvironmentStringsW failed");
  mark8 = pp__strdup_printf("%s=%s", PP__WORKER_ENV, token);
  if (mark8 == NULL) {
    status = pp__os_fail(PP_ENOMEM, "out of memory for the environment");
    goto cleanup;
  }
  status = pp__win_utf8_to_wide(mark8, &mark);
  if (status != 0)
    goto cleanup;
  mark_len = wcslen(mark) + 1;
  for (e = env; *e; e += wcslen(e) + 1)
    total += wcslen(e) + 1;
  block = pp__malloc((total + mark_len + 1) * sizeof(WCHAR));
  if (block == NULL) {
    status = pp__os_fail(PP_ENOMEM, "out of memory for the environment");
    goto cleanup;
  }
  p = block;
  for (e = env; *e; e += n) {
    n = wcslen(e) + 1;
    if (env_name_cmp(e, mark) == 0)
      continue;
    /* Names that start with '=' (the per-drive directories) stay first. */
    if (!placed && e[0] != L'=' && env_name_cmp(e, mark) > 0) {
      memcpy(p, mark, mark_len * sizeof(WCHAR));
      p += mark_len;
      placed = 1;
    }
    memcpy(p, e, n * sizeof(WCHAR));
    p += n;
  }
  if (!placed) {
    memcpy(p, mark, mark_len * sizeof(WCHAR));
    p += mark_len;
  }
  *p = L'\0';
  *out = block;
  block = NULL;

cleanup:
  free(block);
  free(mark);
  free(mark8);
  FreeEnvironmentStringsW(env);
  return status;
}

/* ---- the current directory ------------------------------------------- */

/* The directory a worker starts in: ours, which CreateProcessW gives it
 * when lpCurrentDirectory is NULL, as *dir then is.  But CreateProcessW
 * starts nothing while the current directory is more than MAX_PATH - 2
 * characters long ("The directory name is invalid", or
 * ERROR_INVALID_NAME), which a long-path-aware program can make it
 * (libuv#4684, MicrosoftDocs/sdk-api#1709).  Such a directory is given by
 * its short (8.3) name: the same directory, so that a task's relative
 * paths mean what they mean in the parent; only the name a task reads
 * from GetCurrentDirectoryW differs.  Where it has no short name that fits
 * (short names are off on its volume), no worker can start there, and the
 * error says so: a worker started in some other directory would give
 * relative paths another meaning without a word. */
static int worker_dir(WCHAR **dir) {
  WCHAR *cwd = NULL, *brief = NULL;
  char *cwd_utf8 = NULL;
  DWORD n, m;
  char why[160];
  int status;

  *dir = NULL;
  /* The size with the NUL. */
  n = GetCurrentDirectoryW(0, NULL);
  if (n == 0)
    return pp__os_fail(PP_ESPAWN, "GetCurrentDirectoryW: %s",
                       pp__win_strerror(GetLastError(), why, sizeof(why)));
  if (n - 1 <= MAX_PATH - 2)
    return 0;
  cwd = pp__malloc((size_t)n * sizeof(WCHAR));
  if (cwd == NULL)
    return pp__os_fail(PP_ENOMEM, "out of memory for the current directory");
  m = GetCurrentDirectoryW(n, cwd);
  if (m == 0 || m >= n) {
    status = pp__os_fail(PP_ESPAWN,
                         "the current directory changed while a worker was "
                         "being started");
    goto cleanup;
  }
  status = pp__win_short_path(cwd, &brief);
  if (status != 0)
    goto cleanup;
  pp__win_path_plain(brief);
  if (wcslen(brief) > MAX_PATH - 2) {
    pp__win_wide_to_utf8(cwd, &cwd_utf8);
    status = pp__os_fail(
        PP_ESPAWN,
        "the current directory is %lu characters long, and Windows starts no "
        "process in a directory of more than %d characters; it has no short "
        "(8.3) name that fits either: make a shorter directory current "
        "before workers start (the directory: %s)",
        (unsigned long)(n - 1), MAX_PATH - 2,
        cwd_utf8 != NULL ? cwd_utf8 : "?");
    goto cleanup;
  }
  *dir = brief;
  brief = NULL;

cleanup:
  free(cwd_utf8);
  free(brief);
  free(cwd);
  return status;
}

/* ---- starting a worker ------------------------------------------------ */

/* Windows 7's console handles are not kernel handles but pseudo-handles
 * with both low bits set; CreateProcessW fails with ERROR_INVALID_PARAMETER
 * if one is in the handle list (they reach the child through its console
 * anyway).  CPython's subprocess filters them the same way. */
static int is_console_pseudo_handle(HANDLE h) {
  return ((ULONG_PTR)h & 3) == 3;
}

/* An inheritable copy of one of our standard handles, for a worker that
 * writes straight to the parent's output; the null device when we have none
 * (a GUI program). */
static int inherit_std(DWORD which, HANDLE *out) {
  HANDLE h = GetStdHandle(which), self = GetCurrentProcess();
  SECURITY_ATTRIBUTES sa;
  char why[160];
  *out = INVALID_HANDLE_VALUE;
  if (h != NULL && h != INVALID_HANDLE_VALUE &&
      DuplicateHandle(self, h, self, out, 0, TRUE, DUPLICATE_SAME_ACCESS))
    return 0;
  sa.nLength = sizeof(sa);
  sa.lpSecurityDescriptor = NULL;
  sa.bInheritHandle = TRUE;
  *out = CreateFileW(L"NUL", GENERIC_WRITE, FILE_SHARE_READ | FILE_SHARE_WRITE,
                     &sa, OPEN_EXISTING, 0, NULL);
  if (*out == INVALID_HANDLE_VALUE)
    return pp__os_fail(PP_ESPAWN, "opening NUL: %s",
                       pp__win_strerror(GetLastError(), why, sizeof(why)));
  return 0;
}

/* Creates a pipe server for the worker to open by name: the listening
 * channel and, appended to `spec` after a ',', the pipe's name, which is
 * also written to `name`. */
static int listen_pipe(DWORD access, WCHAR *spec, size_t cap,
                       pp__chan_t **chan, WCHAR name[PP__PIPE_NAME_MAX]) {
  HANDLE server = INVALID_HANDLE_VALUE;
  int status;

  *chan = NULL;
  status = pp__win_pipe_server(access, name, &server);
  if (status == 0)
    status = pp__win_chan_wrap(server, chan);
  if (status != 0) {
    if (server != INVALID_HANDLE_VALUE)
      CloseHandle(server);
    return status;
  }
  /* Listen before the worker exists, so that whenever it opens the pipe
   * the connection completes our pending ConnectNamedPipe. */
  status = pp__win_chan_listen(*chan);
  if (status != 0) {
    pp__chan_close(*chan);
    *chan = NULL;
    return status;
  }
  if (spec[0] != L'\0')
    wcscat(spec, L",");
  if (wcslen(spec) + wcslen(name) >= cap) {
    pp__chan_close(*chan);
    *chan = NULL;
    return pp__os_fail(PP_EINVAL, "worker channel names too long");
  }
  wcscat(spec, name);
  return 0;
}

/* Puts a copy of `h` into the worker, with `rights` (or the same access when
 * 0), and returns its value there in *value. */
static int give(HANDLE worker, HANDLE h, DWORD rights, uint64_t *value) {
  HANDLE copy = NULL;
  char why[160];
  if (!DuplicateHandle(GetCurrentProcess(), h, worker, &copy, rights, FALSE,
                       rights == 0 ? DUPLICATE_SAME_ACCESS : 0))
    return pp__os_fail(PP_ESPAWN, "handing a handle to the worker: %s",
                       pp__win_strerror(GetLastError(), why, sizeof(why)));
  *value = (uint64_t)(uintptr_t)copy;
  return 0;
}

/* Creates a worker's boot block (see internal.h): the section, with a
 * handle to write it, and a read-only, inheritable copy of that handle for
 * the handle list. */
static int boot_create(HANDLE *boot, HANDLE *inherited) {
  HANDLE self = GetCurrentProcess();
  char why[160];

  *inherited = NULL;
  *boot = CreateFileMappingW(INVALID_HANDLE_VALUE, NULL, PAGE_READWRITE, 0,
                             (DWORD)sizeof(pp__win_boot_t), NULL);
  if (*boot == NULL)
    return pp__os_fail(pp__win_status(GetLastError(), PP_ESPAWN),
                       "CreateFileMappingW(boot block): %s",
                       pp__win_strerror(GetLastError(), why, sizeof(why)));
  if (!DuplicateHandle(self, *boot, self, inherited, FILE_MAP_READ, TRUE, 0)) {
    *inherited = NULL;
    CloseHandle(*boot);
    *boot = NULL;
    return pp__os_fail(PP_ESPAWN, "DuplicateHandle(boot block): %s",
                       pp__win_strerror(GetLastError(), why, sizeof(why)));
  }
  return 0;
}

/* Fills the boot block of a worker that is created but not yet running:
 * the parent pushes each handle into it, so that no handle of ours is ever
 * inheritable (another thread's CreateProcess could take it), and a handle
 * to this process with PROCESS_DUP_HANDLE, through which the worker pushes
 * its results into us (see shm.c).  Copies already made die with the
 * worker if a later one fails, since the caller then ends it. */
static int write_boot(HANDLE boot, const PROCESS_INFORMATION *pi,
                      const pp__spawn_req_t *req, pp__chan_t *out,
                      pp__chan_t *err) {
  pp__win_boot_t b;
  void *view;
  char why[160];
  int status = 0;

  memset(&b, 0, sizeof(b));
  b.magic = PP__WIN_BOOT_MAGIC;
  b.pid = pi->dwProcessId;
  if (req->shm != NULL) {
    b.shm_size = pp__shm_len(req->shm);
    status = give(pi->hProcess, pp__win_shm_handle(req->shm),
                  SECTION_QUERY | SECTION_MAP_READ | SECTION_MAP_WRITE,
                  &b.shm);
  }
  /* Each wake object with what the worker does with it and no more: it
   * waits on its own and signals the pool's.  The pool's is every worker's
   * and the I/O thread's, and a wait on it in a task (a stray handle
   * value) would take a signal another worker gave the parent. */
  if (status == 0 && req->wake_worker != NULL)
    status = give(pi->hProcess, pp__win_wake_handle(req->wake_worker),
                  SYNCHRONIZE, &b.wake_worker);
  if (status == 0 && req->wake_parent != NULL)
    status = give(pi->hProcess, pp__win_wake_handle(req->wake_parent),
                  EVENT_MODIFY_STATE, &b.wake_parent);
  /* The read ends of its own output: the worker forwards what it prints
   * while it lives; we read the rest once it has ended. */
  if (status == 0 && out != NULL)
    status = give(pi->hProcess, pp__win_chan_handle(out), 0, &b.out);
  if (status == 0 && err != NULL)
    status = give(pi->hProcess, pp__win_chan_handle(err), 0, &b.err);
  if (status == 0)
    status = give(pi->hProcess, GetCurrentProcess(),
                  PROCESS_DUP_HANDLE | SYNCHRONIZE |
                      PROCESS_QUERY_LIMITED_INFORMATION,
                  &b.parent);
  if (status != 0)
    return status;
  view = MapViewOfFile(boot, FILE_MAP_WRITE, 0, 0, sizeof(b));
  if (view == NULL)
    return pp__os_fail(PP_ESPAWN, "mapping the boot block: %s",
                       pp__win_strerror(GetLastError(), why, sizeof(why)));
  memcpy(view, &b, sizeof(b));
  UnmapViewOfFile(view);
  return 0;
}

int pp__spawn(const pp__spawn_req_t *req, pp__spawned_t *spawned) {
  /* Three pipe names, the boot block's handle value and separators. */
  WCHAR spec[3 * PP__PIPE_NAME_MAX + 24];
  WCHAR name[PP__PIPE_NAME_MAX];
  HANDLE boot = NULL;
  HANDLE boot_inherited = NULL;
  SECURITY_ATTRIBUTES inherit;
  STARTUPINFOEXW si;
  PROCESS_INFORMATION pi;
  HANDLE handles[4];
  DWORD nhandles = 0;
  HANDLE job = NULL;
  HANDLE out_client = INVALID_HANDLE_VALUE;
  HANDLE err_client = INVALID_HANDLE_VALUE;
  HANDLE null_dev = INVALID_HANDLE_VALUE;
  const WCHAR *exe;
  WCHAR *cmdline = NULL;
  WCHAR *env = NULL;
  WCHAR *dir = NULL;
  pp__proc_t *p = NULL;
  pp__chan_t *c = NULL;
  pp__chan_t *o = NULL;
  pp__chan_t *e = NULL;
  char why[160];
  int status;

  memset(spawned, 0, sizeof(*spawned));
  spec[0] = L'\0';
  memset(&si, 0, sizeof(si));
  memset(&pi, 0, sizeof(pi));
  if (req == NULL || req->image == NULL || req->token == NULL)
    return pp__os_fail(PP_EINVAL, "pp__spawn: no executable or token");
  PP__FAULT_RETURN(PP_ESPAWN);
  exe = req->image->wide;

  status = pp__win_job_get(&job);
  if (status == 0)
    status = worker_dir(&dir);
  if (status != 0)
    goto cleanup;
  status = worker_env(req->token, &env);
  if (status != 0)
    goto cleanup;
  /* The channel first, then (unless output is inherited) the stdout and
   * stderr pipes: the worker finds their names in this order.  Each
   * finishes (and checks) its connection when it is first used, so that
   * waiting for a worker's start stays the core's, with its time limit
   * and its way out. */
  status = boot_create(&boot, &boot_inherited);
  if (status == 0)
    status = listen_pipe(PIPE_ACCESS_DUPLEX, spec, sizeof(spec) / sizeof(WCHAR),
                         &c, name);
  if (status != 0)
    goto cleanup;
  /* The boot block's value follows the channel's name (internal.h). */
  swprintf(spec + wcslen(spec), sizeof(spec) / sizeof(WCHAR) - wcslen(spec),
           L";%llx", (unsigned long long)(uintptr_t)boot_inherited);
  if (!req->inherit_output)
    status = listen_pipe(PIPE_ACCESS_INBOUND, spec,
                         sizeof(spec) / sizeof(WCHAR), &o, name);
  if (status == 0 && !req->inherit_output)
    status = listen_pipe(PIPE_ACCESS_INBOUND, spec,
                         sizeof(spec) / sizeof(WCHAR), &e, name);
  if (status != 0)
    goto cleanup;
  status = pp__win_build_cmdline(exe, spec, req, &cmdline);
  if (status != 0)
    goto cleanup;

  /* The null device is the worker's stdin, and its stdout and stderr
   * until it has opened its pipes; a copy of it in another process is
   * harmless, so it may be inheritable. */
  inherit.nLength = sizeof(inherit);
  inherit.lpSecurityDescriptor = NULL;
  inherit.bInheritHandle = TRUE;
  null_dev = CreateFileW(L"NUL", GENERIC_READ | GENERIC_WRITE,
                         FILE_SHARE_READ | FILE_SHARE_WRITE, &inherit,
                         OPEN_EXISTING, 0, NULL);
  if (null_dev == INVALID_HANDLE_VALUE) {
    status = pp__os_fail(PP_ESPAWN, "opening NUL: %s",
                         pp__win_strerror(GetLastError(), why, sizeof(why)));
    goto cleanup;
  }
  if (req->inherit_output) {
    status = inherit_std(STD_OUTPUT_HANDLE, &out_client);
    if (status == 0)
      status = inherit_std(STD_ERROR_HANDLE, &err_client);
    if (status != 0)
      goto cleanup;
  }

  /* The handle list: only these handles reach the worker. */
  handles[nhandles++] = null_dev;
  handles[nhandles++] = boot_inherited;
  if (out_client != INVALID_HANDLE_VALUE &&
      !is_console_pseudo_handle(out_client))
    handles[nhandles++] = out_client;
  if (err_client != INVALID_HANDLE_VALUE &&
      !is_console_pseudo_handle(err_client))
    handles[nhandles++] = err_client;
  si.StartupInfo.cb = sizeof(si);
  /* STARTF_FORCEOFFFEEDBACK: no "app starting" cursor in a GUI parent for
   * each worker that starts. */
  si.StartupInfo.dwFlags = STARTF_USESTDHANDLES | STARTF_FORCEOFFFEEDBACK;
  si.StartupInfo.hStdInput = null_dev;
  si.StartupInfo.hStdOutput = req->inherit_output ? out_client : null_dev;
  si.StartupInfo.hStdError = req->inherit_output ? err_client : null_dev;

  /* The command line keeps the path as it was given: with
   * lpApplicationName set, its first argument is only text. */
  status = pp__win_job_start(
      req->image->launch != NULL ? req->image->launch : exe, cmdline, env, dir,
      &si, handles, nhandles, job, &pi, spawned->note, sizeof(spawned->note));
  /* The worker has its own copy now (or none: it was not created). */
  CloseHandle(boot_inherited);
  boot_inherited = NULL;
  if (status == 0)
    status = write_boot(boot, &pi, req, o, e);
  if (status != 0)
    goto cleanup;
  /* The worker's copy keeps the block until it has read it. */
  CloseHandle(boot);
  boot = NULL;
  if (ResumeThread(pi.hThread) == (DWORD)-1) {
    status = pp__os_fail(PP_ESPAWN, "ResumeThread: %s",
                         pp__win_strerror(GetLastError(), why, sizeof(why)));
    goto cleanup;
  }
  CloseHandle(null_dev);
  null_dev = INVALID_HANDLE_VALUE;
  if (out_client != INVALID_HANDLE_VALUE)
    CloseHandle(out_client);
  if (err_client != INVALID_HANDLE_VALUE)
    CloseHandle(err_client);
  out_client = err_client = INVALID_HANDLE_VALUE;

  p = pp__calloc(1, sizeof(*p));
  if (p == NULL) {
    status = pp__os_fail(PP_ENOMEM, "out of memory for a worker");
    goto cleanup;
  }
  p->process = pi.hProcess;
  p->pid = pi.dwProcessId;
  pi.hProcess = NULL;
  /* Only this process may be the pipes' client, and reads of its stdout
   * and stderr end once it has ended (after what it wrote). */
  pp__chan_bind_proc(c, p);
  if (o != NULL) {
    pp__chan_bind_proc(o, p);
    pp__chan_bind_proc(e, p);
  }
  spawned->proc = p;
  spawned->chan = c;
  spawned->out = o;
  spawned->err = e;
  p = NULL;
  c = o = e = NULL;
  status = 0;

cleanup:
  if (pi.hProcess != NULL) {
    /* Failed after the worker was started: end it and reap it, so nothing
     * is left behind. */
    TerminateProcess(pi.hProcess, PP__KILLED_EXIT_CODE);
    WaitForSingleObject(pi.hProcess, INFINITE);
    CloseHandle(pi.hProcess);
  }
  if (pi.hThread != NULL)
    CloseHandle(pi.hThread);
  free(p);
  pp__chan_close(c);
  pp__chan_close(o);
  pp__chan_close(e);
  if (null_dev != INVALID_HANDLE_VALUE)
    CloseHandle(null_dev);
  if (err_client != INVALID_HANDLE_VALUE)
    CloseHandle(err_client);
  if (out_client != INVALID_HANDLE_VALUE)
    CloseHandle(out_client);
  if (boot_inherited != NULL)
    CloseHandle(boot_inherited);
  if (boot != NULL)
    CloseHandle(boot);
  free(cmdline);
  free(env);
  free(dir);
  return status;
}
