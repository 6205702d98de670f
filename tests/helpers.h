/*
 * helpers.h - what the tests need from the operating system and a log
 * callback that records what it receives.
 *
 * Tests are not src/, so these may test which OS they run on; everything
 * that differs is kept here so the test files themselves stay portable.
 */
#ifndef PP_TEST_HELPERS_H
#define PP_TEST_HELPERS_H

#include <stddef.h>
#include <stdint.h>

#include "procpool.h"

/* PP_TEST_ASAN / PP_TEST_TSAN: the build runs under AddressSanitizer /
 * ThreadSanitizer (GCC says so with a macro, clang with __has_feature). */
#if defined(__SANITIZE_ADDRESS__)
#define PP_TEST_ASAN 1
#elif defined(__has_feature)
#if __has_feature(address_sanitizer)
#define PP_TEST_ASAN 1
#endif
#endif
#if defined(__SANITIZE_THREAD__)
#define PP_TEST_TSAN 1
#elif defined(__has_feature)
#if __has_feature(thread_sanitizer)
#define PP_TEST_TSAN 1
#endif
#endif

/* Returns the number of open descriptors of this process, or -1 where the
 * system gives no cheap way to count them (the test is then skipped). */
int pp_test_fd_count(void);

/* Returns 1 if a process with this id exists and has not ended (a zombie
 * that nobody reaped counts as ended), else 0. */
int pp_test_pid_alive(int64_t pid);

/* Waits until none of the processes is alive, at most timeout_ms times
 * pp_test_time_scale().  Returns 1 if they are all gone, 0 if one is still
 * alive at the deadline. */
int pp_test_wait_gone(const int64_t *pids, size_t n, int64_t timeout_ms);

/* Returns this process' id. */
int64_t pp_test_self_pid(void);

/* Returns the number of CPUs this process may run on. */
int pp_test_cpu_count(void);

/* The factor by which a test multiplies every time limit it sets itself
 * (a wait's bound, a pool's start timeout): the build's
 * PROCPOOL_TEST_TIMEOUT_MULTIPLIER, which CMake also applies to every
 * CTest timeout (the Wine and sanitizer legs set it), times the
 * environment variable PROCPOOL_TEST_TIME_SCALE, for a leg that runs a
 * build's tests slower than the build knows (valgrind).  At least 1. */
int64_t pp_test_time_scale(void);
#define PP_TEST_TIME_SCALE (pp_test_time_scale())
/* A test's own time limit of `ms` milliseconds, scaled for the leg. */
#define PP_TEST_MS(ms) ((int64_t)(ms)*pp_test_time_scale())

/* Sleeps for ms milliseconds. */
void pp_test_sleep_ms(int64_t ms);

/* Sets or (value NULL) removes an environment variable; name and value are
 * UTF-8 (on Windows too). */
void pp_test_setenv(const char *name, const char *value);

/* Returns the value of a tuple "i" result, or INT64_MIN if it is not one. */
int64_t pp_test_int_result(const pp_result_t *r);

/* Packs a tuple of one int64 (exits the test program if memory is short). */
pp_buf_t pp_test_pack_int(int64_t v);

/* Frees the data of n packed buffers. */
void pp_test_free_bufs(pp_buf_t *bufs, size_t n);

/* ---- a child process, for the parent-death test ---- */

typedef struct pp_test_child_s pp_test_child_t;

/* Starts this test program again as `<self> <arg>` with its standard output
 * on a pipe, and reads the first line it writes (without the newline) into
 * `line`.  `argv0` is used where the system cannot tell the running
 * executable.  Returns NULL if it cannot start or writes no line. */
pp_test_child_t *pp_test_child_start(const char *argv0, const char *arg,
                                     char *line, size_t cap);

/* Kills the child at once, with no chance to clean up (SIGKILL,
 * TerminateProcess), waits for it and frees the handle. */
void pp_test_child_kill(pp_test_child_t *child);

/* ---- processes, descriptors and files (helpers_proc.c) ---- */

/* Stores the descriptor numbers open in process `pid` (0 = this process,
 * without the directory stream used to list them) in ascending order in
 * fds[0..cap) and returns how many there are, or -1 where they cannot be
 * listed (only Linux shows them, in /proc/<pid>/fd). */
int pp_test_fd_list(int64_t pid, int *fds, size_t cap);

/* Writes what descriptor `fd` of process `pid` (0 = this process) refers
 * to, e.g. "/dev/null" or "socket:[1234]", into buf.  Returns 0 or -1. */
int pp_test_fd_target(int64_t pid, int fd, char *buf, size_t cap);

/* Stores the values of the handles this process holds (Windows) in
 * ascending order in vals[0..cap) and returns how many there are, or -1
 * where they cannot be listed.  NtQuerySystemInformation lists them, since
 * Wine's GetProcessHandleCount always says 0. */
int pp_test_handle_list(uint64_t *vals, size_t cap);

/* Returns the parent process id of `pid`, or -1 if the process does not
 * exist or the system cannot tell (only Linux can). */
int64_t pp_test_pid_parent(int64_t pid);

/* Linux: the fields of /proc/<pid>/stat after the command name, starting
 * with the state letter, read into buf[cap]; NULL elsewhere or if the
 * process is gone. */
const char *pp_test_proc_stat(int64_t pid, char *buf, size_t cap);

/* The CPU time (user + system) process `pid` has used so far, in seconds
 * (Linux: /proc/<pid>/stat, in clock ticks), or -1 where it cannot be
 * told. */
double pp_test_cpu_seconds(int64_t pid);

/* Returns how many bytes process `pid` has read so far (Linux: rchar of
 * /proc/<pid>/io, Windows: GetProcessIoCounters), or -1 if unknown. */
int64_t pp_test_read_bytes(int64_t pid);

/* This process's resident memory in bytes (Linux: VmRSS; Windows: the
 * working set), or -1 where it cannot be told. */
int64_t pp_test_rss_bytes(void);

/* Ends a process at once with no chance to clean up (SIGKILL, or
 * TerminateProcess with exit code 9).  Returns 0 or -1. */
int pp_test_kill(int64_t pid);

/* Writes the current directory (UTF-8) into buf; returns 0 or -1. */
int pp_test_getcwd(char *buf, size_t cap);

/* Copies the running test program into directory `dir` (UTF-8; created if
 * it is missing) under the file name `name` (".exe" is appended on
 * Windows), writes the copy's path (UTF-8) into `path` and returns 0, or
 * prints why on stderr and returns -1.  Windows: CreateDirectoryW,
 * CopyFileW, so any Unicode name works. */
int pp_test_copy_self(const char *dir, const char *name, char *path,
                      size_t cap);

/* Creates directory `dir` (UTF-8) unless it exists; returns 0 or -1. */
int pp_test_make_dir(const char *dir);

/* Copies file `src` to `dst` (UTF-8 paths; dst is replaced), executable on
 * POSIX.  Returns 0, or prints why on stderr and returns -1. */
int pp_test_copy_file(const char *src, const char *dst);

/* Renames `from` to `to`, replacing `to`; works on a running executable on
 * Windows too.  Returns 0 or -1. */
int pp_test_rename(const char *from, const char *to);

/* Runs `<exe> <arg>` to its end, its standard output captured into `out`
 * (NUL-terminated, cut to cap - 1 bytes), and returns its exit code, or -1
 * if it could not be started or was ended by a signal.  The paths are
 * UTF-8; Windows uses CreateProcessW. */
int pp_test_run(const char *exe, const char *arg, char *out, size_t cap);

/* Like pp_test_run(), but kills the program and returns -2 if it has not
 * ended after timeout_ms times pp_test_time_scale() (negative: no limit)
 * without output on its stdout (the limit starts again whenever it
 * writes). */
int pp_test_run_limit(const char *exe, const char *arg, int64_t timeout_ms,
                      char *out, size_t cap);

/* Removes a file or an empty directory (UTF-8 path); returns 0 or -1. */
int pp_test_remove_file(const char *path);
int pp_test_remove_dir(const char *path);

/* ---- a tally of call starts (tally.c) ---- */

/* n counters in a file the test and its workers share
 * (pp_test_counters_map): the task "tally" ("siii" path, n, index,
 * busy_us -> "i" index) adds 1 to counter `index` when it starts, then
 * stays busy (not asleep) for busy_us microseconds.  So a test can count
 * how often each call really started, whatever the pool reports. */
typedef struct pp_test_tally_s pp_test_tally_t;

/* Creates a tally of n zeroed counters in the current directory (a file
 * named after `name` and this process).  NULL if that fails. */
pp_test_tally_t *pp_test_tally_new(const char *name, size_t n);
/* How often call `i` has started so far. */
uint32_t pp_test_tally_get(const pp_test_tally_t *t, size_t i);
/* The argument of the tally task for call `i` (exits if memory is short);
 * free its data with pp_free(). */
pp_buf_t pp_test_tally_arg(const pp_test_tally_t *t, size_t i,
                           int64_t busy_us);
/* Unmaps the tally, and removes its file if `remove`. */
void pp_test_tally_free(pp_test_tally_t *t, int remove);

/* ---- the chaos test (helpers_chaos.c) ---- */

/* Stores the ids of this process's child processes (ended ones that were
 * not reaped yet included) in pids[0..cap) and returns how many there are,
 * or -1 where they cannot be listed (Linux reads the parent of every
 * process in /proc; Windows takes a Toolhelp snapshot). */
int pp_test_children(int64_t *pids, size_t cap);

/* What pp_test_signal_child() does to a process. */
typedef enum {
  PP_TEST_KILL, /* SIGKILL; TerminateProcess with exit code 9 */
  PP_TEST_STOP, /* SIGSTOP */
  PP_TEST_CONT  /* SIGCONT */
} pp_test_signal_t;

/* Kills, stops or continues process `pid`, but only if it is a child of
 * this process: the check and the signal go through one handle to the
 * process (a pidfd on Linux, a process handle on Windows), so a pid that
 * another program got in the meantime is never hit.  Returns 0, -1 if the
 * process is gone or not a child, -2 where the action does not exist
 * (stop and continue on Windows). */
int pp_test_signal_child(int64_t pid, pp_test_signal_t what);

/* Maps `n` 32-bit counters kept in the file at `path` (UTF-8), shared with
 * every process that maps the same file.  With `create` the file is made
 * (or emptied) and its counters are 0; without, it must exist with at
 * least that size.  Returns the counters, or NULL. */
uint32_t *pp_test_counters_map(const char *path, size_t n, int create);
void pp_test_counters_unmap(uint32_t *counters, size_t n);

/* Adds 1 to a shared counter atomically and returns the new value; reads
 * one atomically. */
uint32_t pp_test_counter_inc(uint32_t *counter);
uint32_t pp_test_counter_get(const uint32_t *counter);

/* A storm against a pool's workers (a thread of this process): see
 * helpers_chaos.c for what it does; `bursts` 0 leaves out its bursts of
 * kills against starting workers.  pp_test_storm_start() returns NULL if
 * the thread cannot start; pp_test_storm_stop() ends it, continues every
 * worker it stopped, fills *stats (may be NULL) and frees it. */
typedef struct pp_test_storm_s pp_test_storm_t;
typedef struct pp_test_storm_stats_s {
  size_t kills;       /* workers killed at random */
  size_t stops;       /* workers stopped (and continued) */
  size_t bursts;      /* times it killed every worker as it appeared */
  size_t burst_kills; /* kills in those */
  int can_stop;       /* 0 where processes cannot be stopped (Windows) */
} pp_test_storm_stats_t;
pp_test_storm_t *pp_test_storm_start(pp_pool_t *pool, uint64_t seed,
                                     int bursts);
void pp_test_storm_stop(pp_test_storm_t *storm, pp_test_storm_stats_t *stats);

/* ---- log capture ---- */

/* One captured record; `line` is owned by the capture. */
typedef struct pp_test_record_s {
  int worker;
  uint64_t call_id;
  pp_log_source_t source;
  int level;
  char *line;
  size_t len;
  int more;
} pp_test_record_t;

typedef struct pp_test_log_s pp_test_log_t;

/* Creates an empty capture (initializes APR for its mutex). */
pp_test_log_t *pp_test_log_new(void);
void pp_test_log_free(pp_test_log_t *log);

/* The pp_log_cb to put in pp_pool_options_t.log_cb, with the capture as
 * log_data.  Lines with a newline inside are recorded as they come, so a
 * test can see that none ever arrives. */
void pp_test_log_cb(void *data, const pp_log_record_t *record);

/* Returns how many records have arrived. */
size_t pp_test_log_count(pp_test_log_t *log);

/* Copies record `i` into *out (its line stays owned by the capture, which
 * never frees a record before pp_test_log_free).  Returns 0 if i is out of
 * range, else 1. */
int pp_test_log_get(pp_test_log_t *log, size_t i, pp_test_record_t *out);

/* Waits up to timeout_ms times pp_test_time_scale() for a record whose
 * line is exactly `line` and copies it into *out (may be NULL).  Returns 1
 * if found, else 0. */
int pp_test_log_wait(pp_test_log_t *log, const char *line, int64_t timeout_ms,
                     pp_test_record_t *out);

/* Returns how many records have exactly this line. */
size_t pp_test_log_count_line(pp_test_log_t *log, const char *line);

/* ---- pools and calls (helpers_pool.c; these fail the running CMocka
 * test when something does not work) ---- */

/* Fills *o with default options but for `workers`, `flags`, the cancel
 * grace period `grace_ms` (0 = the default) and, where `log` is not NULL,
 * the log capture `log` as log callback. */
void pp_test_pool_options(pp_pool_options_t *o, int workers, unsigned flags,
                          int64_t grace_ms, pp_test_log_t *log);

/* Creates a pool with the options pp_test_pool_options() gives. */
pp_pool_t *pp_test_make_pool(int workers, unsigned flags, int64_t grace_ms,
                             pp_test_log_t *log);

/* A CMocka setup and teardown for the tests that share the shape of a small
 * pool: two workers, as on a 2-core CI machine, so calls really do run in
 * parallel and out of order.  The pool is *state; teardown destroys it with
 * PP_DESTROY_CANCEL. */
int pp_test_setup_pool(void **state);
int pp_test_teardown_pool(void **state);
#define PP_TEST_POOL_TEST(f)                                                   \
  cmocka_unit_test_setup_teardown(f, pp_test_setup_pool, pp_test_teardown_pool)

/* Runs the task "big" on `arg` (a pp_test_fill() pattern, borrowed, not
 * copied), waits up to timeout_ms (-1 = as long as it takes) and returns
 * its result. */
pp_result_t pp_test_big_call(pp_pool_t *pool, const void *arg, size_t len,
                             int64_t timeout_ms);

/* Sends an argument of `len` bytes through "big" in a one-worker pool and
 * checks the result of the same size that comes back.  Skips the test in a
 * 32-bit build or with less than `needed` bytes of memory free; `what`
 * names the size in messages ("3 GiB"). */
void pp_test_big_roundtrip(uint64_t len, uint64_t needed, const char *what);

/* Fails the test with the status name and pp_last_error() unless `expr`
 * returns 0, so a failure says why (an OS reason, a worker's message). */
#define PP_TEST_OK(expr)                                                       \
  do {                                                                         \
    int pp_test_rc_ = (expr);                                                  \
    if (pp_test_rc_ != 0)                                                      \
      fail_msg("%s returned %s: %s", #expr, pp_err_name(pp_test_rc_),          \
               pp_last_error());                                               \
  } while (0)

#endif /* PP_TEST_HELPERS_H */
