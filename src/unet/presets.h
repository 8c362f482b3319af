/* presets.h: the model configs shipped with jtrak, by name. */
#ifndef JTRAK_UNET_PRESETS_H
#define JTRAK_UNET_PRESETS_H

#include "unet/config.h"

/* Fills cfg and returns 1 if name is a shipped config ("fm-s", "fm-xs", "t8"; the
 * UNet2DConditionModels "ldm-xs", "jt-coco"), else 0. */
int unet_config_preset(const char *name, UNetConfig *cfg);
/* "fm-s, fm-xs, t8, ldm-xs, jt-coco", for messages. */
const char *unet_config_preset_names(void);

#endif
