/*
 * pipe.c - the named pipes procpool creates on Windows: their security
 * descriptor (the token's default DACL and its integrity label), their
 * random names, and the server end of a worker's pipe.  (The byte stream
 * on a pipe is channel.c's.)
 */
#include "internal.h"

#include <bcrypt.h>
#include <stdlib.h>
#include <string.h>
#include <wchar.h>

/* The pipe buffer sizes are hints to the system; 64 KiB is what libuv and
 * most Windows programs use and keeps small frames from blocking. */
#define PIPE_BUFFER_SIZE 65536

/* The security descriptor of every pipe: the process token's default DACL
 * and a mandatory label at the token's integrity level that lower levels
 * may neither read nor write through.  It is built once and kept for the
 * life of the process.
 *
 * The default DACL is the one the system gives every object this process
 * creates without a descriptor of its own, so it is made for the token:
 * an ordinary user's admits that user and LocalSystem; an elevated
 * administrator's admits the Administrators group (which the workers, with
 * the same token, are in) rather than the user; an AppContainer's admits
 * its package; and a sandbox that makes a restricted token gives it one
 * that its restricting SIDs pass too (an access check of a restricted
 * token needs both its normal and its restricting SIDs to be granted,
 * which the single TokenUser entry used before never did for the
 * latter).  So the pipes are as open as the process' other objects, never
 * more; a NULL descriptor would not do, since the named-pipe file system
 * then also grants Everyone and Anonymous read access.  A token without a
 * default DACL (its objects would have none: everyone) gets the old entry
 * for its user alone.
 *
 * The label: an object without one counts as medium integrity, so a
 * process of the same user at medium integrity could open the pipes of an
 * elevated (high) pool, its user SID being the one the DACL names.
 * Labelled at the pool's own level with NO_WRITE_UP and NO_READ_UP, it
 * cannot; the workers run at the pool's level.  A process may label what
 * it creates up to its own level without any privilege.
 *
 * The token is the process', not the thread's: pipes are made by the
 * pool's I/O thread, which impersonates nobody, and the workers open them
 * with the process token they inherit. */
static INIT_ONCE pipe_sd_once = INIT_ONCE_STATIC_INIT;
static SECURITY_DESCRIPTOR pipe_sd;
static SECURITY_ATTRIBUTES pipe_sa;

/* One TOKEN_INFORMATION_CLASS of a token, malloc'd; NULL with
 * GetLastError() set on failure. */
static void *token_info(HANDLE token, TOKEN_INFORMATION_CLASS what) {
  DWORD size = 0, error;
  void *info;

  if (GetTokenInformation(token, what, NULL, 0, &size) || size == 0) {
    if (GetLastError() == ERROR_SUCCESS)
      SetLastError(ERROR_INVALID_DATA);
    return NULL;
  }
  info = pp__malloc(size);
  if (info == NULL) {
    SetLastError(ERROR_NOT_ENOUGH_MEMORY);
    return NULL;
  }
  if (!GetTokenInformation(token, what, info, size, &size)) {
    error = GetLastError();
    free(info);
    SetLastError(error);
    return NULL;
  }
  return info;
}

/* A copy of the token's default DACL, or a DACL that admits the token's
 * user alone where it has none. */
static ACL *pipe_dacl(HANDLE token) {
  TOKEN_DEFAULT_DACL *dd = NULL;
  TOKEN_USER *user = NULL;
  ACL *acl = NULL;
  DWORD size;

  dd = token_info(token, TokenDefaultDacl);
  if (dd == NULL)
    return NULL;
  if (dd->DefaultDacl != NULL) {
    size = dd->DefaultDacl->AclSize;
    acl = pp__malloc(size);
    if (acl != NULL)
      memcpy(acl, dd->DefaultDacl, size);
    else
      SetLastError(ERROR_NOT_ENOUGH_MEMORY);
    goto cleanup;
  }
  user = token_info(token, TokenUser);
  if (user == NULL)
    goto cleanup;
  size = (DWORD)(sizeof(ACL) + sizeof(ACCESS_ALLOWED_ACE) - sizeof(DWORD) +
                 GetLengthSid(user->User.Sid));
  acl = pp__malloc(size);
  if (acl == NULL) {
    SetLastError(ERROR_NOT_ENOUGH_MEMORY);
    goto cleanup;
  }
  if (!InitializeAcl(acl, size, ACL_REVISION) ||
      !AddAccessAllowedAce(acl, ACL_REVISION, GENERIC_ALL, user->User.Sid)) {
    free(acl);
    acl = NULL;
  }

cleanup:
  free(user);
  free(dd);
  return acl;
}

/* A SACL with the mandatory label of the token's integrity level; NULL
 * with ERROR_SUCCESS where the token has no level (nothing to add). */
static ACL *pipe_label(HANDLE token) {
  TOKEN_MANDATORY_LABEL *label;
  ACL *acl = NULL;
  DWORD size;

  label = token_info(token, TokenIntegrityLevel);
  if (label == NULL && GetLastError() == ERROR_NOT_ENOUGH_MEMORY)
    return NULL;
  if (label == NULL || label->Label.Sid == NULL) {
    free(label);
    SetLastError(ERROR_SUCCESS);
    return NULL;
  }
  size = (DWORD)(sizeof(ACL) + sizeof(SYSTEM_MANDATORY_LABEL_ACE) -
                 sizeof(DWORD) + GetLengthSid(label->Label.Sid));
  acl = pp__malloc(size);
  if (acl == NULL) {
    SetLastError(ERROR_NOT_ENOUGH_MEMORY);
  } else if (!InitializeAcl(acl, size, ACL_REVISION) ||
             !AddMandatoryAce(acl, ACL_REVISION, 0,
                              SYSTEM_MANDATORY_LABEL_NO_WRITE_UP |
                                  SYSTEM_MANDATORY_LABEL_NO_READ_UP,
                              label->Label.Sid)) {
    free(acl);
    acl = NULL;
  }
  free(label);
  return acl;
}

static BOOL CALLBACK init_pipe_sd(PINIT_ONCE once, PVOID param, PVOID *ctx) {
  DWORD *error = param;
  HANDLE token = NULL;
  ACL *dacl = NULL;
  ACL *sacl = NULL;
  BOOL ok = FALSE;

  (void)once;
  (void)ctx;
  if (!OpenProcessToken(GetCurrentProcess(), TOKEN_QUERY, &token))
    goto cleanup;
  dacl = pipe_dacl(token);
  if (dacl == NULL)
    goto cleanup;
  sacl = pipe_label(token);
  if (sacl == NULL && GetLastError() != ERROR_SUCCESS)
    goto cleanup;
  if (!InitializeSecurityDescriptor(&pipe_sd, SECURITY_DESCRIPTOR_REVISION) ||
      !SetSecurityDescriptorDacl(&pipe_sd, TRUE, dacl, FALSE) ||
      (sacl != NULL && !SetSecurityDescriptorSacl(&pipe_sd, TRUE, sacl, FALSE)))
    goto cleanup;
  pipe_sa.nLength = sizeof(pipe_sa);
  pipe_sa.lpSecurityDescriptor = &pipe_sd;
  pipe_sa.bInheritHandle = FALSE;
  /* The descriptor points at both lists, which therefore live as long as
   * the process. */
  dacl = sacl = NULL;
  ok = TRUE;

cleanup:
  if (!ok)
    *error = GetLastError();
  free(sacl);
  free(dacl);
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
