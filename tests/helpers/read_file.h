/* read_file.h: a whole file into memory, for tests that compare or search what a command wrote. */
#ifndef JTRAK_TEST_READ_FILE_H
#define JTRAK_TEST_READ_FILE_H

#include <stddef.h>

/* The file's bytes, malloc'd, with a NUL after them (so text can be searched); *n (optional) gets
 * the byte count. Fails the test when the file cannot be read. */
char *test_read_file(const char *path, size_t *n);

#endif
