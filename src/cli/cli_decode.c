/* cli_decode.c: diffusion latents shown as images for `jtrak sample --vae` (a latent model's
 * samples and x̂_0 strip): decode(latent / scaling_factor) through an AutoencoderKL folder, as
 * diffusers' pipelines do. Only the few tiles a PNG shows are decoded (a 1000-step trajectory's
 * every x̂_0 would cost a decoder pass each). */
#include "cli/cli_common.h"
#include "model/model.h"
#include "model/pipeline.h"
#include "vae/vae.h"

#include <stdlib.h>
#include <string.h>

/* The AutoencoderKL in vae_dir, refused when it is another class or its latents are not c deep. */
static int open_vae(const char *vae_dir, int c, Model **out, JtError *err) {
    Model *m = NULL;
    if (model_load(vae_dir, &m, err) != JT_OK) return JT_ERR;
    int rc = JT_OK;
    const Vae *vae = model_vae_const(m);
    if (!vae)
        rc = jt_fail(err, "--vae %s: a %s, not an AutoencoderKL", vae_dir,
                     model_kind(m)->class_name);
    else if (vae_config(vae)->latent_channels != c)
        rc = jt_fail(err,
                     "--vae %s: its latent_channels is %d but the samples have %d channels (the "
                     "U-Net's in_channels): not the VAE of this latent model",
                     vae_dir, vae_config(vae)->latent_channels, c);
    if (rc != JT_OK) {
        model_free(m);
        m = NULL;
    }
    *out = m;
    return rc;
}

const char *cli_pipeline_vae(const char *model) {
    static char *vae; /* one per process: a command opens one model */
    PipelineFolder p;
    JtError err;
    if (vae || !pipeline_is_folder(model) || pipeline_open(model, &p, &err) != JT_OK) return vae;
    if (p.vae_dir) vae = xstrdup(p.vae_dir);
    pipeline_close(&p);
    return vae;
}

int cli_check_vae(const char *vae_dir, int c, JtError *err) {
    Model *m;
    if (open_vae(vae_dir, c, &m, err) != JT_OK) return JT_ERR;
    model_free(m);
    return JT_OK;
}

int cli_decode_latents(const char *vae_dir, const float *lat, int n, int c, int h, int w,
                       float **out, int *oc, int *oh, int *ow, JtError *err) {
    *out = NULL;
    Model *m;
    if (open_vae(vae_dir, c, &m, err) != JT_OK) return JT_ERR;
    const Vae *vae = model_vae_const(m);
    const VaeConfig *cfg = vae_config(vae);
    const int f = vae_config_factor(cfg);
    const int B = n < 16 ? n : 16;
    VaeRun *run;
    if (vae_run_create(&run, vae, B, h * f, w * f, VAE_RUN_FORWARD_ONLY, err) != JT_OK) {
        model_free(m);
        return JT_ERR;
    }
    *oc = cfg->out_channels, *oh = h * f, *ow = w * f;
    const size_t dz = (size_t)c * h * w, dx = (size_t)*oc * *oh * *ow;
    float *z = xmalloc((size_t)B * dz * sizeof(float));
    *out = xmalloc((size_t)n * dx * sizeof(float));
    const float inv = 1.0f / cfg->scaling_factor;
    for (int i0 = 0; i0 < n; i0 += B) {
        const int b = n - i0 < B ? n - i0 : B;
        for (size_t i = 0; i < (size_t)b * dz; i++)
            z[i] = lat[(size_t)i0 * dz + i] * inv;
        vae_decode(vae, run, b, z, *out + (size_t)i0 * dx);
    }
    free(z);
    vae_run_free(run);
    model_free(m);
    return JT_OK;
}
