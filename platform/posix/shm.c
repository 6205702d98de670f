/*
 * shm.c (POSIX) - anonymous shared memory between a parent and a worker.
 *
 * Linux: a memfd, sealed against growing and shrinking, so that a worker
 * (whose task may do anything) cannot truncate it and make the parent fault
 * on a page that no longer exists.  Elsewhere: a POSIX shared memory object
 * that is unlinked as soon as it is open, so that nothing is left behind
 * when a process dies; it cannot be sealed there.  Either way the worker
 * gets the descriptor at spawn and maps it itself.
 */
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <unistd.h>

#if defined(__linux__)
#include <sys/syscall.h>
#endif

#include "internal.h"

/* Mappings that are about to be written whole (a copy of an argument, a
 * reply: PP__SHM_POPULATE) or read whole (a blob that arrived) are made
 * with their pages in place (Linux): one system call allocates or maps
 * them all, instead of a page fault per 4 KiB as the memory is first
 * touched, which costs several times more on virtual machines.  Rings are
 * not: their pages are touched one by one as calls go through. */
#if defined(MAP_POPULATE)
#define PP__MAP_POPULATE MAP_POPULATE
#else
#define PP__MAP_POPULATE 0
#endif

/* Serials of this process' mappings (pp__shm_serial). */
static uint64_t serials;

struct pp__shm_s {
  uint64_t serial;
  int fd;
  void *base;
  uint64_t size;
};

/* Creates the descriptor of a fresh shared memory object of `size`. */
static int shm_fd(uint64_t size, int *out) {
  int fd = -1;
#if defined(__linux__) && defined(SYS_memfd_create)
  fd = (int)syscall(SYS_memfd_create, "procpool",
                    MFD_CLOEXEC | MFD_ALLOW_SEALING);
  if (fd < 0 && errno != ENOSYS)
    return pp__posix_error(pp__posix_status(errno, PP_EIO), errno,
                           "memfd_create");
#endif
  if (fd < 0) {
    char name[64];
    static unsigned counter;
    snprintf(name, sizeof(name), "/procpool-%ld-%u", (long)getpid(),
             __atomic_add_fetch(&counter, 1, __ATOMIC_RELAXED));
    fd = shm_open(name, O_RDWR | O_CREAT | O_EXCL, 0600);
    if (fd < 0)
      return pp__posix_error(pp__posix_status(errno, PP_EIO), errno,
                             "shm_open(%s)", name);
    shm_unlink(name);
    if (fcntl(fd, F_SETFD, FD_CLOEXEC) != 0) {
      close(fd);
      return pp__posix_error(PP_EIO, errno, "fcntl(FD_CLOEXEC)");
    }
  }
  if (ftruncate(fd, (off_t)size) != 0) {
    int err = errno;
    close(fd);
    return pp__posix_error(err == ENOMEM || err == ENOSPC ? PP_ENOMEM : PP_EIO,
                           err, "sizing %llu bytes of shared memory",
                           (unsigned long long)size);
  }
#if defined(__linux__) && defined(F_ADD_SEALS)
  fcntl(fd, F_ADD_SEALS, F_SEAL_SHRINK | F_SEAL_GROW | F_SEAL_SEAL);
#endif
  *out = fd;
  return 0;
}

int pp__shm_create(uint64_t size, unsigned flags, pp__shm_t **out) {
  pp__shm_t *s;
  int rc;
  *out = NULL;
  if (size == 0 || size > (uint64_t)SIZE_MAX)
    return pp__os_fail(PP_EINVAL, "shared memory of %llu bytes",
                         (unsigned long long)size);
  PP__FAULT_RETURN(PP_ENOMEM);
  s = pp__calloc(1, sizeof(*s));
  if (s == NULL)
    return pp__os_fail(PP_ENOMEM, "out of memory for shared memory");
  s->fd = -1;
  rc = shm_fd(size, &s->fd);
  if (rc == 0)
    rc = pp__posix_move_high(&s->fd);
  if (rc == 0) {
    s->base = mmap(NULL, (size_t)size, PROT_READ | PROT_WRITE,
                   MAP_SHARED |
                       ((flags & PP__SHM_POPULATE) ? PP__MAP_POPULATE : 0),
                   s->fd, 0);
    if (s->base == MAP_FAILED) {
      s->base = NULL;
      rc = pp__posix_error(pp__posix_status(errno, PP_EIO), errno,
                           "mapping %llu bytes of shared memory",
                           (unsigned long long)size);
    }
  }
  if (rc != 0) {
    pp__shm_close(s);
    return rc;
  }
  s->size = size;
  s->serial = __atomic_add_fetch(&serials, 1, __ATOMIC_RELAXED);
  *out = s;
  return 0;
}

void *pp__shm_base(const pp__shm_t *s) {
  return s->base;
}

uint64_t pp__shm_len(const pp__shm_t *s) {
  return s->size;
}

uint64_t pp__shm_serial(const pp__shm_t *s) {
  return s->serial;
}

int pp__posix_shm_fd(const pp__shm_t *s) {
  return s->fd;
}

void pp__shm_close(pp__shm_t *s) {
  if (s == NULL)
    return;
  if (s->base != NULL)
    munmap(s->base, (size_t)s->size);
  if (s->fd >= 0)
    close(s->fd);
  free(s);
}

int pp__posix_shm_map(int fd, unsigned flags, void **base, uint64_t *size) {
  struct stat st;
  void *p;
  if (fstat(fd, &st) != 0)
    return pp__posix_error(PP_EIO, errno, "shared memory descriptor %d", fd);
  if (st.st_size <= 0)
    return pp__os_fail(PP_EIO, "shared memory descriptor %d is empty", fd);
  p = mmap(NULL, (size_t)st.st_size, PROT_READ | PROT_WRITE, MAP_SHARED | ((flags & PP__SHM_POPULATE) ? PP__MAP_POPULATE : 0), fd,
           0);
  if (p == MAP_FAILED)
    return pp__posix_error(pp__posix_status(errno, PP_EIO), errno,
                           "mapping the shared memory");
  *base = p;
  *size = (uint64_t)st.st_size;
  return 0;
}

int pp__shm_send(pp__chan_t *chan, pp__shm_t *s, pp__proc_t *peer,
                 uint64_t used, uint64_t *handle, uint64_t *tag) {
  struct msghdr msg;
  struct iovec iov;
  union {
    struct cmsghdr align;
    char buf[CMSG_SPACE(sizeof(int))];
  } control;
  struct cmsghdr *cm;
  char byte = 'B';
  ssize_t r;
  /* The descriptor in flight survives the sender: a worker that dies
   * after sending leaves it queued on the channel for the parent, so no
   * tag is needed to find it again. */
  (void)peer, (void)used;
  *handle = 0;
  if (tag != NULL)
    *tag = 0;
  PP__FAULT_RETURN(PP_EIO);
  memset(&msg, 0, sizeof(msg));
  memset(&control, 0, sizeof(control));
  iov.iov_base = &byte;
  iov.iov_len = 1;
  msg.msg_iov = &iov;
  msg.msg_iovlen = 1;
  msg.msg_control = control.buf;
  msg.msg_controllen = sizeof(control.buf);
  cm = CMSG_FIRSTHDR(&msg);
  cm->cmsg_level = SOL_SOCKET;
  cm->cmsg_type = SCM_RIGHTS;
  cm->cmsg_len = CMSG_LEN(sizeof(int));
  memcpy(CMSG_DATA(cm), &s->fd, sizeof(int));
  do
    r = sendmsg(pp__posix_chan_fd(chan), &msg, MSG_NOSIGNAL);
  while (r < 0 && errno == EINTR);
  if (r == 1)
    return 0;
  if (r < 0 && (errno == EPIPE || errno == ECONNRESET))
    return pp__os_fail(PP_ECLOSED, "the other end has gone");
  return pp__posix_error(PP_EIO, errno, "sending a blob");
}

/* Returns the index of the mapping in `known` that `fd` is another
 * descriptor of (and that is at least `size` bytes), or -1.  Device and
 * inode name the object: both stay taken while `known` holds it open, so
 * no other object can have them meanwhile. */
static int find_known(int fd, uint64_t size, pp__shm_t *const *known, int n) {
  struct stat st, kst;
  int i;
  if (n <= 0 || fstat(fd, &st) != 0)
    return -1;
  for (i = 0; i < n; i++)
    if (known[i] != NULL && known[i]->size >= size &&
        fstat(known[i]->fd, &kst) == 0 && kst.st_dev == st.st_dev &&
        kst.st_ino == st.st_ino)
      return i;
  return -1;
}

int pp__shm_recv(pp__chan_t *chan, uint64_t handle, uint64_t tag, uint64_t size,
                 pp__proc_t *peer, pp__shm_t **out) {
  int known_at;
  (void)tag;
  return pp__shm_recv_known(chan, handle, size, peer, NULL, 0, out, &known_at);
}

void pp__shm_drop(uint64_t handle, uint64_t tag, uint64_t size) {
  /* Nothing of a worker's is in this process until it is received. */
  (void)handle, (void)tag, (void)size;
}

int pp__shm_recv_known(pp__chan_t *chan, uint64_t handle, uint64_t size,
                       pp__proc_t *peer, pp__shm_t *const *known, int n,
                       pp__shm_t **out, int *known_at) {
  struct msghdr msg;
  struct iovec iov;
  union {
    struct cmsghdr align;
    char buf[CMSG_SPACE(sizeof(int))];
  } control;
  struct cmsghdr *cm;
  pp__shm_t *s;
  char byte;
  ssize_t r;
  int fd = -1, rc;
  (void)handle, (void)peer;
  *out = NULL;
  *known_at = -1;
  memset(&msg, 0, sizeof(msg));
  memset(&control, 0, sizeof(control));
  iov.iov_base = &byte;
  iov.iov_len = 1;
  msg.msg_iov = &iov;
  msg.msg_iovlen = 1;
  msg.msg_control = control.buf;
  msg.msg_controllen = sizeof(control.buf);
  do
    r = recvmsg(pp__posix_chan_fd(chan), &msg, MSG_CMSG_CLOEXEC);
  while (r < 0 && errno == EINTR);
  if (r == 0)
    return pp__os_fail(PP_ECLOSED, "the other end has gone");
  if (r < 0)
    return pp__posix_error(PP_EIO, errno, "receiving a blob");
  for (cm = CMSG_FIRSTHDR(&msg); cm != NULL; cm = CMSG_NXTHDR(&msg, cm))
    if (cm->cmsg_level == SOL_SOCKET && cm->cmsg_type == SCM_RIGHTS &&
        cm->cmsg_len == CMSG_LEN(sizeof(int)))
      memcpy(&fd, CMSG_DATA(cm), sizeof(int));
  if (fd < 0 || byte != 'B') {
    if (fd >= 0)
      close(fd); /* a descriptor with a wrong byte is refused, not kept */
    return pp__os_fail(PP_EPROTO, "a blob message without its descriptor");
  }
  if (PP__FAULT_HIT("pp__shm_recv")) {
    /* As if the mapping failed: the descriptor came and is closed. */
    close(fd);
    return pp__fault_fail(PP_ENOMEM, "pp__shm_recv");
  }
  *known_at = find_known(fd, size, known, n);
  if (*known_at >= 0) {
    close(fd);
    return 0;
  }
  s = pp__calloc(1, sizeof(*s));
  if (s == NULL) {
    close(fd);
    return pp__os_fail(PP_ENOMEM, "out of memory for a blob");
  }
  s->fd = fd;
  rc = 0;
#if defined(__linux__) && defined(F_GET_SEALS)
  /* A worker may be hostile: a mapping it could still shrink would make
   * the parent fault when it reads the result, so only sealed ones are
   * taken. */
  {
    int seals = fcntl(fd, F_GET_SEALS);
    if (seals < 0 || !(seals & F_SEAL_SHRINK))
      rc = pp__os_fail(PP_EPROTO, "a blob that is not sealed against "
                         "shrinking");
  }
#endif
  if (rc == 0)
    rc = pp__posix_shm_map(fd, PP__SHM_POPULATE, &s->base, &s->size);
  if (rc == 0 && s->size < size)
    rc = pp__os_fail(PP_EPROTO, "a blob of %llu bytes where %llu were "
                       "announced", (unsigned long long)s->size,
                       (unsigned long long)size);
  if (rc != 0) {
    pp__shm_close(s);
    return rc;
  }
  s->serial = __atomic_add_fetch(&serials, 1, __ATOMIC_RELAXED);
  *out = s;
  return 0;
}
