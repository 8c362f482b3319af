/* safetensors.h: reading and writing safetensors files (unet2d.md section 10; the reference is the
 * Rust crate `safetensors`, src/tensor.rs, whose checks the reader repeats).
 *
 * File layout: an 8-byte little-endian header length N, N bytes of JSON header (an object mapping
 * tensor names to {"dtype","shape","data_offsets"} plus an optional "__metadata__" object of
 * strings), then the byte buffer holding every tensor back to back.
 *
 * Reader: st_open reads and validates the header only (every check of the Rust reader: N sane and
 * within the file, a UTF-8 JSON object, well-typed entries, known dtypes, END - BEGIN equal to the
 * tensor's byte size, no holes, no overlaps, the whole buffer covered, no duplicate names, string
 * metadata); tensor data is read on demand with stdio into the caller's buffer, so nothing is ever
 * read through an unaligned pointer. Floating-point tensors (F32, F16, BF16, F64) convert to
 * float32. Every error names the file, and the tensor or field when there is one.
 *
 * Writer: collects tensors (pointers, not copies), then writes the file as the Rust `serialize`
 * does: tensors sorted by dtype (descending, Rust enum order) then by name (bytewise), compact JSON
 * header with "__metadata__" first ({"format":"pt"} by default), header space-padded to a multiple
 * of 8. The output goes to a temporary file in the same folder, renamed over the target when
 * complete, so an error never leaves a partial file. */
#ifndef JTRAK_IO_SAFETENSORS_H
#define JTRAK_IO_SAFETENSORS_H

#include "core/common.h"

#include <stdint.h>
#include <stdio.h>

/* The reference reader's limit on the header length. */
#define ST_MAX_HEADER 100000000ull
/* Tensors with more dimensions are refused by this reader (the format has no limit). */
#define ST_MAX_DIMS 16

/* Declared in the order of the Rust `Dtype` enum (the writer sorts by it); the sub-byte and FNUZ
 * float8 types, which jtrak can read past but not convert or write, come last. */
typedef enum {
    ST_BOOL,
    ST_U8,
    ST_I8,
    ST_F8_E5M2,
    ST_F8_E4M3,
    ST_F8_E8M0,
    ST_I16,
    ST_U16,
    ST_F16,
    ST_BF16,
    ST_I32,
    ST_U32,
    ST_F32,
    ST_C64,
    ST_F64,
    ST_I64,
    ST_U64,
    ST_F4,
    ST_F6_E2M3,
    ST_F6_E3M2,
    ST_F8_E4M3FNUZ,
    ST_F8_E5M2FNUZ,
    ST_NUM_DTYPES
} StDtype;

/* "F32" etc. */
const char *st_dtype_name(StDtype dt);
/* Returns 1 and sets *dt if name is a known dtype string, else 0. */
int st_dtype_parse(const char *name, StDtype *dt);
/* Bits per element (4 and 6 for the sub-byte types). */
int st_dtype_bits(StDtype dt);
/* 1 for F32, F16, BF16, F64: the types st_read_f32 converts. */
int st_dtype_is_float(StDtype dt);

/* IEEE half and bfloat16 conversions (round to nearest even; NaN stays NaN, overflow gives inf). */
float st_f16_to_f32(uint16_t h);
uint16_t st_f32_to_f16(float f);
float st_bf16_to_f32(uint16_t b);
uint16_t st_f32_to_bf16(float f);

typedef struct {
    char *name;
    StDtype dtype;
    int ndim;
    int64_t shape[ST_MAX_DIMS];
    uint64_t numel;
    uint64_t begin, end; /* byte offsets into the data buffer, END exclusive */
} StTensor;

typedef struct {
    char *path;
    FILE *fp;
    uint64_t file_size;
    uint64_t header_len; /* N */
    uint64_t data_start; /* 8 + N: the data buffer's offset in the file */
    int n_tensors;
    StTensor *tensors; /* in header order */
    int n_meta;
    char **meta_keys, **meta_values;
} StFile;

/* Opens and validates path. On success *f holds the open file (st_close it); on error nothing is
 * left open and err names the file and the tensor or field. */
int st_open(StFile *f, const char *path, JtError *err);
void st_close(StFile *f);
/* Index of the tensor called name, or -1. */
int st_find(const StFile *f, const char *name);
/* Value of a __metadata__ key, or NULL. */
const char *st_metadata_get(const StFile *f, const char *key);
/* Shape as text, e.g. "[4,1,3,3]". */
const char *st_shape_str(int ndim, const int64_t *shape, char *buf, size_t cap);

/* The tensor's raw bytes (end - begin of them, little-endian) into dst. */
int st_read_raw(StFile *f, int idx, void *dst, JtError *err);
/* The whole tensor as float32 (numel floats) into dst; F32, F16, BF16 and F64 are converted, any
 * other dtype is an error naming the tensor. */
int st_read_f32(StFile *f, int idx, float *dst, JtError *err);
/* Elements [first, first + count) of the tensor (in C order) as float32. */
int st_read_f32_range(StFile *f, int idx, uint64_t first, uint64_t count, float *dst, JtError *err);

/* ---- writer ---- */

typedef struct {
    char *name;
    StDtype dtype; /* as stored */
    int ndim;
    int64_t shape[ST_MAX_DIMS];
    uint64_t nbytes;
    const void *data; /* raw bytes in dtype, or floats when from_f32 */
    int from_f32;     /* data is float32, converted to dtype (F32/F16/BF16/F64) while writing */
} StWriterTensor;

typedef struct {
    int n, cap;
    StWriterTensor *tensors;
    int n_meta, cap_meta;
    char **meta_keys, **meta_values;
} StWriter;

/* Starts with metadata {"format": "pt"} (what PyTorch-side loaders expect). */
void st_writer_init(StWriter *w);
void st_writer_free(StWriter *w);
/* Sets a __metadata__ entry (copied); an existing key is replaced in place. */
void st_writer_set_metadata(StWriter *w, const char *key, const char *value);
/* Adds a tensor of any byte-sized dtype whose little-endian bytes (numel * size) are at data. The
 * name is copied; data is not, and must stay valid until st_writer_write. A duplicate name is a
 * bug (CHECK). */
void st_writer_add(StWriter *w, const char *name, StDtype dtype, int ndim, const int64_t *shape,
                   const void *data);
/* Adds float32 data stored as `stored` (ST_F32, ST_F16, ST_BF16 or ST_F64), converted while
 * writing. */
void st_writer_add_f32(StWriter *w, const char *name, StDtype stored, int ndim,
                       const int64_t *shape, const float *data);
/* Same, with an int shape (as in ParamLayout). */
void st_writer_add_f32_dims(StWriter *w, const char *name, StDtype stored, int ndim,
                            const int *shape, const float *data);
/* Writes the file atomically (temporary name in the same folder, then rename). */
int st_writer_write(const StWriter *w, const char *path, JtError *err);

/* ---- atomic output files (used by the writer and by model folders; any module may use it) ---- */

typedef struct {
    FILE *fp;
    char *path, *tmp_path;
} AtomicFile;

/* Creates a temporary file next to path ("<path>.tmp.XXXXXX", mode 0644) and opens it in fp. */
int atomic_file_open(AtomicFile *af, const char *path, JtError *err);
/* Flushes, syncs and closes the temporary file, then renames it over path. On failure the
 * temporary file is removed. Either way af is released. */
int atomic_file_commit(AtomicFile *af, JtError *err);
/* Closes and removes the temporary file; af is released. Safe on a released af. */
void atomic_file_abort(AtomicFile *af);
/* Writes n bytes to path atomically. */
int atomic_file_write(const char *path, const void *data, size_t n, JtError *err);

#endif
