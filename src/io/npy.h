/* npy.h: NumPy .npy files (format versions 1.0, 2.0 and 3.0 read; 1.0 written, byte for byte as
 * numpy.save writes it), the format of feature stores and score matrices, so that `numpy.load`
 * opens every array jtrak writes. Follows numpy/lib/format.py ("A Simple File Format for NumPy
 * Arrays").
 *
 * Supported dtypes: '|u1', '<i4', '<i8', '<f4', '<f8' (little-endian, the host's order), C order
 * only: a Fortran-order or big-endian file is refused with a clear error. A bool array ('|b1') is
 * read as NPY_U8 (bytes 0/1), e.g. subset masks saved from numpy.
 *
 * Three ways in:
 *   - whole arrays: npy_read / npy_write (written to a temporary name, then renamed);
 *   - headers only: npy_read_header (shape and dtype, e.g. to check a store before scoring);
 *   - row access for stores that are filled over time or by several processes: npy_create makes a
 *     file of the final size (header + zero rows), npy_open opens an existing one, and
 *     npy_write_rows / npy_read_rows move rows (slices along the first axis) with pwrite/pread. */
#ifndef JTRAK_NPY_H
#define JTRAK_NPY_H

#include <stddef.h>
#include <stdint.h>

#include "core/common.h"

#define NPY_MAX_DIMS 8

typedef enum { NPY_U8, NPY_I32, NPY_I64, NPY_F32, NPY_F64 } NpyDtype;

typedef struct {
    NpyDtype dtype;
    int ndim;                   /* 0 (a scalar) .. NPY_MAX_DIMS */
    size_t shape[NPY_MAX_DIMS]; /* (ndim) */
    size_t count;               /* elements: product of shape (1 for a scalar) */
    size_t data_offset;         /* bytes from the start of the file to the first element */
    int version;                /* major format version of the file: 1, 2 or 3 */
} NpyHeader;

/* Bytes per element, and the descr string numpy writes ("<f4", "|u1", ...). */
size_t npy_dtype_size(NpyDtype t);
const char *npy_dtype_descr(NpyDtype t);
/* Shape as text, e.g. "(60000, 28, 28)", into buf. */
const char *npy_shape_str(const NpyHeader *h, char *buf, size_t cap);

/* Reads and checks the header of path, including that the file holds exactly the data the header
 * announces (a truncated file is an error here, not when the rows are read). */
int npy_read_header(const char *path, NpyHeader *h, JtError *err);

/* Reads the whole array: *data is malloc'd (count * itemsize bytes, C order); free() it. */
int npy_read(const char *path, NpyHeader *h, void **data, JtError *err);

/* Same, but refuses a file whose dtype is not `want` (message names the file and both dtypes). */
int npy_read_as(const char *path, NpyDtype want, NpyHeader *h, void **data, JtError *err);

/* Writes a whole array atomically: a temporary file next to path, fsync'd, then renamed over
 * path, so that a reader sees either the old file or the complete new one. */
int npy_write(const char *path, NpyDtype dtype, int ndim, const size_t *shape, const void *data,
              JtError *err);

/* An open .npy file for row access. A row is one slice along the first axis (for ndim 1 a row is
 * one element). */
typedef struct {
    int fd;
    int writable;
    NpyHeader hdr;
    size_t row_bytes; /* bytes per row */
    size_t rows;      /* shape[0] */
    char *path;
} NpyFile;

/* Creates path (replacing any old file) with the header and every row zero, sized in full so that
 * rows can be written in any order, by any process that opens it. The file is created at a
 * temporary name and renamed before this returns, so path is always a well-formed .npy;
 * which rows hold real data is for the caller to record (e.g. in a manifest). ndim >= 1. */
int npy_create(NpyFile *f, const char *path, NpyDtype dtype, int ndim, const size_t *shape,
               JtError *err);
/* Opens an existing file (checked as npy_read_header does) for reading, or reading and writing. */
int npy_open(NpyFile *f, const char *path, int writable, JtError *err);
/* Rows [row0, row0 + nrows) from/to buf (nrows * row_bytes bytes). */
int npy_write_rows(NpyFile *f, size_t row0, size_t nrows, const void *buf, JtError *err);
int npy_read_rows(NpyFile *f, size_t row0, size_t nrows, void *buf, JtError *err);
/* Flushes written rows to disk (fsync). */
int npy_sync(NpyFile *f, JtError *err);
/* Closes (after fsync when writable); safe on a zeroed or already closed NpyFile. */
int npy_close(NpyFile *f, JtError *err);

#endif
