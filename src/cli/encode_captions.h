/* encode_captions.h: the --captions mode of `jtrak encode-text` (cli_encode_captions.c). */
#ifndef JTRAK_CLI_ENCODE_CAPTIONS_H
#define JTRAK_CLI_ENCODE_CAPTIONS_H

#include "core/common.h"

typedef struct {
    const char *captions;     /* --captions SRC: coco:... or captions:... (--data text) */
    const char *limit;        /* --limit, or NULL */
    const char *indices;      /* --indices, or NULL */
    const char *text_encoder; /* --text-encoder DIR */
    const char *tokenizer;    /* --tokenizer DIR */
    const char *out;          /* --out FILE.npy */
    int per_image;            /* --captions-per-image K; 0 = the fewest any row has */
    int clip_skip;
    int batch; /* captions per chunk (at least one image's) */
} EncodeCaptionsOptions;

/* JT_OK, or JT_ERR with err filled; *usage set when the error is a bad option value (exit 2). */
int cli_encode_captions(const EncodeCaptionsOptions *o, int *usage, JtError *err);

#endif
