/* targets.c: see targets.h. */
#include "attrib/targets.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

int targets_from_trajectory(Targets *t, const char *path, JtError *err) {
    memset(t, 0, sizeof *t);
    if (traj_load(&t->tr, path, err) != JT_OK) return JT_ERR;
    t->n = t->tr.n, t->C = t->tr.C, t->H = t->tr.H, t->W = t->tr.W;
    return JT_OK;
}

void targets_rename_options(JtError *err, const char *opt) {
    static const char *const keys[] = {"data", "classes", "limit", "indices", "fit", "color"};
    char out[sizeof err->msg];
    size_t o = 0;
    const char *p = err->msg;
    while (*p && o + 1 < sizeof out) {
        size_t klen = 0;
        if (p[0] == '-' && p[1] == '-')
            for (size_t i = 0; i < sizeof keys / sizeof *keys && !klen; i++) {
                size_t n = strlen(keys[i]);
                char next = p[2 + n];
                if (strncmp(p + 2, keys[i], n) == 0 &&
                    !(next == '-' || (next >= 'a' && next <= 'z')))
                    klen = n;
            }
        if (klen) {
            int w = snprintf(out + o, sizeof out - o, "--%s-%.*s", opt, (int)klen, p + 2);
            o = w > 0 && (size_t)w < sizeof out - o ? o + (size_t)w : sizeof out - 1;
            p += 2 + klen;
        } else {
            out[o++] = *p++;
        }
    }
    out[o] = '\0';
    memcpy(err->msg, out, o + 1);
}

int targets_from_data(Targets *t, const DatasetSpec *spec, int C, int H, int W, const char *opt,
                      JtError *err) {
    memset(t, 0, sizeof *t);
    t->real = 1;
    DatasetSpec s;
    data_spec_copy(&s, spec);
    s.height = H, s.width = W, s.channels = C;
    int rc = data_load(&s, &t->data, err);
    data_spec_free(&s);
    if (rc == JT_OK && (t->data.c != C || t->data.h != H || t->data.w != W)) /* bug guard */
        rc = jt_fail(err, "%s: images are %dx%dx%d, the model's are %dx%dx%d", t->data.description,
                     t->data.c, t->data.h, t->data.w, C, H, W);
    if (rc != JT_OK) {
        targets_rename_options(err, opt);
        char flag[64];
        snprintf(flag, sizeof flag, "--%s-data", opt);
        JtError inner = *err;
        if (strncmp(inner.msg, flag, strlen(flag)) != 0) jt_fail(err, "%s: %s", flag, inner.msg);
        data_free(&t->data);
        return JT_ERR;
    }
    if (t->data.n > 1000000000u) {
        data_free(&t->data);
        return jt_fail(err, "--%s-data: %zu images, more than the 10^9 targets scores index", opt,
                       t->data.n);
    }
    t->n = (int)t->data.n, t->C = C, t->H = H, t->W = W;
    t->images = data_images_f32(&t->data);
    return JT_OK;
}

void targets_free(Targets *t) {
    if (t->real) {
        data_free(&t->data);
        free(t->images);
    } else {
        traj_free(&t->tr);
    }
    memset(t, 0, sizeof *t);
}

const float *targets_image(const Targets *t, int sample, int k) {
    const size_t D = (size_t)t->C * t->H * t->W;
    if (t->real) return t->images + (size_t)sample * D;
    if (k >= 0) return t->tr.x0_hat + ((size_t)sample * t->tr.S + (size_t)k) * D;
    return t->tr.x_0 + (size_t)sample * D;
}

int targets_labelled(const Targets *t) {
    return t->real ? t->data.n_classes > 0 : t->tr.labels != NULL;
}

int targets_label(const Targets *t, int sample) {
    if (t->real) return t->data.n_classes > 0 ? t->data.labels[sample] : -1;
    return t->tr.labels ? t->tr.labels[sample] : -1;
}

cJSON *targets_set_json(const Targets *t) {
    char h[17];
    cJSON *o = cJSON_CreateObject();
    cJSON_AddStringToObject(o, "kind", "images");
    cJSON_AddStringToObject(o, "spec", t->data.description);
    cJSON_AddStringToObject(o, "fingerprint", data_fingerprint_hex(&t->data, h));
    cJSON_AddNumberToObject(o, "n", (double)t->data.n);
    return o;
}
