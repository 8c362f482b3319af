/* tiny_cond.c: see tiny_cond.h. */
#include "helpers/tiny_cond.h"

#include "helpers/model_unet.h"
#include "io/jsonfile.h"

#include <criterion/criterion.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

void test_write_tiny_cond_config(const char *path, int channels, int size, int context_dim) {
    JtError err;
    cJSON *o = json_load_file(JTRAK_FIXTURES "/unet_cond/cond2_8x12/config.json", &err);
    cr_assert_not_null(o, "%s", err.msg);
    cJSON_ReplaceItemInObject(o, "in_channels", cJSON_CreateNumber(channels));
    cJSON_ReplaceItemInObject(o, "out_channels", cJSON_CreateNumber(channels));
    if (size) cJSON_ReplaceItemInObject(o, "sample_size", cJSON_CreateNumber(size));
    cJSON_ReplaceItemInObject(o, "cross_attention_dim", cJSON_CreateNumber(context_dim));
    char *text = cJSON_Print(o);
    FILE *f = fopen(path, "w");
    cr_assert_not_null(f, "cannot write %s", path);
    fputs(text, f);
    fclose(f);
    free(text);
    cJSON_Delete(o);
}

void test_write_tiny_cond_model(const char *config_path, const char *dir, int channels, int size,
                                int context_dim) {
    test_write_tiny_cond_config(config_path, channels, size, context_dim);
    JtError err;
    const ModelKind *kind;
    void *cfg = NULL;
    cr_assert(model_kind_load_config(config_path, &kind, &cfg, &err) == JT_OK, "%s", err.msg);
    UNet *net;
    cr_assert(unet_create(&net, cfg, &err) == JT_OK, "%s", err.msg);
    free(cfg);
    unet_init_params(net, 7);
    cr_assert(test_save_unet(net, dir, &err) == JT_OK, "%s", err.msg);
    unet_free(net);
}

UNet *test_load_cond2_8x12(void) {
    UNet *loaded, *net;
    JtError err;
    cr_assert(test_load_unet(JTRAK_FIXTURES "/unet_cond/cond2_8x12", &loaded, &err) == JT_OK, "%s",
              err.msg);
    UNetConfig sized = *unet_config(loaded);
    unet_config_set_size(&sized, 8, 12);
    cr_assert(unet_create(&net, &sized, &err) == JT_OK, "%s", err.msg);
    memcpy(unet_params(net), unet_params_const(loaded), unet_num_params(net) * sizeof(float));
    unet_free(loaded);
    return net;
}
