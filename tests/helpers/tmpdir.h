/* tmpdir.h: the scratch folder of a test suite, made fresh before each test (the suite's .init)
 * and removed with everything in it after (.fini), without a shell. */
#ifndef JTRAK_TEST_TMPDIR_H
#define JTRAK_TEST_TMPDIR_H

extern char test_tmp[256];

void test_tmp_setup(void);
void test_tmp_teardown(void);
/* rm -r path (files, folders, links; errors ignored). */
void test_rm_tree(const char *path);

#endif
