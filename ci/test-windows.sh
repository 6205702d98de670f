#!/usr/bin/env bash
# ci/test-windows.sh - the Windows leg: cross-builds procpool and its tests
# with mingw-w64 and runs the whole CTest suite under Wine.
#
#   1. ci/build-win-deps.sh builds APR 1.7.2 and CMocka 1.1.5 for Windows
#      from Debian's source packages (once; later runs reuse the prefix) and
#      installs mingw-w64 and wine if they are missing;
#   2. procpool is cross-built with warnings as errors, tests linked
#      statically (no DLL search path needed under Wine);
#   3. a fresh headless Wine prefix under the build folder runs the suite,
#      the same tests as on Linux (a test that cannot run under Wine skips
#      itself and prints why);
#   4. a Universal CRT build of the library and a few tests (Debian's
#      mingw-w64 links msvcrt.dll, which ignores invalid C runtime
#      arguments; MSVC, clang-cl and MSYS2 UCRT64 builds use the UCRT):
#      the gcc specs are rewritten to link libucrt.a, and ci/ucrt-shim.c
#      bridges the msvcrt-built APR and CMocka;
#   5. clang for mingw checks that the sources compile without warnings
#      there too (llvm-mingw, MSYS2 CLANG64), in seconds.
#
# Build folder: build-ci/windows (PROCPOOL_BUILD_DIR overrides build-ci).
set -euo pipefail
repo=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
build=${PROCPOOL_BUILD_DIR:-$repo/build-ci}/windows
prefix=${PROCPOOL_WINDEPS:-$repo/build-windeps/prefix}
start=$(date +%s)
step() { printf '\n=== windows: %s (%ds)\n' "$*" $(( $(date +%s) - start )); }

step "dependencies (APR, CMocka for mingw-w64)"
bash "$repo/ci/build-win-deps.sh" "$prefix"

step "cross-build, -Werror"
cmake -S "$repo" -B "$build" -DCMAKE_TOOLCHAIN_FILE="$repo/ci/mingw-w64.cmake" \
      -DWINDEPS="$prefix" -DCMAKE_BUILD_TYPE=RelWithDebInfo \
      -DPROCPOOL_DEVELOP=ON -DPROCPOOL_TEST_TIMEOUT_MULTIPLIER=4 >/dev/null
cmake --build "$build" -j"$(nproc)"

step "Wine prefix"
# A fresh prefix for every run, so nothing from an earlier run is reused.
export WINEPREFIX="$build/wineprefix"
rm -rf "$WINEPREFIX"
# shellcheck source=ci/wine-env.sh
. "$repo/ci/wine-env.sh" "$build"
trap wine_env_stop EXIT

step "tests under Wine"
# Wine runs tests one at a time: its server is shared, and two test
# binaries with pools of workers would only fight for the two cores.
# A process start costs ~50 ms under Wine (~1 ms on Linux), so the crash
# soak runs 5000 calls instead of 100 000 (it prints the scale it used).
export PROCPOOL_SOAK_CALLS=${PROCPOOL_SOAK_CALLS:-5000}
# The streaming map's ten million calls, as a hundred thousand under Wine.
export PROCPOOL_IMAP_CALLS=${PROCPOOL_IMAP_CALLS:-100000}
# The exactly-once races kill a worker per timeout: 500 calls, not 3000;
# the chaos storm, likewise, 3000 calls, not 30 000.
export PROCPOOL_ONCE_CALLS=${PROCPOOL_ONCE_CALLS:-500}
export PROCPOOL_CHAOS_CALLS=${PROCPOOL_CHAOS_CALLS:-3000}
ctest --test-dir "$build" --output-on-failure -j1 --timeout 1800 \
      -E 'test_soak|test_orphans'
# The soak and orphan tests print their counts and timings: shown in full.
ctest --test-dir "$build" --output-on-failure -V --timeout 1800 \
      -R 'test_soak|test_orphans' | grep -vE '^(UpdateCTestConfiguration|Parse|Add|Test project|Constructing|Checking|Updating)'
step "Universal CRT build (library, worker host, five tests)"
ucrt=${PROCPOOL_BUILD_DIR:-$repo/build-ci}/windows-ucrt
mkdir -p "$ucrt"
x86_64-w64-mingw32-gcc -dumpspecs | sed 's/-lmsvcrt/-lucrt/g' >"$ucrt/ucrt.specs"
ucrt_c="-specs=$ucrt/ucrt.specs -D_UCRT -D__MSVCRT_VERSION__=0xE00"
# shellcheck disable=SC2086
x86_64-w64-mingw32-gcc $ucrt_c -O2 -c "$repo/ci/ucrt-shim.c" -o "$ucrt/ucrt-shim.o"
ucrt_ld="-static-libgcc $ucrt/ucrt-shim.o -Wl,--defsym,_setjmp=__intrinsic_setjmp"
cmake -S "$repo" -B "$ucrt" -DCMAKE_TOOLCHAIN_FILE="$repo/ci/mingw-w64.cmake" \
      -DWINDEPS="$prefix" -DCMAKE_BUILD_TYPE=RelWithDebInfo \
      -DPROCPOOL_DEVELOP=ON -DPROCPOOL_TEST_TIMEOUT_MULTIPLIER=4 \
      -DPROCPOOL_BUILD_EXAMPLES=OFF "-DCMAKE_C_FLAGS=$ucrt_c" \
      "-DCMAKE_EXE_LINKER_FLAGS=$ucrt_ld" "-DCMAKE_SHARED_LINKER_FLAGS=$ucrt_ld" \
      "-DCMAKE_MODULE_LINKER_FLAGS=$ucrt_ld" >/dev/null
ucrt_tests="test_pool test_logging test_failure test_host test_upgrade"
# shellcheck disable=SC2086
cmake --build "$ucrt" -j"$(nproc)" --target $ucrt_tests
if x86_64-w64-mingw32-objdump -p "$ucrt/tests/test_pool.exe" | grep -qi 'msvcrt\.dll'; then
  echo "windows: the UCRT build still imports msvcrt.dll" >&2
  exit 1
fi
ctest --test-dir "$ucrt" --output-on-failure -j1 --timeout 1800 \
      -R "^($(echo $ucrt_tests | tr ' ' '|'))\$"

step "clang for mingw: the sources compile without warnings"
if command -v clang >/dev/null 2>&1; then
  for f in "$repo"/src/*.c "$repo"/platform/win32/*.c "$repo"/tools/*.c; do
    clang --target=x86_64-w64-mingw32 -fsyntax-only -std=c11 -Wall -Wextra \
          -Wshadow -Wstrict-prototypes -Wmissing-prototypes -Werror \
          -D__USE_MINGW_ANSI_STDIO=1 -DAPR_DECLARE_STATIC \
          -I"$repo/include" -I"$repo/src" -isystem "$prefix/include" "$f"
  done
else
  echo "windows: clang is not installed; skipped"
fi
step "windows leg passed"
