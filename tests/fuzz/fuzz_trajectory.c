/* fuzz_trajectory.c: libFuzzer target for trajectory files (src/diffusion/trajectory.c, traj_load:
 * a safetensors file with x_T, x_t, x0_hat, noise, x_0, timesteps and optional class_labels, and
 * their metadata); an accepted file's fingerprint and step lookup are exercised too. */
#include "diffusion/trajectory.h"
#include "fuzz_util.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    const char *path = fuzz_write("trajectory.safetensors", data, size);
    Trajectory tr;
    JtError err = {{0}};
    int rc = traj_load(&tr, path, &err);
    fuzz_expect_message(rc, &err, "traj_load");
    if (rc != JT_OK) return 0;
    CHECK(tr.fingerprint == traj_fingerprint(&tr), "fingerprint is not a function of the file");
    for (int k = 0; k < tr.S; k++)
        CHECK(traj_step_index(&tr, tr.timesteps[k]) == k, "step %d", k);
    rc = traj_check_schedule(&tr, path, 1000, "the default schedule", &err);
    fuzz_expect_message(rc, &err, "traj_check_schedule");
    traj_free(&tr);
    return 0;
}
