#!/usr/bin/env bash
# Draws the ratio table of a bench/run.sh output as an SVG bar chart.
#
#   bench/chart.sh [--output=FILE] [INPUT]      (INPUT or stdin; FILE or stdout)
#   bench/run.sh ... | bench/chart.sh --output=docs/bench.svg
#   bench/chart.sh --check                      (only make sure gnuplot is here)
#
# One horizontal bar per line of the "ratio (one run)" table, on a log
# scale (the ratios span 0.3x to thousands); the bar is green when its
# target is met, red when missed, grey for a floor that has no target.
# The target is a black mark across the bar, written out on the right.
# A ratio that was not measured ("-") gets a row with no bar.  The
# "# procpool bench:" header line, when present, becomes the subtitle.
#
# Needs gnuplot (Debian: gnuplot-nox, installed here if missing, as the ci
# scripts do).  bench/run.sh --svg=FILE calls this at the end of a run.
set -euo pipefail

here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
root=$(dirname "$here")

usage() {
  echo "usage: bench/chart.sh [--output=FILE.svg] [bench-output.txt]" >&2
  exit 2
}

output=""
input=""
check=""
for a in "$@"; do
  case $a in
  --output=*) output=${a#--output=} ;;
  --check) check=1 ;;
  -) input="" ;;
  -*) usage ;;
  *)
    [ -z "$input" ] || usage
    input=$a
    ;;
  esac
done

if ! command -v gnuplot >/dev/null 2>&1; then
  # shellcheck source=ci/deps.sh
  . "$root/ci/deps.sh"
  pp_ensure_packages gnuplot-nox >&2
  command -v gnuplot >/dev/null 2>&1 || {
    echo "bench/chart.sh: gnuplot is needed" >&2
    exit 1
  }
fi
[ -z "$check" ] || exit 0

tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT

cat "${input:-/dev/stdin}" >"$tmp/in.txt"

# The rows, one per ratio line: status measured want goal label, tab-separated
# (status: met, MISSED, floor, or none when not measured).
awk -v OFS='\t' '
  /^ratio \(one run\)/ { on = 1; next }
  on && NF == 0 { on = 0 }
  !on { next }
  {
    status = "none"; want = ""; goal = ""; n = NF
    if ($n == "met" || $n == "MISSED") { status = $n; n-- }
    if ($n == "(floor)") { if (status == "none") status = "floor"; n-- }
    else if ($(n - 1) == ">=" || $(n - 1) == "<=") {
      want = $(n - 1); goal = $n; sub(/x$/, "", goal); n -= 2
    } else if ($n == "x") n--            # a floor that was not measured
    measured = $n; n--
    if (measured !~ /^[0-9.eE+-]+x$/) { measured = ""; status = "none" }
    else sub(/x$/, "", measured)
    label = $1
    for (i = 2; i <= n; i++) label = label " " $i
    print status, measured, want, goal, label
  }
' "$tmp/in.txt" >"$tmp/rows.tsv"

if [ ! -s "$tmp/rows.tsv" ]; then
  echo "bench/chart.sh: no \"ratio (one run)\" table in the input" >&2
  exit 1
fi

subtitle=$(sed -n 's/^# procpool bench: *//p' "$tmp/in.txt" | head -n 1)

# The gnuplot script: the data as a datablock, one label per row for the
# names (left), the values (end of the bar) and the targets (right margin).
awk -F '\t' -v subtitle="$subtitle" '
  function q(s) { gsub(/\\/, "\\\\", s); gsub(/"/, "\\\"", s); return "\"" s "\"" }
  function lg(x) { return log(x) / log(10) }
  function fmt(x) { return x + 0 >= 100 ? sprintf("%.0f", x) : sprintf("%.3g", x) }
  {
    n++; st[n] = $1; me[n] = $2; wa[n] = $3; go[n] = $4; la[n] = $5
    if ($2 + 0 > 0) { lo = lo == "" || $2 + 0 < lo ? $2 + 0 : lo; hi = hi == "" || $2 + 0 > hi ? $2 + 0 : hi }
    if ($4 + 0 > 0) { lo = lo == "" || $4 + 0 < lo ? $4 + 0 : lo; hi = hi == "" || $4 + 0 > hi ? $4 + 0 : hi }
  }
  END {
    if (lo == "") { lo = 1; hi = 10 }
    # From a whole decade, with room on the right for the value written
    # after the longest bar.
    xmin = 10 ^ int(lg(lo) >= 0 ? lg(lo) : lg(lo) - 0.999999)
    if (lg(lo) - lg(xmin) < 0.15) xmin /= 10
    xmax = hi * 8
    print "set encoding utf8"
    printf "set terminal svg size 980,%d fixed name \"procpool_bench\" noenhanced font \"Helvetica,13\" background \"white\"\n", 110 + 34 * n
    print "set output"
    print "set lmargin at screen 0.37"
    print "set rmargin at screen 0.84"
    print "set tmargin 4.5"
    print "set bmargin 6"
    title = q("procpool: measured ratios and their targets")
    if (subtitle != "") title = substr(title, 1, length(title) - 1) "\\n" substr(q(subtitle), 2)
    printf "set title %s\n", title
    printf "set xlabel %s\n", q("ratio (log scale)")
    print "set logscale x 10"
    printf "set xrange [%g:%g]\n", xmin, xmax
    printf "set yrange [%g:%g]\n", n + 0.6, 0.4
    print "set format x \"%gx\""
    print "set mxtics 10"
    print "set grid xtics lc rgb \"#dddddd\" lw 1"
    print "set border 1"
    print "set xtics nomirror out"
    print "unset ytics"
    print "set style fill solid 0.9 noborder"
    print "set key outside bottom center horizontal samplen 1.5 width 2"
    print "set arrow from 1, graph 0 to 1, graph 1 nohead lc rgb \"#555555\" dt 2 lw 1 back"
    printf "set label %s at graph 1.02, graph 1 left offset 0,1\n", q("target")
    for (i = 1; i <= n; i++) {
      printf "set label %s at graph -0.01, first %d right\n", q(la[i]), i
      if (me[i] == "") {
        printf "set label %s at graph 0.01, first %d left tc rgb \"#777777\"\n", q("not measured"), i
      } else {
        # after the bar, or after the target mark when that is further right
        x = go[i] != "" && go[i] + 0 > me[i] + 0 ? go[i] : me[i]
        printf "set label %s at first %g, first %d left offset 0.8,0\n", q(fmt(me[i]) "x"), x, i
      }
      if (go[i] != "") {
        t = (wa[i] == ">=" ? "≥ " : "≤ ") fmt(go[i]) "x"
        col = st[i] == "met" ? "#1b7a2e" : st[i] == "MISSED" ? "#c62828" : "#555555"
        txt = t (st[i] == "met" ? "  met" : st[i] == "MISSED" ? "  MISSED" : "")
        printf "set label %s at graph 1.02, first %d left tc rgb \"%s\"\n", q(txt), i, col
      } else if (st[i] == "floor") {
        printf "set label %s at graph 1.02, first %d left tc rgb \"#555555\"\n", q("floor, no target"), i
      }
    }
    print "$rows << EOD"
    for (i = 1; i <= n; i++) {
      c = st[i] == "met" ? 0 : st[i] == "MISSED" ? 1 : 2
      printf "%d %s %s %d\n", i, me[i] == "" ? "NaN" : me[i], go[i] == "" ? "NaN" : go[i], c
    }
    print "EOD"
    printf "xmin = %g\n", xmin
    print "plot $rows using (sqrt(xmin * $2)):1:(xmin):2:($1 - 0.32):($1 + 0.32):($4 == 0 ? 0x1b9e3a : $4 == 1 ? 0xd32f2f : 0x9e9e9e) \\"
    print "       with boxxyerror lc rgb variable notitle, \\"
    print "     $rows using 3:($1 - 0.42):(0):(0.84) with vectors nohead lc rgb \"black\" lw 3 notitle, \\"
    print "     keyentry with boxes fc rgb \"#1b9e3a\" title \"target met\", \\"
    print "     keyentry with boxes fc rgb \"#d32f2f\" title \"target missed\", \\"
    print "     keyentry with boxes fc rgb \"#9e9e9e\" title \"floor (no target)\", \\"
    print "     keyentry with vectors nohead lc rgb \"black\" lw 3 title \"target\""
  }
' "$tmp/rows.tsv" >"$tmp/chart.gp"

if [ -n "$output" ]; then
  gnuplot "$tmp/chart.gp" >"$tmp/chart.svg"
  mv "$tmp/chart.svg" "$output"
else
  gnuplot "$tmp/chart.gp"
fi
