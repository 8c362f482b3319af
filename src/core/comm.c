/* comm.c: see comm.h. MPI_COMM_WORLD when MPI is initialised and not yet finalised; otherwise
 * one process. */
#include "core/comm.h"

#include <limits.h>
#include <stdarg.h>
#include <stdlib.h>

#ifdef JTRAK_MPI
#include <mpi.h>

static int mpi_active(void) {
    int init = 0, fin = 0;
    MPI_Initialized(&init);
    MPI_Finalized(&fin);
    return init && !fin;
}
#endif

int comm_built(void) {
#ifdef JTRAK_MPI
    return 1;
#else
    return 0;
#endif
}

int comm_init(int *argc, char ***argv) {
#ifdef JTRAK_MPI
    if (mpi_active()) return comm_size();
    if (!getenv("OMPI_COMM_WORLD_SIZE") && !getenv("PMI_SIZE") && !getenv("PMIX_RANK")) return 1;
    if (MPI_Init(argc, argv) != MPI_SUCCESS) return 1;
    return comm_size();
#else
    (void)argc, (void)argv;
    return 1;
#endif
}

int comm_rank(void) {
#ifdef JTRAK_MPI
    if (mpi_active()) {
        int r;
        MPI_Comm_rank(MPI_COMM_WORLD, &r);
        return r;
    }
#endif
    return 0;
}

int comm_size(void) {
#ifdef JTRAK_MPI
    if (mpi_active()) {
        int s;
        MPI_Comm_size(MPI_COMM_WORLD, &s);
        return s;
    }
#endif
    return 1;
}

int comm_max(int v) {
#ifdef JTRAK_MPI
    if (comm_size() > 1) {
        int out = v;
        MPI_Allreduce(&v, &out, 1, MPI_INT, MPI_MAX, MPI_COMM_WORLD);
        return out;
    }
#endif
    return v;
}

int comm_agree(int rc, JtError *err, const char *fmt, ...) {
    int failed = comm_max(rc != JT_OK);
    if (rc != JT_OK || !failed) return rc;
    va_list ap;
    va_start(ap, fmt);
    jt_vfail(err, fmt, ap);
    va_end(ap);
    return JT_ERR;
}

void comm_bcast(void *buf, size_t bytes, int root) {
#ifdef JTRAK_MPI
    if (comm_size() > 1) {
        /* MPI counts are ints: large buffers go in pieces. */
        for (size_t off = 0; off < bytes; off += (size_t)INT_MAX) {
            size_t n = bytes - off < (size_t)INT_MAX ? bytes - off : (size_t)INT_MAX;
            MPI_Bcast((char *)buf + off, (int)n, MPI_BYTE, root, MPI_COMM_WORLD);
        }
    }
#endif
    (void)buf, (void)bytes, (void)root;
}

void comm_finalize(void) {
#ifdef JTRAK_MPI
    if (mpi_active()) MPI_Finalize();
#endif
}
