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
#   5. a fault-injection build of test_fault (PROCPOOL_FAULT) runs the
#      Windows-only injected failures (the job object refused);
#   6. clang for mingw checks that the sources compile without warnings
#      there too (llvm-mingw, MSYS2 CLANG64), and clang's MSVC target that
#      the library, the worker host and the tests pass MSVC's /W4 /WX as
#      nearly as a machine without MSVC can tell (unreachable code, a char
#      array with no room for its NUL), in seconds.
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

step "fault injection build (test_fault under Wine)"
# The failures only injection reaches on Windows (the job object refused
# every way, or its job list alone) and the portable fault cases, in a
# PROCPOOL_FAULT build of the library and test_fault only (~30 s).
fault=${PROCPOOL_BUILD_DIR:-$repo/build-ci}/windows-fault
cmake -S "$repo" -B "$fault" -DCMAKE_TOOLCHAIN_FILE="$repo/ci/mingw-w64.cmake" \
      -DWINDEPS="$prefix" -DCMAKE_BUILD_TYPE=RelWithDebInfo \
      -DPROCPOOL_DEVELOP=ON -DPROCPOOL_TEST_TIMEOUT_MULTIPLIER=4 \
      -DPROCPOOL_FAULT=ON -DPROCPOOL_BUILD_EXAMPLES=OFF >/dev/null
cmake --build "$fault" -j"$(nproc)" --target test_fault
ctest --test-dir "$fault" --output-on-failure -j1 --timeout 1800 -R '^test_fault$'

step "clang for mingw and in MSVC mode: the sources compile without warnings"
# The container has no clang unless it is asked for (build-win-deps.sh
# installs the cross tools only).
if ! command -v clang >/dev/null 2>&1 && [ "$(id -u)" -eq 0 ] &&
   command -v apt-get >/dev/null 2>&1; then
  DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends \
    clang >/dev/null
fi
if command -v clang >/dev/null 2>&1; then
  for f in "$repo"/src/*.c "$repo"/platform/win32/*.c "$repo"/tools/*.c; do
    clang --target=x86_64-w64-mingw32 -fsyntax-only -std=c11 -Wall -Wextra \
          -Wshadow -Wstrict-prototypes -Wmissing-prototypes -Werror \
          -D__USE_MINGW_ANSI_STDIO=1 -DAPR_DECLARE_STATIC \
          -I"$repo/include" -I"$repo/src" -isystem "$prefix/include" "$f"
  done
  # The windows-msvc leg builds with /W4 /WX, which no machine here has:
  # clang's MSVC target is the closest, for the library, the worker host
  # and the tests.  Its -Wunreachable-code-aggressive matches MSVC's C4702
  # (code after for (;;) or return).  Without __clang__ the sources take
  # their MSVC branches (the ring's atomics in platform/platform.h, the C
  # runtime's set-up in platform/win32/worker.c).  The mingw-w64 headers
  # stand in for the SDK; they parse under that target only as GNU C
  # (-fgnuc-version) and with the Universal CRT's declarations (_UCRT),
  # which MSVC uses.
  # The PP_TEST_* paths are CMake's; any string does for a syntax check.
  # The MPI tests and the fault runner are not built for Windows.
  msvc_tests=()
  for f in "$repo"/tests/*.c; do
    case $f in */mpi_*.c | */test_mpi.c | */fault_run.c) continue ;; esac
    msvc_tests+=("$f")
  done
  clang --target=x86_64-pc-windows-msvc -fms-compatibility -fms-extensions \
        -fgnuc-version=4.2.1 -U__clang__ -fsyntax-only -std=c11 -Wall -Wextra \
        -Wunreachable-code-aggressive -Werror \
        -D_UCRT -D__MSVCRT_VERSION__=0xE00 -DAPR_DECLARE_STATIC \
        -DPP_TEST_TASKLIB='"t"' -DPP_TEST_TASKLIB2='"t"' \
        -DPP_TEST_WORKER_HOST='"t"' -DPP_TEST_NOARGV='"t"' \
        -DPP_TEST_NOGUARD='"t"' -DPP_TEST_OTHER_EXE='"t"' \
        -DPP_TEST_SLEEPER='"t"' -DPP_TEST_MUTE='"t"' \
        -DPP_TEST_PROCPOOL_DLL='"t"' -DPP_TEST_PROCPOOL_DLL_NAME='"t"' \
        -I"$repo/include" -I"$repo/src" -I"$repo/tests" \
        -isystem /usr/x86_64-w64-mingw32/include -isystem "$prefix/include" \
        "$repo"/src/*.c "$repo"/platform/win32/*.c "$repo"/tools/*.c \
        "${msvc_tests[@]}"
else
  echo "windows: clang is not installed; skipped"
fi
# MSVC's C4295 (a char array filled by a string of exactly its length, no
# room for the NUL) has no clang 14 warning: a look at the sources instead.
perl - "$repo"/src/*.c "$repo"/platform/win32/*.c "$repo"/tools/*.c \
    "$repo"/tests/*.c <<'PERL'
use strict; use warnings;
my $bad = 0;
for my $file (@ARGV) {
  open(my $fh, '<', $file) or die "$file: $!\n";
  local $/; my $src = <$fh>; close($fh);
  while ($src =~ /\bchar\s+\w+\s*\[\s*(\d+)\s*\]\s*=\s*((?:"(?:[^"\\\n]|\\.)*"\s*)+)[;,]/g) {
    my ($n, $lits, $at) = ($1, $2, $-[0]);
    my $s = join('', $lits =~ /"((?:[^"\\\n]|\\.)*)"/g);
    $s =~ s/\\(?:x[0-9A-Fa-f]+|[0-7]{1,3}|.)/x/g;   # an escape is one char
    next unless length($s) == $n;
    my $line = 1 + (substr($src, 0, $at) =~ tr/\n//);
    print "$file:$line: char[$n] filled by $n characters, no room for ",
          "the NUL (MSVC C4295)\n";
    $bad = 1;
  }
}
exit $bad;
PERL
step "windows leg passed"
