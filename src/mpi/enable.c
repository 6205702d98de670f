/*
 * enable.c - pp_mpi_enable(): hands the core the MPI engine's functions.
 */
#include "procpool_mpi.h"
#include "ppm.h"

const pp__core_t *ppm_core;

static const pp__engine_t engine = {
    PP__ENGINE_ABI,  "MPI",           ppm_serve,          ppm_master_start,
    ppm_master_wake, ppm_master_stop, ppm_master_workers,
};

int pp_mpi_enable(void) {
  const pp__core_t *core = pp__engine_register(&engine);
  if (core == NULL || core->abi != PP__ENGINE_ABI)
    return PP_EINVAL;
  ppm_core = core;
  return 0;
}

/* An application that begins MPI itself ends it with MPI_Finalize on rank
 * 0, which waits for every rank to end MPI too; the serving ranks would
 * wait for rank 0's STOP and never join.  So procpool_mpi provides
 * MPI_Finalize through MPI's profiling interface: on rank 0 it first
 * stops the engine thread (no MPI call may follow) and lets the serving
 * ranks go, then calls PMPI_Finalize.  The application must link
 * procpool_mpi before MPI's library (CMake's procpool::procpool_mpi
 * does). */
PP_EXTERN int MPI_Finalize(void) {
  if (ppm_master_armed())
    ppm_master_end(0);
  return PMPI_Finalize();
}
