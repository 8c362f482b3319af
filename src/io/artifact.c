/* artifact.c: see artifact.h. */
#include "io/artifact.h"

#include "io/jsonfile.h"
#include "io/lock.h"

#include <dirent.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

static const char *const NAMES[ARTIFACT_KINDS] = {"nothing",
                                                  "files of no jtrak artifact",
                                                  "a model folder",
                                                  "a training folder",
                                                  "a trajectory folder",
                                                  "a feature store",
                                                  "a score folder",
                                                  "an LDS folder",
                                                  "a counterfactual folder",
                                                  "a pipeline folder",
                                                  "an image export"};

const char *artifact_kind_name(ArtifactKind k) {
    CHECK(k >= ARTIFACT_NONE && k < ARTIFACT_KINDS, "bad artifact kind %d", (int)k);
    return NAMES[k];
}

static int has(const char *dir, const char *name) {
    char *p = path_join(dir, name);
    struct stat sb;
    int ok = stat(p, &sb) == 0;
    free(p);
    return ok;
}

static void set_marker(char *marker, size_t cap, const char *text) {
    if (marker && cap) snprintf(marker, cap, "%s", text);
}

ArtifactKind artifact_kind(const char *dir, char *marker, size_t cap) {
    set_marker(marker, cap, "");
    struct stat sb;
    if (stat(dir, &sb) != 0) return ARTIFACT_NONE;
    if (!S_ISDIR(sb.st_mode)) {
        set_marker(marker, cap, "not a folder");
        return ARTIFACT_UNKNOWN;
    }
    if (has(dir, "manifest.json")) {
        char *mp = path_join(dir, "manifest.json");
        JtError e;
        cJSON *m = json_load_file(mp, &e);
        free(mp);
        const char *fmt = m ? json_str(m, "format") : NULL;
        static const struct {
            const char *format;
            ArtifactKind kind;
        } formats[] = {{"jtrak-features-v1", ARTIFACT_STORE},
                       {"jtrak-scores-v1", ARTIFACT_SCORES},
                       {"jtrak-lds-v1", ARTIFACT_LDS},
                       {"jtrak-lds-heldout-v1", ARTIFACT_LDS},
                       {"jtrak-export-v1", ARTIFACT_EXPORT}};
        ArtifactKind k = ARTIFACT_UNKNOWN;
        for (size_t i = 0; fmt && i < sizeof formats / sizeof *formats; i++)
            if (strcmp(fmt, formats[i].format) == 0) k = formats[i].kind;
        char buf[160];
        snprintf(buf, sizeof buf, "manifest.json, format %s", fmt ? fmt : "(none)");
        cJSON_Delete(m);
        set_marker(marker, cap, buf);
        if (k != ARTIFACT_UNKNOWN) return k;
    }
    static const struct {
        const char *file;
        ArtifactKind kind;
    } files[] = {{"counterfactual.json", ARTIFACT_COUNTERFACTUAL},
                 {"trajectory.safetensors", ARTIFACT_TRAJECTORY},
                 {"model_index.json", ARTIFACT_PIPELINE},
                 {"training.json", ARTIFACT_TRAINING},
                 {"train_state.safetensors", ARTIFACT_TRAINING}};
    for (size_t i = 0; i < sizeof files / sizeof *files; i++)
        if (has(dir, files[i].file)) {
            set_marker(marker, cap, files[i].file);
            return files[i].kind;
        }
    if (has(dir, "config.json") && has(dir, "diffusion_pytorch_model.safetensors")) {
        set_marker(marker, cap, "config.json, diffusion_pytorch_model.safetensors");
        return ARTIFACT_MODEL;
    }
    if (has(dir, "config.json") && has(dir, "model.safetensors")) { /* transformers' (CLIP) */
        set_marker(marker, cap, "config.json, model.safetensors");
        return ARTIFACT_MODEL;
    }
    if (marker && cap && marker[0]) return ARTIFACT_UNKNOWN; /* a manifest of unknown format */
    DIR *d = opendir(dir);
    if (!d) return ARTIFACT_UNKNOWN;
    struct dirent *e;
    ArtifactKind k = ARTIFACT_NONE;
    while (k == ARTIFACT_NONE && (e = readdir(d)) != NULL)
        if (strcmp(e->d_name, ".") != 0 && strcmp(e->d_name, "..") != 0 &&
            strcmp(e->d_name, DIR_LOCK_FILE) != 0) {
            k = ARTIFACT_UNKNOWN;
            set_marker(marker, cap, e->d_name);
        }
    closedir(d);
    return k;
}

int artifact_check_out(const char *dir, const char *opt, const char *want, const ArtifactKind *ok,
                       int n_ok, JtError *err) {
    char marker[200];
    ArtifactKind k = artifact_kind(dir, marker, sizeof marker);
    if (k == ARTIFACT_NONE) return JT_OK;
    if (k == ARTIFACT_UNKNOWN) {
        if (strcmp(marker, "not a folder") == 0)
            return jt_fail(err, "%s %s: exists and is not a folder", opt, dir);
        return JT_OK; /* not a jtrak artifact: the command's own checks decide */
    }
    for (int i = 0; i < n_ok; i++)
        if (ok[i] == k) return JT_OK;
    return jt_fail(err,
                   "%s: %s holds %s (%s), not %s: writing here would overwrite it; give a new or "
                   "empty %s",
                   dir, opt, artifact_kind_name(k), marker, want, opt);
}
