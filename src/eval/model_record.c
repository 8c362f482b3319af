/* model_record.c: see model_record.h. */
#include "eval/model_record.h"

#include "diffusion/trajectory.h"
#include "io/jsonfile.h"
#include "io/model_folder.h"
#include "model/model.h"
#include "model/pipeline.h"

#include <cjson/cJSON.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

int model_record_load(ModelRecord *mr, const char *model_dir, const char *why, JtError *err) {
    memset(mr, 0, sizeof *mr);
    Model *model;
    if (model_load_unet(model_dir, &model, err) != JT_OK) return JT_ERR;
    mr->cfg = *unet_config(model_unet(model));
    mr->fingerprint = model_fingerprint(model);
    model_free(model);
    char *unet_dir = pipeline_model_dir(model_dir); /* a pipeline keeps it beside its U-Net */
    char *tp = path_join(unet_dir, "training.json");
    free(unet_dir);
    struct stat sb;
    int rc = sched_config_load_model(&mr->sched, model_dir, err);
    cJSON *rec = NULL;
    if (rc == JT_OK && stat(tp, &sb) != 0)
        rc = jt_fail(err, "%s: missing: %s, and needs the training record that jtrak train writes",
                     tp, why);
    if (rc == JT_OK && !(rec = json_load_file(tp, err))) rc = JT_ERR;
    const cJSON *ds = rec ? cJSON_GetObjectItem(rec, "dataset") : NULL;
    if (rc == JT_OK)
        rc = train_recipe_from_json(&mr->recipe, cJSON_GetObjectItem(rec, "recipe"), tp, err);
    if (rc == JT_OK && (!ds || !json_str(ds, "spec") || !json_str(ds, "fingerprint")))
        rc = jt_fail(err, "%s: field 'dataset' (spec, fingerprint) missing", tp);
    if (rc == JT_OK) {
        DatasetSpec spec;
        data_spec_init(&spec);
        rc = data_spec_parse(&spec, json_str(ds, "spec"), err);
        if (rc == JT_OK) rc = data_load(&spec, &mr->data, err);
        data_spec_free(&spec);
        char h[17];
        if (rc == JT_OK &&
            strcmp(data_fingerprint_hex(&mr->data, h), json_str(ds, "fingerprint")) != 0)
            rc = jt_fail(err, "%s: the training data (%s) changed since the model was trained", tp,
                         mr->data.description);
    }
    if (rc == JT_OK && mr->recipe.cond == TRAIN_COND_CONTEXT) {
        const cJSON *c = cJSON_GetObjectItem(rec, "context");
        if (!c || !json_str(c, "spec"))
            rc = jt_fail(err, "%s: field 'context' (spec, fingerprint) missing", tp);
        if (rc == JT_OK)
            rc = context_load_described(&mr->context, json_str(c, "spec"), &mr->data, err);
        mr->has_context = rc == JT_OK;
        if (rc == JT_OK && mr->context.fingerprint != mr->recipe.context_fingerprint)
            rc = jt_fail(err, "%s: the text contexts (%s) changed since the model was trained", tp,
                         mr->context.description);
    }
    cJSON_Delete(rec);
    free(tp);
    if (rc != JT_OK) model_record_free(mr);
    return rc;
}

void model_record_free(ModelRecord *mr) {
    data_free(&mr->data);
    if (mr->has_context) context_free(&mr->context);
    mr->has_context = 0;
}
