#!/bin/sh
# Builds procpool-bench if needed, runs it and bench_mp.py one after the
# other (same options, e.g. --workers=4 --calls=20000), and prints both
# tables and then one side by side with ratios.
#
#   bench/run.sh [options for both programs]
#   BUILD_DIR=... PYTHON=... bench/run.sh
#
# Ratios are speeds: above 1 procpool is faster (for times, the other's time
# divided by procpool's; for rates, procpool's rate divided by the other's).
set -eu

here=$(cd "$(dirname "$0")" && pwd)
root=$(dirname "$here")
build=${BUILD_DIR:-$root/build-ex}
python=${PYTHON:-python3}

if [ ! -f "$build/CMakeCache.txt" ]; then
  cmake -S "$root" -B "$build" -DPROCPOOL_BUILD_TESTS=OFF >/dev/null
fi
cmake --build "$build" --target procpool-bench >/dev/null

tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT INT TERM

"$build/bench/procpool-bench" "$@" | tee "$tmp/c.txt"
echo
"$python" "$here/bench_mp.py" "$@" | tee "$tmp/py.txt"
echo

awk '
  FNR == 1 { file++ }
  /^#/ { next }
  file == 1 { c[$1] = $2 }
  file == 2 { py[$1] = $2 }
  function num(v) { return v == "" ? "-" : sprintf("%.2f", v) }
  # Speed ratio of procpool against another value: >1 = procpool faster.
  function ratio(pp, other, lower_is_better) {
    if (pp == "" || other == "" || pp == 0 || other == 0) return "-"
    return sprintf("%.2fx", lower_is_better ? other / pp : pp / other)
  }
  function line(name, key, pykey, rawkey, lower) {
    printf "%-34s %12s %12s %12s %9s %9s\n", name, num(c[key]),
           num(py[pykey]), num(c[rawkey]),
           ratio(c[key], py[pykey], lower), ratio(c[key], c[rawkey], lower)
  }
  END {
    printf "%-34s %12s %12s %12s %9s %9s\n", "measurement", "procpool",
           "python", "raw pipe", "pp/py", "pp/raw"
    line("start + 1 call + stop (ms)", "startup_ms", "startup_ms",
         "raw_startup_ms", 1)
    line("  python with spawn (ms)", "startup_ms", "startup_spawn_ms", "", 1)
    line("tiny round trip (us)", "rtt_us", "rtt_us", "raw_rtt_us", 1)
    line("tiny calls/s, chunksize 1", "tput_c1_cps", "tput_c1_cps",
         "raw_tput_c1_cps", 0)
    line("tiny calls/s, chunksize auto", "tput_auto_cps", "tput_auto_cps",
         "", 0)
    line("tiny calls/s, chunksize 64", "tput_c64_cps", "tput_c64_cps",
         "raw_tput_c64_cps", 0)
    line("large echo (GB/s)", "echo_gbps", "echo_gbps", "raw_echo_gbps", 0)
    line("round trip, inherited output (us)", "rtt_inherit_us", "rtt_us",
         "raw_rtt_us", 1)
    line("calls/s, c64, inherited output", "tput_c64_inherit_cps",
         "tput_c64_cps", "raw_tput_c64_cps", 0)
    print "ratios: speed of procpool relative to the column (>1 = faster)"
  }
' "$tmp/c.txt" "$tmp/py.txt"
