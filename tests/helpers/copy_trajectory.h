/* copy_trajectory.h: a one-step trajectory whose final samples are training images, for the
 * tests that check a score against x_i^T A x_j (a target that is training row j projects to the
 * stored x_j). */
#ifndef JTRAK_TEST_COPY_TRAJECTORY_H
#define JTRAK_TEST_COPY_TRAJECTORY_H

#include "data/dataset.h"

#include <stddef.h>

/* Writes to path a DDIM trajectory of the U-Net in model_dir, one step at t = 0, whose x_0 are
 * rows 0..n-1 of ds (the floats featurize gives the U-Net) and every other tensor zero. Fails the
 * test on error. */
void test_write_copy_trajectory(const char *path, const char *model_dir, const Dataset *ds,
                                size_t n);

#endif
