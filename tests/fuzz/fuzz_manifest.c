/* fuzz_manifest.c: libFuzzer target for folder manifests: the input is STORE/manifest.json, read
 * by the feature store (src/attrib/store.c, store_open: every field, then the model arrays it
 * names, which are absent here) and by the artifact detector every writing command runs on its
 * output folder (src/io/artifact.c, artifact_kind: the "format" of a feature-store, score-folder
 * or LDS manifest). */
#include <sys/stat.h>

#include "attrib/store.h"
#include "fuzz_util.h"
#include "io/artifact.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    const char *dir = fuzz_dir();
    fuzz_write("manifest.json", data, size);
    FeatureStore st;
    JtError err = {{0}};
    int rc = store_open(&st, dir, &err);
    fuzz_expect_message(rc, &err, "store_open");
    if (rc == JT_OK) store_close(&st);
    char marker[256];
    ArtifactKind k = artifact_kind(dir, marker, sizeof marker);
    CHECK(k > ARTIFACT_NONE && k < ARTIFACT_KINDS, "artifact kind %d", (int)k);
    (void)artifact_kind_name(k);
    return 0;
}
