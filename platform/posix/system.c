/*
 * system.c (POSIX) - facts about the running process and machine, and
 * where the installed worker host is.
 */
#if defined(__linux__) && !defined(_GNU_SOURCE)
#define _GNU_SOURCE /* dladdr */
#endif
#include <dlfcn.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <unistd.h>

#if defined(__linux__)
#include <stdio_ext.h>
#endif
#if defined(__linux__)
#include <elf.h>
#include <link.h>
#include <sched.h>
#endif
#if defined(__APPLE__)
#include <mach-o/dyld.h>
#include <sys/sysctl.h>
#endif

#include "../../src/digest.h"
#include "internal.h"

int pp__exe_path(char **path) {
  char buf[PATH_MAX + 1];
  *path = NULL;
#if defined(__APPLE__)
  {
    uint32_t size = sizeof(buf);
    char real[PATH_MAX + 1];
    if (_NSGetExecutablePath(buf, &size) != 0 || realpath(buf, real) == NULL)
      return pp__os_fail(PP_ESPAWN, "cannot find this program's path");
    *path = pp__strdup_printf("%s", real);
  }
#else
  {
    ssize_t n = readlink("/proc/self/exe", buf, sizeof(buf) - 1);
    if (n < 0)
      return pp__posix_error(PP_ESPAWN, errno, "readlink(/proc/self/exe)");
    buf[n] = '\0';
    *path = pp__strdup_printf("%s", buf);
  }
#endif
  if (*path == NULL)
    return pp__os_fail(PP_ENOMEM, "out of memory");
  return 0;
}

int64_t pp__fd_limit(void) {
  struct rlimit rl;
  if (getrlimit(RLIMIT_NOFILE, &rl) != 0 || rl.rlim_cur == RLIM_INFINITY ||
      rl.rlim_cur > (rlim_t)INT64_MAX)
    return -1;
  return (int64_t)rl.rlim_cur;
}

void pp__shared_lib_name(const char *base, char *buf, size_t cap) {
#if defined(__APPLE__)
  snprintf(buf, cap, "lib%s.dylib", base);
#else
  snprintf(buf, cap, "lib%s.so", base);
#endif
}

int pp__cpu_count(void) {
  long n;
#if defined(__linux__)
  cpu_set_t set;
  if (sched_getaffinity(0, sizeof(set), &set) == 0 && CPU_COUNT(&set) > 0)
    return CPU_COUNT(&set);
#endif
  n = sysconf(_SC_NPROCESSORS_ONLN);
  return n > 0 ? (int)n : 1;
}

/* getpid() is a system call (glibc stopped caching it in 2.25), and every
 * public function that touches a pool compares it with the pool's creator
 * to find a forked child (src/pool.c), so the pid is cached.  A child made
 * by fork() runs the atfork handler, which forgets it; one made without
 * fork handlers (a raw clone, vfork) must exec before it calls procpool,
 * as POSIX asks anyway.  If the handler cannot be registered, nothing is
 * cached. */
static uint64_t self_pid;   /* 0: not known (atomic) */
static int self_pid_cached; /* the handler is registered */
static pthread_once_t self_pid_once = PTHREAD_ONCE_INIT;

static void self_pid_forget(void) {
  PP__STORE_REL64(&self_pid, 0);
}

static void self_pid_setup(void) {
  self_pid_cached = pthread_atfork(NULL, NULL, self_pid_forget) == 0;
}

int64_t pp__self_pid(void) {
  uint64_t pid;
  pthread_once(&self_pid_once, self_pid_setup);
  if (!self_pid_cached)
    return (int64_t)getpid();
  pid = PP__LOAD_ACQ64(&self_pid);
  if (pid == 0) {
    pid = (uint64_t)getpid();
    PP__STORE_REL64(&self_pid, pid);
  }
  return (int64_t)pid;
}

int pp__debugger_attached(void) {
#if defined(__linux__)
  char line[256];
  int traced = 0;
  FILE *f = fopen("/proc/self/status", "r");
  if (f == NULL)
    return 0;
  while (fgets(line, sizeof(line), f) != NULL)
    if (strncmp(line, "TracerPid:", 10) == 0) {
      traced = atoi(line + 10) != 0;
      break;
    }
  fclose(f);
  return traced;
#elif defined(__APPLE__)
  struct kinfo_proc info;
  size_t size = sizeof(info);
  int mib[4] = {CTL_KERN, KERN_PROC, KERN_PROC_PID, getpid()};
  memset(&info, 0, sizeof(info));
  if (sysctl(mib, 4, &info, &size, NULL, 0) != 0)
    return 0;
  return (info.kp_proc.p_flag & P_TRACED) != 0;
#else
  return 0;
#endif
}

uint64_t pp__mem_available(void) {
#if defined(__linux__)
  char line[256];
  unsigned long long kb = 0;
  FILE *f = fopen("/proc/meminfo", "r");
  if (f == NULL)
    return 0;
  while (fgets(line, sizeof(line), f) != NULL)
    if (sscanf(line, "MemAvailable: %llu kB", &kb) == 1)
      break;
  fclose(f);
  return (uint64_t)kb * 1024;
#elif defined(_SC_AVPHYS_PAGES)
  long pages = sysconf(_SC_AVPHYS_PAGES), size = sysconf(_SC_PAGESIZE);
  return pages > 0 && size > 0 ? (uint64_t)pages * (uint64_t)size : 0;
#else
  return 0;
#endif
}

void pp__env_unset(const char *name) {
  unsetenv(name);
}

void pp__stdio_ensure(void) {
  int fd;
  for (fd = 0; fd <= 2; fd++) {
    int nfd;
    if (fcntl(fd, F_GETFD) >= 0 || errno != EBADF)
      continue;
    /* Not close-on-exec: these are the standard streams every program the
     * application starts expects. */
    nfd = open("/dev/null", fd == 0 ? O_RDONLY : O_WRONLY);
    if (nfd >= 0 && nfd != fd) {
      dup2(nfd, fd);
      close(nfd);
    }
  }
}

#if defined(__linux__)
struct build_id_search {
  uintptr_t addr;
  unsigned char *id;
  int found;
};

/* Copies the NT_GNU_BUILD_ID note of one PT_NOTE segment, if it has one. */
static int copy_build_id(const unsigned char *p, size_t size, size_t align,
                         unsigned char *id) {
  size_t off = 0;
  while (off + sizeof(ElfW(Nhdr)) <= size) {
    const ElfW(Nhdr) *n = (const ElfW(Nhdr) *)(p + off);
    size_t name = (n->n_namesz + align - 1) & ~(align - 1);
    size_t desc = (n->n_descsz + align - 1) & ~(align - 1);
    const unsigned char *name_at = p + off + sizeof(*n);
    if (name > size || desc > size ||
        off + sizeof(*n) + name + desc > size)
      return 0;
    if (n->n_type == NT_GNU_BUILD_ID && n->n_namesz == 4 &&
        memcmp(name_at, "GNU", 4) == 0 && n->n_descsz > 0) {
      memcpy(id, name_at + name,
             n->n_descsz < PP__BUILD_ID_LEN ? n->n_descsz : PP__BUILD_ID_LEN);
      return 1;
    }
    off += sizeof(*n) + name + desc;
  }
  return 0;
}

static int find_build_id(struct dl_phdr_info *info, size_t size, void *data) {
  struct build_id_search *s = data;
  pp__digest_t d;
  int i, inside = 0;
  (void)size;
  for (i = 0; i < info->dlpi_phnum && !inside; i++) {
    const ElfW(Phdr) *ph = &info->dlpi_phdr[i];
    uintptr_t start = (uintptr_t)info->dlpi_addr + ph->p_vaddr;
    inside = ph->p_type == PT_LOAD && s->addr >= start &&
             s->addr - start < ph->p_memsz;
  }
  if (!inside)
    return 0;
  s->found = 1;
  for (i = 0; i < info->dlpi_phnum; i++) {
    const ElfW(Phdr) *ph = &info->dlpi_phdr[i];
    if (ph->p_type == PT_NOTE &&
        copy_build_id((const unsigned char *)info->dlpi_addr + ph->p_vaddr,
                      ph->p_memsz, ph->p_align == 8 ? 8 : 4, s->id))
      return 1;
  }
  /* No build id (linked with --build-id=none): the code itself.  Code
   * segments of position-independent modules are never relocated, so the
   * same file gives the same digest wherever it is loaded. */
  pp__digest_init(&d);
  for (i = 0; i < info->dlpi_phnum; i++) {
    const ElfW(Phdr) *ph = &info->dlpi_phdr[i];
    if (ph->p_type == PT_LOAD && (ph->p_flags & PF_X) &&
        !(ph->p_flags & PF_W))
      pp__digest_add(&d, (const void *)(info->dlpi_addr + ph->p_vaddr),
                     ph->p_filesz);
  }
  pp__digest_end(&d, s->id);
  return 1;
}
#endif

void pp__module_build_id(const void *addr, unsigned char id[PP__BUILD_ID_LEN]) {
  memset(id, 0, PP__BUILD_ID_LEN);
#if defined(__linux__)
  {
    struct build_id_search s;
    s.addr = (uintptr_t)addr;
    s.id = id;
    s.found = 0;
    dl_iterate_phdr(find_build_id, &s);
  }
#else
  /* macOS (LC_UUID) and the BSDs are not done yet: all zero turns the
   * build check off there. */
  (void)addr;
#endif
}

int pp__stdio_pending(FILE *fp) {
#if defined(__linux__)
  /* glibc and musl both have it. */
  return (int)__fpending(fp);
#elif defined(__APPLE__) || defined(__FreeBSD__) || defined(__NetBSD__) ||    \
    defined(__OpenBSD__)
  return (fp->_flags & __SWR) ? (int)(fp->_p - fp->_bf._base) : 0;
#else
  (void)fp;
  return -1;
#endif
}

int pp__stdio_is_terminal(FILE *fp) {
  return isatty(fileno(fp)) == 1;
}

int pp__stdio_trylock(FILE *fp) {
  return ftrylockfile(fp) == 0;
}

void pp__stdio_unlock(FILE *fp) {
  funlockfile(fp);
}

void pp__stdio_salvage(FILE *fp, const char *buf) {
  int n = buf != NULL ? pp__stdio_pending(fp) : 0;
  if (n > 0) {
    ssize_t r = write(fileno(fp), buf, (size_t)n);
    (void)r;
  }
}

int pp__stdio_stream(void) {
  if (setvbuf(stdout, NULL, _IOLBF, BUFSIZ) != 0 ||
      setvbuf(stderr, NULL, _IONBF, 0) != 0)
    return pp__os_fail(PP_EIO, "setvbuf refused line buffering");
  return 0;
}

/* The worker host's path relative to the directory of the module that
 * holds procpool, and its absolute path in the install it was built for
 * (both set by CMake). */
#ifndef PP_WORKER_HOST_RELPATH
#define PP_WORKER_HOST_RELPATH "../libexec/procpool-worker"
#endif
#ifndef PP_WORKER_HOST_PATH
#define PP_WORKER_HOST_PATH "procpool-worker"
#endif

int pp__worker_host_path(char **path) {
  Dl_info info;
  const char *slash;
  char *near = NULL;

  *path = NULL;
  /* dladdr names the shared library this function is in, or the program
   * when procpool is linked statically. */
  memset(&info, 0, sizeof(info));
  if (dladdr((void *)pp__worker_host_path, &info) != 0 &&
      info.dli_fname != NULL && (slash = strrchr(info.dli_fname, '/')) != NULL) {
    near = pp__strdup_printf("%.*s/%s", (int)(slash - info.dli_fname),
                             info.dli_fname, PP_WORKER_HOST_RELPATH);
    if (near != NULL && access(near, X_OK) == 0) {
      *path = near;
      return 0;
    }
    free(near);
  }
  *path = pp__strdup_printf("%s", PP_WORKER_HOST_PATH);
  if (*path == NULL)
    return pp__os_fail(PP_ENOMEM, "out of memory for the worker host path");
  return 0;
}

int pp__path_absolute(const char *path, char **out) {
  char cwd[PATH_MAX + 1];
  *out = NULL;
  if (path == NULL || path[0] == '\0')
    return pp__os_fail(PP_EINVAL, "empty path");
  if (path[0] == '/')
    *out = pp__strdup_printf("%s", path);
  else if (getcwd(cwd, sizeof(cwd)) == NULL)
    return pp__posix_error(PP_EINVAL, errno, "getcwd for '%s'", path);
  else
    *out = pp__strdup_printf("%s/%s", cwd, path);
  if (*out == NULL)
    return pp__os_fail(PP_ENOMEM, "out of memory for a path");
  return 0;
}
