/* latents.c: see latents.h. Every row is encoded (vae_encode: mean and clamped log-variance) in
 * row order, batch after batch, into one array in memory, which is then written with npy_write
 * (temporary name, fsync, rename) and followed by its manifest (atomic_file_write); if the
 * manifest cannot be written the array is removed again. */
#include "vae/latents.h"

#include "core/progress.h"
#include "io/npy.h"
#include "io/safetensors.h"

#include <cjson/cJSON.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

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
    size_t total;
    if (!jt_mul_size(data->n, 2 * per * sizeof(float), &total)) total = SIZE_MAX;
    char what[128];
    snprintf(what, sizeof what, "the latents of %zu images (%d x %d x %d each, mean and logvar)",
             data->n, 2 * zc, zh, zw);
    if (jt_check_memory(total, what, err) != JT_OK) {
        vae_run_free(run);
        return JT_ERR;
    }
    float *out = xmalloc(total ? total : 1);
    float *x = xmalloc((size_t)B * D * sizeof(float));
    float *mean = xmalloc((size_t)B * per * sizeof(float));
    float *lv = xmalloc((size_t)B * per * sizeof(float));
    size_t *rows = xmalloc((size_t)B * sizeof(size_t));
    Progress prog;
    const size_t nb = (data->n + (size_t)B - 1) / (size_t)B;
    progress_init(&prog, "encode", nb, 0, (double)B, "img");
    prog.quiet = quiet;
    for (size_t bi = 0; bi < nb; bi++) {
        const size_t r0 = bi * (size_t)B;
        const int b = (int)(data->n - r0 < (size_t)B ? data->n - r0 : (size_t)B);
        for (int j = 0; j < b; j++)
            rows[j] = r0 + (size_t)j;
        data_batch_f32(data, rows, NULL, (size_t)b, x);
        vae_encode(vae, run, b, x, mean, lv);
        for (int j = 0; j < b; j++) {
            float *dst = out + (r0 + (size_t)j) * 2 * per;
            memcpy(dst, mean + (size_t)j * per, per * sizeof(float));
            memcpy(dst + per, lv + (size_t)j * per, per * sizeof(float));
        }
        progress_update(&prog, bi + 1, NULL, bi + 1 == nb);
    }
    free(x), free(mean), free(lv), free(rows);
    vae_run_free(run);

    int rc = JT_OK;
    const size_t n_bad = jt_first_nonfinite(out, data->n * 2 * per);
    if (n_bad < data->n * 2 * per)
        rc = jt_fail(err, "row %zu of %s encodes to a non-finite value: the VAE is broken",
                     n_bad / (2 * per), data->description);
    const size_t shape[4] = {data->n, (size_t)(2 * zc), (size_t)zh, (size_t)zw};
    if (rc == JT_OK) rc = npy_write(path, NPY_F32, 4, shape, out, err);
    free(out);
    if (rc != JT_OK) return JT_ERR;

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
    char *text = cJSON_Print(o);
    cJSON_Delete(o);
    char *mpath = xmalloc(strlen(path) + sizeof LATENTS_MANIFEST_SUFFIX);
    strcpy(mpath, path);
    strcat(mpath, LATENTS_MANIFEST_SUFFIX);
    size_t len = strlen(text);
    text = xrealloc(text, len + 2);
    text[len++] = '\n';
    text[len] = 0;
    rc = atomic_file_write(mpath, text, len, err);
    if (rc != JT_OK) unlink(path); /* no array without its manifest */
    free(text);
    free(mpath);
    return rc;
}
