/* lock.h: the exclusive advisory lock (flock) a command holds on the folder it writes for the
 * whole run, so that two runs never fill one feature store, training folder or LDS folder at once
 * (they would interleave rows, overwrite each other's state, or zero-fill a store another run is
 * filling). The lock is DIR/.lock, holding the PID of the process that has it; the kernel drops
 * the lock when that process exits, however it exits, so a stale file never blocks a later run.
 * The processes of one MPI run share a folder by rank 0 holding the lock for all of them (the
 * others wait for rank 0's checks before they touch the folder; see featurize.h, lds.h). */
#ifndef JTRAK_LOCK_H
#define JTRAK_LOCK_H

#include "core/common.h"

#define DIR_LOCK_FILE ".lock"

typedef struct {
    int fd;       /* -1 when not held */
    char *dir;    /* the folder */
    int made_dir; /* dir_lock created the folder (dir_unlock removes it again when empty) */
} DirLock;

/* Creates dir if needed and takes its lock without waiting. When another process holds it:
 * JT_ERR "DIR: in use by PID N (another jtrak WHAT is writing it); wait for it to finish or use
 * another --out". l is left not held on error. */
int dir_lock(DirLock *l, const char *dir, const char *what, JtError *err);
/* Releases the lock (the .lock file stays: removing it would let a third process lock a new file
 * while a second still waits on the old one), except that a folder dir_lock created and that
 * holds nothing else is removed with it: a refused run leaves nothing behind. Safe on a lock not
 * held. */
void dir_unlock(DirLock *l);

#endif
