#!/usr/bin/env bash
# ci/test.sh - builds procpool and runs every test, in six legs:
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
#   3. a ThreadSanitizer build of the suite (without `large`, `soak` and
#      `mpi`), for the parent's threads: the I/O thread, the callback
#      thread, callers that assist, async maps, imap; every report of any
#      process, workers included, fails the leg;
#   4. the libFuzzer targets for a bounded time each (clang);
#   5. memcheck over the parent side of the suite (workers are not traced);
#   6. the API reference (ci/docs.sh: Doxygen, an undocumented public
#      symbol is an error).
#
# Each slow leg multiplies every test's time limits (its CTest timeout and
# the limits the test sets itself, pp_test_time_scale()): ASan by 3, TSan
# by 5 (PROCPOOL_TEST_TIMEOUT_MULTIPLIER at configure time), valgrind by
# 10 (PROCPOOL_TEST_TIME_SCALE at run time, ci/valgrind.sh).  The chaos
# test (a seeded kill and stop storm, label `chaos`) prints its seed and
# counts in every leg; PROCPOOL_CHAOS_SEED replays one.
#
# Installs what is missing (Debian: apt-get).  Build folders go to
# build-ci/ (PROCPOOL_BUILD_DIR overrides).  PP_SKIP_ASAN=1, PP_SKIP_TSAN=1,
# PP_SKIP_FUZZ=1, PP_SKIP_VALGRIND=1 leave out a leg for a quick local run.
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
      -E 'test_soak|test_orphans|test_chaos'
# The soak, orphan and chaos tests print their counts and timings: shown
# in full.
ctest --test-dir "$build/release" --output-on-failure -V --timeout 900 \
      -R 'test_soak|test_orphans|test_chaos' | grep -vE '^(UpdateCTestConfiguration|Parse|Add|Test project|Constructing|Checking|Updating)'

step "consumers: install, find_package, pkg-config, CPack .deb, subproject"
"$repo/tests/consumer/run.sh" "$build/release" "$build/consumer"

if [ -z "${PP_SKIP_ASAN:-}" ]; then
  step "ASan + UBSan build"
  cmake -S "$repo" -B "$build/asan" -DCMAKE_BUILD_TYPE=Debug \
        -DPROCPOOL_SANITIZE=ON -DPROCPOOL_FAULT=ON \
        -DPROCPOOL_BUILD_EXAMPLES=ON \
        -DPROCPOOL_TEST_TIMEOUT_MULTIPLIER=3 >/dev/null
  cmake --build "$build/asan" -j"$jobs"
  step "ASan + UBSan tests"
  # Ten million calls under ASan only measure its quarantine: a million.
  PROCPOOL_IMAP_CALLS=1000000 PROCPOOL_ONCE_CALLS=1000 \
  ASAN_OPTIONS=detect_leaks=1:abort_on_error=0 \
  UBSAN_OPTIONS=print_stacktrace=1:halt_on_error=1 \
    ctest --test-dir "$build/asan" --output-on-failure -j2 -LE 'large|soak|mpi' \
          -E test_chaos --timeout 900
  # The chaos storm, with its counts shown; its calls run 2-3 times slower
  # under ASan: fewer of them.
  PROCPOOL_CHAOS_CALLS=${PROCPOOL_CHAOS_CALLS:-15000} \
  ASAN_OPTIONS=detect_leaks=1:abort_on_error=0 \
  UBSAN_OPTIONS=print_stacktrace=1:halt_on_error=1 \
    ctest --test-dir "$build/asan" --output-on-failure -V -R test_chaos \
          --timeout 900 | grep -E '^[0-9]+: (chaos|\[)|tests passed|FAILED|Failed'
  ASAN_OPTIONS=detect_leaks=0:abort_on_error=0 \
  UBSAN_OPTIONS=print_stacktrace=1:halt_on_error=1 \
    ctest --test-dir "$build/asan" --output-on-failure -L mpi --timeout 900
  step "fault injection walk (ASan + UBSan build)"
  "$repo/ci/fault.sh" "$build/asan"
fi

if [ -z "${PP_SKIP_TSAN:-}" ]; then
  step "ThreadSanitizer build"
  # Every process writes its reports to a file of its own (log_path):
  # a worker's would otherwise reach only its pool's log callback.  No
  # report is suppressed but what ci/tsan.supp lists (nothing of ours).
  tsan_logs=$build/tsan-reports
  cmake -S "$repo" -B "$build/tsan" -DCMAKE_BUILD_TYPE=RelWithDebInfo \
        -DPROCPOOL_TSAN=ON -DPROCPOOL_MPI=OFF -DPROCPOOL_BUILD_EXAMPLES=OFF \
        -DPROCPOOL_TEST_TIMEOUT_MULTIPLIER=5 >/dev/null
  cmake --build "$build/tsan" -j"$jobs" >/dev/null
  step "ThreadSanitizer tests"
  rm -rf "$tsan_logs" && mkdir -p "$tsan_logs"
  tsan_status=0
  PROCPOOL_IMAP_CALLS=100000 PROCPOOL_CHAOS_CALLS=${PROCPOOL_CHAOS_CALLS:-5000} \
  PROCPOOL_CHAOS_SECONDS=${PROCPOOL_CHAOS_SECONDS:-30} \
  TSAN_OPTIONS="log_path=$tsan_logs/report halt_on_error=0 second_deadlock_stack=1 suppressions=$repo/ci/tsan.supp" \
    ctest --test-dir "$build/tsan" --output-on-failure -j2 -LE 'large|soak' \
          --timeout 900 || tsan_status=1
  if compgen -G "$tsan_logs/report.*" >/dev/null; then
    echo "ThreadSanitizer reports (one file per process, in $tsan_logs):"
    cat "$tsan_logs"/report.* > "$tsan_logs/all.txt"
    { grep -h 'SUMMARY' "$tsan_logs/all.txt" || true; } | sort | uniq -c | sort -rn
    head -300 "$tsan_logs/all.txt"
    tsan_status=1
  fi
  [ "$tsan_status" = 0 ] || { echo "ThreadSanitizer leg failed"; exit 1; }
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
