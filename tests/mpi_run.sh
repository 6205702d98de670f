#!/usr/bin/env bash
# mpi_run.sh MPIEXEC NPROCS shm|tcp|recovery|deadline|fault|env PROGRAM [ARGS...]
#
# Runs an MPI test program as CTest's tests test_mpi_* do: under mpirun
# with NPROCS ranks, oversubscribed (CI machines have 2 cores), as root if
# need be, with every launch bounded by `timeout` and all traffic kept on
# the loopback interface.  shm: Open MPI's default transports (shared
# memory between ranks on one node); tcp: the TCP btl only (what traffic
# between nodes uses without InfiniBand); recovery: mpirun
# --enable-recovery, which lets the job outlive a rank that dies, and a
# silence deadline of 3 s; deadline: mpirun's defaults and a silence
# deadline of 2 s on every rank; fault: PROCPOOL_MPI_FAIL_ALLOC (src/mpi's
# test hook) exported to every rank, and a deadline of 3 s; env:
# PROCPOOL_BACKEND=mpi exported to every rank, with PP_MPI_LIBDIR (where
# libprocpool_mpi is) on LD_LIBRARY_PATH.
# PP_MPI_TIMEOUT (seconds, 240) bounds the job; PP_MPI_LOAD=N runs N busy
# loops beside it, as on a loaded machine, ended with the script.
# Afterwards no process of the job may be left: one is a failure.
set -u
mpiexec=$1 np=$2 mode=$3 prog=$4
shift 4
load=()
stop_load() {
  if [ ${#load[@]} -gt 0 ]; then
    kill "${load[@]}" 2>/dev/null
    wait "${load[@]}" 2>/dev/null
    load=()
  fi
}
trap stop_load EXIT
# Each loop ends by itself too, should this script be killed before its
# trap runs.
for ((i = 0; i < ${PP_MPI_LOAD:-0}; i++)); do
  timeout $(( ${PP_MPI_TIMEOUT:-240} + 30 )) yes >/dev/null &
  load+=($!)
done
export OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1
opts=(--oversubscribe -n "$np" --mca btl_tcp_if_include lo
      --mca oob_tcp_if_include lo)
case $mode in
  shm) ;;
  tcp) opts+=(--mca btl self,tcp) ;;
  recovery) opts+=(--enable-recovery -x PROCPOOL_MPI_DEADLINE_MS=3000) ;;
  deadline) opts+=(-x PROCPOOL_MPI_DEADLINE_MS=2000) ;;
  fault) opts+=(-x PROCPOOL_MPI_FAIL_ALLOC=${PROCPOOL_MPI_FAIL_ALLOC:?}
                -x PROCPOOL_MPI_DEADLINE_MS=3000) ;;
  env)
    export PROCPOOL_BACKEND=mpi
    export LD_LIBRARY_PATH=${PP_MPI_LIBDIR:?}${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}
    opts+=(-x PROCPOOL_BACKEND -x LD_LIBRARY_PATH) ;;
  *) echo "mpi_run.sh: unknown mode $mode" >&2; exit 2 ;;
esac
timeout -k 10 "${PP_MPI_TIMEOUT:-240}" "$mpiexec" "${opts[@]}" "$prog" "$@"
rc=$?
stop_load
if [ $rc = 124 ] || [ $rc = 137 ]; then
  echo "mpi_run.sh: the job did not end within ${PP_MPI_TIMEOUT:-240} s" >&2
fi
sleep 1
left=$(pgrep -f "^$prog")
if [ -n "$left" ]; then
  echo "mpi_run.sh: processes of the job are left:" >&2
  pgrep -a -f "^$prog" >&2
  # They are this test's own: ended, so that they burden nothing after it.
  kill -KILL $left 2>/dev/null
  exit 1
fi
exit $rc
