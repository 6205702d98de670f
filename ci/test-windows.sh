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
#      itself and prints why).
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
ctest --test-dir "$build" --output-on-failure -j1 --timeout 1800 \
      -E 'test_soak|test_orphans'
# The soak and orphan tests print their counts and timings: shown in full.
ctest --test-dir "$build" --output-on-failure -V --timeout 1800 \
      -R 'test_soak|test_orphans' | grep -vE '^(UpdateCTestConfiguration|Parse|Add|Test project|Constructing|Checking|Updating)'
step "windows leg passed"
