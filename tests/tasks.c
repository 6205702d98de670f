/*
 * tasks.c - the task table shared by every test binary (see tasks.h).
 *
 * The tasks run in worker processes that are the test binary started again,
 * so they must not rely on anything the test's main() set up after the
 * worker guard.
 */
#if !defined(_WIN32) && !defined(_POSIX_C_SOURCE)
#define _POSIX_C_SOURCE 200809L
#endif

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#ifdef _WIN32
#include <windows.h>
#else
#include <sys/resource.h>
#include <unistd.h>
#endif

#include <apr_atomic.h>
#include <apr_pools.h>
#include <apr_thread_proc.h>
#include <apr_time.h>

#include "../platform/platform.h" /* PP__NORETURN */
#include "helpers.h"
#include "tasks.h"

/* ---- sanitizer builds ---- */

#ifdef PP_TEST_ASAN
/* AddressSanitizer turns a SIGSEGV into a report and exit code 1; the crash
 * tests need the worker to die of the real signal, as it does in a normal
 * build, so the signal is left to the default action.  Every test binary
 * and so every worker gets this (workers are the same executable). */
__attribute__((used, visibility("default"))) const char *
__asan_default_options(void);
__attribute__((used, visibility("default"))) const char *
__asan_default_options(void) {
  return "handle_segv=0:handle_sigbus=0:handle_abort=0";
}
#endif

#ifdef PP_TEST_TSAN
/* ThreadSanitizer, too, turns a SIGSEGV into a report and an exit of its
 * own; the crash tests need the real signal. */
__attribute__((used, visibility("default"))) const char *
__tsan_default_options(void);
__attribute__((used, visibility("default"))) const char *
__tsan_default_options(void) {
  return "handle_segv=0:handle_sigbus=0:handle_abort=0";
}
#endif

/* The write through NULL must reach the hardware: UBSan would otherwise
 * abort on the null store first, and the test wants SIGSEGV. */
#if defined(__clang__) || (defined(__GNUC__) && __GNUC__ >= 8)
#define PP_TEST_NO_SANITIZE __attribute__((no_sanitize("address", "undefined")))
#else
#define PP_TEST_NO_SANITIZE
#endif

/* ---- patterns ---- */

static uint64_t pattern_word(uint64_t w, uint64_t seed) {
  return (w * 0x9E3779B97F4A7C15ull) ^ (seed * 0xD1B54A32D192ED03ull);
}

static unsigned char pattern_byte(size_t i, uint64_t seed) {
  return (unsigned char)((i * 131u) ^ seed);
}

void pp_test_fill(void *buf, size_t len, uint64_t seed) {
  unsigned char *p = buf;
  size_t words = len / 8, i;
  for (i = 0; i < words; i++) {
    uint64_t v = pattern_word(i, seed);
    memcpy(p + 8 * i, &v, 8);
  }
  for (i = words * 8; i < len; i++)
    p[i] = pattern_byte(i, seed);
}

size_t pp_test_check(const void *buf, size_t len, uint64_t seed) {
  const unsigned char *p = buf;
  size_t words = len / 8, i;
  for (i = 0; i < words; i++) {
    uint64_t v;
    memcpy(&v, p + 8 * i, 8);
    if (v != pattern_word(i, seed)) {
      /* Report the exact byte, which makes a failure easier to read. */
      uint64_t want = pattern_word(i, seed);
      size_t b = 0;
      while (memcmp(p + 8 * i + b, (unsigned char *)&want + b, 1) == 0)
        b++;
      return 8 * i + b;
    }
  }
  for (i = words * 8; i < len; i++)
    if (p[i] != pattern_byte(i, seed))
      return i;
  return len;
}

size_t pp_test_spam_line(char *buf, size_t cap, const char *tag, int64_t n) {
  static const char pad[] =
      "xxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx"
      "xxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx";
  int len = snprintf(buf, cap, "%s %lld %.*s", tag, (long long)n,
                     (int)(n % 100), pad);
  return len < 0 ? 0 : (size_t)len;
}

/* ---- helpers ---- */

static int64_t self_pid(void) {
#ifdef _WIN32
  return (int64_t)GetCurrentProcessId();
#else
  return (int64_t)getpid();
#endif
}

/* Crash tests kill workers on purpose; a core file for each would only cost
 * time and disk. */
static void no_core_dump(void) {
#ifndef _WIN32
  struct rlimit rl = {0, 0};
  setrlimit(RLIMIT_CORE, &rl);
#endif
}

PP_TEST_NO_SANITIZE void pp_test_crash_segv(void) {
  /* A volatile pointer, so the compiler cannot see that it is NULL and
   * replace the store with a trap instruction (SIGILL), to a volatile int,
   * so it cannot drop the store as dead either. */
  volatile int *volatile p = NULL;
  no_core_dump();
  *p = 42;
}

static void crash_abort(void) {
  no_core_dump();
  abort();
}

/* Sleeps `ms` milliseconds in 10 ms steps, returning 1 early if the parent
 * cancels the call. */
static int sleep_cancellable(int64_t ms) {
  apr_time_t end = apr_time_now() + apr_time_from_msec(ms);
  while (apr_time_now() < end) {
    if (pp_call_cancelled())
      return 1;
    apr_sleep(apr_time_from_msec(10));
  }
  return pp_call_cancelled();
}

/* ---- tasks ---- */

static int square(pp_call_t *call, const void *arg, size_t len) {
  int64_t x;
  int rc = pp_unpack(arg, len, "i", &x);
  if (rc != 0)
    return pp_call_fail(call, "square wants one int64");
  return pp_call_replyf(call, "i", x * x);
}

static int add(pp_call_t *call, const void *arg, size_t len) {
  int64_t a, b;
  if (pp_unpack(arg, len, "ii", &a, &b) != 0)
    return pp_call_fail(call, "add wants two int64");
  return pp_call_replyf(call, "i", a + b);
}

static int echo(pp_call_t *call, const void *arg, size_t len) {
  return pp_call_reply(call, arg, len);
}

/* The middle half of the argument, unchanged (a slice a task hands back). */
static int middle(pp_call_t *call, const void *arg, size_t len) {
  return pp_call_reply(call, (const unsigned char *)arg + len / 4, len / 2);
}

/* A new result, every byte one more than the argument's (a task that
 * transforms its data, and whose output may be the next call's input). */
static int bump(pp_call_t *call, const void *arg, size_t len) {
  const unsigned char *in = arg;
  unsigned char *out = pp_call_reply_alloc(call, len);
  size_t i;
  if (out == NULL)
    return PP_ENOMEM;
  for (i = 0; i < len; i++)
    out[i] = (unsigned char)(in[i] + 1);
  return 0;
}

static int fail(pp_call_t *call, const void *arg, size_t len) {
  return pp_call_fail(call, "fail: %.*s", (int)len, (const char *)arg);
}

static int segv(pp_call_t *call, const void *arg, size_t len) {
  (void)call, (void)arg, (void)len;
  pp_test_crash_segv();
  return 0;
}

static int last_words(pp_call_t *call, const void *arg, size_t len) {
  const char *tag;
  if (pp_unpack(arg, len, "s", &tag) != 0)
    return pp_call_fail(call, "last_words wants one string");
  /* No flush: the line is in the stream's buffer when the crash comes,
   * with the stream's lock held, as a crash inside stdio leaves it, so
   * that no other thread can flush it meanwhile. */
  printf("last words %s\n", tag);
#ifdef _WIN32
  _lock_file(stdout);
#else
  flockfile(stdout);
#endif
  pp_test_crash_segv();
  return 0;
}

static int do_abort(pp_call_t *call, const void *arg, size_t len) {
  (void)call, (void)arg, (void)len;
  crash_abort();
  return 0;
}

static int do_exit(pp_call_t *call, const void *arg, size_t len) {
  int64_t code;
  if (pp_unpack(arg, len, "i", &code) != 0)
    return pp_call_fail(call, "do_exit wants one int64");
  exit((int)code);
}

static int sleep_ms(pp_call_t *call, const void *arg, size_t len) {
  int64_t ms;
  if (pp_unpack(arg, len, "i", &ms) != 0)
    return pp_call_fail(call, "sleep_ms wants one int64");
  if (sleep_cancellable(ms))
    return pp_call_fail(call, "cancelled");
  return pp_call_replyf(call, "i", ms);
}

/* Never returns: no return statement (MSVC calls one after the loop
 * unreachable, C4702; gcc wants one unless the function says so). */
static PP__NORETURN int hang(pp_call_t *call, const void *arg, size_t len) {
  (void)call, (void)arg, (void)len;
  /* Tells a test that waits for it that the call is running now. */
  pp_log(1, "hang: started");
  for (;;)
    apr_sleep(apr_time_from_sec(1));
}

static int act(pp_call_t *call, const void *arg, size_t len) {
  const char *what;
  int64_t v;
  if (pp_unpack(arg, len, "si", &what, &v) != 0)
    return pp_call_fail(call, "act wants (string, int64)");
  if (strcmp(what, "square") == 0)
    return pp_call_replyf(call, "i", v * v);
  if (strcmp(what, "fail") == 0)
    return pp_call_fail(call, "act failed for %lld", (long long)v);
  if (strcmp(what, "segv") == 0)
    pp_test_crash_segv();
  if (strcmp(what, "abort") == 0)
    crash_abort();
  if (strcmp(what, "exit") == 0)
    exit((int)v);
  if (strcmp(what, "sleep") == 0) {
    if (sleep_cancellable(v))
      return pp_call_fail(call, "cancelled");
    return pp_call_replyf(call, "i", v);
  }
  if (strcmp(what, "close_stdio") == 0) {
    /* The write ends of the worker's output pipes, closed for good. */
#ifdef _WIN32
    return pp_call_fail(call, "close_stdio: POSIX only");
#else
    fflush(stdout);
    fflush(stderr);
    close(1);
    close(2);
    return pp_call_replyf(call, "i", v);
#endif
  }
  return pp_call_fail(call, "act: unknown action '%s'", what);
}

static int print(pp_call_t *call, const void *arg, size_t len) {
  const char *tag;
  if (pp_unpack(arg, len, "s", &tag) != 0)
    return pp_call_fail(call, "print wants one string");
  printf("out %s\n", tag);
  fflush(stdout);
  fprintf(stderr, "err %s\n", tag);
  fflush(stderr);
  pp_log(5, "log %s", tag);
  pp_log(6, "multi %s a\nmulti %s b", tag, tag);
  return pp_call_replyf(call, "ii", (int64_t)pp_call_id(call),
                        (int64_t)pp_worker_index());
}

static int spam(pp_call_t *call, const void *arg, size_t len) {
  const char *tag;
  int64_t count, i;
  char line[256];
  if (pp_unpack(arg, len, "si", &tag, &count) != 0)
    return pp_call_fail(call, "spam wants (string, int64)");
  for (i = 0; i < count; i++) {
    pp_test_spam_line(line, sizeof(line), tag, i);
    /* No flush per line: the stream's buffer fills and is written in
     * pieces that do not end at line boundaries, which is what the
     * parent's line assembly must cope with. */
    fputs(line, stdout);
    fputc('\n', stdout);
  }
  fflush(stdout);
  return pp_call_replyf(call, "i", count);
}

typedef struct {
  int64_t lo, hi, sum;
} range_t;

static void *APR_THREAD_FUNC sum_range(apr_thread_t *thread, void *data) {
  range_t *r = data;
  int64_t i;
  r->sum = 0;
  for (i = r->lo; i <= r->hi; i++)
    r->sum += i;
  (void)thread;
  return NULL;
}

static int threads(pp_call_t *call, const void *arg, size_t len) {
  apr_pool_t *mem = NULL;
  apr_thread_t *t[4];
  range_t r[4];
  int64_t total = 0;
  int i, started = 0;
  (void)arg, (void)len;
  if (apr_pool_create(&mem, NULL) != APR_SUCCESS)
    return pp_call_fail(call, "apr_pool_create failed");
  for (i = 0; i < 4; i++) {
    r[i].lo = (int64_t)i * (PP_TEST_THREADS_N / 4) + 1;
    r[i].hi = (int64_t)(i + 1) * (PP_TEST_THREADS_N / 4);
    if (apr_thread_create(&t[i], NULL, sum_range, &r[i], mem) != APR_SUCCESS)
      break;
    started++;
  }
  for (i = 0; i < started; i++) {
    apr_status_t rv;
    apr_thread_join(&rv, t[i]);
    total += r[i].sum;
  }
  apr_pool_destroy(mem);
  if (started != 4)
    return pp_call_fail(call, "only %d of 4 threads started", started);
  return pp_call_replyf(call, "i", total);
}

static int nested(pp_call_t *call, const void *arg, size_t len) {
  pp_pool_options_t o;
  pp_pool_t *pool = NULL;
  pp_buf_t args[10];
  pp_result_t res[10];
  int64_t sum = 0, v, gpids[2];
  int plain, rc, i;
  (void)arg, (void)len;

  /* Without the flag a worker must not be able to create a pool. */
  memset(&o, 0, sizeof(o));
  o.workers = 2;
  plain = pp_pool_create(&pool, &o);
  if (plain == 0)
    pp_pool_destroy(pool, PP_DESTROY_WAIT);

  o.flags = PP_POOL_NESTED;
  rc = pp_pool_create(&pool, &o);
  if (rc != 0)
    return pp_call_fail(call, "nested pool: %s", pp_last_error());
  memset(args, 0, sizeof(args));
  for (i = 0; i < 10; i++)
    pp_pack(&args[i], "i", (int64_t)(i + 1));
  if (pp_pool_worker_pids(pool, gpids, 2) != 2)
    gpids[0] = gpids[1] = 0;
  rc = pp_pool_map(pool, "square", args, 10, res, NULL);
  for (i = 0; i < 10 && rc == 0; i++) {
    if (pp_unpack(res[i].data, res[i].len, "i", &v) != 0)
      rc = PP_EBADARGS;
    else
      sum += v;
  }
  pp_results_free(res, 10);
  for (i = 0; i < 10; i++)
    pp_free((void *)args[i].data);
  pp_pool_destroy(pool, PP_DESTROY_WAIT);
  if (rc != 0)
    return pp_call_fail(call, "nested map failed: %s", pp_strerror(rc));
  return pp_call_replyf(call, "iiii", sum, (int64_t)plain, gpids[0], gpids[1]);
}

static int big(pp_call_t *call, const void *arg, size_t len) {
  size_t bad = pp_test_check(arg, len, PP_TEST_SEED_IN);
  void *out;
  if (bad != len)
    return pp_call_fail(call, "big: argument differs at byte %zu of %zu", bad,
                        len);
  out = pp_call_reply_alloc(call, len);
  if (out == NULL)
    return PP_ENOMEM;
  pp_test_fill(out, len, PP_TEST_SEED_OUT);
  return 0;
}

static int64_t init_value = -1;

static int init_set(pp_call_t *call, const void *arg, size_t len) {
  if (pp_unpack(arg, len, "i", &init_value) != 0)
    return pp_call_fail(call, "init_set wants one int64");
  return 0;
}

static int init_get(pp_call_t *call, const void *arg, size_t len) {
  (void)arg, (void)len;
  return pp_call_replyf(call, "i", init_value);
}

static int pid(pp_call_t *call, const void *arg, size_t len) {
  (void)arg, (void)len;
  return pp_call_replyf(call, "i", self_pid());
}

/* Identifies this process among every process the test starts, where a
 * pid alone does not: Windows (and Wine, quickly) hands the pid of an
 * ended process to the next one.  There the process's creation time in
 * microseconds times 256 plus the pid's low byte; elsewhere the pid. */
static int proc_token(pp_call_t *call, const void *arg, size_t len) {
  (void)arg, (void)len;
#ifdef _WIN32
  {
    FILETIME created, ended, kernel, user;
    uint64_t t;
    if (!GetProcessTimes(GetCurrentProcess(), &created, &ended, &kernel,
                         &user))
      return pp_call_fail(call, "GetProcessTimes failed");
    t = ((uint64_t)created.dwHighDateTime << 32 | created.dwLowDateTime) / 10;
    return pp_call_replyf(call, "i",
                          (int64_t)(t * 256 + (uint64_t)(self_pid() & 255)));
  }
#else
  return pp_call_replyf(call, "i", self_pid());
#endif
}

static int length(pp_call_t *call, const void *arg, size_t len) {
  (void)arg;
  return pp_call_replyf(call, "i", (int64_t)len);
}

/* Counts "hang: started" records of the nest_hang task's own pool.  The
 * callback runs on that pool's threads, the task reads the count. */
static volatile apr_uint32_t nest_hang_started;

static void nest_hang_log(void *data, const pp_log_record_t *record) {
  (void)data;
  if (record->source == PP_LOG_TASK &&
      strcmp(record->line, "hang: started") == 0)
    apr_atomic_inc32(&nest_hang_started);
}

static int nest_hang(pp_call_t *call, const void *arg, size_t len) {
  pp_pool_options_t o;
  pp_pool_t *pool = NULL;
  pp_future_t *f[8];
  int64_t n, pids[8], i;
  char line[256];
  size_t used;
  int got;
  apr_time_t end;
  if (pp_unpack(arg, len, "i", &n) != 0 || n < 1 || n > 8)
    return pp_call_fail(call, "nest_hang wants one int64 in 1..8");
  memset(&o, 0, sizeof(o));
  o.workers = (int)n;
  o.flags = PP_POOL_NESTED;
  o.log_cb = nest_hang_log;
  if (pp_pool_create(&pool, &o) != 0)
    return pp_call_fail(call, "nest_hang: %s", pp_last_error());
  for (i = 0; i < n; i++)
    if (pp_pool_submit(pool, "hang", NULL, 0, NULL, &f[i]) != 0)
      return pp_call_fail(call, "nest_hang: %s", pp_last_error());
  /* Every nested worker runs its hang before the pids are reported, so
   * whoever reads them knows that the whole tree is busy. */
  end = apr_time_now() + apr_time_from_sec(60);
  while (apr_atomic_read32(&nest_hang_started) < (apr_uint32_t)n) {
    if (apr_time_now() > end)
      return pp_call_fail(call, "nest_hang: the nested hangs did not start");
    apr_sleep(apr_time_from_msec(5));
  }
  got = pp_pool_worker_pids(pool, pids, 8);
  used = (size_t)snprintf(line, sizeof(line), "nest_hang: pids");
  for (i = 0; i < got && i < 8 && used < sizeof(line); i++)
    used += (size_t)snprintf(line + used, sizeof(line) - used, " %lld",
                             (long long)pids[i]);
  pp_log(1, "%s", line);
  for (;;)
    apr_sleep(apr_time_from_sec(1));
}

/* The library's own hook (internal, which the static library the tests link
 * shows): a broken record in the result ring, as a task that scribbles over
 * its worker's memory might leave. */
void pp__worker_corrupt_results(void);

/* Breaks the worker's result ring, then waits to be ended by its parent. */
static PP__NORETURN int garble(pp_call_t *call, const void *arg, size_t len) {
  (void)call;
  (void)arg;
  (void)len;
  pp__worker_corrupt_results();
  for (;;)
    apr_sleep(apr_time_from_sec(1));
}

/* Prints a line on stdout without flushing it and waits, up to 30 s, to be
 * cancelled: the line must reach the parent while the call still runs. */
static int stream(pp_call_t *call, const void *arg, size_t len) {
  const char *tag;
  int i;
  if (pp_unpack(arg, len, "s", &tag) != 0)
    return pp_call_fail(call, "stream wants one string");
  printf("stream %s\n", tag);
  for (i = 0; i < 3000 && !pp_call_cancelled(); i++)
    apr_sleep(apr_time_from_msec(10));
  return pp_call_fail(call, "stream: %s", i < 3000 ? "cancelled" : "not seen");
}

/* Ends the worker the way the Universal CRT's abort() and an invalid CRT
 * argument do: with status 0xC0000409 (Windows only). */
static int fastfail(pp_call_t *call, const void *arg, size_t len) {
  (void)arg;
  (void)len;
#ifdef _WIN32
  RaiseException(0xC0000409u, EXCEPTION_NONCONTINUABLE, 0, NULL);
#endif
  return pp_call_fail(call, "fastfail: Windows only");
}

/* Replies how this worker keeps crashes quiet (Windows only), "iiii": its
 * error mode (GetErrorMode), WerGetFlags' result (an HRESULT; Wine's is
 * E_NOTIMPL) and the flags it gave, and the C runtime's abort behaviour
 * (what _set_abort_behavior(0, 0), which changes nothing, returns; -1
 * where the runtime has none). */
static int quiet_flags(pp_call_t *call, const void *arg, size_t len) {
  (void)arg;
  (void)len;
#ifdef _WIN32
  {
    typedef HRESULT(WINAPI * get_flags_fn)(HANDLE, PDWORD);
    HMODULE kernel = GetModuleHandleW(L"kernel32.dll");
    get_flags_fn get_flags = NULL;
    HRESULT hr = E_NOTIMPL;
    DWORD flags = 0;
    int64_t abort_flags = -1;
    if (kernel != NULL)
      get_flags =
          (get_flags_fn)(void (*)(void))GetProcAddress(kernel, "WerGetFlags");
    if (get_flags != NULL)
      hr = get_flags(GetCurrentProcess(), &flags);
#if defined(_MSC_VER) || defined(_UCRT)
    abort_flags = (int64_t)_set_abort_behavior(0, 0);
#else
    {
      typedef unsigned int(__cdecl * abort_fn)(unsigned int, unsigned int);
      HMODULE crt = GetModuleHandleW(L"msvcrt.dll");
      abort_fn fn = NULL;
      if (crt != NULL)
        fn = (abort_fn)(void (*)(void))GetProcAddress(crt,
                                                      "_set_abort_behavior");
      if (fn != NULL)
        abort_flags = (int64_t)fn(0, 0);
    }
#endif
    return pp_call_replyf(call, "iiii", (int64_t)GetErrorMode(),
                          (int64_t)(uint32_t)hr, (int64_t)flags, abort_flags);
  }
#else
  return pp_call_fail(call, "quiet_flags: Windows only");
#endif
}

/* Says whether this worker has a handle with the given value that refers
 * to the file at the given path (Windows only): inherited handles keep
 * their values, so a parent's handle that leaked into the worker would. */
static int holds_handle(pp_call_t *call, const void *arg, size_t len) {
  int64_t value;
  const char *path;
  if (pp_unpack(arg, len, "is", &value, &path) != 0)
    return pp_call_fail(call, "holds_handle wants \"is\"");
#ifdef _WIN32
  {
    WCHAR got[1024], want[1024];
    DWORD n = GetFinalPathNameByHandleW((HANDLE)(intptr_t)value, got, 1024,
                                        FILE_NAME_NORMALIZED);
    int m = MultiByteToWideChar(CP_UTF8, 0, path, -1, want, 1024);
    size_t gl, wl;
    if (n == 0 || n >= 1024 || m <= 0)
      return pp_call_replyf(call, "i", (int64_t)0);
    /* "\\?\C:\dir\file" against "C:\dir\file": compare the ends. */
    gl = wcslen(got);
    wl = wcslen(want);
    return pp_call_replyf(
        call, "i",
        (int64_t)(gl >= wl && _wcsicmp(got + gl - wl, want) == 0));
  }
#else
  (void)value;
  (void)path;
  return pp_call_fail(call, "holds_handle: Windows only");
#endif
}

const pp_task_t pp_test_tasks[] = {PP_TASK(square),
                                   PP_TASK(add),
                                   PP_TASK(echo),
                                   PP_TASK(fail),
                                   PP_TASK(act),
                                   PP_TASK(segv),
                                   PP_TASK(do_abort),
                                   PP_TASK(do_exit),
                                   PP_TASK(sleep_ms),
                                   PP_TASK(hang),
                                   PP_TASK(print),
                                   PP_TASK(spam),
                                   PP_TASK(threads),
                                   PP_TASK(nested),
                                   PP_TASK(big),
                                   PP_TASK(init_set),
                                   PP_TASK(init_get),
                                   PP_TASK(pid),
                                   PP_TASK(length),
                                   PP_TASK(nest_hang),
                                   PP_TASK(garble),
                                   PP_TASK(stream),
                                   PP_TASK(fastfail),
                                   PP_TASK(holds_handle),
                                   PP_TASK(proc_token),
                                   PP_TASK(middle),
                                   PP_TASK(bump),
                                   PP_TASK(quiet_flags),
                                   {"last_words", last_words},
                                   /* tasks_hostile.c */
                                   {"ret", pp_test_task_ret},
                                   {"bad_reply", pp_test_task_bad_reply},
                                   {"fork_hold", pp_test_task_fork_hold},
                                   {"fork_fd", pp_test_task_fork_fd},
                                   {"spoof", pp_test_task_spoof},
                                   {"longline", pp_test_task_longline},
                                   {"late_peek", pp_test_task_late_peek},
                                   {"noeol", pp_test_task_noeol},
                                   {"zero_shared", pp_test_task_zero_shared},
                                   {"unflag_later", pp_test_task_unflag_later},
                                   {"limit_as", pp_test_task_limit_as},
                                   {"tally", pp_test_task_tally},
                                   {"late_echo", pp_test_task_late_echo},
                                   {"wake_rights", pp_test_task_wake_rights},
                                   {"tally_blob", pp_test_task_tally_blob},
                                   /* tasks_chaos.c */
                                   {"chaos", pp_test_task_chaos},
                                   PP_TASK_END};
