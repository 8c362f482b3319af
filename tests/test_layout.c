/* test_layout.c: the tensor table (core/layout.h): offsets, lookups through the hash index over
 * many entries (registration used to be quadratic in the tensor count), duplicate names refused,
 * and layout_init_params filling each entry by its recorded init with draws keyed by
 * (seed, RNG_TAG_INIT, entry index). */
#include "core/layout.h"
#include "core/rng.h"
#include "unet/presets.h"
#include "unet/unet.h"
#include "unet/unet_internal.h"

#include <criterion/criterion.h>
#include <math.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

/* 200000 entries: a quadratic duplicate check would take about 2e10 string compares (minutes);
 * the index makes it well under a second. Every name is found at its index, misses are -1. */
Test(layout, many_entries_register_and_look_up) {
    enum { N = 200000 };
    ParamLayout l;
    layout_init(&l);
    char name[LAYOUT_NAME_MAX];
    struct timespec t0, t1;
    clock_gettime(CLOCK_MONOTONIC, &t0);
    for (int i = 0; i < N; i++) {
        snprintf(name, sizeof name, "blocks.%d.resnets.%d.conv.weight", i / 7, i % 7);
        size_t off = layout_add(&l, name, 1, (const int[]){1 + i % 3});
        cr_assert_eq(off, l.total - (size_t)(1 + i % 3));
    }
    for (int i = 0; i < N; i++) {
        snprintf(name, sizeof name, "blocks.%d.resnets.%d.conv.weight", i / 7, i % 7);
        cr_assert_eq(layout_find(&l, name), i, "%s", name);
    }
    clock_gettime(CLOCK_MONOTONIC, &t1);
    double s = (t1.tv_sec - t0.tv_sec) + 1e-9 * (t1.tv_nsec - t0.tv_nsec);
    /* generous for a shared 2-core machine; quadratic behaviour is 100x slower */
    cr_expect(s < 10.0, "%d registrations and lookups took %.2f s", N, s);
    cr_expect_eq(layout_find(&l, "blocks.0.resnets.0.conv.bias"), -1);
    cr_expect_eq(layout_find(&l, ""), -1);
    layout_free(&l);
    ParamLayout empty;
    layout_init(&empty);
    cr_expect_eq(layout_find(&empty, "x"), -1);
}

Test(layout, duplicate_name_aborts, .signal = SIGABRT) {
    ParamLayout l;
    layout_init(&l);
    for (int i = 0; i < 100; i++) {
        char name[32];
        snprintf(name, sizeof name, "t%d", i);
        layout_add(&l, name, 1, (const int[]){2});
    }
    layout_add(&l, "t37", 1, (const int[]){2});
}

Test(layout, init_params_follows_each_entry) {
    ParamLayout l;
    layout_init(&l);
    layout_add_init(&l, "ones", 1, (const int[]){5}, (LayoutInit){LAYOUT_INIT_ONES, 0, 0});
    layout_add(&l, "zeros", 2, (const int[]){2, 3});
    layout_add_init(&l, "u", 2, (const int[]){64, 25}, (LayoutInit){LAYOUT_INIT_FAN_IN, 25, 0});
    layout_add_init(&l, "n", 2, (const int[]){40, 50}, (LayoutInit){LAYOUT_INIT_NORMAL, 0, 0.5f});
    float *p = malloc(l.total * sizeof(float));
    for (size_t k = 0; k < l.total; k++)
        p[k] = NAN;
    layout_init_params(&l, p, 9);
    for (int k = 0; k < 5; k++)
        cr_expect(p[k] == 1.0f);
    for (int k = 5; k < 11; k++)
        cr_expect(p[k] == 0.0f);
    /* the uniform: U(-1/5, 1/5) from stream (RNG_TAG_INIT, 2), bit for bit */
    const LayoutEntry *u = &l.entries[2];
    float *r = malloc(u->numel * sizeof(float));
    rng_fill_uniform(r, u->numel, 9, rng_stream(RNG_TAG_INIT, 2, 0), 0);
    for (size_t k = 0; k < u->numel; k++)
        cr_assert(p[u->offset + k] == (2.0f * r[k] - 1.0f) * 0.2f, "u[%zu]", k);
    /* the normal: std 0.5 times the draws of stream (RNG_TAG_INIT, 3) */
    const LayoutEntry *n = &l.entries[3];
    r = realloc(r, n->numel * sizeof(float));
    rng_fill_normal(r, n->numel, 9, rng_stream(RNG_TAG_INIT, 3, 0), 0);
    for (size_t k = 0; k < n->numel; k++)
        cr_assert(p[n->offset + k] == 0.5f * r[k], "n[%zu]", k);
    free(r);
    free(p);
    layout_free(&l);
}

/* A U-Net with many layers per block registers in linear time (it used to take minutes at 10^5
 * tensors; 50000 take seconds quadratically); the layout of a 600-layer fm-xs (about 52000
 * tensors) has every tensor findable. 600 layers is beyond the config's stated limit
 * (UNET_MAX_LAYERS_PER_BLOCK, refused by unet_create), so the layout is registered directly: this
 * tests the table, not the config. */
Test(layout, deep_unet_registers_quickly) {
    UNetConfig cfg;
    cr_assert(unet_config_preset("fm-xs", &cfg));
    cfg.layers_per_block = 600;
    ParamLayout l;
    layout_init(&l);
    unet_register_params(&cfg, &l);
    cr_expect(l.count > 50000, "%d tensors", l.count);
    cr_expect(layout_find(&l, "up_blocks.2.resnets.600.conv2.weight") >= 0);
    cr_expect(layout_find(&l, "down_blocks.1.attentions.599.to_out.0.bias") >= 0);
    layout_free(&l);
    JtError err;
    UNet *net;
    cr_expect_eq(unet_create(&net, &cfg, &err), JT_ERR, "600 layers per block accepted");
}
