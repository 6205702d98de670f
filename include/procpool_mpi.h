/**
 * @file procpool_mpi.h
 * procpool_mpi.h - the MPI backend of procpool (library procpool_mpi, or
 * procpool_mpi_static with the static procpool).
 *
 * A program that may run under mpirun calls pp_mpi_enable() first thing in
 * main(), then the worker guard as usual:
 *
 *     int main(int argc, char **argv) {
 *       int rc;
 *       pp_mpi_enable();
 *       if (pp_worker_main(argc, argv, tasks, &rc)) return rc;
 *       ...   // rank 0 only: pools with backend PP_BACKEND_MPI use the ranks
 *     }
 *
 * and is launched with `mpirun -n N ./app` (see the README, "Beyond one
 * machine").
 */
#ifndef PROCPOOL_MPI_H
#define PROCPOOL_MPI_H

#include "procpool.h"

#ifdef __cplusplus
extern "C" {
#endif

/**
 * Enables the MPI backend in this process: call it at the top of main(),
 * before the worker guard (pp_worker_main()).
 *
 * It only registers the backend; it makes no MPI call.  Then, in a job
 * launched by `mpirun -n N ./app` with N > 1, the worker guard returns 0 on
 * rank 0 and serves rank 0's pools on every other rank (it never returns
 * there before rank 0's program ends); a pool created on rank 0 with
 * pp_pool_options_t.backend = PP_BACKEND_MPI (or PROCPOOL_BACKEND=mpi) runs
 * its calls on those ranks.  Each serving rank runs them in a local pool of
 * its own (PROCPOOL_MPI_WORKERS workers, default one per CPU the rank may
 * use), so a crashing, timed-out or cancelled call fails alone.  Outside
 * mpirun nothing changes, and MPI pools fall back to local ones.
 *
 * MPI is initialised by procpool on rank 0 when the first MPI pool starts
 * (MPI_Init_thread, MPI_THREAD_MULTIPLE asked, on a thread of procpool's
 * that makes all of rank 0's MPI calls) and finalised when the process
 * exits (atexit).  An application that uses MPI itself calls
 * MPI_Init_thread after the worker guard (code before the guard runs in
 * the local pools' worker processes too, which must not become MPI
 * processes), with MPI_THREAD_SERIALIZED or more, and MPI_Finalize as
 * usual: procpool then neither initialises nor finalises MPI on rank 0,
 * and its MPI_Finalize (procpool_mpi provides one through MPI's profiling
 * interface, so link procpool_mpi before MPI's library, as CMake's
 * procpool::procpool_mpi does) first lets the serving ranks go.  A serving
 * rank always finalises MPI itself, since the application's code never
 * runs there.  MPI pools run one at a time: an MPI pool created while
 * another is alive is a local one, with a log line.  If rank 0 never
 * creates an MPI pool, the serving ranks are released when it exits.
 *
 * Environment: PROCPOOL_MPI_WORKERS (the local pool's size on a serving
 * rank), PROCPOOL_MPI_DEADLINE_MS (how long rank 0 waits without hearing
 * from a rank that holds calls before it fails them with PP_EWORKERDIED;
 * default 10000).
 *
 * Returns 0, or PP_EINVAL if this procpool_mpi does not match the procpool
 * library it was loaded with (it must come from the same build).
 */
PP_EXTERN int pp_mpi_enable(void);

#ifdef __cplusplus
}
#endif

#endif /* PROCPOOL_MPI_H */
