/* jsonfile.c: see jsonfile.h. */
#include "io/jsonfile.h"

#include "io/safetensors.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

cJSON *json_load_file(const char *path, JtError *err) {
    FILE *f = jt_fopen_regular(path, err);
    if (!f) return NULL;
    /* Manifests and records are small; a larger file is refused before it is read into memory. */
    struct stat sb;
    if (fstat(fileno(f), &sb) == 0 && (uint64_t)sb.st_size > JSON_FILE_MAX_BYTES) {
        char have[32];
        jt_fail(err, "%s: %s is too large for a JSON file jtrak reads (at most %d MiB)", path,
                jt_format_bytes((size_t)sb.st_size, have, sizeof have), JSON_FILE_MAX_BYTES >> 20);
        fclose(f);
        return NULL;
    }
    size_t cap = 1 << 16, len = 0, got;
    char *text = xmalloc(cap);
    while ((got = fread(text + len, 1, cap - len - 1, f)) > 0) {
        len += got;
        if (len + 1 == cap) text = xrealloc(text, cap *= 2);
    }
    fclose(f);
    text[len] = 0;
    if (strlen(text) != len) {
        jt_fail(err, "%s: not valid JSON (a NUL byte at byte %zu)", path, strlen(text));
        free(text);
        return NULL;
    }
    /* the whole file is one value: trailing garbage after it is an error too */
    const char *end = NULL;
    cJSON *j = cJSON_ParseWithOpts(text, &end, 1);
    if (!j)
        jt_fail(err, "%s: not valid JSON (at byte %zu)", path,
                end && end >= text ? (size_t)(end - text) : (size_t)0);
    free(text);
    return j;
}

const char *json_str(const cJSON *o, const char *key) {
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(o, key);
    return cJSON_IsString(v) ? v->valuestring : NULL;
}

char *json_print_indent2(const cJSON *o) {
    char *text = cJSON_Print(o);
    CHECK(text != NULL, "cJSON_Print failed");
    /* cJSON indents with tabs and puts a tab after ':'; strings escape their own tabs, so every
     * raw tab is layout */
    size_t len = strlen(text), k = 0;
    char *out = xmalloc(2 * len + 2);
    int line_start = 1;
    for (size_t i = 0; i < len; i++) {
        if (text[i] == '\t') {
            out[k++] = ' ';
            if (line_start) out[k++] = ' ';
            continue;
        }
        line_start = text[i] == '\n';
        out[k++] = text[i];
    }
    out[k++] = '\n';
    out[k] = 0;
    free(text);
    return out;
}

int json_write_file(const char *path, const cJSON *o, JtError *err) {
    char *text = cJSON_Print(o);
    CHECK(text != NULL, "cJSON_Print failed (out of memory)");
    size_t n = strlen(text);
    text = xrealloc(text, n + 2);
    text[n] = '\n';
    text[n + 1] = '\0';
    int rc = atomic_file_write(path, text, n + 1, err);
    free(text);
    return rc;
}
