/* cmd_sample.c: `jtrak sample --model DIR --out DIR` draws samples with DDPM (diffusers'
 * DDPMPipeline math) or DDIM and writes samples.png, trajectory.png (x̂_0 along the trajectory)
 * and trajectory.safetensors (every step's x_t, x̂_0 and sampler noise; see trajectory.h). A
 * class-conditional model samples the classes of --class, with classifier-free guidance when
 * --guidance is not 1. A text-conditional one samples the contexts of --context (a table of
 * encoder hidden states), or of --prompt / --prompts encoded here by a CLIP text encoder as
 * StableDiffusionPipeline does (cli_prompt.h; guidance then only when W > 1, its rule). */
#include "cli/cli_common.h"
#include "cli/cli_prompt.h"
#include "cli/commands.h"
#include "data/context.h"
#include "diffusion/trajectory.h"
#include "io/artifact.h"
#include "io/lock.h"
#include "io/model_folder.h"
#include "io/npy.h"
#include "io/png.h"
#include "model/model.h"
#include "text/clip_text.h"

#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static void help(void) {
    printf(
        "usage: jtrak sample --model DIR --out DIR [options]\n"
        "  --n N            samples (default 16)\n"
        "  --sampler S      ddpm (default) or ddim\n"
        "  --steps N        sampler steps (default 1000 for ddpm, 50 for ddim)\n"
        "  --eta X          DDIM eta (default 0: deterministic)\n"
        "  --seed N         seed of x_T and of the sampler noise (default 0)\n"
        "  --noise FILE     start from x_T in FILE (.npy float32 (N,C,H,W)) instead of the seed\n"
        "  --batch B        U-Net batch (default 64)\n"
        "  --vae DIR        a latent model's AutoencoderKL: samples.png and trajectory.png show\n"
        "                   decoded images (decode(x / scaling_factor)); without it a latent\n"
        "                   model's PNGs are skipped (the trajectory file holds the latents);\n"
        "                   default: a pipeline folder's vae/\n"
        "  --clip-sample M  on or off: override the model scheduler's clip_sample\n"
        "  --quiet          no progress line\n"
        "class-conditional models (num_class_embeds K: classes 0..K-2, null class K-1):\n"
        "  --class C        required: one class id for every sample, a comma list of one id\n"
        "                   per sample (its length sets --n), all (sample i gets class\n"
        "                   i mod K-1) or null (unconditional sampling)\n"
        "  --guidance W     classifier-free guidance eps_u + W (eps_c - eps_u); the default\n"
        "                   1 is the conditional eps alone (one network batch per step)\n"
        "text-conditional models (cross-attention, e.g. UNet2DConditionModel):\n"
        "  --context F      required: npy:FILE of prompt contexts (encoder hidden states),\n"
        "                   float32 (M, L, D) (or (N, K, L, D), read as N*K prompts)\n"
        "  --prompt-index I which prompt each sample uses: one row, a comma list (its length\n"
        "                   sets --n) or all (sample i gets row i mod M; default 0)\n"
        "  --uncond U       the unconditional context for --guidance: row:R of the table or\n"
        "                   npy:FILE (L, D) (the empty prompt's, as StableDiffusionPipeline)\n"
        "  or, instead of --context, prompts encoded here (StableDiffusionPipeline's rules):\n"
        "  --prompt TEXT    one prompt for every sample\n"
        "  --prompts FILE   one prompt per line, one line per sample (its count sets --n)\n"
        "  --text-encoder DIR  the CLIPTextModel folder (hidden_size = cross_attention_dim;\n"
        "                   default: a pipeline folder's text_encoder/)\n"
        "  --tokenizer DIR  its CLIP tokenizer folder (default: a pipeline's tokenizer/); a\n"
        "                   prompt longer than model_max_length tokens is truncated (said\n"
        "                   once on stderr)\n"
        "  --clip-skip K    diffusers' clip_skip of the prompts (default 0: last_hidden_state;\n"
        "                   the unconditional context never skips, as diffusers 0.42.1)\n"
        "  --guidance W     W > 1: classifier-free guidance with the context of \"\" (or of\n"
        "                   --negative-prompt); W <= 1: the conditional eps alone (recorded\n"
        "                   as guidance 1)\n"
        "  --negative-prompt TEXT  the unconditional context's text (needs --guidance > 1)\n");
}

/* Parses --class into a count and ids: "all" and "null" give count 0 and *kind 'a' / 'n', one id
 * count 1, a list its length. Returns 0, or 2 (usage error, printed). */
static int parse_class(const char *option, const char *text, int **ids, int *count, char *kind) {
    *ids = NULL, *count = 0, *kind = 0;
    if (strcmp(text, "all") == 0 || (strcmp(text, "null") == 0 && strcmp(option, "class") == 0)) {
        *kind = text[0];
        return 0;
    }
    int cap = 1;
    for (const char *c = text; *c; c++)
        cap += *c == ',';
    *ids = xmalloc((size_t)cap * sizeof(int));
    const char *p = text;
    for (int i = 0; i < cap; i++) {
        char *end;
        errno = 0;
        long v = strtol(p, &end, 10);
        if (errno || end == p || (*end != ',' && *end != 0) || v < 0 || v > 1000000) {
            fprintf(stderr,
                    "jtrak sample: --%s '%s': want an id (0, 1, ...), a comma list of ids%s\n",
                    option, text, strcmp(option, "class") == 0 ? ", all or null" : " or all");
            free(*ids);
            *ids = NULL;
            return 2;
        }
        (*ids)[i] = (int)v;
        p = end + 1;
    }
    *count = cap;
    return 0;
}

int cmd_sample(int argc, char **argv) {
    Args a;
    args_init(&a, "sample", argc, argv);
    if (args_flag(&a, "help")) {
        help();
        args_free(&a);
        return 0;
    }
    const char *model = args_str(&a, "model", NULL), *out = args_str(&a, "out", NULL);
    const char *sampler = args_str(&a, "sampler", "ddpm"), *noise = args_str(&a, "noise", NULL);
    SampleOptions opt = {0};
    int n_given = args_str(&a, "n", NULL) != NULL;
    opt.n = (int)args_long(&a, "n", 16, 1, 1 << 20);
    const char *class_text = args_str(&a, "class", NULL);
    int guidance_given = args_str(&a, "guidance", NULL) != NULL;
    double guidance = args_double(&a, "guidance", 1.0, -1e6, 1e6);
    opt.steps = (int)args_long(&a, "steps", 0, 1, 100000);
    opt.eta = (float)args_double(&a, "eta", 0.0, 0.0, 1e6);
    opt.seed = args_u64(&a, "seed", 0);
    opt.batch = (int)args_long(&a, "batch", 64, 1, 1 << 16);
    opt.quiet = args_flag(&a, "quiet");
    ContextSpec cspec = {args_str(&a, "context", NULL), NULL, args_str(&a, "uncond", NULL)};
    const char *vae_dir = args_str(&a, "vae", NULL), *clip = args_str(&a, "clip-sample", NULL);
    const char *prompt_text = args_str(&a, "prompt-index", NULL);
    const char *prompt = args_str(&a, "prompt", NULL),
               *prompts_file = args_str(&a, "prompts", NULL);
    const char *negative = args_str(&a, "negative-prompt", NULL);
    const char *te_opt = args_str(&a, "text-encoder", NULL),
               *tok_opt = args_str(&a, "tokenizer", NULL);
    int skip_given = args_str(&a, "clip-skip", NULL) != NULL;
    int clip_skip = (int)args_long(&a, "clip-skip", 0, 0, CLIP_TEXT_MAX_LAYERS - 1);
    const int text_mode = prompt || prompts_file;
    /* a pipeline folder's vae/ decodes its latents unless --vae names another */
    if (!vae_dir && model) vae_dir = cli_pipeline_vae(model);
    int rc = args_finish(&a);
    if (rc == 0 && (!model || !out)) {
        fprintf(stderr,
                "jtrak sample: --model and --out are required (see 'jtrak sample --help')\n");
        rc = 2;
    }
    if (rc == 0 && clip && strcmp(clip, "on") != 0 && strcmp(clip, "off") != 0) {
        fprintf(stderr, "jtrak sample: --clip-sample must be on or off, not '%s'\n", clip);
        rc = 2;
    }
    if (rc == 0 && strcmp(sampler, "ddpm") != 0 && strcmp(sampler, "ddim") != 0) {
        fprintf(stderr, "jtrak sample: --sampler must be ddpm or ddim, not '%s'\n", sampler);
        rc = 2;
    }
    if (rc == 0 && prompt && prompts_file) {
        fprintf(stderr, "jtrak sample: --prompt and --prompts: give one of them\n");
        rc = 2;
    }
    if (rc == 0 && text_mode && cspec.file) {
        fprintf(stderr,
                "jtrak sample: --%s and --context are two ways to give the contexts: "
                "give one of them\n",
                prompt ? "prompt" : "prompts");
        rc = 2;
    }
    if (rc == 0 && !text_mode && (negative || te_opt || tok_opt || skip_given)) {
        fprintf(stderr, "jtrak sample: --negative-prompt, --text-encoder, --tokenizer and "
                        "--clip-skip go with --prompt or --prompts\n");
        rc = 2;
    }
    if (rc == 0 && text_mode && negative && !(guidance > 1.0)) {
        fprintf(stderr,
                "jtrak sample: --negative-prompt needs --guidance W > 1 (it is the "
                "unconditional side of classifier-free guidance, which StableDiffusionPipeline "
                "runs only when W > 1)\n");
        rc = 2;
    }
    const char *te_dir = NULL, *tok_dir = NULL;
    JtError err;
    if (rc == 0 && text_mode) {
        int trc = sample_text_dirs(model, te_opt, tok_opt, &te_dir, &tok_dir, &err);
        if (trc == 2) fprintf(stderr, "jtrak sample: %s\n", err.msg);
        if (trc != JT_OK) rc = trc == 2 ? 2 : cli_error("sample", &err);
    }
    /* the --prompts file is input (a bad one exits 1), read before --n is settled */
    char **lines = NULL;
    size_t n_lines = 0;
    if (rc == 0 && prompts_file &&
        cli_read_prompts(prompts_file, 1 << 20, &lines, &n_lines, &err) != JT_OK)
        rc = cli_error("sample", &err);
    if (rc == 0 && lines) {
        if (n_given && (size_t)opt.n != n_lines) {
            fprintf(stderr,
                    "jtrak sample: --prompts %s holds %zu prompts but --n is %d (one prompt per "
                    "sample)\n",
                    prompts_file, n_lines, opt.n);
            rc = 2;
        }
        opt.n = (int)n_lines;
        n_given = 1;
    }
    int *ids = NULL, n_ids = 0;
    char class_kind = 0;
    if (rc == 0 && class_text) rc = parse_class("class", class_text, &ids, &n_ids, &class_kind);
    int *pids = NULL, n_pids = 0;
    char prompt_kind = 0;
    if (rc == 0 && prompt_text)
        rc = parse_class("prompt-index", prompt_text, &pids, &n_pids, &prompt_kind);
    if (rc == 0 && (prompt_text || cspec.uncond) && !cspec.file) {
        fprintf(stderr, "jtrak sample: --prompt-index and --uncond go with --context npy:FILE\n");
        rc = 2;
    }
    if (rc == 0 && n_pids > 1 && n_ids > 1 && n_pids != n_ids) {
        fprintf(stderr, "jtrak sample: --class lists %d classes but --prompt-index %d prompts\n",
                n_ids, n_pids);
        rc = 2;
    }
    if (rc == 0 && n_pids > 1) {
        if (n_given && opt.n != n_pids) {
            fprintf(stderr,
                    "jtrak sample: --prompt-index lists %d prompts but --n is %d (one prompt per "
                    "sample)\n",
                    n_pids, opt.n);
            rc = 2;
        }
        opt.n = n_pids;
    }
    if (rc == 0 && n_ids > 1) {
        if (n_given && opt.n != n_ids) {
            fprintf(stderr,
                    "jtrak sample: --class lists %d classes but --n is %d (one class per "
                    "sample)\n",
                    n_ids, opt.n);
            rc = 2;
        }
        opt.n = n_ids;
    }
    if (rc == 0 && guidance_given && !class_text && !cspec.file && !text_mode) {
        fprintf(stderr, "jtrak sample: --guidance needs --class, --context or --prompt "
                        "(classifier-free guidance of a conditional model)\n");
        rc = 2;
    }
    args_free(&a);
    if (rc) {
        free(ids), free(pids);
        cli_prompts_free(lines, n_lines);
        return rc;
    }
    opt.sampler = strcmp(sampler, "ddim") == 0 ? SAMPLER_DDIM : SAMPLER_DDPM;
    if (opt.steps == 0) opt.steps = opt.sampler == SAMPLER_DDIM ? 50 : 1000;

    /* A trajectory folder is sampled again in place (score folders record the trajectory's
     * fingerprint, so old scores are not paired with the new file); any other artifact is kept. */
    const ArtifactKind ok[] = {ARTIFACT_TRAJECTORY};
    if (artifact_check_out(out, "--out", "a trajectory folder", ok, 1, &err) != JT_OK) {
        free(ids), free(pids);
        cli_prompts_free(lines, n_lines);
        return cli_error("sample", &err);
    }
    /* held for the run: two samples never write one folder (io/lock.h) */
    DirLock lock;
    if (dir_lock(&lock, out, "sample", &err) != JT_OK) {
        free(ids), free(pids);
        cli_prompts_free(lines, n_lines);
        return cli_error("sample", &err);
    }
    Model *loaded;
    if (model_load_unet(model, &loaded, &err) != JT_OK) {
        free(ids), free(pids);
        cli_prompts_free(lines, n_lines);
        dir_unlock(&lock);
        return cli_error("sample", &err);
    }
    UNet *net = model_unet(loaded);
    const UNetConfig *cfg = unet_config(net);
    const int K = unet_num_classes(net);
    if (K == 0 && class_text)
        rc = jt_fail(&err,
                     "--class %s: %s is unconditional (no num_class_embeds); sample it "
                     "without --class and --guidance",
                     class_text, model);
    else if (K > 0 && !class_text)
        rc = jt_fail(&err,
                     "%s is class-conditional (num_class_embeds %d: classes 0..%d, null "
                     "class %d): give --class C, a comma list (one per sample), all or null",
                     model, K, K - 2, K - 1);
    const int X = unet_cross_attention_dim(net);
    ContextSet ctx = {0};
    if (rc == JT_OK && X > 0 && !cspec.file && !text_mode)
        rc = jt_fail(&err,
                     "%s has cross-attention (cross_attention_dim %d): give --prompt TEXT (with "
                     "--text-encoder and --tokenizer) or the prompts' contexts with --context "
                     "npy:FILE",
                     model, X);
    if (rc == JT_OK && X == 0 && text_mode)
        rc = jt_fail(&err,
                     "--%s: %s has no cross-attention (no cross_attention_dim): it takes no "
                     "text prompt",
                     prompt ? "prompt" : "prompts", model);
    if (rc == JT_OK && vae_dir) rc = cli_check_vae(vae_dir, cfg->in_channels, &err);
    if (rc == JT_OK && cspec.file) rc = context_load(&ctx, &cspec, NULL, &err);
    if (rc == JT_OK && cspec.file) rc = context_check_model(&ctx, X, model, &err);
    for (int i = 0; rc == JT_OK && i < n_pids; i++)
        if ((size_t)pids[i] >= ctx.m)
            rc = jt_fail(&err, "--prompt-index %d: %s has %zu prompts (0..%zu)", pids[i],
                         cspec.file, ctx.m, ctx.m - 1);
    if (rc != JT_OK) {
        free(ids), free(pids);
        cli_prompts_free(lines, n_lines);
        context_free(&ctx);
        model_free(loaded);
        dir_unlock(&lock);
        return cli_error("sample", &err);
    }
    opt.guidance = (float)guidance;
    NoiseSchedule sched;
    SchedConfig sc;
    rc = sched_config_load_model(&sc, model, &err);
    if (rc == JT_OK && clip) sc.clip_sample = strcmp(clip, "on") == 0;
    if (rc == JT_OK) rc = sched_init(&sched, &sc, &err);
    if (rc != JT_OK) {
        free(ids), free(pids);
        cli_prompts_free(lines, n_lines);
        context_free(&ctx);
        model_free(loaded);
        dir_unlock(&lock);
        return cli_error("sample", &err);
    }
    float *x_T = NULL;
    if (noise) {
        NpyHeader h;
        void *data = NULL;
        rc = npy_read_as(noise, NPY_F32, &h, &data, &err);
        if (rc == JT_OK && (h.ndim != 4 || (int)h.shape[1] != cfg->in_channels ||
                            (int)h.shape[2] != unet_config_height(cfg) ||
                            (int)h.shape[3] != unet_config_width(cfg)))
            rc = jt_fail(&err, "%s: initial noise must be float32 (N,%d,%d,%d) for this model",
                         noise, cfg->in_channels, unet_config_height(cfg), unet_config_width(cfg));
        if (rc == JT_OK && n_ids > 1 && (int)h.shape[0] != n_ids)
            rc = jt_fail(&err, "%s: %d initial noises but --class lists %d classes", noise,
                         (int)h.shape[0], n_ids);
        if (rc == JT_OK && lines && h.shape[0] != n_lines)
            rc = jt_fail(&err, "%s: %d initial noises but --prompts %s holds %zu prompts", noise,
                         (int)h.shape[0], prompts_file, n_lines);
        if (rc == JT_OK) rc = jt_check_finite(data, h.count, noise, "the initial noise", &err);
        if (rc == JT_OK) opt.n = (int)h.shape[0];
        x_T = data;
    }
    /* One label per sample: the given ids, a single id for all, i mod classes, or the null class.
     */
    int *labels = NULL;
    if (rc == JT_OK && class_text) {
        labels = xmalloc((size_t)opt.n * sizeof(int));
        for (int i = 0; i < opt.n; i++)
            labels[i] = class_kind == 'a'   ? i % (K - 1 > 0 ? K - 1 : 1)
                        : class_kind == 'n' ? K - 1
                        : n_ids == 1        ? ids[0]
                                            : ids[i];
        opt.labels = labels;
    }
    /* One context per sample: the listed prompts, one prompt for all, or i mod M. */
    float *contexts = NULL;
    char *source = NULL;
    const char **prompts = NULL;
    if (rc == JT_OK && cspec.file) {
        const size_t LD = (size_t)ctx.L * ctx.D;
        contexts = xmalloc((size_t)opt.n * LD * sizeof(float));
        for (int i = 0; i < opt.n; i++) {
            size_t row = prompt_kind == 'a' ? (size_t)i % ctx.m
                         : n_pids == 1      ? (size_t)pids[0]
                         : n_pids > 1       ? (size_t)pids[i]
                                            : 0;
            memcpy(contexts + (size_t)i * LD, context_table_row(&ctx, row), LD * sizeof(float));
            if (ctx.captions) {
                if (!prompts) prompts = xcalloc((size_t)opt.n, sizeof *prompts);
                prompts[i] = ctx.captions[row];
            }
        }
        opt.prompts = prompts;
        size_t len = strlen(ctx.description) + strlen(prompt_text ? prompt_text : "0") + 32;
        source = xmalloc(len);
        snprintf(source, len, "%s;prompt-index=%s", ctx.description,
                 prompt_text ? prompt_text : "0");
        opt.context = contexts;
        opt.uncond_context = ctx.uncond;
        opt.ctx_len = ctx.L;
        opt.ctx_dim = ctx.D;
        opt.context_source = source;
    }
    /* --prompt / --prompts: StableDiffusionPipeline's contexts, guidance only when W > 1 */
    SamplePrompts sp = {0};
    const char **texts = NULL;
    if (rc == JT_OK && text_mode) {
        const int guided = guidance > 1.0;
        texts = xmalloc((size_t)opt.n * sizeof *texts);
        for (int i = 0; i < opt.n; i++)
            texts[i] = lines ? lines[i] : prompt;
        rc = sample_prompts_encode(&sp, model, X, te_dir, tok_dir, texts, (size_t)opt.n, negative,
                                   guided, clip_skip, &err);
        if (rc == JT_OK && sp.pc.truncation)
            fprintf(stderr, "sample: warning: %s\n", sp.pc.truncation);
        if (rc == JT_OK && guidance_given && !guided && guidance != 1.0 && !opt.quiet)
            fprintf(stderr,
                    "sample: --guidance %g <= 1: no classifier-free guidance (as "
                    "StableDiffusionPipeline); the conditional eps alone, recorded as guidance "
                    "1\n",
                    guidance);
        opt.guidance = guided ? (float)guidance : 1.0f;
        opt.context = sp.pc.cond;
        opt.uncond_context = guided ? sp.pc.uncond : NULL;
        opt.ctx_len = sp.pc.L;
        opt.ctx_dim = sp.pc.D;
        opt.context_source = sp.source;
        opt.prompts = texts;
        opt.negative_prompt = guided ? (negative ? negative : "") : NULL;
    }
    Trajectory tr = {0};
    if (rc == JT_OK) rc = traj_sample(net, &sched, &opt, x_T, &tr, &err);
    char *p = xmalloc(strlen(out) + 40);
    /* images: 1 or 3 channels, or latents decoded through --vae */
    const int pngs = vae_dir || tr.C == 1 || tr.C == 3;
    if (rc == JT_OK && !pngs && !opt.quiet)
        fprintf(stderr,
                "sample: %d-channel latents: no PNGs without --vae DIR (the trajectory "
                "file holds the latents)\n",
                tr.C);
    if (rc == JT_OK && pngs) {
        int cols = 1;
        while (cols * cols < tr.n)
            cols++;
        sprintf(p, "%s/samples.png", out);
        int C = tr.C, H = tr.H, W = tr.W;
        float *img = NULL;
        if (vae_dir)
            rc =
                cli_decode_latents(vae_dir, tr.x_0, tr.n, tr.C, tr.H, tr.W, &img, &C, &H, &W, &err);
        if (rc == JT_OK) rc = png_write_grid(p, img ? img : tr.x_0, tr.n, C, H, W, cols, &err);
        free(img);
    }
    if (rc == JT_OK && pngs) {
        sprintf(p, "%s/trajectory.png", out);
        rc = cli_write_trajectory_strip_vae(p, &tr, vae_dir, &err);
    }
    if (rc == JT_OK) {
        sprintf(p, "%s/trajectory.safetensors", out);
        rc = traj_save(&tr, p, &err);
    }
    free(p);
    free(x_T), free(ids), free(labels), free(pids), free(contexts), free(source);
    free(prompts), free(texts);
    sample_prompts_free(&sp);
    cli_prompts_free(lines, n_lines);
    context_free(&ctx);
    traj_free(&tr);
    sched_free(&sched);
    model_free(loaded);
    dir_unlock(&lock);
    if (rc != JT_OK) return cli_error("sample", &err);
    printf("%s\n", out);
    return 0;
}
