/* jsonfile.h: reading a JSON file (manifests, training records) into a cJSON tree. */
#ifndef JTRAK_JSONFILE_H
#define JTRAK_JSONFILE_H

#include "core/common.h"

#include <cjson/cJSON.h>

/* The largest JSON file json_load_file reads (manifests, top-k tables, training records). */
#define JSON_FILE_MAX_BYTES (1 << 30)

/* The parsed file, or NULL with err naming the file ("cannot open" / "not valid JSON", or larger
 * than JSON_FILE_MAX_BYTES). */
cJSON *json_load_file(const char *path, JtError *err);
/* The string member `key` of o, or NULL when absent or not a string. */
const char *json_str(const cJSON *o, const char *key);

/* o as text the way Python's json.dumps(indent=2) lays it out (two spaces per level, one space
 * after a colon), with a final newline; malloc'd. */
char *json_print_indent2(const cJSON *o);

/* Writes o (cJSON_Print's layout) and a final newline to path atomically (a temporary name, then
 * renamed: atomic_file_write). */
int json_write_file(const char *path, const cJSON *o, JtError *err);

#endif
