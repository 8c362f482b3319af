/* cmd_report.c: `jtrak report --scores DIR` turns a score folder (manifest.json + topk.json) into
 * the HTML page and the PNG figure of src/report: per target, x̂_0 along the scored steps and the
 * top proponents and opponents under each step. The targets (a trajectory's samples, or real
 * images scored with --targets-data: their final image only) and the training images are read
 * from where the score manifest says they came from, and their fingerprints are checked. A latent
 * model's trajectory and training rows are latents: --vae DIR decodes them (report/decode.h). */
#include "attrib/score.h"
#include "attrib/targets.h"
#include "cli/cli_common.h"
#include "cli/commands.h"
#include "io/artifact.h"
#include "io/jsonfile.h"
#include "report/decode.h"
#include "report/report.h"

#include <cjson/cJSON.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

/* dir/name as JSON; the error says what dir should have been. */
static cJSON *read_json(const char *dir, const char *name, JtError *err) {
    size_t n = strlen(dir) + strlen(name) + 2;
    char *path = xmalloc(n);
    snprintf(path, n, "%s/%s", dir, name);
    cJSON *j = json_load_file(path, err);
    if (!j) jt_fail(err, "%s: cannot read it as JSON (is %s a score folder written by jtrak score?)",
                    path, dir);
    free(path);
    return j;
}

/* The images of a manifest's dataset spec: the training data (targets NULL), or real targets
 * fitted to the training images' geometry as score read them. Either must still have the
 * fingerprint the manifest recorded. */
static int load_checked(const char *spec_text, const char *fingerprint, const Dataset *train,
                        Dataset *d, Targets *targets, JtError *err) {
    DatasetSpec spec;
    data_spec_init(&spec);
    int rc = data_spec_parse(&spec, spec_text, err);
    if (rc == JT_OK && targets) {
        rc = targets_from_data(targets, &spec, train->c, train->h, train->w, "targets", err);
        d = &targets->data;
    } else if (rc == JT_OK) {
        rc = data_load(&spec, d, err);
    }
    data_spec_free(&spec);
    char h[17];
    if (rc == JT_OK && strcmp(data_fingerprint_hex(d, h), fingerprint) != 0)
        rc = jt_fail(err, "the %s (%s) changed since %s scored",
                     targets ? "target images" : "training data", d->description,
                     targets ? "they were" : "it was");
    return rc;
}

/* An output path of the report (opt --out or --png, ending in ext): its folder holds no artifact
 * but a score folder, and the path is not an existing file of another type (a manifest, scores). */
static int check_out_path(const char *path, const char *opt, const char *ext, JtError *err) {
    const char *slash = strrchr(path, '/');
    char *dir = slash ? xstrdup(path) : xstrdup(".");
    if (slash) dir[slash - path ? slash - path : 1] = 0;
    const ArtifactKind ok[] = {ARTIFACT_SCORES};
    int rc = artifact_check_out(dir, opt, "a score folder (where a report goes)", ok, 1, err);
    free(dir);
    struct stat sb;
    const size_t n = strlen(path), e = strlen(ext);
    if (rc == JT_OK && stat(path, &sb) == 0 &&
        (S_ISDIR(sb.st_mode) || n < e || strcmp(path + n - e, ext) != 0))
        rc = jt_fail(err,
                     "%s: %s names an existing %s that is not a %s file: the report would "
                     "overwrite it; give another path",
                     path, opt, S_ISDIR(sb.st_mode) ? "folder" : "file", ext);
    return rc;
}

/* The vae/ of the store's first model when that is a pipeline folder (the default --vae), or
 * NULL. */
static const char *store_pipeline_vae(const cJSON *man) {
    const cJSON *store = cJSON_GetObjectItem(man, "store");
    const char *sp = store ? json_str(store, "path") : NULL;
    if (!sp) return NULL;
    JtError e;
    char *mp = path_join(sp, "manifest.json");
    cJSON *sm = json_load_file(mp, &e);
    free(mp);
    const cJSON *models = sm ? cJSON_GetObjectItem(sm, "models") : NULL;
    const cJSON *m0 = cJSON_IsArray(models) ? cJSON_GetArrayItem(models, 0) : NULL;
    const char *vae = m0 && json_str(m0, "path") ? cli_pipeline_vae(json_str(m0, "path")) : NULL;
    cJSON_Delete(sm);
    return vae;
}

int cmd_report(int argc, char **argv) {
    Args a;
    args_init(&a, "report", argc, argv);
    if (args_flag(&a, "help")) {
        printf(
            "usage: jtrak report --scores DIR [--out report.html] [--png figure.png]\n"
            "                    [--vae VAE_DIR]\n"
            "Writes a self-contained HTML page and a PNG figure from a folder written by\n"
            "jtrak score (default: DIR/report.html and DIR/figure.png).\n"
            "  --vae VAE_DIR  a latent model (trained on latents:FILE.npy): the AutoencoderKL\n"
            "                 the latents were encoded with; x̂_0, the samples and the training\n"
            "                 rows are shown decoded (the training rows as their original\n"
            "                 images when the store's dataset still loads); default: the vae/ of\n"
            "                 the store's model when it is a pipeline folder\n");
        args_free(&a);
        return 0;
    }
    const char *dir = args_str(&a, "scores", NULL);
    const char *html = args_str(&a, "out", NULL), *png = args_str(&a, "png", NULL);
    const char *vae_dir = args_str(&a, "vae", NULL);
    int rc = args_finish(&a);
    if (rc == 0 && !dir) {
        fprintf(stderr, "jtrak report: --scores DIR is required\n");
        rc = 2;
    }
    args_free(&a);
    if (rc) return rc;
    char *html_def = xmalloc(strlen(dir) + 32), *png_def = xmalloc(strlen(dir) + 32);
    sprintf(html_def, "%s/report.html", dir);
    sprintf(png_def, "%s/figure.png", dir);
    if (!html) html = html_def;
    if (!png) png = png_def;

    JtError err;
    Targets tgt = {0};
    Dataset data = {0};
    if (check_out_path(html, "--out", ".html", &err) != JT_OK ||
        check_out_path(png, "--png", ".png", &err) != JT_OK) {
        free(html_def), free(png_def);
        return cli_error("report", &err);
    }
    cJSON *man = read_json(dir, "manifest.json", &err), *topk = NULL;
    rc = man ? JT_OK : JT_ERR;
    if (rc == JT_OK && !(topk = read_json(dir, "topk.json", &err))) rc = JT_ERR;
    const cJSON *traj = man ? cJSON_GetObjectItem(man, "trajectory") : NULL;
    const cJSON *tset = man ? cJSON_GetObjectItem(man, "target_set") : NULL; /* real targets */
    const cJSON *ds = man ? cJSON_GetObjectItem(man, "dataset") : NULL;
    const cJSON *steps = man ? cJSON_GetObjectItem(man, "steps") : NULL;
    const cJSON *targets = man ? cJSON_GetObjectItem(man, "targets") : NULL;
    const cJSON *results = topk ? cJSON_GetObjectItem(topk, "results") : NULL;
    const char *method = man ? json_str(man, "method") : NULL;
    const int real = tset != NULL;
    if (rc == JT_OK &&
        (!(real ? json_str(tset, "spec") && json_str(tset, "fingerprint")
                : traj && json_str(traj, "path")) ||
         !ds || !json_str(ds, "spec") || !json_str(ds, "fingerprint") || !cJSON_IsArray(steps) ||
         !cJSON_IsArray(targets) || !cJSON_IsArray(results) || !method))
        rc = jt_fail(&err, "%s/manifest.json or topk.json: not a jtrak score folder "
                           "(format jtrak-scores-v1)", dir);
    if (rc == JT_OK && !real) rc = targets_from_trajectory(&tgt, json_str(traj, "path"), &err);
    if (rc == JT_OK && !real) {
        char h[17];
        snprintf(h, sizeof h, "%016llx", (unsigned long long)tgt.tr.model_fingerprint);
        if (!json_str(traj, "model_fingerprint") || strcmp(h, json_str(traj, "model_fingerprint")) != 0)
            rc = jt_fail(&err, "%s: the trajectory changed since it was scored (model fingerprint "
                               "differs)", json_str(traj, "path"));
        char *mp = path_join(dir, "manifest.json");
        if (rc == JT_OK)
            rc = traj_check_recorded(&tgt.tr, json_str(traj, "path"), json_str(traj, "fingerprint"),
                                     mp, &err);
        free(mp);
    }
    if (rc == JT_OK)
        rc = load_checked(json_str(ds, "spec"), json_str(ds, "fingerprint"), NULL, &data, NULL,
                          &err);
    if (rc == JT_OK && data.latent && !vae_dir) vae_dir = store_pipeline_vae(man);
    if (rc == JT_OK && data.latent && !vae_dir)
        rc = jt_fail(&err,
                     "the training data are latents (%s): give --vae DIR, the VAE they were "
                     "encoded with%s%s%s, to show images instead of latents",
                     data.description, data.latent->vae_dir ? " (the store names " : "",
                     data.latent->vae_dir ? data.latent->vae_dir : "",
                     data.latent->vae_dir ? ")" : "");
    if (rc == JT_OK && !data.latent && vae_dir)
        rc = jt_fail(&err, "--vae %s: the training data are images (%s): nothing to decode",
                     vae_dir, data.description);
    if (rc == JT_OK && real) {
        rc = load_checked(json_str(tset, "spec"), json_str(tset, "fingerprint"), &data, NULL, &tgt,
                          &err);
        if (rc == JT_OK && cJSON_GetArraySize(steps) > 0)
            rc = jt_fail(&err, "%s/manifest.json: real targets have no steps, but it lists %d", dir,
                         cJSON_GetArraySize(steps));
    }
    if (rc != JT_OK) {
        cJSON_Delete(man), cJSON_Delete(topk);
        targets_free(&tgt);
        data_free(&data);
        free(html_def), free(png_def);
        return cli_error("report", &err);
    }

    const int N = cJSON_GetArraySize(targets), n_steps = cJSON_GetArraySize(steps);
    const int final_only = n_steps == 0, n_cols = final_only ? 1 : n_steps;
    /* topk: at most score's --topk limit, and no list holds more than the training rows */
    const cJSON *kj = cJSON_GetObjectItem(topk, "topk");
    if (kj && (!cJSON_IsNumber(kj) || kj->valuedouble != floor(kj->valuedouble) ||
               kj->valuedouble < 0 || kj->valuedouble > SCORE_MAX_TOPK)) {
        rc = jt_fail(&err,
                     "%s/topk.json: field 'topk': expected an integer in [0, %d] (score's "
                     "--topk limit)",
                     dir, SCORE_MAX_TOPK);
        cJSON_Delete(man), cJSON_Delete(topk);
        targets_free(&tgt);
        data_free(&data);
        free(html_def), free(png_def);
        return cli_error("report", &err);
    }
    const int K = kj ? ((size_t)kj->valueint > data.n ? (int)data.n : kj->valueint) : 0;
    const size_t D = (size_t)tgt.C * tgt.H * tgt.W;
    int *step_v = xmalloc((size_t)(n_steps ? n_steps : 1) * sizeof(int));
    int *tid = xmalloc((size_t)N * sizeof(int));
    /* each target's class: the scores manifest's target_labels (absent in older folders) */
    const cJSON *tlab = cJSON_GetObjectItem(man, "target_labels");
    int *tlabels = NULL;
    if (cJSON_IsArray(tlab) && cJSON_GetArraySize(tlab) == N) {
        tlabels = xmalloc((size_t)N * sizeof(int));
        int any = 0;
        for (int j = 0; j < N; j++) {
            const cJSON *l = cJSON_GetArrayItem(tlab, j);
            tlabels[j] = cJSON_IsNumber(l) && l->valueint >= 0 ? l->valueint : -1;
            any |= tlabels[j] >= 0;
        }
        if (!any) free(tlabels), tlabels = NULL;
    }
    /* each target's prompt, from the trajectory (a text-conditional model's) */
    const char **tprompts = !real && tgt.tr.prompts ? xcalloc((size_t)N, sizeof *tprompts) : NULL;
    float *xhat = xmalloc((size_t)N * (n_steps ? n_steps : 1) * D * sizeof(float));
    float *final = xmalloc((size_t)N * D * sizeof(float));
    size_t cells = (size_t)N * n_cols * (K > 0 ? K : 1);
    size_t *pro_idx = xmalloc(cells * sizeof(size_t)), *opp_idx = xmalloc(cells * sizeof(size_t));
    float *pro_val = xcalloc(cells, sizeof(float)), *opp_val = xcalloc(cells, sizeof(float));
    for (size_t c = 0; c < cells; c++) pro_idx[c] = opp_idx[c] = REPORT_NO_ROW;
    for (int s = 0; s < n_steps; s++) step_v[s] = cJSON_GetArrayItem(steps, s)->valueint;
    for (int j = 0; rc == JT_OK && j < N; j++) {
        tid[j] = cJSON_GetArrayItem(targets, j)->valueint;
        if (tid[j] < 0 || tid[j] >= tgt.n) {
            rc = jt_fail(&err, "%s: target %d is not among the %s", dir, tid[j],
                         real ? "target images" : "trajectory's samples");
            break;
        }
        if (tprompts) tprompts[j] = tgt.tr.prompts[tid[j]];
        memcpy(final + j * D, targets_image(&tgt, tid[j], -1), D * sizeof(float));
        for (int s = 0; rc == JT_OK && s < n_steps; s++) {
            int k = traj_step_index(&tgt.tr, step_v[s]);
            if (k < 0) rc = jt_fail(&err, "%s: step %d is not in the trajectory", dir, step_v[s]);
            else
                memcpy(xhat + ((size_t)j * n_steps + s) * D, targets_image(&tgt, tid[j], k),
                       D * sizeof(float));
        }
    }
    /* topk.json lists (target, step) entries; place each in its cell. */
    const cJSON *e;
    cJSON_ArrayForEach(e, results) {
        if (rc != JT_OK) break;
        int j = cJSON_GetObjectItem(e, "target") ? cJSON_GetObjectItem(e, "target")->valueint : -1;
        const cJSON *st = cJSON_GetObjectItem(e, "step");
        int col = 0;
        if (!final_only) {
            col = -1;
            for (int s = 0; st && cJSON_IsNumber(st) && s < n_steps; s++)
                if (step_v[s] == st->valueint) col = s;
        }
        if (j < 0 || j >= N || col < 0) {
            rc = jt_fail(&err, "%s/topk.json: an entry names a target or step the manifest lacks", dir);
            break;
        }
        for (int side = 0; side < 2; side++) {
            const cJSON *list = cJSON_GetObjectItem(e, side ? "opponents" : "proponents"), *it;
            int r = 0;
            cJSON_ArrayForEach(it, list) {
                if (r >= K) break;
                size_t c = ((size_t)j * n_cols + col) * K + r++;
                double row = cJSON_GetObjectItem(it, "row") ? cJSON_GetObjectItem(it, "row")->valuedouble : -1;
                double v = cJSON_GetObjectItem(it, "score") ? cJSON_GetObjectItem(it, "score")->valuedouble : 0;
                if (row < 0 || row >= (double)data.n) {
                    rc = jt_fail(&err, "%s/topk.json: training row %.0f is outside the dataset (%zu rows)",
                                 dir, row, data.n);
                    break;
                }
                (side ? opp_idx : pro_idx)[c] = (size_t)row;
                (side ? opp_val : pro_val)[c] = (float)v;
            }
        }
    }
    /* A latent model: x̂_0, the samples and the training rows decoded (report/decode.h). */
    int C = tgt.C, H = tgt.H, W = tgt.W;
    char vnote[1400] = "";
    float *train = NULL;
    if (rc == JT_OK && data.latent) {
        ReportVae *rv = NULL;
        rc = report_vae_open(&rv, vae_dir, &data, tgt.C, &err);
        if (rc == JT_OK) {
            report_vae_image_shape(rv, &C, &H, &W);
            const size_t Dx = (size_t)C * H * W, nx = (size_t)N * (n_steps ? n_steps : 1);
            float *dx = xmalloc(nx * Dx * sizeof(float)),
                  *df = xmalloc((size_t)N * Dx * sizeof(float));
            if (n_steps) report_vae_decode(rv, xhat, (size_t)N * n_steps, dx);
            report_vae_decode(rv, final, (size_t)N, df);
            free(xhat), free(final);
            xhat = dx, final = df;
            /* the rows shown, once each */
            uint8_t *seen = xcalloc(data.n, 1);
            size_t *used = xmalloc(2 * cells * sizeof(size_t)), nused = 0;
            for (size_t c = 0; c < cells; c++)
                for (int side = 0; side < 2; side++) {
                    size_t r = (side ? opp_idx : pro_idx)[c];
                    if (r != REPORT_NO_ROW && !seen[r]) seen[r] = 1, used[nused++] = r;
                }
            train = xcalloc(data.n * Dx, sizeof(float));
            int orig = report_vae_train_images(rv, &data, used, nused, train);
            char fp[17];
            snprintf(
                vnote, sizeof vnote,
                "; latents decoded by the VAE %s (fingerprint %s, scaling_factor %g); training "
                "rows shown as %s%s",
                vae_dir, report_vae_fingerprint(rv, fp), (double)data.latent->scaling_factor,
                orig ? "their original images: " : "their decoded posterior means",
                orig ? data.latent->origin->description : "");
            free(seen), free(used);
            report_vae_close(rv);
        }
    } else if (rc == JT_OK) {
        train = data_images_f32(&data);
    }
    char prov[3072];
    if (real)
        snprintf(prov, sizeof prov, "scores: %s; targets: real images %s; training data: %s", dir,
                 tgt.data.description, data.description);
    else
        snprintf(prov, sizeof prov, "scores: %s; trajectory: %s (model %s); training data: %s", dir,
                 json_str(traj, "path"), json_str(traj, "model_fingerprint"), data.description);
    if (vnote[0]) strncat(prov, vnote, sizeof prov - strlen(prov) - 1);
    ReportData rd = {
        .n_targets = N, .n_steps = n_steps, .topk = K, .C = C, .H = H, .W = W,
        .steps = step_v, .xhat = n_steps ? xhat : NULL, .final = final, .final_only = final_only,
        .pro_idx = pro_idx, .opp_idx = opp_idx, .pro_val = pro_val, .opp_val = opp_val,
        .train = train, .n_train = data.n, .train_source_index = data.index,
        .train_labels = data.n_classes ? data.labels : NULL,
        .train_files = (const char *const *)data.item_names,
        .train_captions = (const char *const *)data.captions,
        .class_names = (const char *const *)data.class_names, .n_classes = data.n_classes,
        .target_ids = tid, .target_labels = tlabels,
        .has_guidance = !real && (tgt.tr.labels != NULL || tgt.tr.context != NULL),
        .guidance = real ? 0.0f : tgt.tr.guidance,
        .target_prompts = (const char *const *)tprompts,
        .negative_prompt = real ? NULL : tgt.tr.negative_prompt,
        .title = NULL, .method = method, .provenance = prov,
        .real_targets = real};
    if (rc == JT_OK) rc = report_write_html(html, &rd, &err);
    if (rc == JT_OK) rc = report_write_png(png, &rd, &err);
    if (rc == JT_OK) printf("%s\n%s\n", html, png);
    free(tprompts);
    free(step_v), free(tid), free(tlabels), free(xhat), free(final), free(pro_idx), free(opp_idx), free(pro_val);
    free(opp_val), free(train), free(html_def), free(png_def);
    cJSON_Delete(man), cJSON_Delete(topk);
    targets_free(&tgt);
    data_free(&data);
    return rc == JT_OK ? 0 : cli_error("report", &err);
}
