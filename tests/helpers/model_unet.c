/* model_unet.c: see model_unet.h. */
#include "helpers/model_unet.h"

#include <string.h>

static int copy_unet(const UNet *src, UNet **out, JtError *err) {
    if (unet_create(out, unet_config(src), err) != JT_OK) return JT_ERR;
    memcpy(unet_params(*out), unet_params_const(src), unet_num_params(src) * sizeof(float));
    return JT_OK;
}

int test_load_unet(const char *dir, UNet **out, JtError *err) {
    *out = NULL;
    Model *m;
    if (model_load(dir, &m, err) != JT_OK) return JT_ERR;
    int rc = model_unet(m)
                 ? copy_unet(model_unet(m), out, err)
                 : jt_fail(err, "%s: a %s, not a UNet2DModel", dir, model_kind(m)->class_name);
    model_free(m);
    return rc;
}

int test_save_unet(const UNet *net, const char *dir, JtError *err) {
    Model *m;
    if (model_create(&m, unet_config(net), err) != JT_OK) return JT_ERR;
    memcpy(model_params(m), unet_params_const(net), unet_num_params(net) * sizeof(float));
    int rc = model_save(m, dir, err);
    model_free(m);
    return rc;
}
