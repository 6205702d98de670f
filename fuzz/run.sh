#!/usr/bin/env bash
# fuzz/run.sh BUILD_DIR [SECONDS] - runs each libFuzzer target for a bounded
# time on a copy of the seed corpus and prints its execution count.  Exits
# non-zero on any crash, leak, timeout or out-of-memory.
set -euo pipefail
here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
build=$1
seconds=${2:-30}
for t in ring tuple; do
  work=$(mktemp -d)
  cp "$here/corpus/$t"/* "$work/" 2>/dev/null || true
  log="$build/fuzz_$t.log"
  if ! "$build/fuzz/fuzz_$t" -max_total_time="$seconds" -timeout=10 \
        -rss_limit_mb=2048 -max_len=65536 -print_final_stats=1 "$work" \
        >"$log" 2>&1; then
    tail -40 "$log"
    echo "fuzz_$t: FAILED (log: $log)"
    rm -rf "$work"
    exit 1
  fi
  runs=$(grep -o 'stat::number_of_executed_units: *[0-9]*' "$log" | grep -o '[0-9]*$' || echo '?')
  echo "fuzz_$t: ${seconds}s, ${runs} executions, no crash, leak or hang"
  rm -rf "$work"
done
