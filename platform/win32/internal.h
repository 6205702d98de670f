/*
 * internal.h - what the Win32 files of platform/ share: the Windows headers
 * with the version they need, UTF-8/UTF-16 conversion, OS error text, the
 * exit codes the pool gives its workers, the named-pipe helpers that
 * spawn.c and worker.c build channels from, and what a worker's executable
 * and process are (image.c, spawn.c, proc.c).
 *
 * Nothing here is seen by the portable core; it only knows platform.h.
 */
#ifndef PP_WIN32_INTERNAL_H
#define PP_WIN32_INTERNAL_H

/* Windows 7 is the oldest system we support: it has InitOnceExecuteOnce,
 * PROC_THREAD_ATTRIBUTE_HANDLE_LIST, CancelIoEx, GetNamedPipeClientProcessId
 * and GetActiveProcessorCount.  A build that asks for more keeps its value. */
#ifndef _WIN32_WINNT
#define _WIN32_WINNT 0x0601
#endif
#ifndef WIN32_LEAN_AND_MEAN
#define WIN32_LEAN_AND_MEAN
#endif
#include <windows.h>

#include <stddef.h>
#include <stdint.h>

#include "../platform.h"
#include "error.h"
#include "fault.h"

/* The exit code TerminateProcess gives a worker that pp__proc_kill ends.  It
 * is "PPKL" in ASCII: an unlikely exit status for a program, and not an
 * NTSTATUS error (those have both top bits set), so a kill is never mistaken
 * for a crash and pp__proc_wait can tell it from an exit that happened just
 * before the kill. */
#define PP__KILLED_EXIT_CODE 0x50504B4Cu

/* The exit code a worker gives itself when its parent process has ended
 * ("PPOR", orphaned).  Nobody normally sees it, because the parent is gone;
 * it shows up when a debugger or a grandparent looks at the worker. */
#define PP__ORPHAN_EXIT_CODE 0x50504F52u

/* Every pipe procpool creates is "\\.\pipe\procpool-<pid>-<32 hex digits>".
 * The worker checks the prefix before it opens anything named on its
 * command line. */
#define PP__PIPE_PREFIX "\\\\.\\pipe\\procpool-"
/* Room for the prefix (18), a 10-digit pid, '-', 32 hex digits and NUL. */
#define PP__PIPE_NAME_MAX 80

/* Converts NUL-terminated UTF-8 to a malloc'd UTF-16 string.  Returns 0,
 * PP_EINVAL for text that is not UTF-8, or PP_ENOMEM. */
int pp__win_utf8_to_wide(const char *s, WCHAR **out);

/* Converts NUL-terminated UTF-16 to a malloc'd UTF-8 string.  Returns 0,
 * PP_EINVAL for unpaired surrogates, or PP_ENOMEM. */
int pp__win_wide_to_utf8(const WCHAR *s, char **out);

/* Writes the system's text for a GetLastError() code, in UTF-8 and followed
 * by the number, e.g. "Access is denied (error 5)", to `buf`.  Returns buf.
 * It preserves GetLastError(), so it can be used in an argument list. */
const char *pp__win_strerror(DWORD code, char *buf, size_t size);

/* The status of a failure that ran out of something: PP_ENOMEM for memory
 * and quotas, PP_ESPAWN for handles (as pp__posix_status on POSIX);
 * `otherwise` for any other code. */
int pp__win_status(DWORD code, int otherwise);

/* Creates the server end of a fresh pipe with a random name (written to
 * `name`, UTF-16): one instance, FILE_FLAG_FIRST_PIPE_INSTANCE, overlapped,
 * byte mode, remote clients rejected, and a DACL that admits only the
 * current user.  `access` is PIPE_ACCESS_DUPLEX or PIPE_ACCESS_INBOUND. */
int pp__win_pipe_server(DWORD access, WCHAR name[PP__PIPE_NAME_MAX],
                        HANDLE *server);

/* The most one ReadFile or WriteFile moves on a pipe.  The named-pipe file
 * system copies the unsent part of a pending write into non-paged kernel
 * memory charged to the process, so a 1 GiB write (PP__IO_CHUNK) would pin
 * that much per direction and worker, or fail with ERROR_NO_SYSTEM_RESOURCES
 * (1450) or ERROR_NOT_ENOUGH_QUOTA (1816).  1 MiB costs one more system call
 * per MiB, which is nothing next to the copy. */
#define PP__WIN_PIPE_CHUNK ((size_t)1 << 20)

/* The worker's end of its stdout and stderr pipes is opened before main()
 * runs (system.c), from the names in the reserved argument
 * "--procpool-worker=<channel>;<boot>,<stdout>,<stderr>:<token>" (<boot>:
 * the boot block's handle value in hex, see below); with inherited output
 * only the channel is named. */
#define PP__WIN_WORKER_OPTION L"--procpool-worker="

/* Builds the worker's command line, "<exe> --procpool-worker=<pipes>:<token>
 * <extra args...>", with every argument quoted for the Microsoft C runtime,
 * as a malloc'd string that CreateProcessW may write to.  `exe` and `pipe`
 * are UTF-16; the token and extra arguments are UTF-8 from `req`. */
int pp__win_build_cmdline(const WCHAR *exe, const WCHAR *pipe,
                          const pp__spawn_req_t *req, WCHAR **out);

/* The process handle of a worker (owned by the pp__proc_t). */
HANDLE pp__win_proc_handle(const pp__proc_t *proc);

/* Starts listening on a channel's pipe (an overlapped ConnectNamedPipe):
 * its first wait, read or write then waits for the client, and checks that
 * the client is the process bound with pp__chan_bind_proc. */
int pp__win_chan_listen(pp__chan_t *chan);

/* Wraps an overlapped pipe handle in a channel.  On success the channel owns
 * the handle; on failure the caller still does. */
int pp__win_chan_wrap(HANDLE handle, pp__chan_t **chan);

/* The channel's handle (owned by the channel). */
HANDLE pp__win_chan_handle(const pp__chan_t *chan);

/* The process a channel is bound to, or NULL. */
HANDLE pp__win_chan_process(const pp__chan_t *chan);

/* Worker side: binds the channel to the parent's process, whose handle it
 * then owns, so that waits on the channel end when the parent does. */
void pp__win_chan_bind_parent(pp__chan_t *chan, HANDLE parent);

/* ---- a worker's executable and process (image.c, spawn.c, proc.c) ---- */

/* Windows cannot start a process from an open file, so the image is its
 * path; a running executable cannot be deleted or overwritten there (it can
 * be renamed and replaced), and the build check of the handshake catches a
 * worker started from a replacement. */
struct pp__image_s {
  char *path;  /* UTF-8 */
  WCHAR *wide; /* the same, UTF-16 */
  /* What CreateProcessW starts when `wide` is MAX_PATH characters or
   * longer (its short or extended form, pp__win_short_path); else NULL. */
  WCHAR *launch;
};

/* Writes to *out (malloc'd) the short (8.3) name of an existing file or
 * directory in the extended "\\?\" form, made absolute first, or that
 * extended form itself where the volume keeps no short names (or the short
 * one is no shorter).  For paths CreateProcessW refuses at their length:
 * a program's of MAX_PATH characters or more, a current directory's of
 * more than MAX_PATH - 2.  Returns 0, PP_EINVAL or PP_ENOMEM. */
int pp__win_short_path(const WCHAR *path, WCHAR **out);

/* Removes the "\\?\" of an extended drive path ("\\?\C:\x" becomes
 * "C:\x") or turns "\\?\UNC\server\share" into "\\server\share", in
 * place; other paths are left as they are. */
void pp__win_path_plain(WCHAR *path);

/* A worker process: spawn.c starts it, proc.c waits for it, kills it and
 * frees it. */
struct pp__proc_s {
  HANDLE process;
  DWORD pid;
  volatile LONG killed; /* set by pp__proc_kill, from any thread */
  int reaped;           /* pp__proc_wait has returned 0 */
};

/* ---- shared memory and wake objects (shm.c, waiter.c) ---- */

/* A shared memory object's section handle (owned by it). */
HANDLE pp__win_shm_handle(const pp__shm_t *shm);

/* Maps a section handle: `want` bytes, or all of it when want is 0, after
 * checking that it is committed memory of the paging file, at least that
 * large.  Sets *base and *size; the handle stays the caller's.  Returns 0,
 * PP_EPROTO (not such a section), PP_ENOMEM or PP_EIO. */
int pp__win_shm_map(HANDLE section, uint64_t want, void **base,
                    uint64_t *size);

/* Worker side: the handle to the parent that results are pushed into
 * (pp__shm_send), owned from then on. */
void pp__win_shm_set_parent(HANDLE parent);

/* Wraps an event handle (owned from then on) in a wake object; the event
 * of a wake object. */
int pp__win_wake_wrap(HANDLE event, pp__wake_t **wake);
HANDLE pp__win_wake_handle(const pp__wake_t *wake);

/* ---- the boot block (spawn.c, worker.c) ---- */

/* job.c: the job object every worker of this process is in (made once,
 * kill-on-close).  Returns 0 or PP_ESPAWN. */
int pp__win_job_get(HANDLE *job);

/* Creates the worker suspended, in the job the best way that works here
 * (job.c's job_way): each way that the system refuses for the job's sake
 * (ERROR_ACCESS_DENIED from AssignProcessToJobObject or from a breakaway;
 * any failure of CreateProcessW with the job list, which the next way then
 * tries without it) falls to the next, and a failure of another kind is
 * the spawn's.  `handles` is the handle list: whatever other threads have
 * made inheritable meanwhile, only these reach the worker (bInheritHandles
 * is TRUE).  Writes a sentence to `note` when the worker is outside the
 * job for the first time in this process. */
int pp__win_job_start(const WCHAR *exe, const WCHAR *cmdline, WCHAR *env,
                      const WCHAR *dir, STARTUPINFOEXW *si, HANDLE *handles,
                      DWORD nhandles, HANDLE job, PROCESS_INFORMATION *pi,
                      char *note, size_t note_cap);

/* The size of the C runtime's buffer that stdout streams through in a
 * worker (pp__stdio_stream), and the most pp__stdio_salvage writes. */
#define PP__STDIO_STREAM_BUF 4096

/* What a worker needs besides its pipes: the handles the parent put into
 * it (DuplicateHandle into the suspended process, before it runs), by
 * their values there.  Handle values cannot be put on the command line,
 * which is fixed before the process (and so its handle table) exists, and
 * inheriting the handles would hand them to any process another thread
 * starts meanwhile (see spawn.c).  So they travel in a small section, the
 * worker's "boot block", which has no name: a read-only handle to it is
 * the one handle the worker inherits besides the null device (an
 * inherited handle keeps its value), and that value is on the command line
 * after the channel's name, "<channel>;<hex>".  A copy that another
 * thread's CreateProcess took meanwhile could only read handle values
 * that mean nothing outside the worker.  The worker reads the block and
 * closes its handle before anything of the application runs. */
#define PP__WIN_BOOT_MAGIC 0x44505050u /* "PPPD" */
typedef struct pp__win_boot_s {
  uint32_t magic;
  uint32_t pid; /* the worker it was written for */
  uint64_t shm; /* handle values in the worker; 0 = none */
  uint64_t shm_size;
  uint64_t wake_worker;
  uint64_t wake_parent;
  uint64_t out; /* the read ends of its stdout and stderr pipes */
  uint64_t err;
  /* The parent's process, with PROCESS_DUP_HANDLE (to push its results
   * into it, shm.c), SYNCHRONIZE and PROCESS_QUERY_LIMITED_INFORMATION
   * (to tell that it has ended). */
  uint64_t parent;
} pp__win_boot_t;

/* Returns the full path (UTF-8, malloc'd) of the running executable. */
int pp__exe_path(char **path);

#endif /* PP_WIN32_INTERNAL_H */
