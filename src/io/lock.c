/* lock.c: see lock.h. flock(2) on DIR/.lock, LOCK_EX | LOCK_NB. */
#include "io/lock.h"

#include "io/model_folder.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <unistd.h>

int dir_lock(DirLock *l, const char *dir, const char *what, JtError *err) {
    l->fd = -1;
    l->dir = NULL;
    l->made_dir = 0;
    struct stat sb;
    const int existed = stat(dir, &sb) == 0;
    if (existed && !S_ISDIR(sb.st_mode)) return jt_fail(err, "%s: exists and is not a folder", dir);
    if (!existed && model_mkdirs(dir, err) != JT_OK) return JT_ERR;
    char *path = path_join(dir, DIR_LOCK_FILE);
    int fd = open(path, O_RDWR | O_CREAT | O_CLOEXEC, 0644);
    if (fd < 0) {
        jt_fail(err, "%s: cannot open the lock file (%s)", path, strerror(errno));
        free(path);
        if (!existed) rmdir(dir);
        return JT_ERR;
    }
    if (flock(fd, LOCK_EX | LOCK_NB) != 0) {
        const int e = errno;
        char buf[32] = "";
        ssize_t got = pread(fd, buf, sizeof buf - 1, 0);
        buf[got > 0 ? got : 0] = 0;
        long pid = strtol(buf, NULL, 10);
        close(fd);
        free(path);
        if (e == EWOULDBLOCK) {
            if (pid > 0)
                return jt_fail(err,
                               "%s: in use by PID %ld (another jtrak %s is writing it); wait for "
                               "it to finish or use another --out",
                               dir, pid, what);
            return jt_fail(err,
                           "%s: in use by another process (another jtrak %s is writing it); wait "
                           "for it to finish or use another --out",
                           dir, what);
        }
        return jt_fail(err, "%s: cannot lock %s (%s)", dir, DIR_LOCK_FILE, strerror(e));
    }
    char buf[32];
    int len = snprintf(buf, sizeof buf, "%ld\n", (long)getpid());
    if (ftruncate(fd, 0) != 0 || pwrite(fd, buf, (size_t)len, 0) != len) {
        /* the PID is only for the message; the lock itself is held */
    }
    free(path);
    l->fd = fd;
    l->dir = xstrdup(dir);
    l->made_dir = !existed;
    return JT_OK;
}

/* Whether dir holds nothing but the lock file. */
static int only_lock(const char *dir) {
    DIR *d = opendir(dir);
    if (!d) return 0;
    struct dirent *e;
    int only = 1;
    while (only && (e = readdir(d)) != NULL)
        only = strcmp(e->d_name, ".") == 0 || strcmp(e->d_name, "..") == 0 ||
               strcmp(e->d_name, DIR_LOCK_FILE) == 0;
    closedir(d);
    return only;
}

void dir_unlock(DirLock *l) {
    if (!l || l->fd < 0) return;
    if (l->made_dir && only_lock(l->dir)) {
        char *path = path_join(l->dir, DIR_LOCK_FILE);
        unlink(path);
        free(path);
        rmdir(l->dir);
    }
    close(l->fd); /* drops the flock */
    free(l->dir);
    l->fd = -1;
    l->dir = NULL;
}
