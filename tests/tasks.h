/*
 * tasks.h - the one task table shared by every test binary.
 *
 * Every test program is also a worker host: its main() starts with the
 * worker guard and passes pp_test_tasks, so the pools a test creates re-run
 * the test binary itself as their workers and find these tasks by name.
 *
 * Argument and result shapes (tuples are made with pp_pack()):
 *   square    "i" x                  -> "i" x*x
 *   add       "ii" a b               -> "i" a+b
 *   echo      any bytes              -> the same bytes
 *   middle    any bytes              -> bytes [len/4, len/4 + len/2)
 *   bump      any bytes              -> a new result of the same length,
 *                                        every byte plus 1
 *   fail      any bytes (text)       -> PP_ETASK "fail: <text>"
 *   act       "si" action value      -> runs one action, for mixed maps:
 *             "square" -> "i" value*value, "fail" -> PP_ETASK "act failed
 *             for <value>", "segv", "abort", "exit" (exit(value)),
 *             "sleep" (as sleep_ms), "close_stdio" (closes descriptors 1
 *             and 2 for good; POSIX) -> "i" value
 *   segv      none                   -> writes through NULL (SIGSEGV)
 *   last_words "s" tag               -> prints "last words <tag>" to stdout
 *             without a flush, takes stdout's lock and crashes as segv
 *             does
 *   do_abort  none                   -> abort()
 *   do_exit   "i" code               -> exit(code)
 *   sleep_ms  "i" ms                 -> "i" ms, or PP_ETASK "cancelled" as
 *                                        soon as pp_call_cancelled() is set
 *   hang      none                   -> logs "hang: started" (level 1),
 *                                        then sleeps forever, ignoring
 *                                        cancels
 *   print     "s" tag                -> "ii" call id, worker index; writes
 *             "out <tag>" to stdout, "err <tag>" to stderr, pp_log(5)
 *             "log <tag>", and one pp_log(6) of two lines "multi <tag> a",
 *             "multi <tag> b"
 *   spam      "si" tag count         -> "i" count; prints count lines
 *             "<tag> <n> <padding>" to stdout (see pp_test_spam_line)
 *   threads   none                   -> "i" sum of 1..PP_TEST_THREADS_N,
 *                                        computed by 4 APR threads
 *   nested    none                   -> "iiii" sum of squares 1..10
 *             computed by a nested 2-worker pool, the status of a pool
 *             creation without PP_POOL_NESTED (PP_ENESTED in a worker), and
 *             the pids of the nested pool's two workers (gone by the time
 *             the call returns)
 *   big       pattern buffer (seed PP_TEST_SEED_IN)
 *                                    -> same size, pattern PP_TEST_SEED_OUT;
 *                                        PP_ETASK if the argument is wrong
 *   init_set  "i" value              -> stores value in a worker global
 *   init_get  none                   -> "i" that global (-1 if never set)
 *   pid       none                   -> "i" the process id that ran it
 *   proc_token none                  -> "i" a value that tells this process
 *             from every other (Windows reuses pids at once: there it is
 *             built from the creation time; elsewhere the pid)
 *   length    any bytes              -> "i" the argument's length
 *   nest_hang "i" n                  -> never returns: creates a nested pool
 *             of n workers (n <= 8) that all run hang, then pp_log(1)s
 *             "nest_hang: pids <pid>..." with the nested workers' pids and
 *             sleeps forever, for the orphan test
 *   garble    none                   -> publishes a broken record in its
 *             result ring and hangs: the parent must end that worker
 *   stream    "s" tag                -> prints "stream <tag>" on stdout
 *             without a flush, then waits (30 s at most) to be cancelled:
 *             PP_ETASK "stream: cancelled"
 *   fastfail  none                   -> ends the worker with 0xC0000409, as
 *             a fast fail does (Windows; elsewhere PP_ETASK)
 *   holds_handle "is" value, path    -> "i" 1 if this worker has a handle of
 *             that value naming that file, else 0 (Windows; elsewhere
 *             PP_ETASK)
 *
 * and, in tasks_hostile.c, careless or hostile user code:
 *   ret       "i" v                  -> returns v itself (no pp_call_fail)
 *   bad_reply "i" mode               -> a reply that fails, then returns 0:
 *             0 pp_call_replyf with format "q", 1 pp_call_reply(NULL, 5),
 *             2 pp_call_replyf "b" of SIZE_MAX bytes; 3 a failed replyf
 *             followed by a good one ("i" 42)
 *   fork_hold "iis" how ms action    -> starts a child that sleeps ms holding
 *             everything the worker has open (how 0: fork(); 1: a raw clone
 *             that runs no fork handlers), pp_log(1)s "fork_hold: holder
 *             <pid>", then "segv" crashes, "hang" hangs, "exit" exits 3,
 *             anything else replies "i" pid (POSIX only)
 *   fork_fd   none                   -> "i" 0 if a forked child of the
 *             worker finds descriptor 3 (the channel) closed, 1 if open
 *   spoof     "s" tag                -> "i" call id; writes a marker-like
 *             sequence with a made-up id and key, then "after <tag>", then
 *             "x", NUL, "y <tag>" to stdout
 *   longline  "i" n                  -> "i" n; writes one line of n letters
 *             a..z repeating, then "longline end"
 *   late_peek any bytes              -> "i" the first byte once it has
 *             changed: logs "late_peek: started" (level 1), then looks at
 *             the first byte every millisecond, for 10 s at most (times
 *             pp_test_time_scale()), until it differs from what it was
 *   noeol     "i" n                  -> "i" n; writes n letters a..z
 *             repeating to stdout, with no newline and no flush
 *   zero_shared none                 -> "i" 1, after 200 ms, having zeroed
 *             the control block and the result ring its worker shares
 *             with the parent
 *   limit_as  "i" extra              -> "i" the limit; limits the worker's
 *             address space to what it uses now plus `extra` bytes (Linux;
 *             elsewhere PP_ETASK), as an initializer
 *   unflag_later none                -> "i" 1 at once; 300 ms later a thread
 *             it left clears its worker's "asleep" flag, so the parent does
 *             not wake that worker for its next call
 *   late_echo any bytes              -> the same bytes, replied 500 ms
 *             after the call started (a view of a large argument)
 *   wake_rights none                 -> "ii" what a wait on, and a signal
 *             of, the pool-wide wake object its worker was given did: 0 if
 *             it worked, else GetLastError() (Windows; elsewhere PP_ETASK)
 *
 * and, in tally.c:
 *   tally     "siii" path n index busy_us -> "i" index; counts its start
 *             in the tally file (helpers.h), then stays busy busy_us
 *   tally_blob "siii" path n index size -> `size` bytes of the pattern of
 *             PP_TEST_SEED_OUT (a blob, for a large size), after counting
 *             its start like tally; a negative size ends the worker's
 *             process at once instead, with exit code -size
 *
 * and, in tasks_chaos.c, the chaos test's task:
 *   chaos     "siii" path n key us   -> "i" key*7+1; first adds 1 to
 *             counter `key` of the n counters in file `path`
 *             (pp_test_counters_map), then sleeps `us` microseconds
 */
#ifndef PP_TEST_TASKS_H
#define PP_TEST_TASKS_H

#include <stddef.h>
#include <stdint.h>

#include "procpool.h"

extern const pp_task_t pp_test_tasks[];

/* tasks_hostile.c */
int pp_test_task_ret(pp_call_t *call, const void *arg, size_t len);
int pp_test_task_bad_reply(pp_call_t *call, const void *arg, size_t len);
int pp_test_task_fork_hold(pp_call_t *call, const void *arg, size_t len);
int pp_test_task_fork_fd(pp_call_t *call, const void *arg, size_t len);
int pp_test_task_spoof(pp_call_t *call, const void *arg, size_t len);
int pp_test_task_longline(pp_call_t *call, const void *arg, size_t len);
int pp_test_task_late_peek(pp_call_t *call, const void *arg, size_t len);
int pp_test_task_noeol(pp_call_t *call, const void *arg, size_t len);
int pp_test_task_zero_shared(pp_call_t *call, const void *arg, size_t len);
int pp_test_task_unflag_later(pp_call_t *call, const void *arg, size_t len);
int pp_test_task_limit_as(pp_call_t *call, const void *arg, size_t len);
/* tally.c: "siii" path, n, index, busy_us (helpers.h, pp_test_tally_*) */
int pp_test_task_tally(pp_call_t *call, const void *arg, size_t len);
int pp_test_task_tally_blob(pp_call_t *call, const void *arg, size_t len);
int pp_test_task_late_echo(pp_call_t *call, const void *arg, size_t len);
int pp_test_task_wake_rights(pp_call_t *call, const void *arg, size_t len);

/* tasks_chaos.c */
int pp_test_task_chaos(pp_call_t *call, const void *arg, size_t len);

/* Dies of a real SIGSEGV (an access violation on Windows), also in
 * sanitizer builds. */
void pp_test_crash_segv(void);

/* Seeds of the big task's argument and result patterns. */
#define PP_TEST_SEED_IN 0x5eed1234u
#define PP_TEST_SEED_OUT 0x0dd5678u

/* The threads task sums 1..PP_TEST_THREADS_N over 4 threads. */
#define PP_TEST_THREADS_N 1000000
#define PP_TEST_THREADS_SUM                                                    \
  ((int64_t)PP_TEST_THREADS_N * (PP_TEST_THREADS_N + 1) / 2)

/* Fills `len` bytes with a pattern derived from `seed`. */
void pp_test_fill(void *buf, size_t len, uint64_t seed);
/* Returns the offset of the first byte that differs from the pattern of
 * `seed`, or `len` if all match. */
size_t pp_test_check(const void *buf, size_t len, uint64_t seed);

/* Formats line `n` of the spam task for `tag` into buf (NUL-terminated) and
 * returns its length; tests compare captured lines against it. */
size_t pp_test_spam_line(char *buf, size_t cap, const char *tag, int64_t n);

#endif /* PP_TEST_TASKS_H */
