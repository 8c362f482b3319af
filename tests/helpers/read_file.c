/* read_file.c: see read_file.h. */
#include "helpers/read_file.h"

#include <criterion/criterion.h>
#include <stdio.h>
#include <stdlib.h>

char *test_read_file(const char *path, size_t *n) {
    FILE *f = fopen(path, "rb");
    cr_assert_not_null(f, "cannot open %s", path);
    cr_assert_eq(fseek(f, 0, SEEK_END), 0, "%s", path);
    long size = ftell(f);
    cr_assert(size >= 0, "%s", path);
    fseek(f, 0, SEEK_SET);
    char *b = malloc((size_t)size + 1);
    cr_assert_not_null(b);
    cr_assert_eq(fread(b, 1, (size_t)size, f), (size_t)size, "short read of %s", path);
    b[size] = 0;
    fclose(f);
    if (n) *n = (size_t)size;
    return b;
}
