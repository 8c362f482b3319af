/* pipeline.c: see pipeline.h. Follows diffusers 0.42.1's DiffusionPipeline.from_pretrained /
 * save_pretrained for the StableDiffusionPipeline layout (ldm.md section 5): model_index.json maps
 * each __init__ argument to [library, class] ([null, null] for None), one subfolder per component.
 *
 * Ignored components: safety_checker, feature_extractor and image_encoder
 * (StableDiffusionPipeline's optional NSFW filter and IP-adapter image encoder) are not read,
 * whatever they hold: jtrak never filters outputs or takes image prompts, and attribution does not
 * depend on them.
 *
 * Weights: diffusers' from_pretrained reads diffusion_pytorch_model.safetensors (model.safetensors
 * for transformers) unless asked for a variant; hub folders may instead, or also, hold
 * *.fp16.safetensors. The plain file is read when present, else the fp16 variant
 * (model_folder_weights_path): the safetensors reader converts F16 to float32, so an fp16-only
 * component loads too. */
#define _XOPEN_SOURCE 700 /* realpath (X/Open, beside the build's _POSIX_C_SOURCE) */
#include "model/pipeline.h"

#include "core/config_fields.h"
#include "io/model_folder.h"
#include "io/safetensors.h"
#include "model/model_kind.h"
#include "text/clip_text.h"
#include "text/tokenizer.h"
#include "unet/config.h"
#include "vae/vae.h"

#include <cjson/cJSON.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

/* The diffusers version whose from_pretrained loads what pipeline_write writes
 * (ref/check_pipeline.py). */
#define PIPELINE_DIFFUSERS_VERSION "0.42.1"

enum { C_UNET, C_VAE, C_TEXT, C_TOK, C_SCHED, N_COMPONENTS };

/* The components jtrak reads: model_index.json key (= subfolder), library, accepted classes. */
static const struct {
    const char *name, *library;
    const char *classes[4];
} COMPONENTS[N_COMPONENTS] = {
    [C_UNET] = {"unet", "diffusers", {"UNet2DConditionModel", "UNet2DModel", NULL}},
    [C_VAE] = {"vae", "diffusers", {VAE_CLASS, NULL, NULL}},
    [C_TEXT] = {"text_encoder", "transformers", {CLIP_TEXT_CLASS, NULL, NULL}},
    [C_TOK] = {"tokenizer", "transformers", {"CLIPTokenizer", "CLIPTokenizerFast", NULL}},
    /* PNDMScheduler (SD-1.x's): its betas are the schedule; jtrak samples with --sampler */
    [C_SCHED] = {"scheduler", "diffusers",
                 {"DDPMScheduler", "DDIMScheduler", "PNDMScheduler", NULL}},
};

/* The pipelines jtrak reads: their components (all must be listed; unet and scheduler not null)
 * and the U-Net class they hold. */
static const struct {
    const char *name;
    int components[N_COMPONENTS]; /* 1: a key of model_index.json */
    const char *unet_class;
} PIPELINES[] = {
    {"StableDiffusionPipeline", {1, 1, 1, 1, 1}, "UNet2DConditionModel"},
    {"DDPMPipeline", {1, 0, 0, 0, 1}, "UNet2DModel"},
    {"DDIMPipeline", {1, 0, 0, 0, 1}, "UNet2DModel"},
};
#define N_PIPELINES ((int)(sizeof PIPELINES / sizeof PIPELINES[0]))

/* model_index.json keys of StableDiffusionPipeline that jtrak accepts and does not read. */
static const char *const IGNORED[] = {"safety_checker", "feature_extractor", "image_encoder",
                                      "requires_safety_checker"};

/* The tokenizer files a pipeline_write copies (those present). */
static const char *const TOKENIZER_FILES[] = {"vocab.json",
                                              "merges.txt",
                                              "tokenizer.json",
                                              "tokenizer_config.json",
                                              "special_tokens_map.json",
                                              "added_tokens.json"};

static int exists(const char *path) {
    struct stat sb;
    return stat(path, &sb) == 0;
}
static int is_dir(const char *path) {
    struct stat sb;
    return stat(path, &sb) == 0 && S_ISDIR(sb.st_mode);
}
static int is_file_in(const char *dir, const char *name) {
    char *p = path_join(dir, name);
    struct stat sb;
    int ok = stat(p, &sb) == 0 && S_ISREG(sb.st_mode);
    free(p);
    return ok;
}

int pipeline_is_folder(const char *dir) {
    char *p = path_join(dir, PIPELINE_INDEX_FILE);
    int ok = exists(p);
    free(p);
    return ok;
}

char *pipeline_model_dir(const char *dir) {
    return pipeline_is_folder(dir) ? path_join(dir, COMPONENTS[C_UNET].name) : xstrdup(dir);
}

void pipeline_close(PipelineFolder *p) {
    free(p->dir), free(p->class_name), free(p->scheduler_class);
    free(p->unet_dir), free(p->vae_dir), free(p->text_encoder_dir), free(p->tokenizer_dir);
    free(p->scheduler_dir);
    memset(p, 0, sizeof *p);
}

/* ------------------------------------------------------------------------------------------ */
/* Cross-checks of the components' configs (shared by pipeline_open and pipeline_write)        */

/* A config.json of class `want` (NULL: a U-Net class) read through the class table. */
static int load_config(const char *dir, const char *want, const ModelKind **kind, void **cfg,
                       JtError *err) {
    char *path = path_join(dir, MODEL_CONFIG_FILE);
    int rc = model_kind_load_config(path, kind, cfg, err);
    const char *got = rc == JT_OK ? (*kind)->class_name : NULL;
    if (rc == JT_OK && want && strcmp(got, want) != 0)
        rc = jt_fail(err, "%s: holds a %s, but the pipeline needs a %s there", path, got, want);
    if (rc == JT_OK && !want && strcmp(got, "UNet2DModel") != 0 &&
        strcmp(got, "UNet2DConditionModel") != 0)
        rc = jt_fail(err,
                     "%s: holds a %s, but the pipeline's unet must be a UNet2DModel or "
                     "UNet2DConditionModel",
                     path, got);
    if (rc != JT_OK) {
        free(*cfg);
        *cfg = NULL;
    }
    free(path);
    return rc;
}

/* The checks between components: ucfg is the U-Net's config (unet_what names it in messages);
 * vae / te / tok are folders or NULL. */
static int check_parts(const UNetConfig *ucfg, const char *unet_what, const char *vae,
                       const char *te, const char *tok, JtError *err) {
    const ModelKind *k;
    void *vc = NULL, *tc = NULL;
    ClipTokenizer *t = NULL;
    int rc = JT_OK;
    if (vae && (rc = load_config(vae, VAE_CLASS, &k, &vc, err)) == JT_OK) {
        const VaeConfig *v = vc;
        if (v->latent_channels != ucfg->in_channels)
            rc = jt_fail(err,
                         "%s/config.json: latent_channels is %d but %s has in_channels %d: the "
                         "U-Net does not denoise this VAE's latents",
                         vae, v->latent_channels, unet_what, ucfg->in_channels);
    }
    if (rc == JT_OK && te && (rc = load_config(te, CLIP_TEXT_CLASS, &k, &tc, err)) == JT_OK) {
        const ClipTextConfig *c = tc;
        if (!ucfg->cond || ucfg->cross_attention_dim <= 0)
            rc = jt_fail(err,
                         "%s has no cross-attention, but the pipeline lists a text encoder "
                         "(%s)",
                         unet_what, te);
        else if (c->hidden_size != ucfg->cross_attention_dim)
            rc = jt_fail(err,
                         "%s/config.json: hidden_size is %d but %s has cross_attention_dim %d: "
                         "the U-Net cannot take this text encoder's states",
                         te, c->hidden_size, unet_what, ucfg->cross_attention_dim);
    }
    if (rc == JT_OK && tok) rc = clip_tokenizer_load(&t, tok, err);
    if (rc == JT_OK && t && tc) {
        const ClipTextConfig *c = tc;
        if (clip_tokenizer_max_length(t) > c->max_position_embeddings)
            rc = jt_fail(err,
                         "%s: model_max_length is %d but %s/config.json has "
                         "max_position_embeddings %d: prompts would not fit the text encoder",
                         tok, clip_tokenizer_max_length(t), te, c->max_position_embeddings);
        else if (clip_tokenizer_vocab_size(t) > c->vocab_size)
            rc = jt_fail(err,
                         "%s: token ids reach %d but %s/config.json has vocab_size %d: not the "
                         "tokenizer of this text encoder",
                         tok, clip_tokenizer_vocab_size(t) - 1, te, c->vocab_size);
    }
    clip_tokenizer_free(t);
    free(vc);
    free(tc);
    return rc;
}

/* ------------------------------------------------------------------------------------------ */
/* Reading                                                                                     */

/* The files a component folder must hold; the first missing one (malloc'd) or NULL. */
static char *missing_file(int c, const char *dir) {
    const char *need[2] = {NULL, NULL};
    switch (c) {
    case C_UNET:
    case C_VAE:
        need[0] = MODEL_CONFIG_FILE, need[1] = MODEL_WEIGHTS_FILE;
        break;
    case C_TEXT:
        need[0] = MODEL_CONFIG_FILE, need[1] = CLIP_TEXT_WEIGHTS_FILE;
        break;
    case C_SCHED:
        need[0] = "scheduler_config.json";
        break;
    default: /* the tokenizer: vocab.json + merges.txt, or tokenizer.json */
        if (is_file_in(dir, "tokenizer.json")) return NULL;
        need[0] = "vocab.json", need[1] = "merges.txt";
    }
    for (int i = 0; i < 2 && need[i]; i++) {
        char *p = path_join(dir, need[i]);
        if (i == 1 && c != C_TOK) { /* the weights: the plain file or its fp16 variant */
            char *w = model_folder_weights_path(dir, need[i]);
            free(p);
            p = w;
        }
        struct stat sb;
        if (stat(p, &sb) != 0 || !S_ISREG(sb.st_mode)) return p;
        free(p);
    }
    return NULL;
}

static int find_pipeline(const char *name) {
    for (int i = 0; i < N_PIPELINES; i++)
        if (strcmp(PIPELINES[i].name, name) == 0) return i;
    return -1;
}

static int component_index(const char *key) {
    for (int c = 0; c < N_COMPONENTS; c++)
        if (strcmp(COMPONENTS[c].name, key) == 0) return c;
    return -1;
}

static int is_ignored(const char *key) {
    for (size_t i = 0; i < sizeof IGNORED / sizeof *IGNORED; i++)
        if (strcmp(IGNORED[i], key) == 0) return 1;
    return 0;
}

/* One component entry: [library, class] (two strings) or [null, null]; *lib and *cls point into
 * the tree (NULL for null). */
static int read_pair(const cJSON *v, const char *path, const char *key, const char **lib,
                     const char **cls, JtError *err) {
    *lib = *cls = NULL;
    const cJSON *a = cJSON_IsArray(v) && cJSON_GetArraySize(v) == 2 ? v->child : NULL;
    const cJSON *b = a ? a->next : NULL;
    if (a && cJSON_IsNull(a) && cJSON_IsNull(b)) return JT_OK;
    if (!a || !cJSON_IsString(a) || !cJSON_IsString(b))
        return jt_fail(err,
                       "%s: field '%s': expected [library, class] (two strings) or "
                       "[null, null]",
                       path, key);
    *lib = a->valuestring, *cls = b->valuestring;
    return JT_OK;
}

/* The class list of component c, for messages. */
static void class_list(int c, char *buf, size_t cap) {
    size_t k = 0;
    buf[0] = 0;
    for (int i = 0; COMPONENTS[c].classes[i]; i++)
        k += (size_t)snprintf(buf + k, cap > k ? cap - k : 0, "%s%s", i ? " or " : "",
                              COMPONENTS[c].classes[i]);
}

static int open_index(const char *dir, PipelineFolder *p, const char *path, cJSON *root,
                      JtError *err) {
    if (!cJSON_IsObject(root)) return jt_fail(err, "%s: the top level is not a JSON object", path);
    const cJSON *cls = cJSON_GetObjectItemCaseSensitive(root, "_class_name");
    if (!cls) return jt_fail(err, "%s: field '_class_name' missing (the pipeline class)", path);
    if (!cJSON_IsString(cls))
        return jt_fail(err, "%s: field '_class_name': expected a string (the pipeline class)",
                       path);
    int pi = find_pipeline(cls->valuestring);
    if (pi < 0)
        return jt_fail(err,
                       "%s: field '_class_name': %.80s is not supported (jtrak reads "
                       "StableDiffusionPipeline, DDPMPipeline and DDIMPipeline folders)",
                       path, cls->valuestring);
    p->class_name = xstrdup(PIPELINES[pi].name);
    const char *lib[N_COMPONENTS] = {0}, *name[N_COMPONENTS] = {0};
    int seen[N_COMPONENTS] = {0};
    for (const cJSON *it = root->child; it; it = it->next) {
        const char *key = it->string;
        if (key[0] == '_' || is_ignored(key)) continue;
        int c = component_index(key);
        if (c < 0 || !PIPELINES[pi].components[c])
            return jt_fail(err,
                           "%s: field '%.80s': not a component of %s (jtrak cannot read "
                           "this pipeline)",
                           path, key, p->class_name);
        if (read_pair(it, path, key, &lib[c], &name[c], err) != JT_OK) return JT_ERR;
        seen[c] = 1;
    }
    for (int c = 0; c < N_COMPONENTS; c++) {
        if (!PIPELINES[pi].components[c]) continue;
        const char *key = COMPONENTS[c].name;
        if (!seen[c])
            return jt_fail(err,
                           "%s: field '%s' missing (a %s lists every component, [null, "
                           "null] when absent)",
                           path, key, p->class_name);
        if (!name[c]) {
            if (c == C_UNET || c == C_SCHED)
                return jt_fail(err, "%s: field '%s' is [null, null], but jtrak needs the %s", path,
                               key, key);
            continue;
        }
        char classes[96];
        class_list(c, classes, sizeof classes);
        int ok = 0;
        for (int i = 0; COMPONENTS[c].classes[i]; i++)
            ok |= strcmp(COMPONENTS[c].classes[i], name[c]) == 0;
        if (strcmp(lib[c], COMPONENTS[c].library) != 0 || !ok)
            return jt_fail(err,
                           "%s: field '%s': [\"%.40s\", \"%.60s\"] is not supported (jtrak "
                           "reads %s %s)",
                           path, key, lib[c], name[c], COMPONENTS[c].library, classes);
        if (c == C_UNET && strcmp(name[c], PIPELINES[pi].unet_class) != 0)
            return jt_fail(err, "%s: field 'unet': a %s holds a %s, not a %s", path, p->class_name,
                           PIPELINES[pi].unet_class, name[c]);
        char *sub = path_join(dir, key);
        char *nested = path_join(sub, PIPELINE_INDEX_FILE);
        char *miss = is_dir(sub) ? missing_file(c, sub) : NULL;
        int rc = JT_OK;
        if (!is_dir(sub))
            rc = jt_fail(err, "%s: %s lists %s (%s %s) but %s/ is missing", dir,
                         PIPELINE_INDEX_FILE, key, lib[c], name[c], sub);
        else if (miss)
            rc = jt_fail(err, "%s: %s lists %s (%s %s) but %s is missing", dir, PIPELINE_INDEX_FILE,
                         key, lib[c], name[c], miss);
        else if (exists(nested)) /* e.g. unet -> . : never read a pipeline inside a pipeline */
            rc = jt_fail(err, "%s: component folder %s/ holds a %s of its own: not a component",
                         dir, sub, PIPELINE_INDEX_FILE);
        free(miss);
        free(nested);
        if (rc != JT_OK) {
            free(sub);
            return rc;
        }
        char **slot[N_COMPONENTS] = {&p->unet_dir, &p->vae_dir, &p->text_encoder_dir,
                                     &p->tokenizer_dir, &p->scheduler_dir};
        *slot[c] = sub;
        if (c == C_SCHED) p->scheduler_class = xstrdup(name[c]);
    }
    return JT_OK;
}

int pipeline_open(const char *dir, PipelineFolder *p, JtError *err) {
    memset(p, 0, sizeof *p);
    p->dir = xstrdup(dir);
    char *path = path_join(dir, PIPELINE_INDEX_FILE), *text = NULL;
    void *root = NULL, *ucfg = NULL;
    const ModelKind *k;
    int rc = cf_read_file(path, &text, err);
    if (rc == JT_OK) rc = cf_json_parse(text, path, &root, err);
    if (rc == JT_OK) rc = open_index(dir, p, path, root, err);
    /* the U-Net's config must be the class model_index.json lists */
    if (rc == JT_OK)
        rc = load_config(p->unet_dir, PIPELINES[find_pipeline(p->class_name)].unet_class, &k, &ucfg,
                         err);
    if (rc == JT_OK) {
        char *what = path_join(p->unet_dir, MODEL_CONFIG_FILE);
        rc = check_parts(ucfg, what, p->vae_dir, p->text_encoder_dir, p->tokenizer_dir, err);
        free(what);
    }
    SchedConfig sc;
    if (rc == JT_OK) rc = sched_config_load(&sc, p->scheduler_dir, err);
    free(ucfg);
    cf_json_free(root);
    free(text);
    free(path);
    if (rc != JT_OK) pipeline_close(p);
    return rc;
}

static void sd_rewrite(SchedConfig *cfg) {
    cfg->steps_offset = 1;
    cfg->clip_sample = false;
}

int pipeline_sched_config_load(SchedConfig *cfg, const PipelineFolder *p, JtError *err) {
    if (sched_config_load(cfg, p->scheduler_dir, err) != JT_OK) return JT_ERR;
    /* diffusers 0.42.1 StableDiffusionPipeline.__init__ (pipeline_stable_diffusion.py) rewrites
     * the scheduler's config in place, unconditionally, whenever it is loaded through the
     * pipeline: steps_offset != 1 becomes 1, clip_sample true becomes false (ldm.md 1.4, 5).
     * DDPMPipeline and DDIMPipeline leave it as it is. With steps_offset 1, "leading" spacing
     * and as many steps as training timesteps, the first timestep is T, outside the tables:
     * diffusers then fails with an IndexError, jtrak's set_timesteps with a message naming
     * steps_offset. */
    if (strcmp(p->class_name, "StableDiffusionPipeline") == 0) sd_rewrite(cfg);
    return JT_OK;
}

/* ------------------------------------------------------------------------------------------ */
/* Writing                                                                                     */

/* What a pipeline_write created (files and folders), removed again on failure. */
typedef struct {
    char **paths;
    int *is_dir;
    int n, cap;
} Created;

static void created_add(Created *c, const char *path, int dir) {
    if (c->n == c->cap) {
        c->cap = c->cap ? 2 * c->cap : 16;
        c->paths = xrealloc(c->paths, (size_t)c->cap * sizeof *c->paths);
        c->is_dir = xrealloc(c->is_dir, (size_t)c->cap * sizeof *c->is_dir);
    }
    c->paths[c->n] = xstrdup(path);
    c->is_dir[c->n++] = dir;
}

/* Removes what was created, newest first (files before the folders that hold them). */
static void created_undo(Created *c) {
    for (int i = c->n - 1; i >= 0; i--)
        c->is_dir[i] ? (void)rmdir(c->paths[i]) : (void)unlink(c->paths[i]);
}

static void created_free(Created *c) {
    for (int i = 0; i < c->n; i++)
        free(c->paths[i]);
    free(c->paths), free(c->is_dir);
    memset(c, 0, sizeof *c);
}

/* mkdir dir (its parent exists), remembered when new. */
static int make_dir(Created *c, const char *dir, JtError *err) {
    if (is_dir(dir)) return JT_OK;
    if (mkdir(dir, 0755) != 0)
        return jt_fail(err, "%s: cannot create folder: %s", dir, strerror(errno));
    created_add(c, dir, 1);
    return JT_OK;
}

/* Copies src to dst byte for byte through a temporary file renamed over dst. */
static int copy_file(Created *c, const char *src, const char *dst, JtError *err) {
    FILE *in = jt_fopen_regular(src, err);
    if (!in) return JT_ERR;
    int had = exists(dst);
    AtomicFile af;
    if (atomic_file_open(&af, dst, err) != JT_OK) {
        fclose(in);
        return JT_ERR;
    }
    char *buf = xmalloc(1 << 20);
    int rc = JT_OK;
    size_t got;
    while (rc == JT_OK && (got = fread(buf, 1, 1 << 20, in)) > 0)
        if (fwrite(buf, 1, got, af.fp) != got)
            rc = jt_fail(err, "%s: write failed: %s", dst, strerror(errno));
    if (rc == JT_OK && ferror(in)) rc = jt_fail(err, "%s: read error: %s", src, strerror(errno));
    fclose(in);
    free(buf);
    if (rc != JT_OK) {
        atomic_file_abort(&af);
        return rc;
    }
    if (atomic_file_commit(&af, err) != JT_OK) return JT_ERR;
    if (!had) created_add(c, dst, 0);
    return JT_OK;
}

/* Copies files[0..n) of src (those present when optional) into out/name/. The weights file is
 * the plain one or its fp16 variant (model_folder_weights_path), written under the plain name. */
static int copy_component(Created *c, const char *src, const char *out, const char *name,
                          const char *const *files, int n, int optional, JtError *err) {
    char *dst_dir = path_join(out, name);
    int rc = make_dir(c, dst_dir, err);
    for (int i = 0; rc == JT_OK && i < n; i++) {
        int weights = strcmp(files[i], MODEL_WEIGHTS_FILE) == 0 ||
                      strcmp(files[i], CLIP_TEXT_WEIGHTS_FILE) == 0;
        char *from = weights ? model_folder_weights_path(src, files[i]) : path_join(src, files[i]);
        char *to = path_join(dst_dir, files[i]);
        if (!optional || exists(from)) rc = copy_file(c, from, to, err);
        free(from);
        free(to);
    }
    free(dst_dir);
    return rc;
}

/* A source folder must be a model (or tokenizer) folder, not a pipeline; what: "vae", ... */
static int check_source(const char *dir, const char *what, JtError *err) {
    if (!is_dir(dir)) return jt_fail(err, "%s: the pipeline's %s: not a folder", dir, what);
    if (pipeline_is_folder(dir))
        return jt_fail(err, "%s: a pipeline folder, not a %s folder (give %s/%s)", dir, what, dir,
                       what);
    return JT_OK;
}

/* The model_index.json text of the sources (malloc'd): what save_pretrained writes. */
static char *index_json(int sd, const PipelineSources *s) {
    cJSON *o = cJSON_CreateObject();
    cJSON_AddStringToObject(o, "_class_name", sd ? "StableDiffusionPipeline" : "DDPMPipeline");
    cJSON_AddStringToObject(o, "_diffusers_version", PIPELINE_DIFFUSERS_VERSION);
    struct {
        const char *key;
        int present;
        const char *lib, *cls;
    } rows[] = {
        /* sorted keys, as diffusers' to_json_string */
        {"feature_extractor", 0, NULL, NULL},
        {"image_encoder", 0, NULL, NULL},
        {"requires_safety_checker", -1, NULL, NULL},
        {"safety_checker", 0, NULL, NULL},
        {"scheduler", 1, "diffusers", "DDPMScheduler"},
        {"text_encoder", s->text_encoder_dir != NULL, "transformers", CLIP_TEXT_CLASS},
        {"tokenizer", s->tokenizer_dir != NULL, "transformers", "CLIPTokenizer"},
        {"unet", 1, "diffusers", sd ? "UNet2DConditionModel" : "UNet2DModel"},
        {"vae", s->vae_dir != NULL, "diffusers", VAE_CLASS},
    };
    for (size_t i = 0; i < sizeof rows / sizeof *rows; i++) {
        int c = component_index(rows[i].key);
        if (!sd && (c < 0 || c == C_VAE || c == C_TEXT || c == C_TOK)) continue;
        if (rows[i].present < 0) {
            /* no safety checker is written: without this, loading warns that it is disabled */
            cJSON_AddBoolToObject(o, rows[i].key, 0);
            continue;
        }
        cJSON *a = cJSON_AddArrayToObject(o, rows[i].key);
        cJSON_AddItemToArray(a, rows[i].present ? cJSON_CreateString(rows[i].lib)
                                                : cJSON_CreateNull());
        cJSON_AddItemToArray(a, rows[i].present ? cJSON_CreateString(rows[i].cls)
                                                : cJSON_CreateNull());
    }
    char *text = cJSON_Print(o);
    cJSON_Delete(o);
    size_t n = strlen(text);
    text = xrealloc(text, n + 2);
    text[n] = '\n', text[n + 1] = 0;
    return text;
}

int pipeline_check_sources(const PipelineSources *s, const UNetConfig *ucfg, JtError *err) {
    int rc = JT_OK;
    void *own = NULL;
    const ModelKind *k;
    char *what = NULL;
    if (!ucfg) {
        if ((rc = check_source(s->unet_dir, "unet", err)) == JT_OK &&
            (rc = load_config(s->unet_dir, NULL, &k, &own, err)) == JT_OK)
            ucfg = own;
        what = path_join(s->unet_dir, MODEL_CONFIG_FILE);
    } else {
        what = xstrdup("the U-Net's config");
    }
    const char *vae = s->vae_dir, *te = s->text_encoder_dir, *tok = s->tokenizer_dir;
    if (rc == JT_OK && vae) rc = check_source(vae, "vae", err);
    if (rc == JT_OK && te) rc = check_source(te, "text_encoder", err);
    if (rc == JT_OK && tok) rc = check_source(tok, "tokenizer", err);
    const char *srcs[3] = {vae, te, tok};
    const int comps[3] = {C_VAE, C_TEXT, C_TOK};
    for (int i = 0; rc == JT_OK && i < 3; i++) {
        char *miss = srcs[i] ? missing_file(comps[i], srcs[i]) : NULL;
        if (miss)
            rc = jt_fail(err, "%s: missing: the pipeline's %s needs it", miss,
                         COMPONENTS[comps[i]].name);
        free(miss);
    }
    if (rc == JT_OK && !ucfg->cond && (vae || te || tok))
        rc = jt_fail(err,
                     "%s is a UNet2DModel: its pipeline (DDPMPipeline) has no VAE, text encoder "
                     "or tokenizer; a latent or text-conditional pipeline needs a "
                     "UNet2DConditionModel",
                     what);
    if (rc == JT_OK) rc = check_parts(ucfg, what, vae, te, tok, err);
    NoiseSchedule ns; /* the scheduler config must be one jtrak (and so diffusers) can build */
    if (rc == JT_OK && (rc = sched_init(&ns, s->scheduler, err)) == JT_OK) sched_free(&ns);
    free(what);
    free(own);
    return rc;
}

/* realpath equality (both exist). */
static int same_dir(const char *a, const char *b) {
    char *ra = realpath(a, NULL), *rb = realpath(b, NULL);
    int same = ra && rb && strcmp(ra, rb) == 0;
    free(ra), free(rb);
    return same;
}

int pipeline_write(const PipelineSources *s, const char *out, JtError *err) {
    if (pipeline_check_sources(s, NULL, err) != JT_OK) return JT_ERR;
    const ModelKind *k;
    void *ucfg = NULL;
    if (load_config(s->unet_dir, NULL, &k, &ucfg, err) != JT_OK) return JT_ERR;
    const int sd = ((const UNetConfig *)ucfg)->cond;
    free(ucfg);
    Created made = {0};
    char *index = path_join(out, PIPELINE_INDEX_FILE);
    char *unet_out = path_join(out, "unet");
    int rc = JT_OK;
    if (!is_dir(out)) {
        rc = model_mkdirs(out, err);
        if (rc == JT_OK) created_add(&made, out, 1);
    }
    if (rc == JT_OK && exists(index) && unlink(index) != 0)
        rc = jt_fail(err, "%s: cannot remove the old one: %s", index, strerror(errno));
    static const char *const model_files[] = {MODEL_CONFIG_FILE, MODEL_WEIGHTS_FILE};
    static const char *const te_files[] = {MODEL_CONFIG_FILE, CLIP_TEXT_WEIGHTS_FILE};
    if (rc == JT_OK && !(is_dir(unet_out) && same_dir(s->unet_dir, unet_out)))
        rc = copy_component(&made, s->unet_dir, out, "unet", model_files, 2, 0, err);
    if (rc == JT_OK && s->vae_dir)
        rc = copy_component(&made, s->vae_dir, out, "vae", model_files, 2, 0, err);
    if (rc == JT_OK && s->text_encoder_dir)
        rc = copy_component(&made, s->text_encoder_dir, out, "text_encoder", te_files, 2, 0, err);
    if (rc == JT_OK && s->tokenizer_dir)
        rc = copy_component(&made, s->tokenizer_dir, out, "tokenizer", TOKENIZER_FILES,
                            (int)(sizeof TOKENIZER_FILES / sizeof *TOKENIZER_FILES), 1, err);
    char *sched_dir = path_join(out, "scheduler");
    char *sched_file = path_join(sched_dir, "scheduler_config.json");
    if (rc == JT_OK) rc = make_dir(&made, sched_dir, err);
    int had_sched = exists(sched_file);
    /* a StableDiffusionPipeline's scheduler is written as the pipeline will read it (the betas
     * are the training's either way), so that the file says what diffusers and jtrak use and
     * loading it does not warn of an outdated config */
    SchedConfig sc = *s->scheduler;
    if (sd) sd_rewrite(&sc);
    if (rc == JT_OK) rc = sched_config_save(&sc, sched_file, err);
    if (rc == JT_OK && !had_sched) created_add(&made, sched_file, 0);
    /* model_index.json last: before it exists, neither jtrak nor diffusers takes out for a
     * pipeline */
    if (rc == JT_OK) {
        char *text = index_json(sd, s);
        rc = atomic_file_write(index, text, strlen(text), err);
        free(text);
        if (rc == JT_OK) created_add(&made, index, 0);
    }
    PipelineFolder p;
    if (rc == JT_OK && pipeline_open(out, &p, err) == JT_OK)
        pipeline_close(&p);
    else if (rc == JT_OK)
        rc = JT_ERR;
    if (rc != JT_OK) created_undo(&made);
    created_free(&made);
    free(sched_dir), free(sched_file), free(index), free(unet_out);
    return rc;
}
