#!/usr/bin/env bash
# ci/fault.sh <build dir> - the fault-injection walk (SQLite's malloc and
# I/O-error tests are the model).
#
# <build dir> is a build with -DPROCPOOL_FAULT=ON (ci/test.sh uses its
# ASan+UBSan build).  Its program tests/pp_fault_run makes a pool with an
# initializer, runs a starmap, a map, a large future and an imap, and
# destroys the pool, checking every outcome (tests/fault_run.c).  This
# script runs it again and again with PROCPOOL_FAULT_AT=N for N = 1, 2, ...
# in the parent, then in the workers (each worker fails its Nth fallible
# call), until a run sees no fault fire.  Every run must
#   - end within PP_FAULT_RUN_LIMIT seconds (timeout; default 60),
#   - exit 0: never a signal or an abort, and the program's own checks held
#     (right results where OK, a PP_E* status and a message otherwise, no
#     worker left, no descriptor left, a failed create can be retried),
#   - and, under ASan, leak nothing (LeakSanitizer fails the exit status).
# Sampling: every N up to PP_FAULT_EVERY (default 400), then every
# PP_FAULT_STRIDE-th (default 7): the calls past the first few hundred are
# the same rounds of the same calls.  Then a sample of persistent faults
# (PROCPOOL_FAULT_TIMES=0: every call from the Nth on fails): every N up to
# PP_FAULT_PERSISTENT_EVERY (50), then every PP_FAULT_PERSISTENT_STRIDE-th
# (10); PP_FAULT_PERSISTENT=0 leaves it out.  Prints the figures at the end.
set -uo pipefail
build=${1:?usage: ci/fault.sh <build dir with PROCPOOL_FAULT=ON>}
prog="$build/tests/pp_fault_run"
every=${PP_FAULT_EVERY:-400}
stride=${PP_FAULT_STRIDE:-7}
limit=${PP_FAULT_RUN_LIMIT:-60}
if [ ! -x "$prog" ]; then
  echo "ci/fault.sh: $prog is missing (configure with -DPROCPOOL_FAULT=ON)" >&2
  exit 2
fi
# Every allocation of the library goes through the counter (fault.h): a
# bare malloc() would be a site the walk never fails.
bare=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." &&
       grep -nE '(^|[^_[:alnum:].>])(malloc|calloc|realloc|strdup|_strdup)\(' \
            src/*.c platform/*/*.c | grep -v '^src/fault\.c:' |
       grep -vE '^[^:]+:[0-9]+:\s*(/?\*|//)' || true)
if [ -n "$bare" ]; then
  echo "ci/fault.sh: allocations that bypass pp__malloc (src/fault.h):" >&2
  echo "$bare" >&2
  exit 1
fi
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
# Leaks fail the run; a sanitizer's report is in the run's output.
export ASAN_OPTIONS=${ASAN_OPTIONS:-detect_leaks=1:abort_on_error=0}
export UBSAN_OPTIONS=${UBSAN_OPTIONS:-print_stacktrace=1:halt_on_error=1}

failures=0
start=$(date +%s)
summary="$work/summary"
: >"$summary"

# run <where> <N>: one run; sets $fired to the faults it injected.
run() {
  local where=$1 n=$2 log="$work/log" out="$work/out" rc
  : >"$log"
  PROCPOOL_FAULT_AT=$n PROCPOOL_FAULT_IN=$where PROCPOOL_FAULT_LOG=$log \
  PROCPOOL_FAULT_TIMES=$PP_FAULT_TIMES \
    timeout -k 5 "$limit" "$prog" >"$out" 2>&1
  rc=$?
  fired=$(grep -c '^fired' "$log")
  if [ "$rc" -ne 0 ]; then
    failures=$((failures + 1))
    case $rc in
      124|137) why="did not end within ${limit}s (a hang)" ;;
      *) if [ "$rc" -gt 128 ]; then why="ended by signal $((rc - 128))";
         else why="exit status $rc"; fi ;;
    esac
    echo "FAULT RUN FAILED: PROCPOOL_FAULT_IN=$where PROCPOOL_FAULT_AT=$n: $why"
    grep '^fired' "$log" | sed 's/^/  /'
    sed 's/^/  | /' "$out" | tail -n 60
  fi
  # "what:STATUS" words of the run's summary line, for the figures.
  sed -n 's/^fault-run: [A-Za-z]*; [^;]*; //p' "$out" | tr ' ' '\n' |
    sed -E 's/\[[0-9]+\/[0-9]+\]//' | sed "s/^/$where /" >>"$summary"
}

# walk <times> <every> <stride>: the walk in the parent, then in the
# workers, with PROCPOOL_FAULT_TIMES=<times> (1: the Nth call fails, once;
# 0: every call from the Nth on fails, as when memory stays short).
walk() {
  local times=$1 every=$2 stride=$3 where n runs hits t0 last kind
  kind=$([ "$times" = 1 ] && echo "one fault" || echo "every call from N on")
  for where in parent worker; do
    n=1 runs=0 hits=0 t0=$(date +%s)
    while :; do
      PP_FAULT_TIMES=$times run "$where" "$n"
      runs=$((runs + 1))
      if [ "$fired" -eq 0 ]; then
        break
      fi
      hits=$((hits + 1))
      if [ "$n" -lt "$every" ]; then n=$((n + 1)); else n=$((n + stride)); fi
    done
    # The run without a fault counted the fallible calls (fault_run.c says
    # the parent's; each worker writes its own to the log at its end).
    last="$(grep -o '[0-9]* fallible calls' "$work/out" | head -n 1) in the parent, $(grep '^count worker' "$work/log" | awk '{print $4}' | sort -n | tr '\n' ' ')in the workers"
    printf 'fault walk (%s, %s): %d runs, %d with a fault injected, N = 1..%d (every N to %d, then every %dth), %ds; the run without a fault: %s\n' \
      "$where" "$kind" "$runs" "$hits" "$n" "$every" "$stride" \
      $(( $(date +%s) - t0 )) "$last"
  done
}

walk 1 "$every" "$stride"
# A sample of persistent faults: what a retry loop or a fallback does when
# the next attempt fails too.
if [ "${PP_FAULT_PERSISTENT:-1}" != 0 ]; then
  walk 0 "${PP_FAULT_PERSISTENT_EVERY:-50}" "${PP_FAULT_PERSISTENT_STRIDE:-10}"
fi
echo "statuses seen (runs):"
sort "$summary" | uniq -c | sort -k2,2 -k1,1nr | sed 's/^/  /'
echo "fault walk: $failures failed run(s), $(( $(date +%s) - start ))s in all"
[ "$failures" -eq 0 ]
