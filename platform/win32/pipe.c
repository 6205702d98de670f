/*
 * pipe.c - the private named objects procpool creates on Windows: the
 * security descriptor that admits only the current user, the random names,
 * and the server end of a worker's pipe.  (The byte stream on a pipe is
 * channel.c's.)
 */
#include "internal.h"

#include <bcrypt.h>
#include <stdlib.h>
#include <string.h>
#include <wchar.h>

/* The pipe buffer sizes are hints to the system; 64 KiB is what libuv and
 * most Windows programs use and keeps small frames from blocking. */
#define PIPE_BUFFER_SIZE 65536

/* The security descriptor of every pipe: a DACL with one entry that gives
 * the current user (the process token's user, which the workers share) all
 * access.  Without it the default DACL also admits LocalSystem and the
 * Administrators group, and on some setups Everyone read access.  It is
 * built once and kept for the life of the process. */
static INIT_ONCE pipe_sd_once = INIT_ONCE_STATIC_INIT;
static SECURITY_DESCRIPTOR pipe_sd;
static SECURITY_ATTRIBUTES pipe_sa;

static BOOL CALLBACK init_pipe_sd(PINIT_ONCE once, PVOID param, PVOID *ctx) {
  DWORD *error = param;
  HANDLE token = NULL;
  TOKEN_USER *user = NULL;
  ACL *acl = NULL;
  DWORD size = 0;
  DWORD acl_size;
  BOOL ok = FALSE;

  (void)once;
  (void)ctx;
  if (!OpenProcessToken(GetCurrentProcess(), TOKEN_QUERY, &token))
    goto cleanup;
  GetTokenInformation(token, TokenUser, NULL, 0, &size);
  if (GetLastError() != ERROR_INSUFFICIENT_BUFFER)
    goto cleanup;
  user = pp__malloc(size);
  if (user == NULL) {
    SetLastError(ERROR_NOT_ENOUGH_MEMORY);
    goto cleanup;
  }
  if (!GetTokenInformation(token, TokenUser, user, size, &size))
    goto cleanup;
  acl_size = (DWORD)(sizeof(ACL) + sizeof(ACCESS_ALLOWED_ACE) - sizeof(DWORD) +
                     GetLengthSid(user->User.Sid));
  acl = pp__malloc(acl_size);
  if (acl == NULL) {
    SetLastError(ERROR_NOT_ENOUGH_MEMORY);
    goto cleanup;
  }
  if (!InitializeAcl(acl, acl_size, ACL_REVISION) ||
      !AddAccessAllowedAce(acl, ACL_REVISION, GENERIC_ALL, user->User.Sid) ||
      !InitializeSecurityDescriptor(&pipe_sd, SECURITY_DESCRIPTOR_REVISION) ||
      !SetSecurityDescriptorDacl(&pipe_sd, TRUE, acl, FALSE))
    goto cleanup;
  pipe_sa.nLength = sizeof(pipe_sa);
  pipe_sa.lpSecurityDescriptor = &pipe_sd;
  pipe_sa.bInheritHandle = FALSE;
  /* The descriptor points at `acl`, which therefore lives as long as the
   * process.  The ACE holds a copy of the SID, so `user` can go. */
  acl = NULL;
  ok = TRUE;

cleanup:
  if (!ok)
    *error = GetLastError();
  free(acl);
  free(user);
  if (token != NULL)
    CloseHandle(token);
  return ok;
}

/* Writes "\\.\pipe\procpool-<pid>-<32 hex digits>" to `name`. */
static int random_pipe_name(WCHAR name[PP__PIPE_NAME_MAX]) {
  static const char hex[] = "0123456789abcdef";
  static const char prefix[] = PP__PIPE_PREFIX;
  unsigned char random[16];
  WCHAR digits[12];
  DWORD pid = GetCurrentProcessId();
  NTSTATUS nt;
  size_t i;
  size_t k = 0;
  int n = 0;

  /* 128 bits from the system RNG: other users' processes cannot guess the
   * name, so they cannot connect first even if the DACL were weaker. */
  nt = BCryptGenRandom(NULL, random, sizeof(random),
                       BCRYPT_USE_SYSTEM_PREFERRED_RNG);
  if (nt < 0)
    return pp__os_fail(PP_EIO, "BCryptGenRandom failed with 0x%08lX",
                       (unsigned long)nt);
  for (i = 0; prefix[i] != '\0'; i++)
    name[k++] = (WCHAR)prefix[i];
  do {
    digits[n++] = (WCHAR)('0' + pid % 10);
    pid /= 10;
  } while (pid != 0);
  while (n > 0)
    name[k++] = digits[--n];
  name[k++] = L'-';
  for (i = 0; i < sizeof(random); i++) {
    name[k++] = (WCHAR)hex[random[i] >> 4];
    name[k++] = (WCHAR)hex[random[i] & 15];
  }
  name[k] = L'\0';
  return 0;
}

int pp__win_pipe_server(DWORD access, WCHAR name[PP__PIPE_NAME_MAX],
                        HANDLE *server) {
  DWORD error = 0;
  HANDLE h;
  char why[160];
  int status;

  *server = INVALID_HANDLE_VALUE;
  if (!InitOnceExecuteOnce(&pipe_sd_once, init_pipe_sd, &error, NULL))
    return pp__os_fail(PP_EIO, "cannot build the pipe security descriptor: %s",
                       pp__win_strerror(error, why, sizeof(why)));
  status = random_pipe_name(name);
  if (status != 0)
    return status;
  /* FILE_FLAG_FIRST_PIPE_INSTANCE with one instance means that if anyone
   * had created this name before us, we fail instead of becoming a second
   * instance of their pipe. */
  h = CreateNamedPipeW(
      name, access | FILE_FLAG_FIRST_PIPE_INSTANCE | FILE_FLAG_OVERLAPPED,
      PIPE_TYPE_BYTE | PIPE_READMODE_BYTE | PIPE_WAIT |
          PIPE_REJECT_REMOTE_CLIENTS,
      1, PIPE_BUFFER_SIZE, PIPE_BUFFER_SIZE, 0, &pipe_sa);
  if (h == INVALID_HANDLE_VALUE)
    return pp__os_fail(PP_EIO, "CreateNamedPipeW: %s",
                       pp__win_strerror(GetLastError(), why, sizeof(why)));
  *server = h;
  return 0;
}

int pp__win_boot_name(const WCHAR *pipe, WCHAR name[PP__PIPE_NAME_MAX]) {
  static const WCHAR pipe_dir[] = L"\\\\.\\pipe\\";
  static const WCHAR local[] = L"Local\\";
  size_t skip = sizeof(pipe_dir) / sizeof(WCHAR) - 1;
  size_t len = wcslen(pipe);
  if (len <= skip || wcsncmp(pipe, pipe_dir, skip) != 0 ||
      len - skip + wcslen(local) >= PP__PIPE_NAME_MAX)
    return pp__os_fail(PP_EINVAL, "not a procpool pipe name");
  wcscpy(name, local);
  wcscat(name, pipe + skip);
  return 0;
}

int pp__win_boot_create(const WCHAR *pipe, HANDLE *section) {
  WCHAR name[PP__PIPE_NAME_MAX];
  DWORD error = 0;
  HANDLE h;
  char why[160];
  int status;

  *section = NULL;
  status = pp__win_boot_name(pipe, name);
  if (status != 0)
    return status;
  if (!InitOnceExecuteOnce(&pipe_sd_once, init_pipe_sd, &error, NULL))
    return pp__os_fail(PP_ESPAWN,
                       "cannot build the pipe security descriptor: %s",
                       pp__win_strerror(error, why, sizeof(why)));
  h = CreateFileMappingW(INVALID_HANDLE_VALUE, &pipe_sa, PAGE_READWRITE, 0,
                         (DWORD)sizeof(pp__win_boot_t), name);
  if (h == NULL)
    return pp__os_fail(PP_ESPAWN, "CreateFileMappingW(boot block): %s",
                       pp__win_strerror(GetLastError(), why, sizeof(why)));
  /* The name is random; a section that exists already is someone else's,
   * and its contents are not ours to trust or to overwrite. */
  if (GetLastError() == ERROR_ALREADY_EXISTS) {
    CloseHandle(h);
    return pp__os_fail(PP_ESPAWN, "the boot block's name is taken");
  }
  *section = h;
  return 0;
}
