/* dataset.h: the data layer every command uses. A DatasetSpec says what the user asked for (a
 * source, a selection, transforms); data_load turns it into a Dataset: the selected images as
 * uint8 (N, C, H, W) after colour conversion, fitting to the model's size and (optionally)
 * flipping, with labels, the index of each image in the source as loaded, and a fingerprint.
 *
 * Sources ("--data" text, see data_spec_set):
 *   fashion-mnist[:train|:test]          Debian's dataset-fashion-mnist (/usr/share/datasets/...)
 *   fashion-mnist:DIR[,train|,test]      the same files in another directory
 *   mnist:DIR[,train|,test]              MNIST IDX files in DIR (*-idx3-ubyte[.gz])
 *   idx:IMAGES[,LABELS]                  one IDX image file (raw or .gz), optional label file
 *   cifar10:DIR[,train|,test]            CIFAR-10 binary batches (data_batch_1..5.bin or
 *                                        test_batch.bin)
 *   cifar10:FILE.bin                     one CIFAR-10 binary batch
 *   folder:DIR                           PNG/JPEG images in DIR (unlabelled), or in class
 *                                        sub-folders DIR/<class>/ (labels = sorted folder order,
 *                                        as torchvision's ImageFolder); files in byte order of
 *                                        their names
 *   npy:FILE[,LABELS]                    uint8 (N, H, W) or (N, H, W, C) .npy; labels: integer (N,)
 *   latents:FILE.npy                     a latent store of `jtrak encode` (float32 (N, 2z, h, w):
 *                                        posterior mean and clamped log-variance, and its manifest
 *                                        FILE.npy.json); see latents.c and "Latent datasets" below
 *   coco:ANNOTATIONS.json[,IMAGEDIR]     COCO captions (annotations/captions_SPLIT.json) and
 *                                        its images (default IMAGEDIR: SPLIT/ beside the
 *                                        annotations folder, COCO's layout); images in the order
 *                                        of the file's "images" array (data/captions.h)
 *   captions:FILE.csv|FILE.jsonl[,DIR]   a captions file (file,caption records) and the images
 *                                        it names, relative to DIR (default: FILE's folder)
 *   PATH                                 any of the above guessed from what PATH is (FILE.npy
 *                                        with a FILE.npy.json beside it: latents:; *.csv and
 *                                        *.jsonl: captions:; captions_*.json: coco:)
 *
 * Selection, applied in this order to the source as loaded: the indices file (kept in file order),
 * the class filter, then the first-N limit. Row i of the Dataset is source image index[i]; the
 * attribution scores and the manifests refer to rows, and record `index` so that a row always
 * names the same image.
 *
 * Transforms, in this order (each as torchvision/PIL does it, so the Python twin matches bit for
 * bit): colour (gray <-> RGB; alpha dropped), fit to the model's H x W (pad centred with black,
 * which scales to -1; centre crop; PIL-style bilinear or nearest resize), flip. Pixels are kept as
 * uint8 (a quarter of the memory of float) and scaled to [-1, 1] on the way out exactly as
 * ToTensor + Normalize(0.5, 0.5) does: (x / 255 - 0.5) / 0.5 in float32, so 0 -> -1, 255 -> 1.
 *
 * Latent datasets (latents:FILE.npy, ldm.md 1.2): the rows are VAE posteriors N(mean, exp(logvar))
 * of the images of the dataset the store was encoded from; c, h, w are the latent's z, h, w and
 * there are no pixels. The option latent=sample (default; Journey-TRAK: a fresh posterior sample
 * per draw) or latent=mean (D-TRAK: the posterior mean) says what data_batch_draw returns; both
 * scale by the VAE's scaling_factor (diffusers: latents = sample * scaling_factor). The dataset the
 * store was encoded from is reloaded from the description its manifest records (when it still
 * loads and its fingerprint matches) for labels, class names, item names, captions and, for the
 * report, the original images. Selection applies to the store's rows; fit, colour and flips do not
 * apply (a flipped latent is not the latent of a flipped image). */
#ifndef JTRAK_DATASET_H
#define JTRAK_DATASET_H

#include <stddef.h>
#include <stdint.h>

#include "core/common.h"

/* Where Debian's dataset-fashion-mnist installs the files: the embedded default. */
#define DATA_FASHION_MNIST_DIR "/usr/share/datasets/fashion-mnist"

typedef enum {
    DATA_SRC_FASHION_MNIST,
    DATA_SRC_MNIST,
    DATA_SRC_IDX,
    DATA_SRC_CIFAR10,
    DATA_SRC_FOLDER,
    DATA_SRC_NPY,
    DATA_SRC_LATENTS,
    DATA_SRC_COCO,
    DATA_SRC_CAPTIONS
} DataSourceKind;

/* What a latent dataset's draws are (data_batch_draw); DEFAULT reads as SAMPLE for a latent source
 * and is the only value a pixel source takes. */
typedef enum { DATA_LATENT_DEFAULT = 0, DATA_LATENT_SAMPLE, DATA_LATENT_MEAN } DataLatentMode;

typedef enum {
    DATA_FIT_NONE,   /* sizes must match the model: a mismatch is an error */
    DATA_FIT_PAD,    /* centred in a black (-1) border; a larger image is an error */
    DATA_FIT_CROP,   /* centre crop (torchvision CenterCrop); a smaller image is an error */
    DATA_FIT_RESIZE, /* PIL's BILINEAR resize (antialiased when shrinking); aspect not kept */
    DATA_FIT_NEAREST /* PIL's NEAREST resize */
} DataFit;

typedef enum {
    DATA_COLOR_AUTO, /* as the source: gray stays gray, RGB stays RGB (alpha dropped) */
    DATA_COLOR_GRAY, /* RGB -> gray with PIL's "L" weights (299, 587, 114 per mille) */
    DATA_COLOR_RGB   /* gray -> RGB by replication */
} DataColor;

typedef enum {
    DATA_FLIP_NONE,
    DATA_FLIP_ALL,   /* every image mirrored left-right when loading (changes the fingerprint) */
    DATA_FLIP_RANDOM /* recorded only: the trainer flips each draw with a counter-based coin and
                        data_image_f32(..., flip) */
} DataFlip;

typedef struct {
    DataSourceKind kind;
    char *path;       /* directory or file; NULL for fashion-mnist means DATA_FASHION_MNIST_DIR */
    char *path2;      /* labels file for idx:/npy:, image folder for coco:/captions:, else NULL */
    int test_split;   /* fashion-mnist, mnist, cifar10 directories: 1 = the test split */
    char *classes;    /* class filter as given ("0,3", "sneaker,bag"), NULL = all */
    size_t limit;     /* keep the first `limit` images after the other filters; 0 = all */
    char *index_file; /* one source index per line, '#' comments; NULL = none */
    DataFit fit;
    int height, width; /* the model's size; 0 = take the source's (all images must agree) */
    int channels;      /* the model's in_channels; 0 = whatever the colour option gives */
    DataColor color;
    DataFlip flip;
    DataLatentMode latent; /* latents: only */
} DatasetSpec;

typedef struct Dataset Dataset;

/* The latent part of a Dataset (NULL for pixel datasets). */
typedef struct {
    float *moments;       /* (n, 2c, h, w): channels [0, c) the mean, [c, 2c) the clamped logvar */
    float scaling_factor; /* the VAE's; draws are scaling_factor * (mean [+ std * n]) */
    DataLatentMode mode;  /* SAMPLE or MEAN */
    uint64_t vae_fingerprint;
    char *store_path; /* the .npy as given (absolute) */
    char *vae_dir;    /* the VAE folder the manifest names ("vae"), or NULL */
    /* The dataset the store was encoded from, reloaded from the manifest's description with its
     * fingerprint checked: row r of the store is row r of origin (so row i of the latent dataset is
     * origin row index[i]). NULL when it no longer loads; origin_note then says why. */
    Dataset *origin;
    char *origin_note;
} DataLatent;

struct Dataset {
    size_t n; /* rows */
    int c, h, w;
    uint8_t *pixels;    /* (n, c, h, w); NULL for a latent dataset */
    DataLatent *latent; /* NULL for a pixel dataset */
    int *labels;        /* (n); -1 for every row when the source has no labels */
    size_t *index;      /* (n): index of each row's image in the source as loaded */
    size_t n_source;    /* images in the source before selection */
    int n_classes;      /* 0 when unlabelled */
    char **class_names; /* (n_classes) */
    char **item_names;  /* (n) or NULL: the file each row came from, relative to the source folder
                           (folder: "CLASS/NAME.png"); NULL when the source is one file */
    char **captions;    /* (n) or NULL: each row's caption, when the source has them */
    DataFlip flip;
    /* FNV-1a 64 (core/hash.h) over "jtrak-dataset-v1", (n, c, h, w) as 4 little-endian u64, the
     * pixels, the labels as little-endian int32: identical content gives an identical fingerprint
     * whatever the path. */
    uint64_t fingerprint;
    char *description; /* the spec in data_spec_describe form, with resolved size and paths */
};

/* ---- spec ---------------------------------------------------------------------------------- */

/* Defaults: fashion-mnist train, everything selected, fit none, size and channels from the source,
 * colour auto, no flip. */
void data_spec_init(DatasetSpec *s);
void data_spec_free(DatasetSpec *s);
void data_spec_copy(DatasetSpec *dst, const DatasetSpec *src);

/* Sets one option from text, for the command line and for reading a description back:
 *   data      source text (see the top of this file)
 *   classes   comma-separated labels or class names ("all" clears)
 *   limit     non-negative integer ("all" or 0 = no limit)
 *   indices   path of an index file ("none" clears)
 *   fit       none | pad | crop | resize | nearest
 *   size      N or HxW ("source" = as the source)
 *   channels  1 | 3 | source
 *   color     auto | gray | rgb
 *   flip      none | all | random
 *   latent    sample | mean (latents: sources only; see the top of this file)
 * A bad value is a usage error: JT_ERR with a message naming the option. */
int data_spec_set(DatasetSpec *s, const char *key, const char *value, JtError *err);

/* Canonical text, "data=...;classes=...;limit=...;indices=...;fit=...;size=...;channels=...;
 * color=...;flip=..." (every key, fixed order), and ";latent=sample|mean" for a latents: source;
 * malloc'd. */
char *data_spec_describe(const DatasetSpec *s);
/* Reads a description back (data_spec_init + data_spec_set per key). */
int data_spec_parse(DatasetSpec *s, const char *description, JtError *err);

/* ---- loading ------------------------------------------------------------------------------- */

/* Loads, selects, transforms. On error ds is left empty (data_free-safe) and err names the file
 * and the reason; nothing is printed. */
int data_load(const DatasetSpec *spec, Dataset *ds, JtError *err);
void data_free(Dataset *ds);

/* A new Dataset holding rows[0..k) of src (e.g. an LDS subset); out->index maps to the source
 * as before; the fingerprint is recomputed and the description gains ";rows=<k>:<hash>". */
int data_subset(const Dataset *src, const size_t *rows, size_t k, Dataset *out, JtError *err);

/* ---- access -------------------------------------------------------------------------------- */

/* The [-1, 1] value of pixel value v (exact for 0 and 255). */
float data_scale_u8(uint8_t v);
/* Row `row` as float: out (c, h, w), mirrored left-right when flip is non-zero; for a latent
 * dataset scaling_factor * mean (flip must be zero). */
void data_image_f32(const Dataset *ds, size_t row, int flip, float *out);
/* A batch: out (b, c, h, w) from rows[0..b); flips (b) or NULL for none. */
void data_batch_f32(const Dataset *ds, const size_t *rows, const uint8_t *flips, size_t b,
                    float *out);
/* The draws of training and attribution: out (b, c, h, w) from rows[0..b). For a pixel dataset
 * exactly data_batch_f32 (seed, stream, counter unused). For a latent dataset in mean mode
 * scaling_factor * mean (flips must be NULL or zero); in sample mode
 *   scaling_factor * (mean + exp(0.5 * logvar) * n),  n = rng_fill_normal(seed,
 *   rng_stream(RNG_TAG_LATENT_SAMPLE, rng_stream(RNG_TAG_LATENT_SAMPLE, stream, counter), row), 0)
 * so that the draw of a row depends only on (seed, stream, counter, row): a row drawn twice in one
 * call gets the same sample; call once per slot with distinct counters for distinct samples. */
void data_batch_draw(const Dataset *ds, const size_t *rows, const uint8_t *flips, size_t b,
                     uint64_t seed, uint64_t stream, uint64_t counter, float *out);
/* Row `row` of a latent dataset: scaling_factor * mean, out (c, h, w). */
void data_latent_mean_f32(const Dataset *ds, size_t row, float *out);
/* 1 when data_batch_draw's values depend on (seed, stream, counter): a latent dataset in sample
 * mode. */
int data_draws_random(const Dataset *ds);
/* "sample", "mean" (latent datasets) or NULL (pixels). */
const char *data_latent_mode_name(const Dataset *ds);
/* Every row as float (n, c, h, w), malloc'd. */
float *data_images_f32(const Dataset *ds);

/* The file row `row` came from (see item_names), or NULL when the source does not name items. */
const char *data_item_name(const Dataset *ds, size_t row);
/* Row `row`'s caption, or NULL when the source has none. */
const char *data_item_caption(const Dataset *ds, size_t row);
/* FNV-1a 64 over "jtrak-rows-text-v1", n, then each row's item name and caption (each followed
 * by a NUL; a missing one hashes as the empty string): which images, with which first captions,
 * the rows are, whatever their size, fit or encoding (pixels or latents). A context file made by
 * encode-text --captions records it for its rows, and train/featurize compare it with theirs. */
uint64_t data_text_fingerprint(size_t n, char *const *item_names, char *const *captions);
/* The same for a loaded Dataset. */
uint64_t data_rows_text_fingerprint(const Dataset *ds);
/* A spec's description (data_spec_describe) with its paths made absolute against the working
 * directory, as a loaded Dataset records it (without the resolved size): malloc'd. */
char *data_spec_describe_abs(const DatasetSpec *s);
/* Class name of a label, or NULL (unlabelled, or out of range). */
const char *data_class_name(const Dataset *ds, int label);
/* The fingerprint as 16 lowercase hex digits into buf (17 bytes). */
const char *data_fingerprint_hex(const Dataset *ds, char buf[17]);

#endif
