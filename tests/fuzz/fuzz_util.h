/* fuzz_util.h: what every libFuzzer target in tests/fuzz/ shares (header only, so that each target
 * stays one file): a private temporary folder per process, removed at exit, into which a target
 * writes the fuzz input under the file name its reader expects (readers that take a path). */
#ifndef JTRAK_FUZZ_UTIL_H
#define JTRAK_FUZZ_UTIL_H

#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "core/common.h"

enum { FUZZ_MAX_FILES = 8 };
static char fuzz_dir_path[512];
static char *fuzz_files[FUZZ_MAX_FILES];
static int fuzz_n_files;

static inline void fuzz_cleanup(void) {
    for (int i = 0; i < fuzz_n_files; i++) {
        unlink(fuzz_files[i]);
        free(fuzz_files[i]);
    }
    fuzz_n_files = 0;
    if (fuzz_dir_path[0]) rmdir(fuzz_dir_path);
}

/* The process's temporary folder: $TMPDIR, else /dev/shm (no disk writes), else /tmp. */
static inline const char *fuzz_dir(void) {
    if (fuzz_dir_path[0]) return fuzz_dir_path;
    const char *base = getenv("TMPDIR");
    if (!base || !*base) base = access("/dev/shm", W_OK) == 0 ? "/dev/shm" : "/tmp";
    snprintf(fuzz_dir_path, sizeof fuzz_dir_path, "%s/jtrak-fuzz.XXXXXX", base);
    CHECK(mkdtemp(fuzz_dir_path) != NULL, "cannot create %s", fuzz_dir_path);
    atexit(fuzz_cleanup);
    return fuzz_dir_path;
}

/* The path of `name` in the folder (remembered for the cleanup). */
static inline const char *fuzz_path(const char *name) {
    char *p = path_join(fuzz_dir(), name);
    for (int i = 0; i < fuzz_n_files; i++)
        if (strcmp(fuzz_files[i], p) == 0) {
            free(p);
            return fuzz_files[i];
        }
    CHECK(fuzz_n_files < FUZZ_MAX_FILES, "too many fuzz files");
    fuzz_files[fuzz_n_files++] = p;
    return p;
}

/* Writes n bytes to `name` in the folder and returns its path. */
static inline const char *fuzz_write(const char *name, const uint8_t *data, size_t n) {
    const char *p = fuzz_path(name);
    FILE *f = fopen(p, "wb");
    CHECK(f != NULL, "cannot write %s", p);
    CHECK(fwrite(data, 1, n, f) == n && fclose(f) == 0, "cannot write %s", p);
    return p;
}

/* A reader that fails must say why: an empty message is a finding too. */
static inline void fuzz_expect_message(int rc, const JtError *err, const char *reader) {
    if (rc != JT_OK && err->msg[0] == '\0') {
        fprintf(stderr, "%s failed without a message\n", reader);
        abort();
    }
}

#endif
