/* source.h: the interface between the dataset readers (idx.c, cifar.c, imagefolder.c,
 * npy_images.c) and the loader (dataset.c). A DataSource is a source as loaded: n images in a
 * fixed order, labels, class names, and a way to get image i as uint8 pixels with strides, so that
 * CHW (CIFAR-10), HW (IDX) and HWC (npy, decoded PNG/JPEG) need no copy. */
#ifndef JTRAK_DATA_SOURCE_H
#define JTRAK_DATA_SOURCE_H

#include <stddef.h>
#include <stdint.h>

#include "core/common.h"
#include "data/captions.h"
#include "data/dataset.h"

/* One image as the source holds it: pixel (y, x, ch) is data[y*sy + x*sx + ch*sc]. c is 1 (gray),
 * 2 (gray + alpha), 3 (RGB) or 4 (RGBA). */
typedef struct {
    const uint8_t *data;
    int h, w, c;
    ptrdiff_t sy, sx, sc;
} DataRaw;

typedef struct DataSource DataSource;
struct DataSource {
    size_t n;
    int *labels;        /* (n), or NULL when unlabelled */
    int n_classes;      /* 0 when unlabelled */
    char **class_names; /* (n_classes), or NULL */
    char *what;         /* the dataset in messages: a file or directory path */
    /* Image i; the pixels stay valid until the next get or the free. Fills err naming the image
     * (e.g. a file that cannot be decoded). */
    int (*get)(DataSource *src, size_t i, DataRaw *img, JtError *err);
    /* The file image i came from, for messages, or NULL when the source is one file. */
    const char *(*item_name)(const DataSource *src, size_t i);
    /* Image i's caption (a captioned source), or NULL; the callback itself may be NULL. */
    const char *(*item_caption)(const DataSource *src, size_t i);
    void (*free_impl)(DataSource *src);
    void *impl;
};

/* Releases everything (safe on a zeroed DataSource). */
void data_source_free(DataSource *src);
/* class_names from a NULL-terminated table of n strings. */
char **data_names_dup(const char *const *names, int n);

/* Readers: each fills src or returns JT_ERR with a message naming the file. */
/* MNIST-style directory: {train,t10k}-{images-idx3,labels-idx1}-ubyte[.gz]. names: NULL or 10
 * class names. */
int data_open_mnist_dir(DataSource *src, const char *dir, int test_split, const char *const *names,
                        JtError *err);
/* One IDX image file and an optional label file (NULL). */
int data_open_idx(DataSource *src, const char *images, const char *labels, const char *const *names,
                  JtError *err);
int data_open_cifar10(DataSource *src, const char *path, int test_split, JtError *err);
int data_open_folder(DataSource *src, const char *dir, JtError *err);
int data_open_npy(DataSource *src, const char *images, const char *labels, JtError *err);

/* Latent stores (latents.c): data_load for a latents: spec; the fingerprint of a latent Dataset
 * ("jtrak-latents-v1", (n, c, h, w), VAE fingerprint, mode, scaling factor, moments, labels);
 * out->latent from rows[0..k) of src's (data_subset); freeing. */
int data_load_latents(const DatasetSpec *spec, Dataset *ds, JtError *err);
uint64_t data_latent_fingerprint(const Dataset *ds);
int data_latent_copy_rows(const Dataset *src, const size_t *rows, size_t k, Dataset *out);
void data_latent_free(DataLatent *L);

/* The class filter text as sorted labels, e.g. "sneaker, 8" -> "7,8" (malloc'd), for descriptions:
 * two spellings of one filter describe the same dataset. */
int data_classes_canonical(const char *text, const DataSource *src, char **out, JtError *err);

/* Selection (select.c): the source indices the spec keeps, in order; *rows malloc'd. */
int data_select(const DatasetSpec *spec, const DataSource *src, size_t **rows, size_t *n,
                JtError *err);

/* One image decoded from PNG or JPEG bytes (imagefolder.c): pixels (h, w, c) from stb_image. */
typedef struct {
    uint8_t *pixels;
    int w, h, c;
} DataImage;
/* The largest image the folder reader decodes (8192x8192, UNET_MAX_SAMPLE_SIZE; a side may be
 * longer when the image is narrow): the header's size is checked before anything is allocated. */
#define DATA_IMAGE_MAX_SIDE 65536
#ifdef FUZZING_BUILD_MODE_UNSAFE_FOR_PRODUCTION
#define DATA_IMAGE_MAX_PIXELS (1024 * 1024) /* fuzz builds: an input is not worth 256 MiB */
#else
#define DATA_IMAGE_MAX_PIXELS (8192 * 8192)
#endif
/* Decodes len bytes of a PNG or JPEG file; `what` names it in messages. Anything else (GIF, BMP
 * and the other formats stb_image knows), a header beyond DATA_IMAGE_MAX_*, or one whose decoded
 * size does not fit this machine's memory is refused before decoding, with the size and the
 * limit in the message. On success free img with data_image_free. */
int data_image_decode(const uint8_t *buf, size_t len, const char *what, DataImage *img,
                      JtError *err);
void data_image_free(DataImage *img);
/* Reads the file at path (refused above INT_MAX bytes) and decodes it as data_image_decode. */
int data_image_read(const char *path, const char *what, DataImage *img, JtError *err);
/* A file source's get: frees *image, decodes path (row i of the source src_what, named so in
 * messages) into it and views it as *raw (h, w, c interleaved). */
int data_image_fetch(const char *path, size_t i, const char *src_what, DataImage *image,
                     DataRaw *raw, JtError *err);

/* Captioned sources (captioned.c): coco:ANNOTATIONS.json[,IMAGEDIR] and captions:FILE[,IMAGEDIR]
 * (data/captions.h), unlabelled, images decoded as folder: does, item names the file names as the
 * captions file gives them, each image's caption its first. */
int data_open_captioned(DataSource *src, const DatasetSpec *spec, JtError *err);
/* The captions behind a source data_open_captioned opened (all its images), else NULL. */
const Captions *data_source_captions(const DataSource *src);

#endif
