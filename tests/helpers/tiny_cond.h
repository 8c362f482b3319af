/* tiny_cond.h: the small UNet2DConditionModel the text-conditional tests build on: the
 * cond2_8x12 fixture's architecture (tests/fixtures/unet_cond) with its channels, size and
 * context width set per test. */
#ifndef JTRAK_TEST_TINY_COND_H
#define JTRAK_TEST_TINY_COND_H

#include "unet/unet.h"

/* Writes the config.json to path: in/out channels `channels`, sample_size `size` (0 keeps the
 * fixture's 8x12), cross_attention_dim `context_dim`. Fails the test on error. */
void test_write_tiny_cond_config(const char *path, int channels, int size, int context_dim);
/* That config written to config_path, and a model folder dir of it with seeded weights
 * (unet_init_params, seed 7). Fails the test on error. */
void test_write_tiny_cond_model(const char *config_path, const char *dir, int channels, int size,
                                int context_dim);

/* The cond2_8x12 fixture's network with its weights, sized for its 8x12 inputs (its config says
 * sample_size 8). Fails the test on error; unet_free it. */
UNet *test_load_cond2_8x12(void);

#endif
