/* config_fields.h: diffusers config.json fields as data. A model kind describes its config struct
 * with a table of ConfigField rows (JSON name, type, offset into the struct, range, accepted
 * choices, the class default, and the refusal text for values diffusers accepts but jtrak does not
 * implement); one generic loop parses a config.json object against the table and one generic
 * writer prints it back the way diffusers' ConfigMixin.to_json_string does (sorted keys,
 * "_class_name", "_diffusers_version", indent 2). Checks that span fields (group counts dividing
 * channels, list lengths agreeing) stay in each kind's validate function.
 *
 * Parsing is strict: an unknown field is an error naming it, a key given twice is an error, keys
 * starting with "_" are diffusers bookkeeping and are accepted, every JSON type is checked, and an
 * absent field takes the class default (a required one is an error). Every message reads
 * "PATH: field 'NAME': ...". This file depends only on core/ and cJSON, so any layer may use it. */
#ifndef JTRAK_MODEL_CONFIG_FIELDS_H
#define JTRAK_MODEL_CONFIG_FIELDS_H

#include "core/common.h"

#include <stddef.h>

typedef enum {
    CF_INT,         /* integer; null accepted (stored as 0) with CF_NULLABLE */
    CF_BOOL,        /* true/false, stored as int 0/1 */
    CF_FLOAT,       /* finite number, stored as float */
    CF_CHOICE,      /* string, one of `choices`; stores its index (int), -1 for null */
    CF_INT_LIST,    /* list of integers into int[max_len], its length at count_offset */
    CF_INT_OR_LIST, /* an integer (count 0: the same value at every level, in [0]) or a list */
    CF_TYPE_LIST,   /* list of strings, each one of `choices`; stores each index (int[max_len]) */
    CF_NULL,        /* null only: anything else is refused with `refusal` */
    CF_INT_OR_PAIR, /* an integer (at offset; null with CF_NULLABLE) or a [height, width] list
                     * (height at pair_offset, width at count_offset; the integer is then the
                     * height if height == width, else 0). The writer writes the list when
                     * height or width is nonzero, else the integer */
} CfType;

enum {
    CF_NULLABLE = 1 << 0, /* null is accepted: ints store 0, choices -1; 0 / -1 are written null */
    CF_REQUIRED = 1 << 1, /* absent is an error ("missing") */
    CF_MIN = 1 << 2,      /* value (each entry of a list) >= min */
    CF_MAX = 1 << 3,      /* value <= max */
    CF_GT_MIN = 1 << 4,   /* value > min (floats) */
    CF_IMPL = 1 << 5,     /* diffusers accepts values outside [impl_min, impl_max], jtrak refuses
                           * them with `refusal` */
    CF_SHARED_COUNT = 1 << 6, /* lists: count_offset is another row's length (the level count):
                               * the parser leaves it (the kind checks the lengths agree through
                               * CfSeen), the writer writes that many entries */
};

/* offset of a row jtrak checks but does not store: the writer writes the default */
#define CF_NONE ((size_t)-1)

typedef struct {
    const char *name;
    CfType type;
    size_t offset;       /* into the kind's config struct, or CF_NONE */
    size_t count_offset; /* lists: int length (CF_NONE: only reported through CfSeen);
                          * CF_INT_OR_PAIR: the width */
    size_t pair_offset;  /* CF_INT_OR_PAIR: the height */
    unsigned flags;
    double min, max;            /* valid range (CF_MIN / CF_GT_MIN, CF_MAX) */
    double impl_min, impl_max;  /* implemented range (CF_IMPL) */
    int max_len;                /* lists: at most this many entries (and at least one) */
    const char *const *choices; /* CF_CHOICE / CF_TYPE_LIST: NULL-terminated */
    const char *refusal;        /* why a value diffusers accepts is refused ("only ... is
                                 * implemented"); CF_CHOICE/CF_TYPE_LIST default to the choices */
    int def_int;                /* class default: ints, bools, choice index (-1 = null) */
    double def_float;           /* class default: floats */
    const int *def_list;        /* class default: lists (NULL with CF_REQUIRED) */
    int def_len;
} ConfigField;

#define CF_MAX_FIELDS 96

/* What a parse saw, for a kind's cross-field checks: present[i] for table row i, and count[i] the
 * length of a list (0 for scalars). */
typedef struct {
    int present[CF_MAX_FIELDS];
    int count[CF_MAX_FIELDS];
} CfSeen;

/* Sets every stored field of `cfg` to its class default. */
void cf_defaults(const ConfigField *table, int n, void *cfg);

/* Parses the JSON object `root` into `cfg` (which should hold the defaults already, see
 * cf_defaults) against the table: fails on the first unknown, duplicate, wrongly typed, out of
 * range, unsupported or missing field. `kind` names the class in the unknown-field message.
 * `seen` may be NULL. */
int cf_parse(const ConfigField *table, int n, const char *kind, const void *root, void *cfg,
             CfSeen *seen, const char *path, JtError *err);

/* The index of row `name` in the table, or -1. */
int cf_find(const ConfigField *table, int n, const char *name);

/* diffusers-style config.json text (malloc'd): every row, keys sorted, "_class_name" = kind and
 * "_diffusers_version" first, two-space indent and a final newline, as json.dumps(indent=2,
 * sort_keys=True) + "\n" writes it. */
char *cf_to_json(const ConfigField *table, int n, const char *kind, const void *cfg);

/* Reads a whole config file (at most 1 MiB, no NUL bytes) into a malloc'd string. */
int cf_read_file(const char *path, char **text, JtError *err);

/* Parses text into a cJSON object (returned as void * so that users need not include cJSON);
 * the error names the line and column. Free with cf_json_free. */
int cf_json_parse(const char *text, const char *path, void **root, JtError *err);
void cf_json_free(void *root);

/* "PATH: field 'NAME': ..." helpers for kinds' validate functions are plain jt_fail calls. */

#endif
