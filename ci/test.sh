#!/usr/bin/env bash
# ci/test.sh - builds procpool and runs every test, in five legs:
#
#   1. a Release build with -Wall -Wextra -Werror, whole CTest suite
#      (including the `large` and `soak` labels, and the `mpi` label: the
#      MPI backend's tests under `mpirun --oversubscribe -n 3`, over shared
#      memory and over TCP loopback, each launch under `timeout`, through
#      tests/mpi_run.sh);
#      then procpool used from outside (tests/consumer/run.sh): that build
#      installed into a temporary prefix and consumed with find_package and
#      with pkg-config, packaged by CPack (.tar.gz, .deb; the .deb unpacked
#      with dpkg -x and consumed the same way), and built as a subproject;
#   2. an AddressSanitizer + UndefinedBehaviorSanitizer build of the suite
#      (without `large`: 3 GiB payloads under ASan only measure the shadow
#      memory; the `mpi` label runs on its own with leak detection off,
#      since Open MPI's own allocations, never freed by design, would be
#      reported as leaks of every rank), built with fault injection
#      (PROCPOOL_FAULT), which tests/test_fault.c uses; then the fault walk
#      over that build (ci/fault.sh: every allocation and platform call of
#      a pool's life failed in turn, in the parent and in the workers);
#   3. the libFuzzer targets for a bounded time each (clang);
#   4. memcheck over the parent side of the suite (workers are not traced);
#   5. the API reference (ci/docs.sh: Doxygen, an undocumented public
#      symbol is an error).
#
# Installs what is missing (Debian: apt-get).  Build folders go to
# build-ci/ (PROCPOOL_BUILD_DIR overrides).  PP_SKIP_ASAN=1, PP_SKIP_FUZZ=1,
# PP_SKIP_VALGRIND=1 leave out a leg for a quick local run.
set -euo pipefail
repo=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
. "$repo/ci/deps.sh"
pp_ensure_packages "${PP_BUILD_PACKAGES[@]}" python3 clang libclang-rt-14-dev valgrind \
                   libopenmpi-dev openmpi-bin

build=${PROCPOOL_BUILD_DIR:-$repo/build-ci}
jobs=$(nproc)
start=$(date +%s)
step() { printf '\n=== %s (%ds)\n' "$*" $(( $(date +%s) - start )); }

step "release build, -Werror"
# Release (-O3, what users and the demo build), with -g for valgrind.
cmake -S "$repo" -B "$build/release" -DCMAKE_BUILD_TYPE=Release \
      -DCMAKE_C_FLAGS=-g -DPROCPOOL_DEVELOP=ON >/dev/null
cmake --build "$build/release" -j"$jobs"
step "release tests"
ctest --test-dir "$build/release" --output-on-failure -j2 --timeout 900 \
      -E 'test_soak|test_orphans'
# The soak and orphan tests print their counts and timings: shown in full.
ctest --test-dir "$build/release" --output-on-failure -V --timeout 900 \
      -R 'test_soak|test_orphans' | grep -vE '^(UpdateCTestConfiguration|Parse|Add|Test project|Constructing|Checking|Updating)'

step "consumers: install, find_package, pkg-config, CPack .deb, subproject"
"$repo/tests/consumer/run.sh" "$build/release" "$build/consumer"

if [ -z "${PP_SKIP_ASAN:-}" ]; then
  step "ASan + UBSan build"
  cmake -S "$repo" -B "$build/asan" -DCMAKE_BUILD_TYPE=Debug \
        -DPROCPOOL_SANITIZE=ON -DPROCPOOL_FAULT=ON \
        -DPROCPOOL_BUILD_EXAMPLES=ON >/dev/null
  cmake --build "$build/asan" -j"$jobs"
  step "ASan + UBSan tests"
  # Ten million calls under ASan only measure its quarantine: a million.
  PROCPOOL_IMAP_CALLS=1000000 ASAN_OPTIONS=detect_leaks=1:abort_on_error=0 \
  UBSAN_OPTIONS=print_stacktrace=1:halt_on_error=1 \
    ctest --test-dir "$build/asan" --output-on-failure -j2 -LE 'large|soak|mpi' \
          --timeout 900
  ASAN_OPTIONS=detect_leaks=0:abort_on_error=0 \
  UBSAN_OPTIONS=print_stacktrace=1:halt_on_error=1 \
    ctest --test-dir "$build/asan" --output-on-failure -L mpi --timeout 900
  step "fault injection walk (ASan + UBSan build)"
  "$repo/ci/fault.sh" "$build/asan"
fi

if [ -z "${PP_SKIP_FUZZ:-}" ] && [ -f "$repo/fuzz/CMakeLists.txt" ]; then
  step "fuzzing (libFuzzer)"
  CC=clang cmake -S "$repo" -B "$build/fuzz" -DCMAKE_BUILD_TYPE=Debug \
        -DPROCPOOL_FUZZ=ON -DPROCPOOL_BUILD_TESTS=OFF \
        -DPROCPOOL_BUILD_EXAMPLES=OFF >/dev/null
  cmake --build "$build/fuzz" -j"$jobs" >/dev/null
  "$repo/fuzz/run.sh" "$build/fuzz" "${PP_FUZZ_SECONDS:-30}"
fi

if [ -z "${PP_SKIP_VALGRIND:-}" ] && [ -f "$repo/ci/valgrind.sh" ]; then
  step "valgrind memcheck (parent side)"
  "$repo/ci/valgrind.sh" "$build/release"
fi

step "API reference (Doxygen, warnings are errors)"
"$repo/ci/docs.sh" "$build"

step "all legs passed"
