/* latents.c: see latents.h. Rows are encoded (vae_encode: mean and clamped log-variance) in row
 * order, batch after batch, straight into FILE.npy.partial (a full-size .npy made by npy_create);
 * after every batch the rows are synced and FILE.npy.partial.json records how many are done, so
 * a killed run continues where it stopped when the same command is run again (the record must
 * name the same VAE fingerprint, data fingerprint and shape, else the partial file is started
 * afresh). The finished file is renamed to FILE.npy and followed by its manifest
 * (atomic_file_write); if the manifest cannot be written the array is removed again. */
#include "vae/latents.h"

#include "core/progress.h"
#include "io/jsonfile.h"
#include "io/npy.h"
#include "io/safetensors.h"

#include <cjson/cJSON.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

static char *suffixed(const char *path, const char *suffix) {
    char *p = xmalloc(strlen(path) + strlen(suffix) + 1);
    strcpy(p, path);
    strcat(p, suffix);
    return p;
}

/* The manifest (and, with rows_done >= 0, the progress record of a partial file). */
static char *manifest_text(const VaeConfig *cfg, uint64_t vae_fp, const char *vae_dir,
                           const Dataset *data, int zc, int zh, int zw, long rows_done) {
    char fp[32], dfp[32];
    snprintf(fp, sizeof fp, "%016llx", (unsigned long long)vae_fp);
    cJSON *o = cJSON_CreateObject();
    cJSON_AddStringToObject(o, "kind", LATENTS_KIND);
    cJSON_AddStringToObject(o, "vae", vae_dir);
    cJSON_AddStringToObject(o, "vae_fingerprint", fp);
    cJSON_AddNumberToObject(o, "scaling_factor", (double)cfg->scaling_factor);
    cJSON_AddNumberToObject(o, "latent_channels", zc);
    cJSON_AddNumberToObject(o, "latent_height", zh);
    cJSON_AddNumberToObject(o, "latent_width", zw);
    cJSON_AddNumberToObject(o, "rows", (double)data->n);
    cJSON_AddNumberToObject(o, "image_channels", data->c);
    cJSON_AddNumberToObject(o, "image_height", data->h);
    cJSON_AddNumberToObject(o, "image_width", data->w);
    cJSON *d = cJSON_AddObjectToObject(o, "dataset");
    cJSON_AddStringToObject(d, "spec", data->description);
    cJSON_AddStringToObject(d, "fingerprint", data_fingerprint_hex(data, dfp));
    cJSON_AddNumberToObject(d, "n", (double)data->n);
    cJSON_AddStringToObject(o, "layout", "mean|logvar");
    cJSON_AddStringToObject(o, "logvar", "clamped to [-30, 20], as diffusers");
    if (rows_done >= 0) cJSON_AddNumberToObject(o, "rows_done", (double)rows_done);
    char *text = cJSON_Print(o);
    cJSON_Delete(o);
    size_t len = strlen(text);
    text = xrealloc(text, len + 2);
    text[len] = '\n';
    text[len + 1] = 0;
    return text;
}

/* Rows already done in a partial file whose record describes this very run (the record without
 * its rows_done is this run's manifest), or -1. */
static long partial_rows_done(const char *partial, const char *record, const char *want,
                              const size_t *shape) {
    JtError e;
    NpyHeader h;
    if (access(partial, F_OK) != 0 || access(record, F_OK) != 0) return -1;
    if (npy_read_header(partial, &h, &e) != JT_OK || h.dtype != NPY_F32 || h.ndim != 4) return -1;
    for (int i = 0; i < 4; i++)
        if (h.shape[i] != shape[i]) return -1;
    cJSON *o = json_load_file(record, &e);
    if (!o) return -1;
    const cJSON *rd = cJSON_GetObjectItemCaseSensitive(o, "rows_done");
    long done = cJSON_IsNumber(rd) ? (long)rd->valuedouble : -1;
    cJSON_DeleteItemFromObjectCaseSensitive(o, "rows_done");
    char *text = cJSON_Print(o);
    cJSON_Delete(o);
    size_t len = strlen(want);
    int same = strlen(text) + 1 == len && strncmp(text, want, len - 1) == 0;
    free(text);
    return same && done >= 0 && (size_t)done <= shape[0] ? done : -1;
}

int vae_write_latents(const Vae *vae, uint64_t vae_fp, const char *vae_dir, const Dataset *data,
                      int batch, const char *path, int quiet, JtError *err) {
    const VaeConfig *cfg = vae_config(vae);
    if (data->n == 0) return jt_fail(err, "the dataset (%s) has no images", data->description);
    if (data->c != cfg->in_channels)
        return jt_fail(err, "the data has %d channel(s) but the VAE's in_channels is %d (%s)",
                       data->c, cfg->in_channels, data->description);
    if (vae_config_check_size(cfg, data->h, data->w, "the data", err) != JT_OK) return JT_ERR;
    if (batch < 1) return jt_fail(err, "batch size %d: must be at least 1", batch);
    const int B = (size_t)batch < data->n ? batch : (int)data->n;
    VaeRun *run;
    if (vae_run_create(&run, vae, B, data->h, data->w, VAE_RUN_FORWARD_ONLY, err) != JT_OK)
        return JT_ERR;
    int zc, zh, zw;
    vae_run_latent_shape(run, &zc, &zh, &zw);
    const size_t per = (size_t)zc * zh * zw, D = (size_t)data->c * data->h * data->w;
    const size_t shape[4] = {data->n, (size_t)(2 * zc), (size_t)zh, (size_t)zw};
    char *partial = suffixed(path, ".partial"), *record = suffixed(path, ".partial.json");
    char *mpath = suffixed(path, LATENTS_MANIFEST_SUFFIX);
    char *want = manifest_text(cfg, vae_fp, vae_dir, data, zc, zh, zw, -1);
    long done = partial_rows_done(partial, record, want, shape);
    NpyFile f = {.fd = -1};
    int rc = JT_OK;
    if (done >= 0) {
        rc = npy_open(&f, partial, 1, err);
        if (rc == JT_OK && !quiet)
            fprintf(stderr, "encode: resuming %s at row %ld/%zu\n", partial, done, data->n);
    } else {
        done = 0;
        rc = npy_create(&f, partial, NPY_F32, 4, shape, err);
    }
    float *x = xmalloc((size_t)B * D * sizeof(float));
    float *mean = xmalloc((size_t)B * per * sizeof(float));
    float *lv = xmalloc((size_t)B * per * sizeof(float));
    float *rowbuf = xmalloc((size_t)B * 2 * per * sizeof(float));
    size_t *rows = xmalloc((size_t)B * sizeof(size_t));
    Progress prog;
    const size_t nb = (data->n + (size_t)B - 1) / (size_t)B, b0 = (size_t)done / (size_t)B;
    progress_init(&prog, "encode", nb, b0, (double)B, "img");
    prog.quiet = quiet;
    /* a resumed run restarts at the batch holding its first missing row (same batches) */
    for (size_t bi = b0; rc == JT_OK && bi < nb; bi++) {
        const size_t r0 = bi * (size_t)B;
        const int b = (int)(data->n - r0 < (size_t)B ? data->n - r0 : (size_t)B);
        for (int j = 0; j < b; j++)
            rows[j] = r0 + (size_t)j;
        data_batch_f32(data, rows, NULL, (size_t)b, x);
        vae_encode(vae, run, b, x, mean, lv);
        for (int j = 0; j < b; j++) {
            float *dst = rowbuf + (size_t)j * 2 * per;
            memcpy(dst, mean + (size_t)j * per, per * sizeof(float));
            memcpy(dst + per, lv + (size_t)j * per, per * sizeof(float));
        }
        const size_t bad = jt_first_nonfinite(rowbuf, (size_t)b * 2 * per);
        if (bad < (size_t)b * 2 * per) {
            rc = jt_fail(err, "row %zu of %s encodes to a non-finite value: the VAE is broken",
                         r0 + bad / (2 * per), data->description);
            break;
        }
        rc = npy_write_rows(&f, r0, (size_t)b, rowbuf, err);
        if (rc == JT_OK) rc = npy_sync(&f, err);
        if (rc == JT_OK) {
            char *rt = manifest_text(cfg, vae_fp, vae_dir, data, zc, zh, zw, (long)(r0 + b));
            rc = atomic_file_write(record, rt, strlen(rt), err);
            free(rt);
        }
        progress_update(&prog, bi + 1, NULL, bi + 1 == nb);
    }
    free(x), free(mean), free(lv), free(rowbuf), free(rows);
    vae_run_free(run);
    if (npy_close(&f, rc == JT_OK ? err : NULL) != JT_OK) rc = JT_ERR;
    if (rc == JT_OK && rename(partial, path) != 0)
        rc = jt_fail(err, "%s: cannot rename to %s: %s", partial, path, strerror(errno));
    if (rc == JT_OK) {
        rc = atomic_file_write(mpath, want, strlen(want), err);
        if (rc != JT_OK) unlink(path); /* no array without its manifest */
        unlink(record);
    } else { /* a failure (not a kill, which keeps them for the resume) leaves nothing behind */
        unlink(partial);
        unlink(record);
    }
    free(partial), free(record), free(mpath), free(want);
    return rc;
}
