/*
 * system.c (POSIX) - facts about the running process and machine.
 */
#include <errno.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#if defined(__linux__)
#include <sched.h>
#endif
#if defined(__APPLE__)
#include <mach-o/dyld.h>
#include <sys/sysctl.h>
#endif

#include "internal.h"

int pp__exe_path(char **path) {
  char buf[PATH_MAX + 1];
  *path = NULL;
#if defined(__APPLE__)
  {
    uint32_t size = sizeof(buf);
    char real[PATH_MAX + 1];
    if (_NSGetExecutablePath(buf, &size) != 0 || realpath(buf, real) == NULL)
      return pp__set_error(PP_ESPAWN, "cannot find this program's path");
    *path = strdup(real);
  }
#else
  {
    ssize_t n = readlink("/proc/self/exe", buf, sizeof(buf) - 1);
    if (n < 0)
      return pp__posix_error(PP_ESPAWN, errno, "readlink(/proc/self/exe)");
    buf[n] = '\0';
    *path = strdup(buf);
  }
#endif
  if (*path == NULL)
    return pp__set_error(PP_ENOMEM, "out of memory");
  return 0;
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

int64_t pp__self_pid(void) {
  return (int64_t)getpid();
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
