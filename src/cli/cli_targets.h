/* cli_targets.h: the data options under a prefix, for a second set of images beside the training
 * set: real target images (score --targets-data ...) and held-out images (lds --heldout-data ...).
 * --<p>-data SRC, --<p>-classes, --<p>-limit, --<p>-indices, --<p>-fit, --<p>-color mean what
 * --data, --classes, ... mean for the training set; the size and channels are the model's. */
#ifndef JTRAK_CLI_TARGETS_H
#define JTRAK_CLI_TARGETS_H

#include "cli/args.h"
#include "core/common.h"
#include "data/dataset.h"

#include <stdio.h>

/* Reads the prefixed options into spec (data_spec_init'ed here). Returns 0 with *given = 0 when
 * none was given, 0 with *given = 1 and spec filled, 2 for a bad value or for an option without
 * --<p>-data (both usage errors), err naming the option either way. */
int cli_prefixed_data_spec(Args *a, const char *p, DatasetSpec *spec, int *given, JtError *err);
/* The help lines of the prefixed options; `what` says what the images are for. */
void cli_prefixed_data_help(FILE *f, const char *p, const char *what);

#endif
