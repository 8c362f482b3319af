/* model_unet.h: the tests' shorthand for a model folder holding a UNet2DModel, on top of
 * model/model.h: load into (and save from) a plain UNet, as most tests hold one. */
#ifndef JTRAK_TEST_MODEL_UNET_H
#define JTRAK_TEST_MODEL_UNET_H

#include "model/model.h"

/* model_load, then a copy of its UNet (config and parameters); *out is NULL on error. */
int test_load_unet(const char *dir, UNet **out, JtError *err);
/* model_save of a Model holding a copy of net. */
int test_save_unet(const UNet *net, const char *dir, JtError *err);

#endif
