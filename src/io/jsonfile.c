/* jsonfile.c: see jsonfile.h. */
#include "io/jsonfile.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

cJSON *json_load_file(const char *path, JtError *err) {
    FILE *f = fopen(path, "rb");
    if (!f) {
        jt_fail(err, "%s: cannot open: %s", path, strerror(errno));
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
    cJSON *j = cJSON_Parse(text);
    free(text);
    if (!j) jt_fail(err, "%s: not valid JSON", path);
    return j;
}

const char *json_str(const cJSON *o, const char *key) {
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(o, key);
    return cJSON_IsString(v) ? v->valuestring : NULL;
}
