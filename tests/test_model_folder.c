/* test_model_folder.c: diffusers model folders and slab files (src/io/model_folder.c): save then
 * load gives the same config and bit-identical parameters, the weights file holds exactly the
 * layout's diffusers names as F32 with {"format":"pt"}, legacy attention names (unet2d.md 6.3),
 * [C,C,1,1] linear weights and F16 files load, and each malformed input (missing, extra, misshapen
 * or integer tensors, both spellings at once, missing or invalid config.json, missing weights) is
 * an error naming the file and the tensor or field. Small configs keep it fast. */
#include "helpers/model_unet.h"
#include "io/model_folder.h"

#include "unet/config.h"
#include "unet/unet.h"

#include <criterion/criterion.h>
#include <dirent.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

static char tmpdir[256];

static void make_tmpdir(void) {
    snprintf(tmpdir, sizeof tmpdir, "/tmp/jtrak_mf_XXXXXX");
    cr_assert(mkdtemp(tmpdir) != NULL, "mkdtemp failed");
}

static void remove_tree(const char *dir) {
    DIR *d = opendir(dir);
    if (!d) return;
    struct dirent *e;
    char p[1024];
    while ((e = readdir(d))) {
        if (!strcmp(e->d_name, ".") || !strcmp(e->d_name, "..")) continue;
        snprintf(p, sizeof p, "%s/%s", dir, e->d_name);
        struct stat sb;
        if (lstat(p, &sb) == 0 && S_ISDIR(sb.st_mode))
            remove_tree(p);
        else
            unlink(p);
    }
    closedir(d);
    rmdir(dir);
}

static void remove_tmpdir(void) {
    remove_tree(tmpdir);
}

TestSuite(model_folder, .init = make_tmpdir, .fini = remove_tmpdir);

static const char *tmp_path(const char *name) {
    static char p[4][512];
    static int k;
    k = (k + 1) % 4;
    snprintf(p[k], sizeof p[k], "%s/%s", tmpdir, name);
    return p[k];
}

static int count_entries(const char *dir) {
    DIR *d = opendir(dir);
    cr_assert_not_null(d, "cannot open %s", dir);
    int n = 0;
    struct dirent *e;
    while ((e = readdir(d)))
        if (strcmp(e->d_name, ".") && strcmp(e->d_name, "..")) n++;
    closedir(d);
    return n;
}

/* A 2-level model with attention in a down, an up and the mid block (T8-XS of unet2d.md 11 with
 * 2 heads), so that every kind of tensor name occurs. */
static UNet *small_net(void) {
    UNetConfig c;
    unet_config_default(&c);
    c.sample_size = 8;
    c.in_channels = 1;
    c.out_channels = 1;
    c.n_levels = 2;
    c.block_out_channels[0] = 16;
    c.block_out_channels[1] = 32;
    c.down_attn[0] = 0, c.down_attn[1] = 1;
    c.up_attn[0] = 1, c.up_attn[1] = 0;
    c.layers_per_block = 1;
    c.norm_num_groups = 8;
    c.attention_head_dim = 16;
    c.norm_eps = 1e-6f;
    c.freq_shift = 1;
    c.flip_sin_to_cos = 0;
    UNet *net;
    JtError err = {{0}};
    cr_assert_eq(unet_create(&net, &c, &err), JT_OK, "%s", err.msg);
    float *p = unet_params(net);
    for (size_t i = 0; i < unet_num_params(net); i++)
        p[i] = (float)i * 0.001f - 3.0f;
    return net;
}

/* Writes the net's tensors to path, renaming/reshaping/retyping on the way:
 * rename(name) may return a different name (or NULL to drop the tensor). */
typedef const char *(*RenameFn)(const char *name, char *buf, size_t cap);

static void write_variant(const UNet *net, const char *path, RenameFn rename_fn, StDtype dtype,
                          const char *extra_name, int reshape_1x1) {
    const ParamLayout *l = unet_layout(net);
    const float *p = unet_params_const(net);
    StWriter w;
    st_writer_init(&w);
    for (int i = 0; i < l->count; i++) {
        const LayoutEntry *e = &l->entries[i];
        char buf[256];
        const char *name = rename_fn ? rename_fn(e->name, buf, sizeof buf) : e->name;
        if (!name) continue;
        int64_t shape[4];
        int nd = e->ndim;
        for (int d = 0; d < nd; d++)
            shape[d] = e->shape[d];
        if (reshape_1x1 && nd == 2 && strstr(name, "attentions.")) {
            shape[2] = shape[3] = 1;
            nd = 4;
        }
        st_writer_add_f32(&w, name, dtype, nd, shape, p + e->offset);
    }
    static const float x[3] = {1, 2, 3};
    if (extra_name) st_writer_add_f32(&w, extra_name, ST_F32, 1, (int64_t[]){3}, x);
    JtError err = {{0}};
    cr_assert_eq(st_writer_write(&w, path, &err), JT_OK, "%s", err.msg);
    st_writer_free(&w);
}

/* A folder with the net's config.json and a weights file written by write_variant. */
static const char *variant_folder(const char *name, const UNet *net, RenameFn fn, StDtype dtype,
                                  const char *extra, int reshape_1x1) {
    const char *dir = tmp_path(name);
    JtError err = {{0}};
    cr_assert_eq(test_save_unet(net, dir, &err), JT_OK, "%s", err.msg);
    char wpath[600];
    snprintf(wpath, sizeof wpath, "%s/%s", dir, MODEL_WEIGHTS_FILE);
    write_variant(net, wpath, fn, dtype, extra, reshape_1x1);
    return dir;
}

static void expect_load_error(const char *dir, const char *file, const char *s1, const char *s2) {
    UNet *net = (UNet *)1;
    JtError err = {{0}};
    cr_assert_eq(test_load_unet(dir, &net, &err), JT_ERR, "model_load accepted %s", dir);
    cr_assert_null(net);
    cr_log_info("%s", err.msg);
    char want[700];
    snprintf(want, sizeof want, "%s/%s", dir, file);
    cr_assert(strstr(err.msg, want) != NULL, "error does not name %s: %s", want, err.msg);
    if (s1) cr_assert(strstr(err.msg, s1) != NULL, "error lacks \"%s\": %s", s1, err.msg);
    if (s2) cr_assert(strstr(err.msg, s2) != NULL, "error lacks \"%s\": %s", s2, err.msg);
}

static void expect_same_params(const UNet *a, const UNet *b) {
    cr_assert_eq(unet_num_params(a), unet_num_params(b));
    cr_assert_eq(
        memcmp(unet_params_const(a), unet_params_const(b), unet_num_params(a) * sizeof(float)), 0,
        "parameters differ");
}

/* ---- round trips ---- */

Test(model_folder, save_load_round_trip) {
    UNet *net = small_net();
    const char *dir = tmp_path("a/b/model"); /* parents are created */
    JtError err = {{0}};
    cr_assert_eq(test_save_unet(net, dir, &err), JT_OK, "%s", err.msg);
    cr_assert_eq(count_entries(dir), 2, "expected exactly config.json and the weights");
    UNet *back;
    cr_assert_eq(test_load_unet(dir, &back, &err), JT_OK, "%s", err.msg);
    const UNetConfig *a = unet_config(net), *b = unet_config(back);
    cr_assert_eq(a->n_levels, b->n_levels);
    cr_assert_eq(a->attention_head_dim, b->attention_head_dim);
    cr_assert(a->norm_eps == b->norm_eps && a->freq_shift == b->freq_shift);
    cr_assert_eq(a->flip_sin_to_cos, b->flip_sin_to_cos);
    cr_assert_eq(memcmp(a, b, sizeof *a), 0, "config changed in the round trip");
    expect_same_params(net, back);
    /* saving again over the existing folder works and leaves no temporary files */
    cr_assert_eq(test_save_unet(back, dir, &err), JT_OK, "%s", err.msg);
    cr_assert_eq(count_entries(dir), 2);
    unet_free(net);
    unet_free(back);
}

/* The weights file holds exactly the layout, F32, sorted by name, with {"format":"pt"}. */
Test(model_folder, weights_file_is_diffusers_layout) {
    UNet *net = small_net();
    const char *dir = tmp_path("m");
    JtError err = {{0}};
    cr_assert_eq(test_save_unet(net, dir, &err), JT_OK, "%s", err.msg);
    char wpath[600];
    snprintf(wpath, sizeof wpath, "%s/%s", dir, MODEL_WEIGHTS_FILE);
    StFile f;
    cr_assert_eq(st_open(&f, wpath, &err), JT_OK, "%s", err.msg);
    const ParamLayout *l = unet_layout(net);
    cr_assert_eq(f.n_tensors, l->count);
    cr_assert_str_eq(st_metadata_get(&f, "format"), "pt");
    for (int i = 0; i < f.n_tensors; i++) {
        const StTensor *t = &f.tensors[i];
        cr_assert_eq(t->dtype, ST_F32, "%s", t->name);
        if (i) cr_assert(strcmp(f.tensors[i - 1].name, t->name) < 0, "not sorted at %s", t->name);
        if (i) cr_assert_eq(f.tensors[i - 1].end, t->begin, "not back to back at %s", t->name);
        int k = layout_find(l, t->name);
        cr_assert_geq(k, 0, "tensor %s is not in the layout", t->name);
        cr_assert_eq(t->ndim, l->entries[k].ndim);
        for (int d = 0; d < t->ndim; d++)
            cr_assert_eq(t->shape[d], l->entries[k].shape[d]);
    }
    cr_assert_geq(st_find(&f, "mid_block.attentions.0.to_out.0.weight"), 0);
    cr_assert_geq(st_find(&f, "up_blocks.0.attentions.1.to_q.bias"), 0);
    st_close(&f);
    unet_free(net);
}

static const char *to_legacy(const char *name, char *buf, size_t cap) {
    static const char *const cur[4] = {".to_q.", ".to_k.", ".to_v.", ".to_out.0."};
    static const char *const old[4] = {".query.", ".key.", ".value.", ".proj_attn."};
    for (int k = 0; k < 4; k++) {
        const char *at = strstr(name, cur[k]);
        if (at) {
            snprintf(buf, cap, "%.*s%s%s", (int)(at - name), name, old[k], at + strlen(cur[k]));
            return buf;
        }
    }
    return name;
}

Test(model_folder, legacy_attention_names) {
    UNet *net = small_net();
    const char *dir = variant_folder("legacy", net, to_legacy, ST_F32, NULL, 0);
    UNet *back;
    JtError err = {{0}};
    cr_assert_eq(test_load_unet(dir, &back, &err), JT_OK, "%s", err.msg);
    expect_same_params(net, back);
    unet_free(back);
    unet_free(net);
}

Test(model_folder, linear_weights_as_1x1_convs) {
    UNet *net = small_net();
    const char *dir = variant_folder("conv1x1", net, to_legacy, ST_F32, NULL, 1);
    UNet *back;
    JtError err = {{0}};
    cr_assert_eq(test_load_unet(dir, &back, &err), JT_OK, "%s", err.msg);
    expect_same_params(net, back);
    unet_free(back);
    unet_free(net);
}

Test(model_folder, f16_weights_are_converted) {
    UNet *net = small_net();
    const char *dir = variant_folder("f16", net, NULL, ST_F16, NULL, 0);
    UNet *back;
    JtError err = {{0}};
    cr_assert_eq(test_load_unet(dir, &back, &err), JT_OK, "%s", err.msg);
    const float *a = unet_params_const(net), *b = unet_params_const(back);
    for (size_t i = 0; i < unet_num_params(net); i++)
        cr_assert(b[i] == st_f16_to_f32(st_f32_to_f16(a[i])), "param %zu", i);
    unet_free(back);
    unet_free(net);
}

/* ---- slab helpers with a hand-built layout ---- */

static void tiny_layout(ParamLayout *l) {
    layout_init(l);
    layout_add(l, "conv_in.weight", 4, (int[]){4, 1, 3, 3});
    layout_add(l, "conv_in.bias", 1, (int[]){4});
    layout_add(l, "mid_block.attentions.0.to_q.weight", 2, (int[]){4, 4});
    layout_add(l, "mid_block.attentions.0.to_q.bias", 1, (int[]){4});
}

Test(model_folder, slab_save_load_and_prefixes) {
    ParamLayout l;
    tiny_layout(&l);
    float *a = malloc(l.total * sizeof *a), *m = malloc(l.total * sizeof *m);
    float *b = calloc(l.total, sizeof *b);
    for (size_t i = 0; i < l.total; i++)
        a[i] = (float)i / 7.0f, m[i] = -(float)i;
    const char *path = tmp_path("ema.safetensors");
    JtError err = {{0}};
    cr_assert_eq(model_slab_save(path, &l, a, &err), JT_OK, "%s", err.msg);
    cr_assert_eq(model_slab_load(path, &l, b, &err), JT_OK, "%s", err.msg);
    cr_assert_eq(memcmp(a, b, l.total * sizeof *a), 0);

    /* two slabs in one file under prefixes, plus a metadata entry (a training state) */
    StWriter w;
    st_writer_init(&w);
    st_writer_set_metadata(&w, "step", "1234");
    model_slab_add(&w, "params.", &l, a, ST_F32);
    model_slab_add(&w, "adam_m.", &l, m, ST_F32);
    const char *state = tmp_path("state.safetensors");
    cr_assert_eq(st_writer_write(&w, state, &err), JT_OK, "%s", err.msg);
    st_writer_free(&w);
    StFile f;
    cr_assert_eq(st_open(&f, state, &err), JT_OK, "%s", err.msg);
    cr_assert_str_eq(st_metadata_get(&f, "step"), "1234");
    cr_assert_eq(model_slab_read(&f, "adam_m.", &l, b, &err), JT_OK, "%s", err.msg);
    cr_assert_eq(memcmp(m, b, l.total * sizeof *m), 0);
    cr_assert_eq(model_slab_read(&f, "params.", &l, b, &err), JT_OK, "%s", err.msg);
    cr_assert_eq(memcmp(a, b, l.total * sizeof *a), 0);
    /* without a prefix nothing matches */
    cr_assert_eq(model_slab_read(&f, "", &l, b, &err), JT_ERR);
    cr_assert(strstr(err.msg, state) && strstr(err.msg, "'conv_in.weight'") &&
                  strstr(err.msg, "missing"),
              "%s", err.msg);
    st_close(&f);
    free(a);
    free(b);
    free(m);
    layout_free(&l);
}

Test(model_folder, slab_errors_name_file_and_tensor) {
    ParamLayout l, other;
    tiny_layout(&l);
    layout_init(&other);
    layout_add(&other, "conv_in.weight", 4, (int[]){4, 1, 3, 3});
    layout_add(&other, "conv_in.bias", 1, (int[]){5});
    float *a = calloc(l.total + 8, sizeof *a);
    const char *path = tmp_path("slab.safetensors");
    JtError err = {{0}};
    cr_assert_eq(model_slab_save(path, &other, a, &err), JT_OK, "%s", err.msg);
    cr_assert_eq(model_slab_load(path, &l, a, &err), JT_ERR);
    cr_log_info("%s", err.msg);
    cr_assert(strstr(err.msg, path) && strstr(err.msg, "'conv_in.bias'") &&
                  strstr(err.msg, "shape [5] but the model expects [4]"),
              "%s", err.msg);
    cr_assert_eq(model_slab_load(tmp_path("none.safetensors"), &l, a, &err), JT_ERR);
    cr_assert(strstr(err.msg, "none.safetensors") && strstr(err.msg, "cannot open"), "%s", err.msg);
    free(a);
    layout_free(&l);
    layout_free(&other);
}

/* ---- malformed model folders: one test each ---- */

static const char *drop_one(const char *name, char *buf, size_t cap) {
    return strcmp(name, "up_blocks.0.resnets.1.conv2.weight") == 0 ? NULL : name;
}

Test(model_folder, missing_tensor) {
    UNet *net = small_net();
    const char *dir = variant_folder("missing", net, drop_one, ST_F32, NULL, 0);
    expect_load_error(dir, MODEL_WEIGHTS_FILE, "'up_blocks.0.resnets.1.conv2.weight'", "missing");
    unet_free(net);
}

Test(model_folder, extra_tensor) {
    UNet *net = small_net();
    const char *dir = variant_folder("extra", net, NULL, ST_F32, "up_blocks.0.resnets.9.x", 0);
    expect_load_error(dir, MODEL_WEIGHTS_FILE, "'up_blocks.0.resnets.9.x'", "extra tensor");
    unet_free(net);
}

static const char *dup_legacy(const char *name, char *buf, size_t cap) {
    return name;
}

Test(model_folder, current_and_legacy_name_together) {
    UNet *net = small_net();
    const char *dir =
        variant_folder("both", net, dup_legacy, ST_F32, "mid_block.attentions.0.query.weight", 0);
    expect_load_error(dir, MODEL_WEIGHTS_FILE, "'mid_block.attentions.0.to_q.weight'",
                      "legacy name 'mid_block.attentions.0.query.weight'");
    unet_free(net);
}

Test(model_folder, wrong_shape) {
    UNet *net = small_net();
    const char *dir = tmp_path("shape");
    JtError err = {{0}};
    cr_assert_eq(test_save_unet(net, dir, &err), JT_OK, "%s", err.msg);
    /* the weights of a model with 24 channels at level 0 */
    UNetConfig c = *unet_config(net);
    c.block_out_channels[0] = 24;
    UNet *other;
    cr_assert_eq(unet_create(&other, &c, &err), JT_OK, "%s", err.msg);
    char wpath[600];
    snprintf(wpath, sizeof wpath, "%s/%s", dir, MODEL_WEIGHTS_FILE);
    write_variant(other, wpath, NULL, ST_F32, NULL, 0);
    expect_load_error(dir, MODEL_WEIGHTS_FILE, "shape", "but the model expects");
    unet_free(other);
    unet_free(net);
}

Test(model_folder, integer_dtype) {
    UNet *net = small_net();
    const char *dir = variant_folder("int", net, drop_one, ST_F32, NULL, 0);
    /* put the dropped tensor back as I32 */
    const ParamLayout *l = unet_layout(net);
    const LayoutEntry *e = &l->entries[layout_find(l, "up_blocks.0.resnets.1.conv2.weight")];
    int32_t *ints = calloc(e->numel, sizeof *ints);
    StWriter w;
    st_writer_init(&w);
    const float *p = unet_params_const(net);
    for (int i = 0; i < l->count; i++) {
        const LayoutEntry *x = &l->entries[i];
        if (x == e)
            st_writer_add(&w, x->name, ST_I32, 4,
                          (int64_t[]){x->shape[0], x->shape[1], x->shape[2], x->shape[3]}, ints);
        else
            st_writer_add_f32_dims(&w, x->name, ST_F32, x->ndim, x->shape, p + x->offset);
    }
    char wpath[600];
    snprintf(wpath, sizeof wpath, "%s/%s", dir, MODEL_WEIGHTS_FILE);
    JtError err = {{0}};
    cr_assert_eq(st_writer_write(&w, wpath, &err), JT_OK, "%s", err.msg);
    st_writer_free(&w);
    free(ints);
    expect_load_error(dir, MODEL_WEIGHTS_FILE, "'up_blocks.0.resnets.1.conv2.weight'",
                      "dtype I32 is not a float type");
    unet_free(net);
}

Test(model_folder, unknown_dtype_in_weights) {
    UNet *net = small_net();
    const char *dir = tmp_path("f33");
    JtError err = {{0}};
    cr_assert_eq(test_save_unet(net, dir, &err), JT_OK, "%s", err.msg);
    char wpath[600];
    snprintf(wpath, sizeof wpath, "%s/%s", dir, MODEL_WEIGHTS_FILE);
    const char *hdr =
        "{\"conv_in.weight\":{\"dtype\":\"Q8\",\"shape\":[1],\"data_offsets\":[0,1]}}";
    FILE *fp = fopen(wpath, "wb");
    uint64_t n = strlen(hdr);
    fwrite(&n, 8, 1, fp);
    fputs(hdr, fp);
    fputc(0, fp);
    fclose(fp);
    expect_load_error(dir, MODEL_WEIGHTS_FILE, "'conv_in.weight'", "unknown dtype 'Q8'");
    unet_free(net);
}

Test(model_folder, missing_weights_file) {
    UNet *net = small_net();
    const char *dir = tmp_path("now");
    JtError err = {{0}};
    cr_assert_eq(test_save_unet(net, dir, &err), JT_OK, "%s", err.msg);
    char wpath[600];
    snprintf(wpath, sizeof wpath, "%s/%s", dir, MODEL_WEIGHTS_FILE);
    unlink(wpath);
    expect_load_error(dir, MODEL_WEIGHTS_FILE, "cannot open", NULL);
    unet_free(net);
}

Test(model_folder, missing_config) {
    UNet *net = small_net();
    const char *dir = tmp_path("nocfg");
    JtError err = {{0}};
    cr_assert_eq(test_save_unet(net, dir, &err), JT_OK, "%s", err.msg);
    char cpath[600];
    snprintf(cpath, sizeof cpath, "%s/%s", dir, MODEL_CONFIG_FILE);
    unlink(cpath);
    expect_load_error(dir, MODEL_CONFIG_FILE, "cannot open", NULL);
    unet_free(net);
}

static void overwrite_config(const char *dir, const char *text) {
    char cpath[600];
    snprintf(cpath, sizeof cpath, "%s/%s", dir, MODEL_CONFIG_FILE);
    FILE *fp = fopen(cpath, "w");
    fputs(text, fp);
    fclose(fp);
}

Test(model_folder, invalid_config_json) {
    UNet *net = small_net();
    const char *dir = tmp_path("badcfg");
    JtError err = {{0}};
    cr_assert_eq(test_save_unet(net, dir, &err), JT_OK, "%s", err.msg);
    overwrite_config(dir, "{\"in_channels\": 1,");
    expect_load_error(dir, MODEL_CONFIG_FILE, "invalid JSON", NULL);
    unet_free(net);
}

Test(model_folder, unsupported_config_value) {
    UNet *net = small_net();
    const char *dir = tmp_path("dropout");
    JtError err = {{0}};
    cr_assert_eq(test_save_unet(net, dir, &err), JT_OK, "%s", err.msg);
    char *text = unet_config_to_json(unet_config(net));
    char *at = strstr(text, "\"dropout\": 0");
    cr_assert_not_null(at);
    at[11] = '1'; /* "dropout": 1 */
    overwrite_config(dir, text);
    free(text);
    expect_load_error(dir, MODEL_CONFIG_FILE, "field 'dropout'", "not implemented");
    unet_free(net);
}

Test(model_folder, save_into_a_file_path_fails) {
    UNet *net = small_net();
    const char *file = tmp_path("plainfile");
    FILE *fp = fopen(file, "w");
    fclose(fp);
    char dir[600];
    snprintf(dir, sizeof dir, "%s/sub", file);
    JtError err = {{0}};
    cr_assert_eq(test_save_unet(net, dir, &err), JT_ERR);
    cr_assert(strstr(err.msg, "plainfile") != NULL, "%s", err.msg);
    unet_free(net);
}
