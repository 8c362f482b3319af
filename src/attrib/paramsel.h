/* paramsel.h: which parameters attribution differentiates (featurize --params, issue 13 item 5):
 * a list of diffusers parameter-name patterns resolved against a model's layout into the compact
 * gradient offsets of nn/graph.h's graph_run_select_params. TRAK's random projection is then over
 * the selected gradient: its input dimension p is the selected count (method.md 1.4).
 *
 * The rule. PATTERNS is "all" (every parameter; the default) or a comma-separated list of
 * patterns (spaces around a pattern are ignored; an empty pattern is an error). A pattern is one or
 * more dot-separated name components, e.g. "attn2.to_k" or "conv_in" or "weight". A parameter is
 * selected when, for some pattern, its full name (e.g. "down_blocks.1.attentions.0.
 * transformer_blocks.0.attn2.to_k.weight") contains the pattern as a run of whole components: the
 * pattern occurs at the start of the name or right after a '.', and ends at the end of the name or
 * right before a '.'. So "attn2.to_k" selects every "...attn2.to_k.weight", "to_out" selects
 * "...to_out.0.weight" and "...to_out.0.bias", but "attn" selects nothing in a diffusers U-Net
 * ("attn1" is another component) and "to_k.w" matches no "to_k.weight". Every pattern must select
 * at least one parameter (a typo is one clear error). */
#ifndef JTRAK_PARAMSEL_H
#define JTRAK_PARAMSEL_H

#include "core/common.h"
#include "core/layout.h"

#include <stddef.h>
#include <stdint.h>

#define PARAMSEL_ALL "all"

typedef struct {
    char *patterns;       /* canonical: "all", or the trimmed patterns joined by ',' */
    int all;              /* every parameter: compact is NULL */
    size_t *compact;      /* (layout count) compact offsets or GRAPH_NO_PARAM; NULL when all */
    size_t count;         /* selected floats: p */
    int n_tensors;        /* selected tensors */
    uint64_t fingerprint; /* FNV-1a over the selected tensors' names, '\n'-terminated, in order */
} ParamSelect;

/* Resolves patterns (NULL or "" mean "all") against layout. what names the model in messages. On
 * error (an empty pattern, "all" among others, a pattern that selects nothing: the message lists a
 * few of the model's names) s is left freed. */
int param_select_init(ParamSelect *s, const ParamLayout *layout, const char *patterns,
                      const char *what, JtError *err);
void param_select_free(ParamSelect *s);
/* Whether `name` is selected by the canonical pattern list (the rule above). */
int param_select_matches(const char *patterns, const char *name);

#endif
