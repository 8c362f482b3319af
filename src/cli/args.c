/* args.c: see args.h. Usage errors print one line "jtrak CMD: ..." on stderr. */
#include "cli/args.h"

#include "core/common.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

void args_init(Args *a, const char *cmd, int argc, char **argv) {
    a->cmd = cmd;
    a->argc = argc;
    a->argv = argv;
    a->used = xcalloc((size_t)argc + 1, 1);
    a->bad = 0;
}

void args_free(Args *a) { free(a->used); }

static int is_option(const char *s) { return s[0] == '-' && s[1] == '-' && s[2]; }

static int find(Args *a, const char *name) {
    for (int i = 0; i < a->argc; i++)
        if (is_option(a->argv[i]) && strcmp(a->argv[i] + 2, name) == 0) return i;
    return -1;
}

static void usage_error(Args *a, const char *fmt, const char *x, const char *y) {
    fprintf(stderr, "jtrak %s: ", a->cmd);
    fprintf(stderr, fmt, x, y);
    fputc('\n', stderr);
    a->bad = 1;
}

int args_flag(Args *a, const char *name) {
    int i = find(a, name);
    if (i < 0) return 0;
    a->used[i] = 1;
    return 1;
}

const char *args_str(Args *a, const char *name, const char *dflt) {
    int i = find(a, name);
    if (i < 0) return dflt;
    a->used[i] = 1;
    if (i + 1 >= a->argc) {
        usage_error(a, "option --%s needs a value%s", name, "");
        return dflt;
    }
    a->used[i + 1] = 1;
    return a->argv[i + 1];
}

long args_long(Args *a, const char *name, long dflt, long lo, long hi) {
    const char *s = args_str(a, name, NULL);
    if (!s) return dflt;
    char *end;
    errno = 0;
    long v = strtol(s, &end, 10);
    if (errno || end == s || *end || v < lo || v > hi) {
        char range[64];
        snprintf(range, sizeof range, "an integer in [%ld, %ld]", lo, hi);
        usage_error(a, "option --%s: expected %s", name, range);
        return dflt;
    }
    return v;
}

double args_double(Args *a, const char *name, double dflt, double lo, double hi) {
    const char *s = args_str(a, name, NULL);
    if (!s) return dflt;
    char *end;
    errno = 0;
    double v = strtod(s, &end);
    if (errno || end == s || *end || !(v >= lo && v <= hi)) {
        char range[80];
        snprintf(range, sizeof range, "a number in [%g, %g]", lo, hi);
        usage_error(a, "option --%s: expected %s", name, range);
        return dflt;
    }
    return v;
}

uint64_t args_u64(Args *a, const char *name, uint64_t dflt) {
    const char *s = args_str(a, name, NULL);
    if (!s) return dflt;
    char *end;
    errno = 0;
    unsigned long long v = strtoull(s, &end, 10);
    if (errno || end == s || *end || s[0] == '-') {
        usage_error(a, "option --%s: expected a non-negative integer, got '%s'", name, s);
        return dflt;
    }
    return (uint64_t)v;
}

const char *args_positional(Args *a, int k) {
    for (int i = 0, seen = 0; i < a->argc; i++) {
        if (is_option(a->argv[i])) continue;
        if (i > 0 && is_option(a->argv[i - 1]) && a->used[i]) continue; /* an option's value */
        if (seen++ == k) {
            a->used[i] = 1;
            return a->argv[i];
        }
    }
    return NULL;
}

int args_finish(Args *a) {
    for (int i = 0; i < a->argc && !a->bad; i++)
        if (!a->used[i])
            usage_error(a, "unexpected argument '%s'%s (see 'jtrak help')", a->argv[i], "");
    return a->bad ? 2 : 0;
}
