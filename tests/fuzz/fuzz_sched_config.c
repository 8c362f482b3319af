/* fuzz_sched_config.c: libFuzzer target for scheduler_config.json (src/diffusion/schedule.c):
 * sched_config_parse over the input text from diffusers' defaults, then sched_init builds the
 * tables of a config it accepts, and set_timesteps runs for a few step counts. */
#include "diffusion/schedule.h"
#include "fuzz_util.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    SchedConfig cfg;
    sched_config_default(&cfg);
    JtError err = {{0}};
    int rc = sched_config_parse(&cfg, (const char *)data, size, "scheduler_config.json", &err);
    fuzz_expect_message(rc, &err, "sched_config_parse");
    if (rc != JT_OK) return 0;
    NoiseSchedule s;
    rc = sched_init(&s, &cfg, &err);
    fuzz_expect_message(rc, &err, "sched_init");
    if (rc != JT_OK) return 0;
    static const int steps[] = {1, 2, 10, 50, 1000};
    for (size_t i = 0; i < sizeof steps / sizeof *steps; i++) {
        int *ts = xmalloc((size_t)steps[i] * sizeof(int));
        rc = sched_set_timesteps(&s, steps[i], ts, &err);
        fuzz_expect_message(rc, &err, "sched_set_timesteps");
        free(ts);
    }
    sched_free(&s);
    return 0;
}
