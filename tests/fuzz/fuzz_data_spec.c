/* fuzz_data_spec.c: libFuzzer target for dataset descriptions (src/data/spec.c, data_spec_parse):
 * the "data=...;classes=...;limit=..." text that feature stores, score folders and training
 * records keep and parse again to reload their data. A description it accepts must describe
 * itself again (data_spec_describe) as a text that parses to the same description. */
#include "data/dataset.h"
#include "fuzz_util.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    char *text = xmalloc(size + 1);
    memcpy(text, data, size);
    text[size] = '\0';
    DatasetSpec s;
    data_spec_init(&s);
    JtError err = {{0}};
    int rc = data_spec_parse(&s, text, &err);
    fuzz_expect_message(rc, &err, "data_spec_parse");
    if (rc == JT_OK) {
        char *d1 = data_spec_describe(&s);
        DatasetSpec s2;
        data_spec_init(&s2);
        CHECK(data_spec_parse(&s2, d1, &err) == JT_OK, "own description refused: %s: %s", d1,
              err.msg);
        char *d2 = data_spec_describe(&s2);
        CHECK(strcmp(d1, d2) == 0, "description not stable:\n%s\n%s", d1, d2);
        free(d1), free(d2);
        data_spec_free(&s2);
    }
    data_spec_free(&s);
    free(text);
    return 0;
}
