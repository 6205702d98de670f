#!/usr/bin/env bash
# ci/valgrind.sh BUILD_DIR - runs the test binaries under valgrind memcheck.
#
# Only the parent side is checked: workers are started with posix_spawn and
# valgrind does not follow them (--trace-children=no), as libuv's runner
# does for its helper processes.  Fails on any memcheck error or any byte
# definitely lost.  The `large` and `soak` tests are left out: they measure
# volume, not memory safety, and take too long under valgrind.
#
# Valgrind runs the parent 10-50 times slower than the build it runs was
# made for: PROCPOOL_TEST_TIME_SCALE=10 multiplies every time limit the
# tests set themselves (pp_test_time_scale()), and each test is bounded by
# `timeout` (PP_VALGRIND_TIMEOUT seconds, 1200 by default) so that a hang
# ends the leg instead of the CI job.  The chaos storm runs 1500 calls.
set -euo pipefail
build=$1
status=0
for t in "$build"/tests/test_*; do
  [ -x "$t" ] || continue
  name=$(basename "$t")
  case "$name" in *large*|*soak*|*.so|*.dll) continue ;; esac
  log="$build/valgrind-$name.log"
  start=$(date +%s)
  if PROCPOOL_IMAP_CALLS=20000 PROCPOOL_ONCE_CALLS=300 PROCPOOL_TEST_TIME_SCALE=10 \
     PROCPOOL_CHAOS_CALLS=1500 PROCPOOL_CHAOS_SECONDS=60 \
     timeout -k 10 "${PP_VALGRIND_TIMEOUT:-1200}" \
     valgrind --tool=memcheck --error-exitcode=99 \
       --leak-check=full --errors-for-leak-kinds=definite \
       --show-leak-kinds=definite --trace-children=no \
       --suppressions="$(dirname "${BASH_SOURCE[0]}")/valgrind.supp" \
       "$t" >"$log" 2>&1; then
    echo "valgrind $name: ok ($(( $(date +%s) - start ))s, $(grep -o 'ERROR SUMMARY: [0-9]* errors' "$log" | tail -1), $(grep -o 'definitely lost: [0-9,]* bytes' "$log" | tail -1 || echo 'no leaks'))"
    grep '^chaos:' "$log" || true
  else
    echo "valgrind $name: FAILED after $(( $(date +%s) - start ))s"
    grep '^chaos:' "$log" || true
    # A failed assertion (a timing that valgrind stretched) says so itself.
    grep -E '^\[  (ERROR|FAILED) |^\[   LINE' "$log" | head -20 || true
    grep -E '==[0-9]+==' "$log" | head -60
    status=1
  fi
done
exit $status
