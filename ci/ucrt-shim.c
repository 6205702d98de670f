/*
 * ucrt-shim.c - lets the Windows leg link against the Universal CRT with
 * the APR and CMocka that ci/build-win-deps.sh built for msvcrt.dll
 * (Debian 12 has no UCRT-configured mingw-w64, only its import library).
 * Those objects reach msvcrt's data exports _environ and _wenviron through
 * import pointers, which ucrtbase.dll replaces with functions; these
 * pointers are filled from the functions before main.  (msvcrt's _setjmp is
 * __intrinsic_setjmp in ucrtbase: the link maps it with --defsym, since
 * setjmp cannot be wrapped by a function.)  Only for CI; not part of the
 * library.
 */
#include <stddef.h>
#include <wchar.h>

char ***__cdecl __p__environ(void);
wchar_t ***__cdecl __p__wenviron(void);

char ***__imp__environ;
wchar_t ***__imp__wenviron;

__attribute__((constructor)) static void pp_ucrt_shim_init(void) {
  __imp__environ = __p__environ();
  __imp__wenviron = __p__wenviron();
}
