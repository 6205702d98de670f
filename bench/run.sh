#!/bin/sh
# procpool's figures next to Python's multiprocessing.Pool and the raw
# floor, measured in one run.
#
#   bench/run.sh [--reps=3] [--only=tiny,rtt,...] [--workers=2]
#                [--calls=1000000] [--mib=256] [--svg=FILE]
#   BUILD_DIR=... PYTHON=... bench/run.sh ...
#   BEFORE=/path/to/old/procpool-bench bench/run.sh ...
#
# BEFORE names a procpool-bench built from an earlier commit (this bench/
# folder copied into it): its figures run interleaved with the others and
# get a column of their own, the before/after table of a change.
#
# Every figure runs in a fresh process (procpool-bench --figure=F,
# bench_mp.py --figure=F), and the repetitions are interleaved: rep 1 of
# every implementation of every figure, then rep 2, and so on, so that a
# noisy moment on a shared machine hits all of them alike.  The tables
# give the median of the repetitions, then the ratios the project holds
# itself to (issue 9), each with its target.  Nothing here fails on a
# number: benchmarks are not tests.
#
# --svg=FILE also draws the ratio table as a bar chart into FILE: the
# output is printed as always, then piped to bench/chart.sh (gnuplot;
# chart.sh alone redraws a chart from a saved output).
set -eu

here=$(cd "$(dirname "$0")" && pwd)
root=$(dirname "$here")
build=${BUILD_DIR:-$root/build-bench}
python=${PYTHON:-python3}

reps=3
only="startup rtt tiny tiny_inherit imap c1 echo echo_zc copy copy_zc"
only="$only as_completed"
pass=""
svg=""
for a in "$@"; do
  case $a in
  --reps=*) reps=${a#--reps=} ;;
  --only=*) only=$(echo "${a#--only=}" | tr , ' ') ;;
  --workers=* | --calls=* | --mib=*) pass="$pass $a" ;;
  --svg=?*) svg=${a#--svg=} ;;
  *)
    echo "usage: bench/run.sh [--reps=3] [--only=F,...] [--workers=N]" \
      "[--calls=N] [--mib=N] [--svg=FILE]" >&2
    exit 2
    ;;
  esac
done

# A chart that cannot be drawn fails now, not after the run.
if [ -n "$svg" ]; then
  if [ ! -d "$(dirname "$svg")" ]; then
    echo "bench/run.sh: no folder for $svg" >&2
    exit 2
  fi
  "$here/chart.sh" --check
fi

if [ ! -f "$build/CMakeCache.txt" ]; then
  cmake -S "$root" -B "$build" -DCMAKE_BUILD_TYPE=Release \
    -DPROCPOOL_BUILD_TESTS=OFF >/dev/null
fi
cmake --build "$build" --target procpool-bench >/dev/null
bench=$build/bench/procpool-bench

tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT INT TERM

# The runs that measure figure $1: "impl command..." lines.
runs() {
  case $1 in
  startup)
    echo "pp $bench --figure=startup"
    echo "py $python $here/bench_mp.py --figure=startup"
    echo "py $python $here/bench_mp.py --figure=startup_spawn"
    echo "raw $bench --figure=raw_startup"
    ;;
  rtt | c1 | echo)
    echo "pp $bench --figure=$1"
    echo "py $python $here/bench_mp.py --figure=$1"
    echo "raw $bench --figure=raw_$1"
    ;;
  as_completed)
    # Three ways of taking futures as they finish, one row each.
    echo "pp $bench --figure=as_completed"
    echo "pp $bench --figure=as_completed_one"
    echo "pp $bench --figure=as_completed_many"
    ;;
  imap)
    echo "pp $bench --figure=imap"
    echo "py $python $here/bench_mp.py --figure=imap"
    ;;
  tiny)
    echo "pp $bench --figure=tiny"
    echo "py $python $here/bench_mp.py --figure=tiny"
    echo "raw $bench --figure=raw_batch"
    ;;
  *) echo "pp $bench --figure=$1" ;;
  esac
  if [ -n "${BEFORE:-}" ]; then
    echo "old $BEFORE --figure=$1"
  fi
}

header="# procpool bench: $reps interleaved repetitions;$pass $(nproc) cpus,"
header="$header load $(cut -d' ' -f1-3 /proc/loadavg)"
echo "$header"
rep=1
while [ "$rep" -le "$reps" ]; do
  for f in $only; do
    runs "$f" | while read -r impl cmd; do
      # shellcheck disable=SC2086 # the words are the command
      if ! out=$(timeout 900 $cmd $pass); then
        echo "# rep $rep: '$cmd' failed" >&2
        continue
      fi
      echo "$out" | sed "s/^/$impl $rep /" | tee -a "$tmp/all.txt"
    done
  done
  rep=$((rep + 1))
done
echo

awk '
  { v[$1 " " $3] = v[$1 " " $3] " " $4; unit[$3] = $5 }
  function median(list,   a, n, i, j, t) {
    n = split(list, a, " ")
    if (n == 0) return ""
    for (i = 2; i <= n; i++)
      for (j = i; j > 1 && a[j - 1] + 0 > a[j] + 0; j--) {
        t = a[j]; a[j] = a[j - 1]; a[j - 1] = t
      }
    return n % 2 ? a[(n + 1) / 2] : (a[n / 2] + a[n / 2 + 1]) / 2
  }
  function m(impl, key) { return median(v[impl " " key]) }
  function num(x) {
    if (x == "") return "-"
    return x >= 1000 ? sprintf("%.0f", x) : sprintf("%.3g", x)
  }
  # want: ">=" when procpool should be at least target x the other, "<="
  # when at most (times, memory).
  function target(what, a, b, want, goal,   r, ok) {
    if (a == "" || b == "" || b == 0) {
      printf "%-46s %9s %9s\n", what, "-", want " " goal "x"; return
    }
    r = a / b
    if (goal == "") { printf "%-46s %8.2fx %9s\n", what, r, "(floor)"; return }
    ok = want == ">=" ? r >= goal : r <= goal
    printf "%-46s %8.2fx %9s  %s\n", what, r, want " " goal "x",
           ok ? "met" : "MISSED"
  }
  END {
    before = ENVIRON["BEFORE"] != ""
    printf "%-28s %14s %14s %14s", "median", "procpool", "python", "raw"
    if (before) printf " %14s", "before"
    printf "  %s\n", "unit"
    split("startup_ms startup_spawn_ms rtt_us tiny_cps tiny_inherit_cps " \
          "imap_cps " \
          "tiny_rss_mb c1_cps echo_gbps echo_zc_gbps copy_gbps " \
          "copy_zc_gbps as_completed_fps as_completed_one_fps " \
          "as_completed_many_fps", keys, " ")
    for (i = 1; i in keys; i++) {
      k = keys[i]
      raw = k == "tiny_cps" ? "raw_batch_cps" : \
            k ~ /^(echo|copy)/ ? "raw_echo_gbps" : "raw_" k
      if (m("pp", k) m("py", k) m("raw", raw) == "") continue
      printf "%-28s %14s %14s %14s", k, num(m("pp", k)), num(m("py", k)),
             num(m("raw", raw))
      if (before) printf " %14s", num(m("old", k))
      printf "  %s\n", unit[k] != "" ? unit[k] : unit[raw]
    }
    print ""
    printf "%-46s %9s %9s\n", "ratio (one run)", "measured", "target"
    target("tiny calls/s, default: procpool / python", m("pp", "tiny_cps"),
           m("py", "tiny_cps"), ">=", 2)
    target("tiny calls/s, default: procpool / raw batched",
           m("pp", "tiny_cps"), m("raw", "raw_batch_cps"), "", "")
    target("output tagging: tagged / untagged calls/s", m("pp", "tiny_cps"),
           m("pp", "tiny_inherit_cps"), ">=", 0.9)
    target("streaming imap calls/s: procpool / python", m("pp", "imap_cps"),
           m("py", "imap_cps"), ">=", 2)
    target("streaming imap / array map calls/s", m("pp", "imap_cps"),
           m("pp", "tiny_cps"), ">=", 0.5)
    target("chunksize 1 calls/s: procpool / python", m("pp", "c1_cps"),
           m("py", "c1_cps"), ">=", 5)
    target("round trip: procpool / raw", m("pp", "rtt_us"),
           m("raw", "raw_rtt_us"), "<=", 1.5)
    target("start + 1 call + stop: procpool / raw", m("pp", "startup_ms"),
           m("raw", "raw_startup_ms"), "<=", 1.5)
    target("peak memory of the 1M map: procpool / python",
           m("pp", "tiny_rss_mb"), m("py", "tiny_rss_mb"), "<=", 1)
    target("large echo: procpool / raw", m("pp", "echo_gbps"),
           m("raw", "raw_echo_gbps"), ">=", 0.9)
    target("large echo, zero copy: procpool / raw", m("pp", "echo_zc_gbps"),
           m("raw", "raw_echo_gbps"), ">=", 2)
    target("large new result: procpool / raw", m("pp", "copy_gbps"),
           m("raw", "raw_echo_gbps"), ">=", 0.9)
    target("large new result, zero copy: procpool / raw",
           m("pp", "copy_zc_gbps"), m("raw", "raw_echo_gbps"), ">=", 2)
    target("large echo: procpool / python", m("pp", "echo_gbps"),
           m("py", "echo_gbps"), ">=", 1)
    target("as_completed futures/s: queue / each in turn",
           m("pp", "as_completed_fps"), m("pp", "as_completed_one_fps"),
           ">=", 0.8)
    target("as_completed futures/s: queue / wait_many loop",
           m("pp", "as_completed_fps"), m("pp", "as_completed_many_fps"),
           ">=", 5)
  }
' "$tmp/all.txt" >"$tmp/tables.txt"
cat "$tmp/tables.txt"

if [ -n "$svg" ]; then
  # The output above, again, for the chart.
  {
    echo "$header"
    cat "$tmp/all.txt"
    echo
    cat "$tmp/tables.txt"
  } | "$here/chart.sh" --output="$svg"
  echo "# chart: $svg" >&2
fi
