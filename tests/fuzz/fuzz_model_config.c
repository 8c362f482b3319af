/* fuzz_model_config.c: libFuzzer target for config.json of every model kind, through the class
 * table (src/model/model_kind.h): model_kind_load_config picks the class from "_class_name" (or
 * "architectures") and runs that class's strict parser and validation; a config it accepts is
 * validated again and written back as JSON, which must parse to the same config. */
#include "fuzz_util.h"
#include "model/model_kind.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    const char *path = fuzz_write("config.json", data, size);
    const ModelKind *kind = NULL;
    void *cfg = NULL;
    JtError err = {{0}};
    int rc = model_kind_load_config(path, &kind, &cfg, &err);
    fuzz_expect_message(rc, &err, "model_kind_load_config");
    if (rc != JT_OK) return 0;
    CHECK(kind->validate(cfg, path, &err) == JT_OK, "accepted config fails validation: %s",
          err.msg);
    char *text = kind->to_json(cfg);
    const char *again = fuzz_write("config_again.json", (const uint8_t *)text, strlen(text));
    const ModelKind *kind2 = NULL;
    void *cfg2 = NULL;
    rc = model_kind_load_config(again, &kind2, &cfg2, &err);
    CHECK(rc == JT_OK, "a config written by to_json does not load: %s", err.msg);
    CHECK(kind2 == kind, "the class changed from %s to %s", kind->class_name, kind2->class_name);
    char *text2 = kind2->to_json(cfg2);
    CHECK(strcmp(text, text2) == 0, "to_json is not stable:\n%s\n%s", text, text2);
    free(text2);
    free(cfg2);
    free(text);
    free(cfg);
    return 0;
}
