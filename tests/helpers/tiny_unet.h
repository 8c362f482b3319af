/* tiny_unet.h: the U-Net the training, featurize and sampling tests train in seconds: 2 levels at
 * 8x8, one channel, 8/16 channels, attention at the second level (about 20k parameters). */
#ifndef JTRAK_TEST_TINY_UNET_H
#define JTRAK_TEST_TINY_UNET_H

#include "unet/config.h"

void test_tiny_unet_config(UNetConfig *cfg);

#endif
