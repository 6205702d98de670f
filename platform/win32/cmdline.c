/*
 * cmdline.c - the command line of a Windows worker.
 *
 * Windows passes a program one string, not an argument vector; the C
 * runtime of the worker splits it again.  Each argument therefore has to be
 * quoted by the rules that splitting follows, or an argument with a space,
 * a quote or a trailing backslash would arrive changed or split in two.
 * POSIX needs none of this, so the file has no counterpart there.
 */
#include "internal.h"

#include <stdlib.h>
#include <string.h>
#include <wchar.h>

/* The longest command line CreateProcessW accepts, in characters. */
#define MAX_CMDLINE 32767

/* Writes `arg` at dst (when dst is not NULL) quoted so that the Microsoft C
 * runtime and CommandLineToArgvW give it back as one argument, and returns
 * its length.  The rules: backslashes are literal unless they precede a
 * double quote; 2n backslashes and a quote stand for n backslashes and the
 * end or start of a quoted part, 2n+1 backslashes and a quote for n
 * backslashes and a literal quote.  So inside quotes, a run of backslashes
 * is doubled when a quote follows it, including the closing quote. */
static size_t quote_arg(const WCHAR *arg, WCHAR *dst) {
  const WCHAR *p;
  size_t n = 0;
  size_t slashes;
  size_t i;

#define PUT(c)                                                                 \
  do {                                                                         \
    if (dst != NULL)                                                           \
      dst[n] = (c);                                                            \
    n++;                                                                       \
  } while (0)

  /* '*' and '?' too: mingw-w64 C runtimes built with globbing (MSYS2's
   * until 2024, mingw-builds, winlibs) expand unquoted arguments that hold
   * them before main, which would turn a "\\?\" path into file names. */
  if (arg[0] != L'\0' && wcspbrk(arg, L" \t\n\v\"*?") == NULL) {
    for (p = arg; *p != L'\0'; p++)
      PUT(*p);
    return n;
  }
  PUT(L'"');
  for (p = arg;; p++) {
    slashes = 0;
    while (*p == L'\\') {
      slashes++;
      p++;
    }
    if (*p == L'\0') {
      for (i = 0; i < 2 * slashes; i++)
        PUT(L'\\');
      break;
    }
    if (*p == L'"') {
      for (i = 0; i < 2 * slashes + 1; i++)
        PUT(L'\\');
    } else {
      for (i = 0; i < slashes; i++)
        PUT(L'\\');
    }
    PUT(*p);
  }
  PUT(L'"');
  return n;
#undef PUT
}

/* The C runtime reads argv[0] by simpler rules (up to the next quote, no
 * backslash escapes), but an executable path has no quotes and no trailing
 * backslash, and for such text both rules agree, so quote_arg serves. */
int pp__win_build_cmdline(const WCHAR *exe, const WCHAR *pipe,
                          const pp__spawn_req_t *req, WCHAR **out) {
  WCHAR **args = NULL;
  WCHAR *token = NULL;
  WCHAR *option = NULL;
  WCHAR *line = NULL;
  size_t nargs = 0;
  size_t len;
  size_t i;
  int status;

  *out = NULL;
  status = pp__win_utf8_to_wide(req->token, &token);
  if (status != 0)
    goto cleanup;
  len = wcslen(PP__WIN_WORKER_OPTION) + wcslen(pipe) + 1 + wcslen(token) + 1;
  option = pp__malloc(len * sizeof(WCHAR));
  if (option == NULL) {
    status = pp__os_fail(PP_ENOMEM, "out of memory for the command line");
    goto cleanup;
  }
  wcscpy(option, PP__WIN_WORKER_OPTION);
  wcscat(option, pipe);
  wcscat(option, L":");
  wcscat(option, token);

  while (req->extra_args != NULL && req->extra_args[nargs] != NULL)
    nargs++;
  args = pp__calloc(nargs + 1, sizeof(*args));
  if (args == NULL) {
    status = pp__os_fail(PP_ENOMEM, "out of memory for the command line");
    goto cleanup;
  }
  for (i = 0; i < nargs; i++) {
    status = pp__win_utf8_to_wide(req->extra_args[i], &args[i]);
    if (status != 0)
      goto cleanup;
  }

  /* Measure, then write: the quoted form can be longer than the input. */
  len = quote_arg(exe, NULL) + 1 + quote_arg(option, NULL);
  for (i = 0; i < nargs; i++)
    len += 1 + quote_arg(args[i], NULL);
  if (len >= MAX_CMDLINE) {
    status = pp__os_fail(PP_EINVAL,
                         "the worker command line would be %lu characters; "
                         "Windows allows %d",
                         (unsigned long)len, MAX_CMDLINE - 1);
    goto cleanup;
  }
  line = pp__malloc((len + 1) * sizeof(WCHAR));
  if (line == NULL) {
    status = pp__os_fail(PP_ENOMEM, "out of memory for the command line");
    goto cleanup;
  }
  len = quote_arg(exe, line);
  line[len++] = L' ';
  len += quote_arg(option, line + len);
  for (i = 0; i < nargs; i++) {
    line[len++] = L' ';
    len += quote_arg(args[i], line + len);
  }
  line[len] = L'\0';
  *out = line;
  line = NULL;
  status = 0;

cleanup:
  if (args != NULL)
    for (i = 0; i < nargs; i++)
      free(args[i]);
  free(args);
  free(option);
  free(token);
  free(line);
  return status;
}
