/* fuzz_model_index.c: libFuzzer target for a pipeline folder's model_index.json
 * (src/model/pipeline.c): pipeline_open reads the input as DIR/model_index.json and validates the
 * pipeline class and every component entry. The fuzz folder holds no component folders, so an
 * index it accepts must then be refused for a missing folder, with a message; success would mean a
 * component was taken without its folder. */
#include "fuzz_util.h"
#include "model/pipeline.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    fuzz_write(PIPELINE_INDEX_FILE, data, size);
    PipelineFolder p;
    JtError err = {{0}};
    int rc = pipeline_open(fuzz_dir(), &p, &err);
    fuzz_expect_message(rc, &err, "pipeline_open");
    CHECK(rc != JT_OK, "a pipeline without component folders was accepted");
    CHECK(p.dir == NULL && p.unet_dir == NULL, "pipeline_open left fields set on error");
    return 0;
}
