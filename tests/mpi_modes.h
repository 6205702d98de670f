/*
 * mpi_modes.h - the whole-job cases of test_mpi (mpi_modes.c), each a run
 * of its own under mpirun (tests/mpi_run.sh); each returns the program's
 * exit code on rank 0 (0: the outcome is right).
 */
#ifndef PP_TEST_MPI_MODES_H
#define PP_TEST_MPI_MODES_H

/* --rank-stop early|late */
int pp_test_mpi_rank_stop(const char *when);
/* --faults rank0|lose|world|serving|break, with PROCPOOL_MPI_FAIL_ALLOC
 * set on every rank as tests/CMakeLists.txt says. */
int pp_test_mpi_faults(const char *which);

#endif /* PP_TEST_MPI_MODES_H */
