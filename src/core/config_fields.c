/* config_fields.c: see config_fields.h. The writer follows diffusers' ConfigMixin.to_json_string
 * (json.dumps(config, indent=2, sort_keys=True) + "\n"); floats are written as the shortest
 * decimal that reads back as the same float32. All JSON goes through cJSON. */
#include "core/config_fields.h"

#include <cjson/cJSON.h>
#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define DIFFUSERS_VERSION "0.42.1"
#define MAX_CONFIG_BYTES (1 << 20)

static int *int_at(void *cfg, size_t off) {
    return (int *)((char *)cfg + off);
}
static const int *cint_at(const void *cfg, size_t off) {
    return (const int *)((const char *)cfg + off);
}
static float *float_at(void *cfg, size_t off) {
    return (float *)((char *)cfg + off);
}

/* A short description of a JSON value for messages: "a string", "null", "1.5", ... */
static const char *describe(const cJSON *it, char *buf, size_t cap) {
    if (cJSON_IsNull(it)) return "null";
    if (cJSON_IsTrue(it)) return "true";
    if (cJSON_IsFalse(it)) return "false";
    if (cJSON_IsNumber(it)) {
        snprintf(buf, cap, "%.15g", it->valuedouble);
        return buf;
    }
    if (cJSON_IsString(it)) {
        snprintf(buf, cap, "the string \"%.60s\"", it->valuestring);
        return buf;
    }
    if (cJSON_IsArray(it)) return "a list";
    if (cJSON_IsObject(it)) return "an object";
    return "an invalid value";
}

/* As describe, but a string is shown quoted: "\"timestep\" is not supported (...)". */
static const char *describe_value(const cJSON *it, char *buf, size_t cap) {
    if (cJSON_IsString(it)) {
        snprintf(buf, cap, "\"%.60s\"", it->valuestring);
        return buf;
    }
    return describe(it, buf, cap);
}

/* " or " between the choices: "DownBlock2D or AttnDownBlock2D" */
static void join_choices(const char *const *choices, char *buf, size_t cap) {
    size_t k = 0;
    buf[0] = 0;
    for (int i = 0; choices[i] && k < cap; i++)
        k += (size_t)snprintf(buf + k, cap - k, "%s%s", i ? " or " : "", choices[i]);
}

static const char *refusal_of(const ConfigField *f, char *buf, size_t cap) {
    if (f->refusal) return f->refusal;
    if (f->choices) {
        join_choices(f->choices, buf, cap);
        return buf;
    }
    return "not implemented";
}

/* The range clause of an out-of-range message: "must be >= 1", "must be 1 to 100000", ... */
static void range_text(const ConfigField *f, char *buf, size_t cap) {
    int lo = (f->flags & (CF_MIN | CF_GT_MIN)) != 0, hi = (f->flags & CF_MAX) != 0;
    const char *op = f->flags & CF_GT_MIN ? ">" : ">=";
    if (lo && hi)
        snprintf(buf, cap, "must be %.15g to %.15g", f->min, f->max);
    else if (lo)
        snprintf(buf, cap, "must be %s %.15g", op, f->min);
    else
        snprintf(buf, cap, "must be <= %.15g", f->max);
}

static int in_range(const ConfigField *f, double v) {
    if ((f->flags & CF_MIN) && v < f->min) return 0;
    if ((f->flags & CF_GT_MIN) && !(v > f->min)) return 0;
    if ((f->flags & CF_MAX) && v > f->max) return 0;
    return 1;
}

static int implemented(const ConfigField *f, double v) {
    return !(f->flags & CF_IMPL) || (v >= f->impl_min && v <= f->impl_max);
}

/* An integer entry of row f (the row itself, or a list entry named `name`). */
static int get_int(const ConfigField *f, const cJSON *it, const char *name, int nullable, int *out,
                   const char *path, JtError *err) {
    char buf[96], rt[96];
    if (nullable && cJSON_IsNull(it)) {
        *out = 0;
        return JT_OK;
    }
    if (!cJSON_IsNumber(it) || it->valuedouble != floor(it->valuedouble) ||
        fabs(it->valuedouble) > 2147483647.0)
        return jt_fail(err, "%s: field '%s': expected an integer%s, got %s", path, name,
                       nullable ? " or null" : "", describe(it, buf, sizeof buf));
    int v = (int)it->valuedouble;
    if (!in_range(f, v)) {
        range_text(f, rt, sizeof rt);
        return jt_fail(err, "%s: field '%s': %d is out of range (%s)", path, name, v, rt);
    }
    if (!implemented(f, v))
        return jt_fail(err, "%s: field '%s': %d is not supported (%s)", path, name, v,
                       refusal_of(f, rt, sizeof rt));
    *out = v;
    return JT_OK;
}

/* A list of 1..max_len entries; returns its length. */
static int get_list(const ConfigField *f, const cJSON *it, int *n, const char *path, JtError *err) {
    char buf[96];
    if (!cJSON_IsArray(it))
        return jt_fail(err, "%s: field '%s': expected a list, got %s", path, f->name,
                       describe(it, buf, sizeof buf));
    *n = cJSON_GetArraySize(it);
    if (*n == 0) return jt_fail(err, "%s: field '%s': the list is empty", path, f->name);
    if (*n > f->max_len)
        return jt_fail(err, "%s: field '%s': %d entries, more than the %d supported", path, f->name,
                       *n, f->max_len);
    return JT_OK;
}

static int get_int_list(const ConfigField *f, const cJSON *it, int *arr, int *n, const char *path,
                        JtError *err) {
    if (get_list(f, it, n, path, err) != JT_OK) return JT_ERR;
    int i = 0;
    for (const cJSON *e = it->child; e; e = e->next, i++) {
        char name[96];
        snprintf(name, sizeof name, "%s[%d]", f->name, i);
        if (get_int(f, e, name, 0, &arr[i], path, err) != JT_OK) return JT_ERR;
    }
    return JT_OK;
}

/* Parses one row's value; count receives a list's length. */
static int parse_one(const ConfigField *f, const cJSON *it, void *cfg, int *count, const char *path,
                     JtError *err) {
    char buf[96], rt[160];
    int tmp[64], n = 0;
    *count = 0;
    switch (f->type) {
    case CF_INT: {
        int v;
        if (get_int(f, it, f->name, (f->flags & CF_NULLABLE) != 0, &v, path, err) != JT_OK)
            return JT_ERR;
        if (f->offset != CF_NONE) *int_at(cfg, f->offset) = v;
        return JT_OK;
    }
    case CF_BOOL:
        if (!cJSON_IsBool(it))
            return jt_fail(err, "%s: field '%s': expected true or false, got %s", path, f->name,
                           describe(it, buf, sizeof buf));
        if (f->offset != CF_NONE) *int_at(cfg, f->offset) = cJSON_IsTrue(it) ? 1 : 0;
        return JT_OK;
    case CF_FLOAT: {
        if (!cJSON_IsNumber(it) || !isfinite((float)it->valuedouble))
            return jt_fail(err, "%s: field '%s': expected a number, got %s", path, f->name,
                           describe(it, buf, sizeof buf));
        float v = (float)it->valuedouble;
        if (!in_range(f, v)) {
            range_text(f, rt, sizeof rt);
            return jt_fail(err, "%s: field '%s': %s is out of range (%s)", path, f->name,
                           describe(it, buf, sizeof buf), rt);
        }
        if (!implemented(f, v))
            return jt_fail(err, "%s: field '%s': %s is not supported (%s)", path, f->name,
                           describe(it, buf, sizeof buf), refusal_of(f, rt, sizeof rt));
        if (f->offset != CF_NONE) *float_at(cfg, f->offset) = v;
        return JT_OK;
    }
    case CF_CHOICE: {
        int idx = -1;
        if (cJSON_IsNull(it)) {
            if (!(f->flags & CF_NULLABLE))
                return jt_fail(err, "%s: field '%s': null is not supported (%s)", path, f->name,
                               refusal_of(f, rt, sizeof rt));
        } else if (!cJSON_IsString(it)) {
            return jt_fail(err, "%s: field '%s': expected a string, got %s", path, f->name,
                           describe(it, buf, sizeof buf));
        } else {
            for (int i = 0; f->choices[i] && idx < 0; i++)
                if (strcmp(it->valuestring, f->choices[i]) == 0) idx = i;
            if (idx < 0)
                return jt_fail(err, "%s: field '%s': \"%s\" is not supported (%s)", path, f->name,
                               it->valuestring, refusal_of(f, rt, sizeof rt));
        }
        if (f->offset != CF_NONE) *int_at(cfg, f->offset) = idx;
        return JT_OK;
    }
    case CF_NULL:
        if (!cJSON_IsNull(it))
            return jt_fail(err, "%s: field '%s': %s is not supported (%s)", path, f->name,
                           describe_value(it, buf, sizeof buf), refusal_of(f, rt, sizeof rt));
        return JT_OK;
    case CF_INT_LIST:
    case CF_INT_OR_LIST: {
        int *arr = f->offset != CF_NONE ? int_at(cfg, f->offset) : tmp;
        CHECK(f->offset != CF_NONE || f->max_len <= 64, "field %s: list too long", f->name);
        if (f->type == CF_INT_OR_LIST && cJSON_IsNumber(it)) {
            if (get_int(f, it, f->name, 0, &arr[0], path, err) != JT_OK) return JT_ERR;
        } else if (f->type == CF_INT_OR_LIST && !cJSON_IsArray(it)) {
            return jt_fail(err, "%s: field '%s': expected an integer or a list, got %s", path,
                           f->name, describe(it, buf, sizeof buf));
        } else if (get_int_list(f, it, arr, &n, path, err) != JT_OK) {
            return JT_ERR;
        }
        if (f->count_offset != CF_NONE && !(f->flags & CF_SHARED_COUNT))
            *int_at(cfg, f->count_offset) = n;
        *count = n;
        return JT_OK;
    }
    case CF_TYPE_LIST: {
        int *arr = f->offset != CF_NONE ? int_at(cfg, f->offset) : tmp;
        CHECK(f->offset != CF_NONE || f->max_len <= 64, "field %s: list too long", f->name);
        if (get_list(f, it, &n, path, err) != JT_OK) return JT_ERR;
        int i = 0;
        for (const cJSON *e = it->child; e; e = e->next, i++) {
            if (!cJSON_IsString(e))
                return jt_fail(err, "%s: field '%s': entry %d: expected a string, got %s", path,
                               f->name, i, describe(e, buf, sizeof buf));
            int idx = -1;
            for (int c = 0; f->choices[c] && idx < 0; c++)
                if (strcmp(e->valuestring, f->choices[c]) == 0) idx = c;
            if (idx < 0)
                return jt_fail(err, "%s: field '%s': entry %d \"%s\" is not supported (%s)", path,
                               f->name, i, e->valuestring, refusal_of(f, rt, sizeof rt));
            arr[i] = idx;
        }
        if (f->count_offset != CF_NONE && !(f->flags & CF_SHARED_COUNT))
            *int_at(cfg, f->count_offset) = n;
        *count = n;
        return JT_OK;
    }
    case CF_INT_OR_PAIR: {
        int v = 0, hw[2] = {0, 0};
        if (cJSON_IsArray(it)) {
            n = cJSON_GetArraySize(it);
            if (n != 2)
                return jt_fail(err,
                               "%s: field '%s': a list must be [height, width] (got %d "
                               "entries)",
                               path, f->name, n);
            int i = 0;
            for (const cJSON *e = it->child; e; e = e->next, i++) {
                char name[96];
                snprintf(name, sizeof name, "%s[%d]", f->name, i);
                if (get_int(f, e, name, 0, &hw[i], path, err) != JT_OK) return JT_ERR;
            }
            v = hw[0] == hw[1] ? hw[0] : 0;
            *count = 2;
        } else if (!cJSON_IsNumber(it) && !cJSON_IsNull(it)) {
            return jt_fail(err,
                           "%s: field '%s': expected an integer%s or a [height, width] list, "
                           "got %s",
                           path, f->name, f->flags & CF_NULLABLE ? ", null" : "",
                           describe(it, buf, sizeof buf));
        } else if (get_int(f, it, f->name, (f->flags & CF_NULLABLE) != 0, &v, path, err) != JT_OK) {
            return JT_ERR;
        }
        if (f->offset != CF_NONE) *int_at(cfg, f->offset) = v;
        *int_at(cfg, f->pair_offset) = hw[0];
        *int_at(cfg, f->count_offset) = hw[1];
        return JT_OK;
    }
    }
    CHECK(0, "field %s: unknown type %d", f->name, (int)f->type);
    return JT_ERR;
}

void cf_defaults(const ConfigField *table, int n, void *cfg) {
    for (int i = 0; i < n; i++) {
        const ConfigField *f = &table[i];
        if (f->offset == CF_NONE) continue;
        switch (f->type) {
        case CF_INT:
        case CF_BOOL:
        case CF_CHOICE:
            *int_at(cfg, f->offset) = f->def_int;
            break;
        case CF_FLOAT:
            *float_at(cfg, f->offset) = (float)f->def_float;
            break;
        case CF_INT_LIST:
        case CF_INT_OR_LIST:
        case CF_TYPE_LIST:
            for (int k = 0; k < f->def_len; k++)
                int_at(cfg, f->offset)[k] = f->def_list[k];
            if (f->type == CF_INT_OR_LIST && !f->def_list) int_at(cfg, f->offset)[0] = f->def_int;
            if (f->count_offset != CF_NONE && !(f->flags & CF_SHARED_COUNT))
                *int_at(cfg, f->count_offset) = f->def_len;
            break;
        case CF_INT_OR_PAIR:
            *int_at(cfg, f->offset) = f->def_int;
            *int_at(cfg, f->pair_offset) = *int_at(cfg, f->count_offset) = 0;
            break;
        case CF_NULL:
            break;
        }
    }
}

int cf_find(const ConfigField *table, int n, const char *name) {
    for (int i = 0; i < n; i++)
        if (strcmp(table[i].name, name) == 0) return i;
    return -1;
}

int cf_parse(const ConfigField *table, int n, const char *kind, const void *root_, void *cfg,
             CfSeen *seen, const char *path, JtError *err) {
    const cJSON *root = root_;
    CHECK(n <= CF_MAX_FIELDS, "%s: %d config fields, more than CF_MAX_FIELDS", kind, n);
    CfSeen local;
    if (!seen) seen = &local;
    memset(seen, 0, sizeof *seen);
    if (!cJSON_IsObject(root))
        return jt_fail(err, "%s: invalid config: the top level is not a JSON object", path);
    for (const cJSON *it = root->child; it; it = it->next) {
        const char *k = it->string;
        for (const cJSON *p = root->child; p != it; p = p->next)
            if (strcmp(p->string, k) == 0)
                return jt_fail(err, "%s: field '%s': appears twice", path, k);
        if (k[0] == '_') continue; /* diffusers bookkeeping: _class_name, _name_or_path, ... */
        int i = cf_find(table, n, k);
        if (i < 0)
            return jt_fail(err, "%s: field '%s': unknown field (not a %s parameter)", path, k,
                           kind);
        if (parse_one(&table[i], it, cfg, &seen->count[i], path, err) != JT_OK) return JT_ERR;
        seen->present[i] = 1;
    }
    for (int i = 0; i < n; i++) {
        const ConfigField *f = &table[i];
        if ((f->flags & CF_REQUIRED) && !seen->present[i]) {
            int list =
                f->type == CF_INT_LIST || f->type == CF_TYPE_LIST || f->type == CF_INT_OR_LIST;
            return jt_fail(err, "%s: field '%s': missing (a required %s)", path, f->name,
                           list ? "list" : "field");
        }
    }
    return JT_OK;
}

/* ---- writer ---- */

/* The shortest decimal that reads back as the same float, as a double (so that cJSON prints
 * 1e-05 rather than 9.99999974737875e-06, and Python reads the intended value). */
static double short_double(float f) {
    char buf[32];
    for (int p = 1; p <= 9; p++) {
        snprintf(buf, sizeof buf, "%.*g", p, (double)f);
        if (strtof(buf, NULL) == f) return strtod(buf, NULL);
    }
    return (double)f;
}

static void add_int_list(cJSON *o, const char *k, const int *v, int n) {
    cJSON *a = cJSON_AddArrayToObject(o, k);
    for (int i = 0; i < n; i++)
        cJSON_AddItemToArray(a, cJSON_CreateNumber(v[i]));
}

static int list_len(const ConfigField *f, const void *cfg) {
    return f->count_offset != CF_NONE ? *cint_at(cfg, f->count_offset) : f->def_len;
}

static void write_one(cJSON *o, const ConfigField *f, const void *cfg) {
    const int stored = f->offset != CF_NONE;
    const int nullable = (f->flags & CF_NULLABLE) != 0;
    switch (f->type) {
    case CF_INT: {
        int v = stored ? *cint_at(cfg, f->offset) : f->def_int;
        if (nullable && v == 0)
            cJSON_AddNullToObject(o, f->name);
        else
            cJSON_AddNumberToObject(o, f->name, v);
        return;
    }
    case CF_BOOL:
        cJSON_AddBoolToObject(o, f->name, stored ? *cint_at(cfg, f->offset) : f->def_int);
        return;
    case CF_FLOAT: {
        float v = stored ? *(const float *)((const char *)cfg + f->offset) : (float)f->def_float;
        cJSON_AddNumberToObject(o, f->name, short_double(v));
        return;
    }
    case CF_CHOICE: {
        int idx = stored ? *cint_at(cfg, f->offset) : f->def_int;
        if (idx < 0)
            cJSON_AddNullToObject(o, f->name);
        else
            cJSON_AddStringToObject(o, f->name, f->choices[idx]);
        return;
    }
    case CF_NULL:
        cJSON_AddNullToObject(o, f->name);
        return;
    case CF_INT_LIST:
    case CF_INT_OR_LIST: {
        const int *v = stored ? cint_at(cfg, f->offset) : f->def_list;
        int n = list_len(f, cfg);
        if (f->type == CF_INT_OR_LIST && n == 0)
            cJSON_AddNumberToObject(o, f->name, v ? v[0] : f->def_int);
        else
            add_int_list(o, f->name, v, n);
        return;
    }
    case CF_TYPE_LIST: {
        const int *v = stored ? cint_at(cfg, f->offset) : f->def_list;
        cJSON *a = cJSON_AddArrayToObject(o, f->name);
        for (int i = 0, n = list_len(f, cfg); i < n; i++)
            cJSON_AddItemToArray(a, cJSON_CreateString(f->choices[v[i]]));
        return;
    }
    case CF_INT_OR_PAIR: {
        const int hw[2] = {*cint_at(cfg, f->pair_offset), *cint_at(cfg, f->count_offset)};
        int v = stored ? *cint_at(cfg, f->offset) : f->def_int;
        if (hw[0] || hw[1])
            add_int_list(o, f->name, hw, 2);
        else if (nullable && v == 0)
            cJSON_AddNullToObject(o, f->name);
        else
            cJSON_AddNumberToObject(o, f->name, v);
        return;
    }
    }
    CHECK(0, "field %s: unknown type %d", f->name, (int)f->type);
}

char *cf_to_json(const ConfigField *table, int n, const char *kind, const void *cfg) {
    CHECK(n <= CF_MAX_FIELDS, "%s: %d config fields, more than CF_MAX_FIELDS", kind, n);
    int order[CF_MAX_FIELDS];
    for (int i = 0; i < n; i++)
        order[i] = i;
    /* keys in sorted order, as diffusers' to_json_string (sort_keys=True) writes them; the
     * bookkeeping keys sort first ('_' is below every lower-case letter). Insertion sort: the
     * tables are small, and qsort would need the table in a global. */
    for (int i = 1; i < n; i++)
        for (int j = i; j > 0 && strcmp(table[order[j - 1]].name, table[order[j]].name) > 0; j--) {
            int t = order[j];
            order[j] = order[j - 1];
            order[j - 1] = t;
        }
    cJSON *o = cJSON_CreateObject();
    cJSON_AddStringToObject(o, "_class_name", kind);
    cJSON_AddStringToObject(o, "_diffusers_version", DIFFUSERS_VERSION);
    for (int i = 0; i < n; i++)
        write_one(o, &table[order[i]], cfg);

    char *text = cJSON_Print(o);
    CHECK(text != NULL, "cJSON_Print failed");
    cJSON_Delete(o);
    /* cJSON indents with tabs and puts a tab after ':'; strings escape their own tabs, so every
     * raw tab is layout: two spaces per indent level, one space after a colon (as json.dumps with
     * indent=2 writes). */
    size_t len = strlen(text), k = 0;
    char *out = xmalloc(2 * len + 2);
    int line_start = 1;
    for (size_t i = 0; i < len; i++) {
        char c = text[i];
        if (c == '\t') {
            out[k++] = ' ';
            if (line_start) out[k++] = ' ';
            continue;
        }
        line_start = c == '\n';
        out[k++] = c;
    }
    out[k++] = '\n';
    out[k] = 0;
    free(text);
    return out;
}

/* ---- files ---- */

int cf_read_file(const char *path, char **text, JtError *err) {
    *text = NULL;
    FILE *fp = jt_fopen_regular(path, err);
    if (!fp) return JT_ERR;
    char *buf = xmalloc(MAX_CONFIG_BYTES + 1);
    size_t n = fread(buf, 1, MAX_CONFIG_BYTES + 1, fp);
    int bad = ferror(fp);
    fclose(fp);
    int rc = JT_OK;
    if (bad)
        rc = jt_fail(err, "%s: read error", path);
    else if (n > MAX_CONFIG_BYTES)
        rc =
            jt_fail(err, "%s: too large for a config file (over %d bytes)", path, MAX_CONFIG_BYTES);
    else if (memchr(buf, 0, n))
        rc = jt_fail(err, "%s: invalid JSON (contains a NUL byte)", path);
    if (rc != JT_OK) {
        free(buf);
        return rc;
    }
    buf[n] = 0;
    *text = buf;
    return JT_OK;
}

int cf_json_parse(const char *text, const char *path, void **root, JtError *err) {
    const char *end = NULL;
    cJSON *r = cJSON_ParseWithOpts(text, &end, 1);
    *root = r;
    if (r) return JT_OK;
    int line = 1, col = 1;
    for (const char *p = text; end && p < end && *p; p++) {
        if (*p == '\n')
            line++, col = 1;
        else
            col++;
    }
    return jt_fail(err, "%s: invalid JSON (error at line %d, column %d)", path, line, col);
}

void cf_json_free(void *root) {
    cJSON_Delete(root);
}
