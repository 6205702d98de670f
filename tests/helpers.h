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

/* Returns the number of open descriptors of this process, or -1 where the
 * system gives no cheap way to count them (the test is then skipped). */
int pp_test_fd_count(void);

/* Returns 1 if a process with this id exists and has not ended (a zombie
 * that nobody reaped counts as ended), else 0. */
int pp_test_pid_alive(int64_t pid);

/* Waits until none of the processes is alive, at most timeout_ms.  Returns
 * 1 if they are all gone, 0 if one is still alive at the deadline. */
int pp_test_wait_gone(const int64_t *pids, size_t n, int64_t timeout_ms);

/* Returns this process' id. */
int64_t pp_test_self_pid(void);

/* Returns the number of CPUs this process may run on. */
int pp_test_cpu_count(void);

/* Returns MemAvailable from /proc/meminfo in bytes, or 0 if unknown. */
uint64_t pp_test_mem_available(void);

/* Sleeps for ms milliseconds. */
void pp_test_sleep_ms(int64_t ms);

/* Sets or (value NULL) removes an environment variable. */
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

/* ---- log capture ---- */

/* One captured record; `line` is owned by the capture. */
typedef struct pp_test_record_s {
  int worker;
  uint64_t call_id;
  pp_log_source_t source;
  int level;
  char *line;
  size_t len;
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

/* Waits up to timeout_ms for a record whose line is exactly `line` and
 * copies it into *out (may be NULL).  Returns 1 if found, else 0. */
int pp_test_log_wait(pp_test_log_t *log, const char *line, int64_t timeout_ms,
                     pp_test_record_t *out);

/* Returns how many records have exactly this line. */
size_t pp_test_log_count_line(pp_test_log_t *log, const char *line);

#endif /* PP_TEST_HELPERS_H */
