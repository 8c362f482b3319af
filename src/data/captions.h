/* captions.h: captioned image collections read into one structure: per image, its file and its
 * captions in file order (issue 14 item 4; ldm.md 1.1-1.2: COCO's 5 (sometimes 6-7) captions per
 * image, one picked per draw). Three formats:
 *   COCO   annotations/captions_*.json: "images": [{"id", "file_name", ...}], "annotations":
 *          [{"image_id", "id", "caption", ...}]. Images in the order of the "images" array (COCO's
 *          own order, which is neither sorted by id nor by name), each image's captions in
 *          annotation order. Every image needs at least one caption; ids are unique.
 *   CSV    a header line "file,caption", then one caption per record (RFC 4180: a field in double
 *          quotes may hold commas, newlines and doubled quotes "").
 *   JSONL  one JSON object per line: {"file": ..., "caption": ...} (other keys are ignored).
 * In CSV and JSONL several records naming the same file are several captions of that image;
 * images come in the order of their first record. Blank lines are skipped.
 *
 * File names are relative to an image root (the captions file's folder unless one is given;
 * absolute names are used as they are). Limits are checked before anything is allocated for
 * them: the file's size, a caption's length, a file name's length, the captions of one image
 * (CONTEXT_MAX_PER_ROW, what a context file can hold per row). Captions and names must be valid
 * UTF-8 without NUL bytes, and captions must not be empty. Every refusal names the file and the
 * entry (line, or the array element and its id). */
#ifndef JTRAK_CAPTIONS_H
#define JTRAK_CAPTIONS_H

#include <stddef.h>
#include <stdint.h>

#include "core/common.h"

#define CAPTIONS_MAX_FILE_BYTES ((size_t)1 << 30) /* captions_train2017.json is 92 MB */
#define CAPTIONS_MAX_TEXT 16384                   /* bytes of one caption (COCO's: < 300) */
#define CAPTIONS_MAX_NAME 4096                    /* bytes of one file name (PATH_MAX) */

typedef enum { CAPTIONS_COCO, CAPTIONS_CSV, CAPTIONS_JSONL } CaptionsFormat;

typedef struct {
    CaptionsFormat format;
    size_t n;      /* images */
    char **names;  /* (n) each image's file as the captions file names it */
    char **files;  /* (n) the same resolved against the image root */
    int64_t *ids;  /* (n) COCO image ids; NULL for CSV and JSONL */
    size_t *first; /* (n + 1): image i's captions are texts[first[i] .. first[i + 1]) */
    char **texts;  /* (n_texts) every caption, image by image, each image's in file order */
    size_t n_texts;
    char *what; /* the captions file, for messages */
} Captions;

/* The format a file name says: *.json -> COCO, *.csv -> CSV, *.jsonl -> JSONL; JT_ERR otherwise. */
int captions_format_of(const char *path, CaptionsFormat *fmt, JtError *err);
/* Parses len bytes of one format; `what` names them in messages; image_root: NULL = the folder of
 * `what`. On error c is left empty (captions_free-safe). */
int captions_parse(Captions *c, CaptionsFormat fmt, const char *buf, size_t len, const char *what,
                   const char *image_root, JtError *err);
/* Reads the file (refused above CAPTIONS_MAX_FILE_BYTES before reading) and parses it. */
int captions_read(Captions *c, CaptionsFormat fmt, const char *path, const char *image_root,
                  JtError *err);
void captions_free(Captions *c);

/* Image i's number of captions and caption k. */
size_t captions_count(const Captions *c, size_t i);
const char *captions_text(const Captions *c, size_t i, size_t k);
/* FNV-1a 64 over "jtrak-captions-v1" then, for each text in order, its bytes and a NUL: what a
 * context file records as the fingerprint of the captions it encodes. */
uint64_t captions_fingerprint_texts(const char *const *texts, size_t n);

/* s as one CSV field the CSV reader above reads back as s (RFC 4180): in double quotes, with each
 * quote doubled, when s holds a comma, a quote, CR or LF, starts or ends with a space, or is
 * empty; else s unchanged. malloc'd. */
char *captions_csv_field(const char *s);

/* 1 when the n bytes are valid UTF-8 (no overlong forms, surrogates or code points past U+10FFFF)
 * without NUL bytes; else 0 and *bad = the offset of the first offending byte. */
int captions_utf8_valid(const char *s, size_t n, size_t *bad);

#endif
