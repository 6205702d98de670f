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
