/* decode.c: see decode.h. The decoder runs forward-only in batches of REPORT_VAE_BATCH. */
#include "report/decode.h"

#include "model/model.h"
#include "vae/vae.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

enum { REPORT_VAE_BATCH = 8 };

struct ReportVae {
    Model *model;
    const Vae *vae;
    VaeRun *run;
    int z, h, w; /* latent */
    int C, H, W; /* image */
    float scaling;
    float *in; /* (REPORT_VAE_BATCH, z, h, w) */
};

int report_vae_open(ReportVae **out, const char *dir, const Dataset *data, int latent_c,
                    JtError *err) {
    *out = NULL;
    CHECK(data->latent, "report_vae_open on pixel data");
    Model *m;
    if (model_load(dir, &m, err) != JT_OK) return JT_ERR;
    const Vae *vae = model_vae_const(m);
    int rc = JT_OK;
    char a[17], b[17];
    if (!vae) {
        rc = jt_fail(err, "--vae %s: config.json is a %s, not an AutoencoderKL", dir,
                     model_kind(m)->class_name);
    } else {
        const VaeConfig *cfg = vae_config(vae);
        if (cfg->latent_channels != latent_c)
            rc = jt_fail(err,
                         "--vae %s: latent_channels %d, but the U-Net's in_channels (the "
                         "trajectory's latents) is %d: not the VAE of this latent space",
                         dir, cfg->latent_channels, latent_c);
        else if (cfg->out_channels != 1 && cfg->out_channels != 3)
            rc = jt_fail(err, "--vae %s: out_channels %d: the report shows 1- or 3-channel images",
                         dir, cfg->out_channels);
        else if (model_fingerprint(m) != data->latent->vae_fingerprint)
            rc = jt_fail(err,
                         "--vae %s: fingerprint %s, but the latent store %s was encoded by the "
                         "VAE with fingerprint %s: a latent store of another VAE",
                         dir, model_fingerprint_hex(model_fingerprint(m), a),
                         data->latent->store_path,
                         model_fingerprint_hex(data->latent->vae_fingerprint, b));
    }
    ReportVae *rv = NULL;
    if (rc == JT_OK) {
        const VaeConfig *cfg = vae_config(vae);
        const int f = vae_config_factor(cfg);
        rv = xcalloc(1, sizeof *rv);
        rv->model = m;
        rv->vae = vae;
        rv->z = latent_c, rv->h = data->h, rv->w = data->w;
        rv->C = cfg->out_channels, rv->H = data->h * f, rv->W = data->w * f;
        rv->scaling = data->latent->scaling_factor;
        rc = vae_run_create(&rv->run, vae, REPORT_VAE_BATCH, rv->H, rv->W, VAE_RUN_FORWARD_ONLY,
                            err);
        if (rc == JT_OK) {
            int zc, zh, zw;
            vae_run_latent_shape(rv->run, &zc, &zh, &zw);
            if (zc != rv->z || zh != rv->h || zw != rv->w)
                rc = jt_fail(err,
                             "--vae %s: its decoder takes %dx%dx%d latents, the store's are "
                             "%dx%dx%d",
                             dir, zc, zh, zw, rv->z, rv->h, rv->w);
        }
        if (rc != JT_OK) {
            vae_run_free(rv->run);
            free(rv);
            rv = NULL;
        } else {
            rv->in = xmalloc((size_t)REPORT_VAE_BATCH * rv->z * rv->h * rv->w * sizeof(float));
        }
    }
    if (rc != JT_OK) {
        model_free(m);
        return JT_ERR;
    }
    *out = rv;
    return JT_OK;
}

void report_vae_close(ReportVae *rv) {
    if (!rv) return;
    vae_run_free(rv->run);
    model_free(rv->model);
    free(rv->in);
    free(rv);
}

void report_vae_image_shape(const ReportVae *rv, int *C, int *H, int *W) {
    *C = rv->C, *H = rv->H, *W = rv->W;
}

const char *report_vae_fingerprint(const ReportVae *rv, char buf[17]) {
    return model_fingerprint_hex(model_fingerprint(rv->model), buf);
}

void report_vae_decode(ReportVae *rv, const float *lat, size_t n, float *out) {
    const size_t dz = (size_t)rv->z * rv->h * rv->w, dx = (size_t)rv->C * rv->H * rv->W;
    for (size_t i0 = 0; i0 < n; i0 += REPORT_VAE_BATCH) {
        const int b = (int)(n - i0 < REPORT_VAE_BATCH ? n - i0 : REPORT_VAE_BATCH);
        /* diffusers: vae.decode(latents / scaling_factor) */
        for (size_t q = 0; q < (size_t)b * dz; q++)
            rv->in[q] = lat[i0 * dz + q] / rv->scaling;
        vae_decode(rv->vae, rv->run, b, rv->in, out + i0 * dx);
    }
}

int report_vae_train_images(ReportVae *rv, const Dataset *data, const size_t *rows, size_t k,
                            float *train) {
    const size_t dz = (size_t)rv->z * rv->h * rv->w, dx = (size_t)rv->C * rv->H * rv->W;
    const Dataset *o = data->latent->origin;
    if (o && o->c == rv->C && o->h == rv->H && o->w == rv->W) {
        for (size_t i = 0; i < k; i++)
            data_image_f32(o, data->index[rows[i]], 0, train + rows[i] * dx);
        return 1;
    }
    float *lat = xmalloc((size_t)REPORT_VAE_BATCH * dz * sizeof(float));
    float *img = xmalloc((size_t)REPORT_VAE_BATCH * dx * sizeof(float));
    for (size_t i0 = 0; i0 < k; i0 += REPORT_VAE_BATCH) {
        const size_t b = k - i0 < REPORT_VAE_BATCH ? k - i0 : REPORT_VAE_BATCH;
        for (size_t i = 0; i < b; i++)
            data_latent_mean_f32(data, rows[i0 + i], lat + i * dz);
        report_vae_decode(rv, lat, b, img);
        for (size_t i = 0; i < b; i++)
            memcpy(train + rows[i0 + i] * dx, img + i * dx, dx * sizeof(float));
    }
    free(lat);
    free(img);
    return 0;
}
