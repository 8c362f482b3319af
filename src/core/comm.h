/* comm.h: the processes of a run started by mpirun, for the commands that share their work among
 * them (featurize: rows; lds and counterfactual: models). Every collective goes through these, so
 * that in a build without MPI (no JTRAK_MPI), or a process not started by mpirun, the same code
 * runs as rank 0 of 1 and the collectives return at once. Results never depend on the number of
 * processes (house-style.md, determinism): the work is split, the draws are not. */
#ifndef JTRAK_COMM_H
#define JTRAK_COMM_H

#include "core/common.h"

#include <stddef.h>

/* 1 if this binary was built with MPI (JTRAK_MPI). */
int comm_built(void);
/* Initialises MPI when the binary was built with it and the environment says the process was
 * started by mpirun / mpiexec (OMPI_COMM_WORLD_SIZE, PMI_SIZE or PMIX_RANK set); returns the number
 * of processes (1 otherwise). Call once, before the work; pair with comm_finalize. */
int comm_init(int *argc, char ***argv);
/* This process's rank and the number of processes (0 and 1 without MPI). */
int comm_rank(void);
int comm_size(void);
/* The maximum of v over all processes; every process must call it, so it is also a barrier. With
 * v = "this process failed", it is how the processes agree on an error. */
int comm_max(int v);
/* The status all processes agree on, at a point every process reaches (comm_max of "failed"):
 * JT_OK when every process succeeded. A process that failed keeps its rc and its own message; one
 * that succeeded while another failed returns JT_ERR with err filled from fmt, which says so
 * (e.g. "%s: another process failed to open the store (see its message)"). */
int comm_agree(int rc, JtError *err, const char *fmt, ...) __attribute__((format(printf, 3, 4)));
/* Copies `bytes` bytes of buf on process `root` into buf on every other process (a collective:
 * every process calls it with the same bytes and root). */
void comm_bcast(void *buf, size_t bytes, int root);
void comm_finalize(void);

#endif
