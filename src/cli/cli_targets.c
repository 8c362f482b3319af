/* cli_targets.c: see cli_targets.h. */
#include "cli/cli_targets.h"

#include "attrib/targets.h"

#include <string.h>

static const char *const KEYS[] = {"data", "classes", "limit", "indices", "fit", "color"};

int cli_prefixed_data_spec(Args *a, const char *p, DatasetSpec *spec, int *given, JtError *err) {
    data_spec_init(spec);
    *given = 0;
    const char *first_other = NULL;
    int rc = JT_OK;
    for (size_t i = 0; i < sizeof KEYS / sizeof *KEYS; i++) {
        char name[64];
        snprintf(name, sizeof name, "%s-%s", p, KEYS[i]);
        const char *v = args_str(a, name, NULL);
        if (!v) continue;
        if (i == 0)
            *given = 1;
        else if (!first_other)
            first_other = KEYS[i];
        if (rc == JT_OK) rc = data_spec_set(spec, KEYS[i], v, err);
    }
    if (first_other && !*given) {
        data_spec_free(spec);
        jt_fail(err, "--%s-%s needs --%s-data (the images it selects from)", p, first_other, p);
        return 2;
    }
    if (rc != JT_OK) { /* a bad option value: a usage error */
        targets_rename_options(err, p);
        data_spec_free(spec);
        return 2;
    }
    return 0;
}

void cli_prefixed_data_help(FILE *f, const char *p, const char *what) {
    fprintf(f,
            "%s, fitted to the model's size and channels:\n"
            "  --%s-data SRC  (as --data: fashion-mnist:test, npy:FILE, folder:DIR, ...)\n"
            "  --%s-classes LIST  --%s-limit N  --%s-indices FILE\n"
            "  --%s-fit MODE  --%s-color MODE   (as for the training data)\n",
            what, p, p, p, p, p, p);
}
