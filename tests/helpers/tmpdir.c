/* tmpdir.c: see tmpdir.h. */
#include "helpers/tmpdir.h"

#include <criterion/criterion.h>
#include <dirent.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

char test_tmp[256];

void test_rm_tree(const char *path) {
    struct stat st;
    if (lstat(path, &st) != 0) return;
    if (!S_ISDIR(st.st_mode)) {
        unlink(path);
        return;
    }
    DIR *d = opendir(path);
    struct dirent *e;
    char p[1024];
    while (d && (e = readdir(d)) != NULL) {
        if (strcmp(e->d_name, ".") == 0 || strcmp(e->d_name, "..") == 0) continue;
        snprintf(p, sizeof p, "%s/%s", path, e->d_name);
        test_rm_tree(p);
    }
    if (d) closedir(d);
    rmdir(path);
}

void test_tmp_setup(void) {
    snprintf(test_tmp, sizeof test_tmp, "/tmp/jtrak-test-XXXXXX");
    cr_assert_not_null(mkdtemp(test_tmp), "mkdtemp failed");
}

void test_tmp_teardown(void) { test_rm_tree(test_tmp); }
