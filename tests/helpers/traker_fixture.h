/* traker_fixture.h: the arrays the ref/ twin wrote with the traker library
 * (tests/fixtures/traker/CASE/NAME, ref/make_traker_fixtures.py). */
#ifndef JTRAK_TEST_TRAKER_FIXTURE_H
#define JTRAK_TEST_TRAKER_FIXTURE_H

#include "io/npy.h"

/* CASE/NAME read as dtype dt (malloc'd; free with free()); a missing or malformed file fails the
 * current Criterion test with the reader's message. */
void *traker_fixture(const char *cas, const char *name, NpyDtype dt, NpyHeader *h);

#endif
