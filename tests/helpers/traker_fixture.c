/* traker_fixture.c: see traker_fixture.h. */
#include "helpers/traker_fixture.h"

#include <criterion/criterion.h>
#include <stdio.h>

#ifndef JTRAK_FIXTURES
#error "JTRAK_FIXTURES (the tests/fixtures folder) must be defined"
#endif

void *traker_fixture(const char *cas, const char *name, NpyDtype dt, NpyHeader *h) {
    char path[512];
    snprintf(path, sizeof path, "%s/traker/%s/%s", JTRAK_FIXTURES, cas, name);
    void *data = NULL;
    JtError err;
    if (npy_read_as(path, dt, h, &data, &err) != JT_OK)
        cr_assert_fail("%s (run ref/make_traker_fixtures.py?)", err.msg);
    return data;
}
