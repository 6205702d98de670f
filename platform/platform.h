/*
 * platform.h - the contract between procpool's portable core (src/) and the
 * operating system (platform/posix, platform/win32).
 *
 * Each OS implements every function below once, in files of the same names.
 * Every function returns 0 or a negative PP_E* status that is already
 * translated from errno or GetLastError() where it was read, with a
 * sentence recorded through pp__os_fail() (src/error.h).  Like errno, that
 * sentence is the thread's until its next platform call: the core takes it
 * at once (pp__err_os), and it never reaches pp_last_error() by itself.
 * The core never includes an OS header and never tests which OS it runs
 * on.
 *
 * Threads: a channel may be read by one thread while another writes it
 * (a worker's watch thread reads it for the parent's end while its main
 * thread hands a blob over).  Two threads never read (or write) the same
 * channel at once: the core serializes each direction.
 */
#ifndef PP_PLATFORM_H
#define PP_PLATFORM_H

#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

/* Thread-local storage (the last error message, inline mode's current call)
 * differs by compiler; like every other difference it is kept out of src/. */
#if defined(_MSC_VER)
#define PP__THREAD_LOCAL __declspec(thread)
#else
#define PP__THREAD_LOCAL _Thread_local
#endif

/* 32-bit Windows is refused (docs/decisions.md, decision 47): a ring's
 * 64-bit positions would tear there, and the MSVC branch below is for x64
 * and ARM64 only.  CMake refuses such a build before it gets here. */
#if defined(_WIN32) && !defined(_WIN64)
#error "procpool needs a 64-bit Windows target (x64 or ARM64)"
#endif

/* Atomic loads and stores with acquire and release ordering, for the rings
 * that parent and worker share (src/ring.c): a producer writes a record,
 * then publishes its new position with a release store; the consumer reads
 * the position with an acquire load, then the record.  PP__FENCE is a full
 * barrier, for the "set a flag, then look again" step before sleeping.
 * gcc and clang (mingw-w64, clang-cl) have the __atomic builtins.  MSVC's C
 * mode has no <stdatomic.h>, and its volatile accesses are ordered only
 * under /volatile:ms, which a user's /volatile:iso turns off without a
 * word; so the ordering is spelled out (decision 47), as MSVC's own
 * <atomic> does: ARM64 has load-acquire and store-release instructions
 * (__ldar64, __stlr64).  On x64 an aligned 64-bit load or store is atomic
 * and the processor keeps loads and stores in order except a store before
 * a later load (TSO), so acquire and release need only the compiler to
 * keep its order: __iso_volatile_load64/store64 (plain accesses whatever
 * /volatile says) with _ReadWriteBarrier() after the load and before the
 * store.  ARM64EC, which is x64 code compiled for an ARM64 processor, is
 * not TSO: there the barrier is a real one (__dmb). */
#if defined(_MSC_VER) && !defined(__clang__)
#include <intrin.h>
#if defined(_M_ARM64)
#define PP__LOAD_ACQ64(p) ((uint64_t)__ldar64((unsigned __int64 volatile *)(p)))
#define PP__STORE_REL64(p, v)                                                  \
  __stlr64((unsigned __int64 volatile *)(p), (unsigned __int64)(v))
#define PP__LOAD_ACQ32(p) ((uint32_t)__ldar32((unsigned __int32 volatile *)(p)))
#define PP__STORE_REL32(p, v)                                                  \
  __stlr32((unsigned __int32 volatile *)(p), (unsigned __int32)(v))
#define PP__FENCE() __dmb(0xB)
#else
#if defined(_M_ARM64EC)
#define PP__MSVC_ORDER() __dmb(0xB)
#define PP__FENCE() __dmb(0xB)
#else
#define PP__MSVC_ORDER() _ReadWriteBarrier()
#define PP__FENCE() __faststorefence()
#endif
static __inline uint64_t pp__load_acq64(const volatile void *p) {
  uint64_t v = (uint64_t)__iso_volatile_load64((const volatile __int64 *)p);
  PP__MSVC_ORDER();
  return v;
}
static __inline void pp__store_rel64(volatile void *p, uint64_t v) {
  PP__MSVC_ORDER();
  __iso_volatile_store64((volatile __int64 *)p, (__int64)v);
}
static __inline uint32_t pp__load_acq32(const volatile void *p) {
  uint32_t v = (uint32_t)__iso_volatile_load32((const volatile int *)p);
  PP__MSVC_ORDER();
  return v;
}
static __inline void pp__store_rel32(volatile void *p, uint32_t v) {
  PP__MSVC_ORDER();
  __iso_volatile_store32((volatile int *)p, (int)v);
}
#define PP__LOAD_ACQ64(p) pp__load_acq64(p)
#define PP__STORE_REL64(p, v) pp__store_rel64((p), (uint64_t)(v))
#define PP__LOAD_ACQ32(p) pp__load_acq32(p)
#define PP__STORE_REL32(p, v) pp__store_rel32((p), (uint32_t)(v))
#endif
#else
#define PP__LOAD_ACQ64(p) __atomic_load_n((const uint64_t *)(p), __ATOMIC_ACQUIRE)
#define PP__STORE_REL64(p, v)                                                  \
  __atomic_store_n((uint64_t *)(p), (uint64_t)(v), __ATOMIC_RELEASE)
#define PP__LOAD_ACQ32(p) __atomic_load_n((const uint32_t *)(p), __ATOMIC_ACQUIRE)
#define PP__STORE_REL32(p, v)                                                  \
  __atomic_store_n((uint32_t *)(p), (uint32_t)(v), __ATOMIC_RELEASE)
#define PP__FENCE() __atomic_thread_fence(__ATOMIC_SEQ_CST)
#endif

/* Read-modify-write on a 32-bit word that both processes write (a call's
 * state word, src/ring.h), each a full barrier: PP__CAS32 sets *p to `new`
 * if it is `old` and returns 1 if it did; PP__OR32 sets the bits of v. */
#if defined(_MSC_VER) && !defined(__clang__)
#define PP__CAS32(p, old, new)                                                 \
  (_InterlockedCompareExchange((long volatile *)(p), (long)(new),              \
                               (long)(old)) == (long)(old))
#define PP__OR32(p, v) ((void)_InterlockedOr((long volatile *)(p), (long)(v)))
#else
static inline int pp__cas32(uint32_t *p, uint32_t old, uint32_t new_value) {
  return __atomic_compare_exchange_n(p, &old, new_value, 0, __ATOMIC_SEQ_CST,
                                     __ATOMIC_SEQ_CST);
}
#define PP__CAS32(p, old, new) pp__cas32((uint32_t *)(p), (old), (new))
#define PP__OR32(p, v)                                                         \
  ((void)__atomic_fetch_or((uint32_t *)(p), (uint32_t)(v), __ATOMIC_SEQ_CST))
#endif

/* A pause for a spin-wait loop: tells the CPU (and a hyperthread sibling)
 * that this core is only waiting. */
#if defined(_MSC_VER) && !defined(__clang__)
#if defined(_M_ARM64)
#define pp__cpu_relax() __yield()
#else
#define pp__cpu_relax() _mm_pause()
#endif
#elif defined(__x86_64__) || defined(__i386__)
#define pp__cpu_relax() __builtin_ia32_pause()
#elif defined(__aarch64__)
#define pp__cpu_relax() __asm__ __volatile__("yield")
#else
#define pp__cpu_relax() ((void)0)
#endif

/* A function that never returns (C11 _Noreturn; MSVC spells it its own
 * way). */
#if defined(_MSC_VER)
#define PP__NORETURN __declspec(noreturn)
#else
#define PP__NORETURN _Noreturn
#endif

/* ---- time, locks and one-time set-up (thread.c) ---------------------- */

/* Returns a monotonic time in microseconds, counted from an arbitrary point.
 * Every deadline and timed wait in procpool is measured on this clock, never
 * on the wall clock, so a step of the system clock (NTP, an administrator, a
 * resumed virtual machine) neither ends a wait early nor stretches it. */
int64_t pp__now_us(void);

/* A mutex and a condition variable whose timed waits run on pp__now_us's
 * clock (APR's are timed on the wall clock).  Both are heap objects: *_new
 * returns 0 or PP_ENOMEM / PP_EIO, *_free accepts NULL. */
typedef struct pp__mutex_s pp__mutex_t;
typedef struct pp__cond_s pp__cond_t;
int pp__mutex_new(pp__mutex_t **mutex);
void pp__mutex_free(pp__mutex_t *mutex);
void pp__mutex_lock(pp__mutex_t *mutex);
/* Takes the mutex if it is free and returns 1; returns 0 at once if not. */
int pp__mutex_trylock(pp__mutex_t *mutex);
void pp__mutex_unlock(pp__mutex_t *mutex);
int pp__cond_new(pp__cond_t **cond);
void pp__cond_free(pp__cond_t *cond);
/* Waits until signalled (or woken spuriously); `mutex` is held. */
void pp__cond_wait(pp__cond_t *cond, pp__mutex_t *mutex);
/* Waits at most timeout_us (monotonic); returns 0 when woken (perhaps
 * spuriously) or PP_ETIMEDOUT.  Callers loop on their own deadline. */
int pp__cond_timedwait(pp__cond_t *cond, pp__mutex_t *mutex,
                       int64_t timeout_us);
void pp__cond_signal(pp__cond_t *cond);
void pp__cond_broadcast(pp__cond_t *cond);

/* One-time set-up: pp__once(&once, init) runs init() the first time any
 * thread calls it with that `once`, while later callers wait for it to
 * finish, and returns its status.  Once init() has succeeded, every later
 * call returns 0 at once; a failed init() is run again by the next call,
 * so that a transient failure (memory, descriptors) is not kept for the
 * life of the process.  init() must leave nothing behind when it fails. */
typedef struct pp__once_s {
  int done;
} pp__once_t;
#define PP__ONCE_INIT                                                          \
  { 0 }
int pp__once(pp__once_t *once, int (*init)(void));

/* A worker process as seen by its parent (pid or process HANDLE). */
typedef struct pp__proc_s pp__proc_t;
/* One end of a byte stream: a worker's channel or captured stdout/stderr. */
typedef struct pp__chan_s pp__chan_t;

/* Reads and writes are cut to at most this much per system call, because
 * several systems fail or truncate single transfers above 2 GiB (macOS
 * read/write, Win32 DWORD lengths). */
#define PP__IO_CHUNK ((size_t)1 << 30)

/* The executable workers are started from, fixed when a pool is created.
 * Where the OS allows it (Linux), the file is held open and every worker is
 * started from that open file, so workers started later run the same
 * program even after the file was deleted or replaced on disk (an upgrade
 * installed while the application runs).  Elsewhere it is the path; the
 * build check in the handshake then refuses a worker of another build. */
typedef struct pp__image_s pp__image_t;

/* Opens `path` (UTF-8), or this program's own executable when path is NULL.
 * Returns 0, PP_ESPAWN with the OS reason (no such file, not executable),
 * or PP_ENOMEM. */
int pp__image_open(const char *path, pp__image_t **image);

/* Returns the image's path, for messages and the worker's argv[0]. */
const char *pp__image_path(const pp__image_t *image);

/* Closes the image.  NULL is ignored. */
void pp__image_close(pp__image_t *image);

/* Reads the environment variable `name` (ASCII), whose value is a path
 * (PROCPOOL_WORKER_EXE), in UTF-8: Windows reads its UTF-16 value, which
 * holds any character (getenv would give it in the ANSI code page, and
 * lose what that lacks); POSIX takes its bytes as they are.  Sets *value
 * to a malloc'd copy, or to NULL when the variable is unset or empty.
 * Returns 0, PP_ENOMEM, or PP_EINVAL (Windows: not valid UTF-16). */
int pp__env_path(const char *name, char **value);

/* The environment variable that marks a process as a pool's worker until
 * pp_worker_main() has taken its reserved argument (and removed the mark).
 * A process that still has it when it creates a pool was started as a
 * worker whose main() lacks the worker guard. */
#define PP__WORKER_ENV "PROCPOOL_WORKER"

/* ---- shared memory and wake objects (shm.c, waiter.c) --------------- */

/* An anonymous shared mapping, zeroed, that a worker started later maps as
 * well (pp__spawn_req_t.shm).  Its size cannot be changed by the worker
 * (Linux seals it), so the parent can never fault on it.  With
 * PP__SHM_POPULATE its pages are put in place at once (Linux), for memory
 * about to be written whole (a copy, a result): one system call instead of
 * a page fault per 4 KiB; without it they come as they are touched, which
 * suits a ring (a pool that makes few calls touches few of its pages).
 * Returns 0, PP_ENOMEM or PP_EIO with the OS reason. */
typedef struct pp__shm_s pp__shm_t;
#define PP__SHM_POPULATE 1u
int pp__shm_create(uint64_t size, unsigned flags, pp__shm_t **shm);
void *pp__shm_base(const pp__shm_t *shm);
uint64_t pp__shm_len(const pp__shm_t *shm);
/* Unmaps and closes.  NULL is ignored. */
void pp__shm_close(pp__shm_t *shm);
/* A number that tells this mapping from every other this process has had
 * or will have (a counter, taken by pp__shm_create and pp__shm_recv): the
 * key under which a worker keeps a mapping it was sent (src/ring.h). */
uint64_t pp__shm_serial(const pp__shm_t *shm);

/* The bytes a worker leaves free after the `used` bytes of a mapping it
 * hands to the parent (pp__shm_send): Windows writes a tag there that
 * proves to the parent which section a handle value names.  POSIX needs
 * none (the descriptor itself travels), and a larger mapping would cost
 * more than 8 bytes: a result of exactly the spare budget's share would no
 * longer be kept as a spare (src/blob.c), and every large result would be
 * made afresh (the copy figure of bench/ fell from 9 to 3.5 GB/s). */
#ifdef _WIN32
#define PP__SHM_TAG_LEN 8
#else
#define PP__SHM_TAG_LEN 0
#endif

/* Hands a mapping to the process at the other end of `chan` (a blob: an
 * argument or result too large for a ring).  POSIX sends its descriptor on
 * the channel and sets *handle to 0; Windows duplicates it into the other
 * process and sets *handle to its value there: from the parent into `peer`
 * (the worker), from a worker (peer NULL) into its parent, so that a
 * result the worker has published survives the worker.  From a worker,
 * the mapping holds `used` bytes of data and at least PP__SHM_TAG_LEN more,
 * and *tag (which may be NULL from the parent) is set to what the parent
 * passes to pp__shm_recv or pp__shm_drop (Windows: a random number also
 * written past the data; POSIX: 0).  The caller closes its pp__shm_t
 * afterwards as usual.  Returns 0, PP_ECLOSED (the other process has
 * ended), PP_EINVAL or PP_EIO. */
int pp__shm_send(pp__chan_t *chan, pp__shm_t *shm, pp__proc_t *peer,
                 uint64_t used, uint64_t *handle, uint64_t *tag);

/* Parent side: takes the next mapping worker `peer` sent (POSIX: from the
 * channel; Windows: `handle`, already in this process, once the tag `tag`
 * at offset `size` proves it is the section the worker sent; nothing
 * else is ever closed) and maps it.  Refuses one smaller than `size`.
 * Returns 0, PP_EPROTO, PP_ECLOSED, PP_ENOMEM or PP_EIO.  PP_ENOMEM means
 * the mapping was taken (and closed) but this process could not map it:
 * the channel is still in step. */
int pp__shm_recv(pp__chan_t *chan, uint64_t handle, uint64_t tag, uint64_t size,
                 pp__proc_t *peer, pp__shm_t **shm);
/* Worker side: takes the next mapping the parent sent (POSIX: from the
 * channel; Windows: `handle`, put into this process by the parent), except
 * that a mapping which is one of the `n` in `known` (mappings this process
 * has open: a worker's own results, which come back to it as reply hints)
 * is not mapped again, since its pages are in place already and a fresh
 * mapping would fault them in anew: the handle that came is closed, *shm
 * is set to NULL and *known_at to its index.  Otherwise *known_at is -1.
 * Telling them apart takes the system's help (POSIX: the device and inode
 * of the descriptors; Windows: CompareObjectHandles, Windows 10 and
 * later); where it cannot tell, nothing matches and the mapping is made
 * afresh.  `peer` is NULL.  Returns as pp__shm_recv. */
int pp__shm_recv_known(pp__chan_t *chan, uint64_t handle, uint64_t size,
                       pp__proc_t *peer, pp__shm_t *const *known, int n,
                       pp__shm_t **shm, int *known_at);
/* Parent side: closes a mapping a worker handed over that will never be
 * taken (its record was left unread when the worker was buried, or the
 * worker died before it published it), if `tag` at offset `size` still
 * proves that `handle` names it; anything else is left alone.  POSIX has
 * nothing to do: the descriptor is in the channel, closed with it. */
void pp__shm_drop(uint64_t handle, uint64_t tag, uint64_t size);

/* A wake object: one side signals it, the other sleeps on it (an eventfd on
 * Linux, a pipe on other POSIX systems, an auto-reset event on Windows).
 * Signals do not count: several before a wait wake it once.  A signal
 * wakes every thread that sleeps on the object, on every system: a worker
 * sleeps on its object from its main thread (waiting for calls) and from
 * any thread that waits for room in its result ring, and the parent's
 * signal is for either. */
typedef struct pp__wake_s pp__wake_t;
int pp__wake_new(pp__wake_t **wake);
void pp__wake_free(pp__wake_t *wake);
/* Never blocks; harmless when already signalled.  Returns 0, or PP_EIO
 * with the OS reason when the signal could not be given (the object is no
 * longer there: its descriptor or handle was closed behind the pool's
 * back); the caller must then not count on the other side waking. */
int pp__wake_signal(pp__wake_t *wake);
/* Forgets a pending signal without waiting (after the poller said it was
 * signalled).  For the parent's own object, which only the poller watches:
 * it is no part of the sleepers' count below. */
void pp__wake_clear(pp__wake_t *wake);
/* Worker side.  A thread that means to sleep takes a ticket first, then
 * looks at what it waits for (a ring, which it flags as asleep), and only
 * then waits with the ticket: the wait returns at once if a signal was
 * taken since the ticket, by this thread or any other, so no signal given
 * after the look is lost to it.  Waits up to timeout_ms (negative = no
 * limit).  Returns 1 when signalled (perhaps by a signal that came just
 * before the ticket: the caller looks again), 0 at the timeout, PP_ECLOSED
 * when the channel `alive` (the parent) has ended meanwhile, or PP_EIO
 * with the OS reason when the object cannot be waited on (its handle or
 * descriptor was closed behind our back): waiting again would fail again
 * at once. */
uint64_t pp__wake_ticket(pp__wake_t *wake);
int pp__wake_wait(pp__wake_t *wake, uint64_t ticket, pp__chan_t *alive,
                  int64_t timeout_ms);

/* The parent's poller: one thread waits on the wake objects and the process
 * ends of many workers at once (epoll on Linux; on Windows helper threads
 * wait for groups of handles, which the caller does not see).  Each source
 * is registered with a tag, which pp__poller_wait hands back. */
typedef struct pp__poller_s pp__poller_t;
int pp__poller_new(pp__poller_t **poller);
void pp__poller_free(pp__poller_t *poller);
int pp__poller_add_wake(pp__poller_t *poller, pp__wake_t *wake, void *tag);
int pp__poller_add_proc(pp__poller_t *poller, pp__proc_t *proc, void *tag);
/* Stops watching a process; it must be removed before it is freed.  (A
 * wake object is watched for the poller's whole life.) */
void pp__poller_remove_proc(pp__poller_t *poller, pp__proc_t *proc);
/* Waits up to timeout_us (negative = no limit) until a source is ready and
 * stores up to `max` tags of ready sources (a wake object is then to be
 * cleared with pp__wake_clear; an ended process stays ready until it is
 * removed).  Returns how many, 0 at the timeout, or PP_EIO with the OS
 * reason when the poller itself failed (its descriptor was closed behind
 * the pool's back): waiting again would fail again at once. */
int pp__poller_wait(pp__poller_t *poller, int64_t timeout_us, void **tags,
                    int max);

/* What a worker launch needs. */
typedef struct pp__spawn_req_s {
  /* The executable to start. */
  const pp__image_t *image;
  /* Core's part of the reserved argument; the worker's argv[1] becomes
   * "--procpool-worker=<platform spec>:<token>".  Plain ASCII without
   * spaces or quotes.  The worker's environment also gets
   * PP__WORKER_ENV=<token>. */
  const char *token;
  /* More arguments after the reserved one (NULL-terminated; may be NULL). */
  const char *const *extra_args;
  /* Non-zero: the worker's stdout and stderr are the parent's own (nothing
   * is captured). */
  int inherit_output;
  /* The worker's shared memory and its wake objects: it sleeps on
   * `wake_worker` and signals `wake_parent`. */
  const pp__shm_t *shm;
  const pp__wake_t *wake_worker;
  const pp__wake_t *wake_parent;
} pp__spawn_req_t;

/* What pp__spawn hands the parent. */
typedef struct pp__spawned_s {
  pp__proc_t *proc;
  /* The duplex channel: liveness both ways, and large payloads on POSIX. */
  pp__chan_t *chan;
  /* The read ends of the worker's stdout and stderr (NULL with
   * inherit_output).  The worker reads them itself while it lives (its
   * output reaches the parent through the shared memory); the parent reads
   * what is left once the worker has ended. */
  pp__chan_t *out;
  pp__chan_t *err;
  /* A sentence for the pool's log, or "": how this worker's start falls
   * short of what pp__spawn promises (Windows: a worker outside the job
   * object, said once per process). */
  char note[320];
} pp__spawned_t;

/* Starts a worker and returns only once the program has been executed (or
 * failed to be).  The worker's stdin is the null device.  Nothing else of
 * the parent (descriptor or handle) reaches the worker.  On POSIX the worker
 * leads a process group of its own; on Windows it is in a kill-on-close job
 * object before it runs.  PP_ESPAWN with the OS reason on failure (exec
 * failed, no such file), with nothing left open. */
int pp__spawn(const pp__spawn_req_t *req, pp__spawned_t *spawned);

/* Returns the worker's process id. */
int64_t pp__proc_pid(const pp__proc_t *proc);

/* pp__exit_t.outside: what ended the worker was certainly, or maybe, not
 * the pool nor the program's own crash. */
#define PP__EXIT_OUTSIDE 1
#define PP__EXIT_MAYBE_OUTSIDE 2

/* How a worker ended. */
typedef struct pp__exit_s {
  int exit_code;   /* exit status, or -1 if ended by a signal / exception */
  int term_signal; /* POSIX signal number, Windows exception code, or 0 */
  int killed;      /* 1 if pp__proc_kill ended it */
  /* 1 if something outside the pool ended it: on POSIX a signal that is
   * neither the pool's kill nor one of a crash of its own (SIGSEGV,
   * SIGBUS, SIGILL, SIGFPE, SIGABRT, SIGSYS, SIGTRAP), such as SIGKILL
   * or SIGTERM sent by another process or the kernel's OOM killer.
   * 2 if it may have been (PP__EXIT_MAYBE_OUTSIDE): on Windows, a plain
   * exit code that the pool did not give, which TerminateProcess from
   * another process can give as well as the program's own exit; Windows
   * cannot tell the two apart.  0 otherwise. */
  int outside;
  char reason[256]; /* e.g. "killed by signal 11 (SIGSEGV)" */
} pp__exit_t;

/* Waits up to timeout_ms (negative = no limit) for the worker to end.
 * Returns 0 and fills *st, or PP_ETIMEDOUT.  Reaps the process: after 0 it
 * may only be freed. */
int pp__proc_wait(pp__proc_t *proc, int64_t timeout_ms, pp__exit_t *st);

/* Ends the worker at once (SIGKILL, TerminateProcess), and on POSIX every
 * process left in its process group (what its task started and did not
 * detach), so that a timeout or cancel ends all the call's work; harmless
 * if it has already ended.  Never blocks.  Safe to call from any thread
 * while another waits. */
int pp__proc_kill(pp__proc_t *proc);

/* Frees the handle; a worker not yet waited for is killed and reaped first,
 * so none is ever left behind.  NULL is ignored. */
void pp__proc_free(pp__proc_t *proc);

/* Frees the handle of a worker that was killed and has still not ended
 * (a process the kernel cannot end yet, stuck in an uninterruptible
 * wait), without waiting for it: nothing in this process waits for it any
 * more.  On POSIX it stays a zombie until this process ends.  For the rare
 * case where a bounded wait after pp__proc_kill ran out. */
void pp__proc_abandon(pp__proc_t *proc);

/* Ties a worker's channel to its process: from now on a read (and
 * pp__chan_wait) also ends when the process has ended, after the bytes it
 * wrote before it ended have been read.  The end of the stream alone is not
 * enough, because a process the task forked may hold the worker's end open
 * long after the worker died.  `proc` must outlive the channel's use. */
void pp__chan_bind_proc(pp__chan_t *chan, pp__proc_t *proc);

/* Reads what is available, at least 1 byte, at most `cap`; sets *got.
 * Returns 0, PP_ECLOSED at end of stream, or PP_EIO. */
int pp__chan_read_some(pp__chan_t *chan, void *buf, size_t cap, size_t *got);

/* Writes all `len` bytes.  Returns 0, PP_ECLOSED if the peer has gone
 * (never raises SIGPIPE), or PP_EIO. */
int pp__chan_write(pp__chan_t *chan, const void *buf, size_t len);

/* Waits up to timeout_ms (0 = just look) until a read would not block:
 * data is there, the other end has gone, or the bound process has ended.
 * Returns 1 if so, 0 if not.  Reads nothing, so another thread may read
 * afterwards. */
int pp__chan_wait(pp__chan_t *chan, int64_t timeout_ms);

/* Waits up to timeout_ms (negative = no limit) until one of `n` channels
 * (at most 8) could be read without blocking, like pp__chan_wait, and sets
 * ready[i] for each.  Returns how many are ready, 0 at the timeout. */
int pp__chan_poll(pp__chan_t **chans, int n, int64_t timeout_ms, int *ready);

/* Returns 1 if the channel's other end has closed it (nothing is read). */
int pp__chan_ended(pp__chan_t *chan);

/* Ends the stream for the reader: reads (one blocked in another thread, and
 * every later one) return the bytes already received and then PP_ECLOSED,
 * without waiting for more; writes fail.  Used once a worker has ended or
 * been killed, when a process its task started may still hold the other
 * end open.  Safe from any thread while another reads. */
void pp__chan_abort(pp__chan_t *chan);

/* Closes and frees the channel.  NULL is ignored. */
void pp__chan_close(pp__chan_t *chan);

/* pp__worker_attach flag: the worker writes to the parent's own stdout and
 * stderr, which may be a terminal. */
#define PP__ATTACH_INHERIT_OUTPUT 1

/* What pp__worker_attach hands the worker. */
typedef struct pp__attached_s {
  pp__chan_t *chan;
  void *shm_base; /* the shared mapping, mapped */
  uint64_t shm_size;
  pp__wake_t *wake_worker; /* to sleep on */
  pp__wake_t *wake_parent; /* to signal */
  /* The read ends of its own stdout and stderr, or NULL (inherited
   * output). */
  pp__chan_t *out;
  pp__chan_t *err;
} pp__attached_t;

/* Worker side: parses the platform part of the reserved argument (the text
 * before the last ':'), opens the channel to the parent, maps the shared
 * memory, takes its wake objects and output ends, closes every other
 * inherited descriptor, keeps the channel out of processes a task forks
 * (where the OS lets it), and arranges to die with the parent where the OS
 * can (PR_SET_PDEATHSIG with a re-check of the parent pid `parent_pid`; the
 * job object on Windows).  It also turns off crash dialogs and debugger
 * start-up on Windows.  With PP__ATTACH_INHERIT_OUTPUT on POSIX it ignores
 * SIGTTOU: the worker leads its own process group, which is a background
 * group on the parent's terminal, and with `stty tostop` its first write
 * would stop it.  Returns 0, or PP_EINVAL / PP_EIO. */
int pp__worker_attach(const char *spec, int64_t parent_pid, unsigned flags,
                      pp__attached_t *attached);

/* ---- a worker's stdio (system.c, worker.c) --------------------------- */

/* Bytes a stream holds in its buffer, not yet written; -1 where the C
 * library cannot tell (the Microsoft runtimes). */
int pp__stdio_pending(FILE *fp);
/* Returns 1 if the stream writes to a terminal (a console on Windows),
 * where a progress bar may redraw its line in place. */
int pp__stdio_is_terminal(FILE *fp);
/* Takes a stream's lock if no other thread holds it: returns 1 if taken. */
int pp__stdio_trylock(FILE *fp);
void pp__stdio_unlock(FILE *fp);
/* From a crash handler: writes what a fully buffered stream, whose buffer
 * is `buf`, holds to its descriptor, with nothing but a system call.  With
 * `buf` NULL, the stream was set by pp__stdio_stream(): Windows writes what
 * the C runtime's own buffer holds (read from its fields, then emptied),
 * POSIX nothing (its stream is line-buffered; a partial line is lost). */
void pp__stdio_salvage(FILE *fp, const char *buf);
/* Sets stdout so that the lines a task prints reach the parent while it
 * runs, and stderr unbuffered; for workers whose output is inherited, or
 * whose C library has no pp__stdio_pending().  POSIX: line buffering
 * (with a real size: a size of 0 is not portable).  Windows: the
 * Microsoft C runtimes treat _IOLBF as full buffering, the Universal CRT
 * ends the process (fast fail 0xC0000409) for _IOLBF with a size below 2,
 * and unbuffered output makes mingw's printf one write per character; so
 * stdout gets a small full buffer that a thread flushes a few times a
 * second.  Returns 0, or PP_EIO when the C runtime refuses the mode (which
 * would end the process on real Windows, so the worker refuses to
 * start). */
int pp__stdio_stream(void);
/* Registers a function that runs when the worker is about to die of a
 * crash (a fatal signal, an unhandled exception), before the system ends
 * it; it must be async-signal-safe.  Only where the application has not
 * installed a handler of its own. */
void pp__worker_set_crash_hook(void (*hook)(void));

/* Worker side: ends this process at once with `code`, like _Exit: stdio
 * buffers are not flushed (the caller flushes what must go out; a flush
 * could block on a parent that no longer reads), atexit handlers do not run
 * (they may wait for work that will never come) and, on Windows, neither
 * does the DLL detach code that ExitProcess runs while the other threads
 * are frozen, perhaps holding the locks that code needs (the process
 * terminates itself). */
PP__NORETURN void pp__exit_now(int code);

/* Gives pp_worker_main the program's arguments in UTF-8.  POSIX: argc and
 * argv as they are.  Windows: the narrow argv is in the ANSI code page
 * (characters outside it become '?') and a wmain program has none, so the
 * arguments are read from GetCommandLineW() and converted; the copy lives
 * as long as the process.  argv may be NULL on entry. */
void pp__worker_args(int *argc, char ***argv);

/* Sets *path (malloc'd, UTF-8) to the default worker host, the
 * procpool-worker program installed with procpool, found at run time
 * relative to the module that holds procpool (the shared library, or the
 * program it is linked into), so that an install that was moved still
 * works; else the path of the install it was built for.  Returns 0, or
 * PP_ESPAWN / PP_ENOMEM. */
int pp__worker_host_path(char **path);

/* Sets *out (malloc'd, UTF-8) to `path` made absolute against the current
 * directory, so that workers, the system's loader and the parent read the
 * same file.  Returns 0, PP_EINVAL or PP_ENOMEM. */
int pp__path_absolute(const char *path, char **out);

/* Removes an environment variable from this process (before any thread of
 * the application could read the environment). */
void pp__env_unset(const char *name);

/* Makes sure descriptors 0, 1 and 2 are open (on the null device if they
 * were closed), so that no channel procpool creates later gets one of those
 * numbers and receives what the application writes to its stdout or stderr.
 * Nothing to do on Windows, whose handles have no such numbers. */
void pp__stdio_ensure(void);

/* The length of a build id. */
#define PP__BUILD_ID_LEN 32

/* Fills `id` with an identity of the build of the loaded module (executable
 * or shared library) that contains `addr`: the linker's build id where there
 * is one (ELF NT_GNU_BUILD_ID), else a digest of the module's code or
 * headers.  Two builds of different code give different ids.  All zero if
 * the system cannot tell, which turns the build check off. */
void pp__module_build_id(const void *addr, unsigned char id[PP__BUILD_ID_LEN]);

/* Writes the file name this system gives the shared library `base`
 * ("libbase.so", "libbase.dylib", "base.dll") into buf[cap], for a library
 * loaded by name from the loader's search path. */
void pp__shared_lib_name(const char *base, char *buf, size_t cap);

/* Returns the number of CPUs this process may run on (at least 1). */
int pp__cpu_count(void);

/* Returns how many descriptors this process may have open (the soft
 * RLIMIT_NOFILE), or -1 where handles have no such limit (Windows). */
int64_t pp__fd_limit(void);

/* Returns the id of the calling process; cheap (no system call), and right
 * in a child made by fork() too. */
int64_t pp__self_pid(void);

/* Returns 1 once a debugger is attached to this process, else 0. */
int pp__debugger_attached(void);

/* Returns free physical memory in bytes, or 0 if unknown (tests use it to
 * skip huge payloads on small machines). */
uint64_t pp__mem_available(void);

#endif /* PP_PLATFORM_H */
