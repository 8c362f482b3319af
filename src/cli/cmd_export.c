/* cmd_export.c: `jtrak export --data SRC --out DIR [--caption TEMPLATE]` writes the selected rows
 * of any pixel dataset as a captioned image folder: DIR/NNNNN.png (8-bit gray or RGB, as the data
 * after its transforms, named by row, zero-padded) and DIR/captions.csv (`file,caption`, RFC 4180),
 * which `--data captions:DIR/captions.csv` reads back (data/captions.h). A row's caption is its
 * own when the source has one (its first), else TEMPLATE with every "{class}" replaced by the
 * row's class name (data_class_name). DIR/manifest.json (format jtrak-export-v1) records the
 * dataset, its fingerprint and the captions' fingerprint: the same export again is a no-op, any
 * other refused. Written into DIR.tmp-PID, checked by reading captions.csv back, renamed last. */
#include "cli/cli_common.h"
#include "cli/commands.h"
#include "core/hash.h"
#include "core/progress.h"
#include "data/captions.h"
#include "io/artifact.h"
#include "io/jsonfile.h"
#include "io/model_folder.h"
#include "io/png.h"

#include <dirent.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#define EXPORT_FORMAT "jtrak-export-v1"
#define EXPORT_CAPTIONS_FILE "captions.csv"

static void help(void) {
    printf("usage: jtrak export --out DIR [--caption TEMPLATE] [data options]\n\n"
           "Writes the selected rows as DIR/00000.png, DIR/00001.png, ... (8-bit, gray or RGB as\n"
           "the data) and DIR/captions.csv (header file,caption; RFC 4180 quoting), readable as\n"
           "--data captions:DIR/captions.csv.\n\n"
           "  --out DIR           a new or empty folder (the same export again does nothing)\n"
           "  --caption TEMPLATE  the caption of a row the source gives none: TEMPLATE with\n"
           "                      {class} replaced by the row's class name, e.g.\n"
           "                      \"a photo of a {class}\" (a captioned source's own captions\n"
           "                      are kept)\n"
           "  --size H[xW]        the images' size (default: the source's; with --fit)\n"
           "  --quiet             no progress line\n\n");
    cli_data_help(stdout);
}

/* TEMPLATE with each "{class}" replaced by name (NULL: no class; then TEMPLATE must not ask for
 * one). malloc'd, or NULL when it asks and name is NULL. */
static char *caption_from_template(const char *tmpl, const char *name) {
    static const char KEY[] = "{class}";
    const size_t klen = sizeof KEY - 1;
    size_t n = 0, nlen = name ? strlen(name) : 0;
    for (const char *p = tmpl; *p;) {
        if (strncmp(p, KEY, klen) == 0) {
            if (!name) return NULL;
            n += nlen, p += klen;
        } else {
            n++, p++;
        }
    }
    char *out = xmalloc(n + 1), *o = out;
    for (const char *p = tmpl; *p;) {
        if (strncmp(p, KEY, klen) == 0) {
            memcpy(o, name, nlen);
            o += nlen, p += klen;
        } else {
            *o++ = *p++;
        }
    }
    *o = 0;
    return out;
}

/* Each row's caption (texts, n of them, malloc'd), or JT_ERR saying which row cannot have one. */
static int export_captions(const Dataset *ds, const char *tmpl, char ***texts, JtError *err) {
    char **t = xcalloc(ds->n ? ds->n : 1, sizeof *t);
    int rc = JT_OK;
    for (size_t i = 0; i < ds->n && rc == JT_OK; i++) {
        const char *own = data_item_caption(ds, i);
        if (own) {
            t[i] = xstrdup(own);
        } else if (!tmpl) {
            rc = jt_fail(err,
                         "%s: row %zu (source image %zu) has no caption: give --caption "
                         "TEMPLATE, e.g. \"a photo of a {class}\"",
                         ds->description, i, ds->index[i]);
        } else {
            const char *name = data_class_name(ds, ds->labels[i]);
            t[i] = caption_from_template(tmpl, name);
            if (!t[i])
                rc = jt_fail(err,
                             "--caption \"%.80s\": {class} needs the row's class name, and row "
                             "%zu (source image %zu) of %s has no label",
                             tmpl, i, ds->index[i], ds->description);
            else if (!t[i][0])
                rc = jt_fail(err,
                             "--caption \"%.80s\": the caption of row %zu is empty (a "
                             "captioned dataset refuses empty captions)",
                             tmpl, i);
            else if (strlen(t[i]) > CAPTIONS_MAX_TEXT)
                rc = jt_fail(err, "--caption: the caption of row %zu has %zu bytes, more than %d",
                             i, strlen(t[i]), CAPTIONS_MAX_TEXT);
        }
    }
    if (rc != JT_OK) {
        for (size_t i = 0; i < ds->n; i++)
            free(t[i]);
        free(t);
        t = NULL;
    }
    *texts = t;
    return rc;
}

/* rm -r of the temporary folder's own files (it holds no sub-folders). */
static void remove_tmp_folder(const char *dir) {
    DIR *d = opendir(dir);
    if (d) {
        struct dirent *e;
        while ((e = readdir(d)) != NULL) {
            if (strcmp(e->d_name, ".") == 0 || strcmp(e->d_name, "..") == 0) continue;
            char *p = path_join(dir, e->d_name);
            unlink(p);
            free(p);
        }
        closedir(d);
    }
    rmdir(dir);
}

/* 1 when dir's manifest.json describes this very export (same pixels and labels, same captions,
 * same rows), 0 when it describes another (err says which); -1 when unreadable (err). */
static int export_same(const char *dir, const char *fp_hex, const char *cap_hex, size_t n,
                       JtError *err) {
    char *mp = path_join(dir, "manifest.json");
    cJSON *m = json_load_file(mp, err);
    int same = -1;
    if (m) {
        const char *f = json_str(m, "dataset_fingerprint"), *c = json_str(m, "captions_fnv1a64");
        const cJSON *rows = cJSON_GetObjectItemCaseSensitive(m, "n");
        same = f && c && cJSON_IsNumber(rows) && strcmp(f, fp_hex) == 0 &&
               strcmp(c, cap_hex) == 0 && (size_t)rows->valuedouble == n;
        if (!same)
            jt_fail(err,
                    "%s: --out holds another export (%s: %.0f rows, dataset fingerprint %s, "
                    "captions %s; this one: %zu rows, %s, %s): give a new or empty --out",
                    dir, mp, cJSON_IsNumber(rows) ? rows->valuedouble : -1.0, f ? f : "(none)",
                    c ? c : "(none)", n, fp_hex, cap_hex);
    }
    cJSON_Delete(m);
    free(mp);
    return same;
}

static int write_text_file(const char *path, const char *text, JtError *err) {
    FILE *f = fopen(path, "wb");
    if (!f) return jt_fail(err, "%s: cannot create: %s", path, strerror(errno));
    size_t n = strlen(text);
    int ok = fwrite(text, 1, n, f) == n;
    ok = fflush(f) == 0 && ok;
    ok = fsync(fileno(f)) == 0 && ok;
    int e = errno;
    ok = fclose(f) == 0 && ok;
    if (!ok) return jt_fail(err, "%s: cannot write: %s", path, strerror(e ? e : errno));
    return JT_OK;
}

/* The PNGs, captions.csv and manifest.json into the folder tmp. */
static int export_write(const Dataset *ds, char *const *texts, const char *tmp, const char *tmpl,
                        const char *fp_hex, const char *cap_hex, int quiet, JtError *err) {
    int digits = 5; /* NNNNN, wider only past 100,000 rows */
    for (size_t m = ds->n > 0 ? ds->n - 1 : 0; m >= 100000; m /= 10)
        digits++;
    size_t plane = (size_t)ds->h * ds->w;
    uint8_t *hwc = xmalloc(plane * ds->c);
    /* the CSV: about 40 bytes of name, comma, newline and quoting per row besides the caption */
    size_t cap = 16, len = 0;
    for (size_t i = 0; i < ds->n; i++)
        cap += 2 * strlen(texts[i]) + 40;
    char *csv = xmalloc(cap);
    len += (size_t)snprintf(csv, cap, "file,caption\n");
    Progress pr;
    progress_init(&pr, "export", ds->n, 0, 1.0, "img");
    pr.quiet = quiet;
    int rc = JT_OK;
    for (size_t i = 0; i < ds->n && rc == JT_OK; i++) {
        const uint8_t *chw = ds->pixels + i * plane * ds->c; /* (c, h, w) */
        for (size_t p = 0; p < plane; p++)
            for (int ch = 0; ch < ds->c; ch++)
                hwc[p * ds->c + ch] = chw[(size_t)ch * plane + p];
        char name[32];
        snprintf(name, sizeof name, "%0*zu.png", digits, i);
        char *path = path_join(tmp, name);
        rc = png_write(path, hwc, ds->w, ds->h, ds->c, err);
        free(path);
        char *field = captions_csv_field(texts[i]);
        len += (size_t)snprintf(csv + len, cap - len, "%s,%s\n", name, field);
        free(field);
        progress_update(&pr, i + 1, NULL, i + 1 == ds->n);
    }
    free(hwc);
    char *csv_path = path_join(tmp, EXPORT_CAPTIONS_FILE);
    if (rc == JT_OK) rc = write_text_file(csv_path, csv, err);
    free(csv);
    if (rc == JT_OK) { /* what was written must read back as these captions (the reader's rules) */
        Captions back;
        rc = captions_read(&back, CAPTIONS_CSV, csv_path, NULL, err);
        if (rc == JT_OK) {
            CHECK(back.n == ds->n && back.n_texts == ds->n,
                  "export: %zu images, %zu captions "
                  "read back from %zu rows",
                  back.n, back.n_texts, ds->n);
            for (size_t i = 0; i < ds->n; i++)
                CHECK(strcmp(captions_text(&back, i, 0), texts[i]) == 0,
                      "export: row %zu's caption reads back differently", i);
            captions_free(&back);
        }
    }
    free(csv_path);
    if (rc == JT_OK) {
        cJSON *m = cJSON_CreateObject();
        cJSON_AddStringToObject(m, "format", EXPORT_FORMAT);
        cJSON_AddStringToObject(m, "dataset", ds->description);
        cJSON_AddStringToObject(m, "dataset_fingerprint", fp_hex);
        cJSON_AddNumberToObject(m, "n", (double)ds->n);
        cJSON_AddNumberToObject(m, "channels", ds->c);
        cJSON_AddNumberToObject(m, "height", ds->h);
        cJSON_AddNumberToObject(m, "width", ds->w);
        if (tmpl)
            cJSON_AddStringToObject(m, "caption_template", tmpl);
        else
            cJSON_AddNullToObject(m, "caption_template");
        cJSON_AddStringToObject(m, "captions_file", EXPORT_CAPTIONS_FILE);
        cJSON_AddStringToObject(m, "captions_fnv1a64", cap_hex);
        char *text = json_print_indent2(m);
        cJSON_Delete(m);
        char *mp = path_join(tmp, "manifest.json");
        rc = write_text_file(mp, text, err);
        free(mp);
        free(text);
    }
    return rc;
}

int cmd_export(int argc, char **argv) {
    Args a;
    args_init(&a, "export", argc, argv);
    if (args_flag(&a, "help")) {
        help();
        args_free(&a);
        return 0;
    }
    const char *out = args_str(&a, "out", NULL);
    const char *tmpl = args_str(&a, "caption", NULL);
    const char *size = args_str(&a, "size", NULL);
    int quiet = args_flag(&a, "quiet");
    JtError err;
    Dataset ds = {0};
    int usage = 0, drc = JT_ERR;
    UNetConfig shape; /* cli_load_dataset sizes the data from a U-Net config: here the source's */
    unet_config_default(&shape);
    unet_config_set_size(&shape, 0, 0);
    shape.in_channels = 0;
    size_t bad;
    if (!out) {
        fprintf(stderr, "jtrak export: --out DIR is required (see 'jtrak export --help')\n");
        usage = 1;
    } else if (tmpl && (strlen(tmpl) > CAPTIONS_MAX_TEXT ||
                        !captions_utf8_valid(tmpl, strlen(tmpl), &bad))) {
        fprintf(stderr, "jtrak export: --caption: not valid UTF-8 text of at most %d bytes\n",
                CAPTIONS_MAX_TEXT);
        usage = 1;
    } else if (size) {
        DatasetSpec sz;
        data_spec_init(&sz);
        if (data_spec_set(&sz, "size", size, &err) != JT_OK || sz.height == 0) {
            fprintf(stderr, "jtrak export: --size %s: expected N or HxW\n", size);
            usage = 1;
        }
        unet_config_set_size(&shape, sz.height, sz.width);
        data_spec_free(&sz);
    }
    if (!usage)
        drc = cli_load_dataset(&a, &shape, &ds, &err);
    else
        cli_skip_dataset(&a);
    int rc = args_finish(&a);
    args_free(&a);
    if (rc == 0 && usage) rc = 2;
    if (rc == 0 && drc == 2) {
        fprintf(stderr, "jtrak export: %s\n", err.msg);
        rc = 2;
    }
    if (rc == 0 && drc != JT_OK) rc = cli_error("export", &err);
    if (rc == 0 && ds.latent) {
        jt_fail(&err,
                "%s: latent rows have no pixels to export (export the dataset they were "
                "encoded from)",
                ds.description);
        rc = cli_error("export", &err);
    }
    if (rc == 0 && ds.n == 0) {
        jt_fail(&err, "%s: the selection is empty: nothing to export", ds.description);
        rc = cli_error("export", &err);
    }
    char **texts = NULL;
    if (rc == 0 && export_captions(&ds, tmpl, &texts, &err) != JT_OK)
        rc = cli_error("export", &err);
    char fp_hex[17] = "", cap_hex[17] = "";
    if (rc == 0) {
        data_fingerprint_hex(&ds, fp_hex);
        snprintf(cap_hex, sizeof cap_hex, "%016llx",
                 (unsigned long long)captions_fingerprint_texts((const char *const *)texts, ds.n));
    }
    int done = 0;
    if (rc == 0) { /* what --out holds now: nothing, this export (done), or something else */
        char marker[200];
        ArtifactKind k = artifact_kind(out, marker, sizeof marker);
        if (k == ARTIFACT_EXPORT) {
            int same = export_same(out, fp_hex, cap_hex, ds.n, &err);
            if (same == 1)
                done = 1;
            else
                rc = cli_error("export", &err);
        } else if (k == ARTIFACT_UNKNOWN && strcmp(marker, "not a folder") == 0) {
            jt_fail(&err, "%s: --out exists and is not a folder", out);
            rc = cli_error("export", &err);
        } else if (k != ARTIFACT_NONE) {
            jt_fail(&err, "%s: --out holds %s (%s), not an image export: give a new or empty --out",
                    out, artifact_kind_name(k), marker);
            rc = cli_error("export", &err);
        }
    }
    if (rc == 0 && done && !quiet)
        fprintf(stderr, "export: %s already holds this export (%zu images)\n", out, ds.n);
    if (rc == 0 && !done) {
        if (!quiet)
            fprintf(stderr, "export: %zu images (%s), %dx%d, %s -> %s\n", ds.n, ds.description,
                    ds.h, ds.w, ds.c == 1 ? "gray" : "RGB", out);
        size_t tl = strlen(out) + 32;
        char *tmp = xmalloc(tl);
        snprintf(tmp, tl, "%s.tmp-%ld", out, (long)getpid());
        remove_tmp_folder(tmp); /* a stale one of a process with our PID */
        int made = model_mkdirs(tmp, &err) == JT_OK, wrc = made ? JT_OK : JT_ERR;
        if (wrc == JT_OK) wrc = export_write(&ds, texts, tmp, tmpl, fp_hex, cap_hex, quiet, &err);
        /* rename(2) onto an absent or empty folder; a concurrent run that renamed the same export
         * first is success too */
        if (wrc == JT_OK && rename(tmp, out) != 0) {
            int e = errno;
            JtError serr;
            if (export_same(out, fp_hex, cap_hex, ds.n, &serr) != 1)
                wrc = jt_fail(&err, "%s: cannot rename %s into place: %s", out, tmp, strerror(e));
        }
        if (made) remove_tmp_folder(tmp); /* gone after a successful rename: a no-op then */
        free(tmp);
        if (wrc != JT_OK) rc = cli_error("export", &err);
    }
    if (rc == 0) printf("%s\n", out);
    for (size_t i = 0; texts && i < ds.n; i++)
        free(texts[i]);
    free(texts);
    data_free(&ds);
    return rc;
}
