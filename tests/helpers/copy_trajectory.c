/* copy_trajectory.c: see copy_trajectory.h. */
#include "helpers/copy_trajectory.h"

#include "diffusion/trajectory.h"
#include "helpers/model_unet.h"

#include <criterion/criterion.h>
#include <stdlib.h>
#include <string.h>

void test_write_copy_trajectory(const char *path, const char *model_dir, const Dataset *ds,
                                size_t n) {
    UNet *net;
    JtError err;
    cr_assert(test_load_unet(model_dir, &net, &err) == JT_OK, "%s", err.msg);
    const size_t D = (size_t)ds->c * ds->h * ds->w, img = n * D;
    Trajectory tr;
    memset(&tr, 0, sizeof tr);
    tr.n = (int)n, tr.S = 1, tr.C = ds->c, tr.H = ds->h, tr.W = ds->w;
    tr.sampler = SAMPLER_DDIM, tr.num_inference_steps = 1;
    tr.model_fingerprint = model_fingerprint_of(net);
    int t0 = 0;
    tr.timesteps = &t0;
    tr.x_T = calloc(img, sizeof(float)), tr.x_0 = calloc(img, sizeof(float));
    tr.x_t = calloc(img, sizeof(float)), tr.x0_hat = calloc(img, sizeof(float));
    tr.noise = calloc(img, sizeof(float));
    size_t *rows = malloc(n * sizeof *rows);
    for (size_t i = 0; i < n; i++)
        rows[i] = i;
    data_batch_f32(ds, rows, NULL, n, tr.x_0);
    cr_assert(traj_save(&tr, path, &err) == JT_OK, "%s", err.msg);
    free(rows);
    free(tr.x_T), free(tr.x_0), free(tr.x_t), free(tr.x0_hat), free(tr.noise);
    unet_free(net);
}
