/* test_robust.c: issue 15 items 3-5 at toy scale, through the CLI (synthetic 8x8 images, so it
 * runs without any dataset installed):
 *  - train's log.jsonl after a resume reads as an uninterrupted run's (the kill -9 harness
 *    tests/kill9/kill9.sh found it repeating steps and averaging a cut interval);
 *  - a folder in use: every writing command refuses a folder whose lock another process holds,
 *    with one "in use by PID N" line and nothing written; and a second real run of train,
 *    featurize, score and lds started while the first holds the folder fails at once while the
 *    first (stopped with SIGSTOP meanwhile, so the overlap is certain) finishes byte for byte as a
 *    run alone;
 *  - disk full (a 4 KiB tmpfs in a private mount namespace), a file size limit (RLIMIT_FSIZE) and a
 *    read-only file system: one clear line naming the file, and what is left behind is never
 *    trusted: the same command run over the leftovers with room to write finishes byte for byte as
 *    a run that never failed; a score folder being rewritten loses its old manifest first;
 *  - truncated artifacts are refused on open, naming the file and the truncation.
 * The tmpfs cases need `unshare -m` and mount rights (root in the CI container); without them they
 * are skipped with a message, as is the read-only case for root without them (permission bits do
 * not stop root). */
#include "helpers/cli_run.h"
#include "helpers/tmpdir.h"
#include "io/lock.h"
#include "io/npy.h"

#include <criterion/criterion.h>
#include <dirent.h>
#include <errno.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

static char g_err[8192];

/* One thread for every jtrak run: the results do not depend on it (tests/determinism), and on a
 * loaded machine OpenMP's spinning second thread only costs time. */
static void setup(void) {
    setenv("OMP_NUM_THREADS", "1", 1);
    test_tmp_setup();
}

TestSuite(robust, .init = setup, .fini = test_tmp_teardown, .timeout = 600);

#define expect_failure(...) cli_expect_failure(g_err, sizeof g_err, __VA_ARGS__)

static int jtrak(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
static int jtrak(const char *fmt, ...) {
    char args[2048];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(args, sizeof args, fmt, ap);
    va_end(ap);
    return cli_run(args, g_err, sizeof g_err);
}

/* Runs the shell script `fmt` (printf-style), its stderr into g_err; returns the exit status
 * (-1 when it did not exit normally). The script names the binary as $J. */
static int sh(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
static int sh(const char *fmt, ...) {
    char script[4096], cmd[5000], errp[300];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(script, sizeof script, fmt, ap);
    va_end(ap);
    snprintf(errp, sizeof errp, "%s/sh.err", test_tmp);
    snprintf(cmd, sizeof cmd, "J='%s'; { %s ; } >/dev/null 2>%s", JTRAK_CLI, script, errp);
    int st = system(cmd);
    FILE *f = fopen(errp, "r");
    size_t got = f ? fread(g_err, 1, sizeof g_err - 1, f) : 0;
    g_err[got] = 0;
    if (f) fclose(f);
    return st != -1 && WIFEXITED(st) ? WEXITSTATUS(st) : -1;
}

static void write_text(const char *sub, const char *text) {
    char p[512];
    snprintf(p, sizeof p, "%s/%s", test_tmp, sub);
    FILE *f = fopen(p, "wb");
    cr_assert(f != NULL && fputs(text, f) >= 0);
    fclose(f);
}

static int exists(const char *sub) {
    char p[512];
    snprintf(p, sizeof p, "%s/%s", test_tmp, sub);
    struct stat sb;
    return stat(p, &sb) == 0;
}

/* ---- inputs: 16 random 8x8 images, a tiny model trained on them, 2 samples, a store, scores ----
 */

#define TRAIN "train --config %s/cfg.json --data npy:%s/img.npy --batch 8 --warmup 2 --quiet"
#define DATA "--data npy:%s/img.npy"

static void prepare(void) {
    uint8_t pix[16 * 64];
    for (int i = 0; i < 16 * 64; i++)
        pix[i] = (uint8_t)((i * 2654435761u) >> 23);
    char p[300];
    size_t shape[3] = {16, 8, 8};
    JtError err;
    snprintf(p, sizeof p, "%s/img.npy", test_tmp);
    cr_assert(npy_write(p, NPY_U8, 3, shape, pix, &err) == JT_OK, "%s", err.msg);
    write_text("cfg.json",
               "{\"_class_name\":\"UNet2DModel\",\"sample_size\":8,\"in_channels\":1,"
               "\"out_channels\":1,\"block_out_channels\":[8,16],\"layers_per_block\":1,"
               "\"norm_num_groups\":4,\"down_block_types\":[\"DownBlock2D\",\"AttnDownBlock2D\"],"
               "\"up_block_types\":[\"AttnUpBlock2D\",\"UpBlock2D\"],\"attention_head_dim\":null}");
    const char *t = test_tmp;
    cr_assert_eq(jtrak(TRAIN " --steps 12 --out %s/m", t, t, t), 0, "%s", g_err);
    cr_assert_eq(
        jtrak("sample --model %s/m --out %s/s --n 2 --sampler ddim --steps 10 --quiet", t, t), 0,
        "%s", g_err);
    cr_assert_eq(jtrak("featurize --models %s/m " DATA " --out %s/f --S 2 --k 8 --quiet", t, t, t),
                 0, "%s", g_err);
    cr_assert_eq(jtrak("score --store %s/f --trajectory %s/s/trajectory.safetensors --out %s/sc "
                       "--steps 500,0 --R 2 --quiet",
                       t, t, t),
                 0, "%s", g_err);
}

/* The four commands of the folder tests, each writing --out <dir> (a path under test_tmp or an
 * absolute one); featurize with more work than prepare's, so that it runs long enough. */
static void command(char *buf, size_t cap, const char *cmd, const char *out) {
    const char *t = test_tmp;
    if (strcmp(cmd, "train") == 0)
        snprintf(buf, cap, TRAIN " --steps 10 --save-every 4 --out %s", t, t, out);
    else if (strcmp(cmd, "featurize") == 0)
        snprintf(buf, cap,
                 "featurize --models %s/m " DATA " --out %s --S 4 --k 8 --batch 4 --quiet", t, t,
                 out);
    else if (strcmp(cmd, "score") == 0)
        snprintf(buf, cap,
                 "score --store %s/f --trajectory %s/s/trajectory.safetensors --out %s --R 4 "
                 "--quiet",
                 t, t, out);
    else if (strcmp(cmd, "lds") == 0)
        snprintf(
            buf, cap,
            "lds --model %s/m --trajectory %s/s/trajectory.safetensors --scores %s/sc --out %s "
            "--K 2 --ceiling 1 --R-eval 2 --grid 2 --steps 500,0 --replicates 20 --quiet",
            t, t, t, out);
    else if (strcmp(cmd, "counterfactual") == 0)
        snprintf(buf, cap,
                 "counterfactual --model %s/m --trajectory %s/s/trajectory.safetensors --scores "
                 "%s/sc --step 500 --k 2 --targets 0 --out %s --quiet",
                 t, t, t, out);
    else if (strcmp(cmd, "init") == 0)
        snprintf(buf, cap, "init --config %s/cfg.json --out %s", t, out);
    else if (strcmp(cmd, "sample") == 0)
        snprintf(buf, cap, "sample --model %s/m --out %s --n 2 --sampler ddim --steps 10 --quiet",
                 t, out);
    else
        cr_assert_fail("no command %s", cmd);
}

static const char *const COMMANDS[] = {"train", "featurize", "score", "lds", "counterfactual"};
#define N_COMMANDS 5

/* ---- comparing folders ----------------------------------------------------------------------- */

static unsigned char *slurp_path(const char *p, size_t *len) {
    FILE *f = fopen(p, "rb");
    if (!f) return NULL;
    fseek(f, 0, SEEK_END);
    long n = ftell(f);
    fseek(f, 0, SEEK_SET);
    unsigned char *b = malloc(n > 0 ? (size_t)n + 1 : 1);
    *len = fread(b, 1, n > 0 ? (size_t)n : 0, f);
    b[*len] = 0;
    fclose(f);
    return b;
}

/* train's log.jsonl without its timing fields: each line cut at ,"images_per_s" (the timings are
 * its last two fields). */
static char *log_without_timing(const char *p) {
    size_t len = 0;
    char *t = (char *)slurp_path(p, &len);
    if (!t) return NULL;
    char *out = malloc(len + 1), *o = out;
    for (char *line = t; *line;) {
        char *nl = strchr(line, '\n'), *cut = strstr(line, ",\"images_per_s\"");
        size_t keep = cut && (!nl || cut < nl) ? (size_t)(cut - line)
                                               : (size_t)((nl ? nl : line + strlen(line)) - line);
        memcpy(o, line, keep);
        o += keep;
        *o++ = '\n';
        line = nl ? nl + 1 : line + strlen(line);
    }
    *o = 0;
    free(t);
    return out;
}

/* Whether a file of a compared folder is left out: the lock (its holder's PID), featurize's
 * per-invocation log. train logs (in a folder with train_state.safetensors) are compared
 * without their timings. */
static int skipped(const char *dir, const char *name) {
    if (strcmp(name, DIR_LOCK_FILE) == 0) return 1;
    if (strcmp(name, "log.jsonl") != 0) return 0;
    char p[1024];
    snprintf(p, sizeof p, "%s/train_state.safetensors", dir);
    return access(p, F_OK) != 0;
}

/* Every file under a (recursively) is under b with the same bytes, and b has no other file;
 * reports the first difference. Returns 1 when they are the same. */
static int same_tree(const char *a, const char *b) {
    DIR *d = opendir(a);
    if (!d) {
        cr_expect_fail("%s: cannot be opened", a);
        return 0;
    }
    int same = 1;
    struct dirent *e;
    while (same && (e = readdir(d)) != NULL) {
        if (strcmp(e->d_name, ".") == 0 || strcmp(e->d_name, "..") == 0) continue;
        char pa[1024], pb[1024];
        snprintf(pa, sizeof pa, "%s/%s", a, e->d_name);
        snprintf(pb, sizeof pb, "%s/%s", b, e->d_name);
        struct stat sa;
        cr_assert(stat(pa, &sa) == 0);
        if (S_ISDIR(sa.st_mode)) {
            same = same_tree(pa, pb);
            continue;
        }
        if (skipped(a, e->d_name)) continue;
        size_t la = 0, lb = 0;
        unsigned char *x, *y;
        if (strcmp(e->d_name, "log.jsonl") == 0) {
            x = (unsigned char *)log_without_timing(pa),
            y = (unsigned char *)log_without_timing(pb);
            la = x ? strlen((char *)x) : 0, lb = y ? strlen((char *)y) : 0;
        } else {
            x = slurp_path(pa, &la), y = slurp_path(pb, &lb);
        }
        same = x && y && la == lb && memcmp(x, y, la) == 0;
        cr_expect(same, "%s and %s differ (or one is missing)", pa, pb);
        free(x), free(y);
    }
    closedir(d);
    /* nothing in b that a lacks */
    d = same ? opendir(b) : NULL;
    while (d && same && (e = readdir(d)) != NULL) {
        if (strcmp(e->d_name, ".") == 0 || strcmp(e->d_name, "..") == 0) continue;
        char pa[1024];
        snprintf(pa, sizeof pa, "%s/%s", a, e->d_name);
        if (strcmp(e->d_name, DIR_LOCK_FILE) == 0) continue;
        same = access(pa, F_OK) == 0;
        cr_expect(same, "%s/%s is not in the reference %s", b, e->d_name, a);
    }
    if (d) closedir(d);
    return same;
}

/* Only the lock file (or nothing) in <test_tmp>/<sub>. */
static int holds_only_lock(const char *sub) {
    char p[512];
    snprintf(p, sizeof p, "%s/%s", test_tmp, sub);
    DIR *d = opendir(p);
    if (!d) return 1;
    struct dirent *e;
    int only = 1;
    while ((e = readdir(d)) != NULL)
        if (strcmp(e->d_name, ".") && strcmp(e->d_name, "..") && strcmp(e->d_name, DIR_LOCK_FILE)) {
            cr_expect_fail("%s holds %s", p, e->d_name);
            only = 0;
        }
    closedir(d);
    return only;
}

/* ---- the kill -9 harness's finding: train's log after a resume --------------------------------
 */

/* The state is saved every 5 steps and the log written every 2: a run stopped at step 7 (its state
 * saved there) whose log also holds the line of step 8 and half a line (as a run killed after
 * logging step 8, and inside a write, leaves it) resumes into the uninterrupted run's log, weights
 * and state. Before the fix the resumed log held step 8 twice and averaged its interval over step
 * 8 alone. */
Test(robust, train_log_after_a_resume_is_the_uninterrupted_one) {
    prepare();
    const char *t = test_tmp;
    const char *recipe = TRAIN " --steps 12 --save-every 5 --log-every 2 --out %s/%s";
    cr_assert_eq(jtrak(recipe, t, t, t, "a"), 0, "%s", g_err);
    char args[1024];
    snprintf(args, sizeof args, recipe, t, t, t, "b");
    cr_assert_eq(jtrak("%s --stop-after 7", args), 0, "%s", g_err);
    char p[512];
    snprintf(p, sizeof p, "%s/b/log.jsonl", t);
    FILE *f = fopen(p, "ab");
    cr_assert(f && fputs("{\"step\":8,\"loss\":0.5,\"lr\":0.001,\"images_per_s\":1,"
                         "\"elapsed_s\":1}\n{\"step\":10,\"lo",
                         f) >= 0);
    fclose(f);
    cr_assert_eq(jtrak("%s", args), 0, "%s", g_err);
    char a[512], b[512];
    snprintf(a, sizeof a, "%s/a", t);
    snprintf(b, sizeof b, "%s/b", t);
    cr_expect(same_tree(a, b));
}

/* ---- folders in use -------------------------------------------------------------------------- */

/* The test holds each output folder's lock: every command refuses it at once, naming the folder
 * and this process, and writes nothing into it. */
Test(robust, every_command_refuses_a_folder_in_use) {
    prepare();
    static const char *const writers[] = {"train",          "featurize", "score", "lds",
                                          "counterfactual", "init",      "sample"};
    for (int c = 0; c < 7; c++) {
        char out[300], args[2048], want[64];
        snprintf(out, sizeof out, "%s/busy_%s", test_tmp, writers[c]);
        DirLock lock;
        JtError err;
        cr_assert_eq(dir_lock(&lock, out, "test", &err), JT_OK, "%s", err.msg);
        command(args, sizeof args, writers[c], out);
        snprintf(want, sizeof want, "in use by PID %ld", (long)getpid());
        expect_failure(1, writers[c], (const char *[]){out, want, NULL}, "%s", args);
        char sub[64];
        snprintf(sub, sizeof sub, "busy_%s", writers[c]);
        cr_expect(holds_only_lock(sub), "%s wrote into a folder in use", writers[c]);
        dir_unlock(&lock);
    }
}

/* Starts `jtrak <args>` (stdout and stderr to files beside out); returns its PID. */
static pid_t spawn(const char *args, const char *log) {
    char cmd[4096];
    snprintf(cmd, sizeof cmd, "exec %s %s >%s.out 2>%s", JTRAK_CLI, args, log, log);
    const pid_t parent = getpid();
    pid_t pid = fork();
    cr_assert(pid >= 0);
    if (pid == 0) {
        prctl(PR_SET_PDEATHSIG, SIGKILL);
        if (getppid() != parent) _exit(127);
        execl("/bin/sh", "sh", "-c", cmd, (char *)NULL);
        _exit(127);
    }
    return pid;
}

/* The PID in <dir>/.lock (0 when none). */
static long lock_holder(const char *dir) {
    char p[600], buf[32] = "";
    snprintf(p, sizeof p, "%s/%s", dir, DIR_LOCK_FILE);
    FILE *f = fopen(p, "r");
    if (!f) return 0;
    size_t got = fread(buf, 1, sizeof buf - 1, f);
    buf[got] = 0;
    fclose(f);
    return strtol(buf, NULL, 10);
}

/* Two runs of the same command into one folder: the first is stopped (SIGSTOP) once it holds the
 * folder, the second must fail at once with the first's PID, and the first, continued, must
 * finish as a run alone would. */
Test(robust, a_second_run_fails_fast_and_the_first_finishes_intact) {
    prepare();
    static const char *const cmds[] = {"train", "featurize", "score", "lds"};
    for (int c = 0; c < 4; c++) {
        const char *cmd = cmds[c];
        char ref[300], out[300], args[2048], log[320];
        snprintf(ref, sizeof ref, "%s/alone_%s", test_tmp, cmd);
        snprintf(out, sizeof out, "%s/both_%s", test_tmp, cmd);
        command(args, sizeof args, cmd, ref);
        cr_assert_eq(jtrak("%s", args), 0, "%s alone: %s", cmd, g_err);
        command(args, sizeof args, cmd, out);
        snprintf(log, sizeof log, "%s/first_%s.err", test_tmp, cmd);
        pid_t first = spawn(args, log);
        int status = 0, gone = 0;
        while (lock_holder(out) != first) {
            if (waitpid(first, &status, WNOHANG) == first) {
                gone = 1;
                break;
            }
            nanosleep(&(struct timespec){0, 200000}, NULL);
        }
        cr_assert(!gone,
                  "%s: the first run ended (status %d) before it could be caught holding "
                  "the folder",
                  cmd, status);
        kill(first, SIGSTOP);
        char want[64];
        snprintf(want, sizeof want, "in use by PID %ld", (long)first);
        struct timespec t0, t1;
        clock_gettime(CLOCK_MONOTONIC, &t0);
        expect_failure(1, cmd, (const char *[]){out, want, NULL}, "%s", args);
        clock_gettime(CLOCK_MONOTONIC, &t1);
        kill(first, SIGCONT);
        cr_assert(waitpid(first, &status, 0) == first);
        cr_expect(WIFEXITED(status) && WEXITSTATUS(status) == 0, "%s: the first run failed: see %s",
                  cmd, log);
        cr_expect(same_tree(ref, out), "%s: the first run's folder differs from a run alone", cmd);
        /* fast: before any work (a generous bound for a loaded or sanitized build) */
        double secs = (double)(t1.tv_sec - t0.tv_sec) + 1e-9 * (double)(t1.tv_nsec - t0.tv_nsec);
        cr_expect(secs < 10, "%s: the second run took %.1f s to fail", cmd, secs);
    }
}

/* ---- disk full, file size limits, read-only file systems --------------------------------------
 */

/* Whether this process may mount a tmpfs in a private mount namespace (root in the container). */
static int can_mount(void) {
    return sh("mkdir -p %s/mnt && unshare -m sh -c 'mount -t tmpfs -o size=4k none %s/mnt'",
              test_tmp, test_tmp) == 0;
}

/* Runs `cmd` with --out on a fresh 4 KiB tmpfs (mount options opts) in a private mount namespace,
 * then copies what it left to <test_tmp>/left_<cmd>; returns its exit status, stderr in g_err. */
static int run_on_tmpfs(const char *cmd, const char *opts) {
    char args[2048], mnt[300];
    snprintf(mnt, sizeof mnt, "%s/mnt", test_tmp);
    command(args, sizeof args, cmd, "\"$M\"/out");
    return sh(
        "M=%s; mkdir -p \"$M\"; unshare -m sh -c \"mount -t tmpfs -o %s none $M && "
        "{ $J %s 2>%s/run.err; st=\\$?; cp -a $M/out %s/left_%s 2>/dev/null; exit \\$st; }\"; "
        "st=$?; cat %s/run.err >&2; exit $st",
        mnt, opts, args, test_tmp, test_tmp, cmd, test_tmp);
}

/* Disk full: one line naming a file of the output and ENOSPC's words; the same command with room
 * to write, over what the failed run left, gives the reference's files. */
Test(robust, a_full_disk_is_one_clear_error_and_leaves_nothing_trusted) {
    if (!can_mount()) cr_skip("cannot mount a tmpfs in a private mount namespace (unshare -m)");
    prepare();
    /* counterfactual's folder is model folders as lds's are: left out for time */
    for (int c = 0; c < N_COMMANDS - 1; c++) {
        const char *cmd = COMMANDS[c];
        char args[2048], ref[300], left[300], prefix[64];
        snprintf(ref, sizeof ref, "%s/ref_%s", test_tmp, cmd);
        snprintf(left, sizeof left, "%s/left_%s", test_tmp, cmd);
        command(args, sizeof args, cmd, ref);
        cr_assert_eq(jtrak("%s", args), 0, "%s: %s", cmd, g_err);
        int st = run_on_tmpfs(cmd, "size=4k");
        cr_expect_eq(st, 1, "%s on a full disk: exit %d: %s", cmd, st, g_err);
        snprintf(prefix, sizeof prefix, "jtrak %s: ", cmd);
        const char *nl = strchr(g_err, '\n');
        cr_expect(strncmp(g_err, prefix, strlen(prefix)) == 0 && nl && nl[1] == 0,
                  "%s: not one 'jtrak %s:' line: %s", cmd, cmd, g_err);
        cr_expect(strstr(g_err, "/mnt/out") && strstr(g_err, "No space left on device"),
                  "%s: the message names no file of the output or not the cause: %s", cmd, g_err);
        /* what was left, finished with room to write, is the reference */
        command(args, sizeof args, cmd, left);
        cr_assert_eq(jtrak("%s", args), 0, "%s over the leftovers of a full disk: %s", cmd, g_err);
        cr_expect(same_tree(ref, left),
                  "%s: finished over a full disk's leftovers, the folder "
                  "differs from a run that never failed",
                  cmd);
    }
}

Test(robust, a_read_only_file_system_is_one_clear_error) {
    int mount_ok = can_mount();
    if (!mount_ok && geteuid() == 0)
        cr_skip("running as root without mount rights: permission bits do not stop root's writes");
    prepare();
    for (int c = 0; c < N_COMMANDS; c++) {
        const char *cmd = COMMANDS[c];
        char args[2048], ro[300];
        int st;
        if (mount_ok) {
            st = run_on_tmpfs(cmd, "ro,size=4k");
        } else {
            snprintf(ro, sizeof ro, "%s/ro", test_tmp);
            mkdir(ro, 0555);
            chmod(ro, 0555);
            char out[320];
            snprintf(out, sizeof out, "%s/out", ro);
            command(args, sizeof args, cmd, out);
            st = jtrak("%s", args);
        }
        cr_expect_eq(st, 1, "%s into a read-only folder: exit %d: %s", cmd, st, g_err);
        const char *nl = strchr(g_err, '\n');
        cr_expect(strstr(g_err, cmd) && nl && nl[1] == 0, "%s: not one line: %s", cmd, g_err);
        cr_expect(strstr(g_err, "/out") && (strstr(g_err, "Read-only file system") ||
                                            strstr(g_err, "Permission denied")),
                  "%s: the message names no output or not the cause: %s", cmd, g_err);
    }
}

/* A file size limit (RLIMIT_FSIZE, SIGXFSZ ignored by jtrak) while a finished score folder is
 * rewritten with other options: the score files fit under the limit and are renamed into place,
 * topk.json does not. The folder must then hold no manifest (before the fix the old manifest
 * stayed beside the new scores, and lds, counterfactual and report took them for its), and a run
 * with room finishes it as a run into a new folder would. */
Test(robust, a_score_folder_cut_by_a_size_limit_is_not_trusted) {
    prepare();
    const char *t = test_tmp;
    const char *score = "score --store %s/f --trajectory %s/s/trajectory.safetensors --out %s/%s "
                        "--steps 500,0 --R 3 --quiet";
    char args[2048];
    snprintf(args, sizeof args, score, t, t, t, "sc");
    int st = sh("ulimit -f 1; exec $J %s", args);
    cr_expect_eq(st, 1, "exit %d: %s", st, g_err);
    cr_expect(strstr(g_err, "jtrak score: ") == g_err && strstr(g_err, "topk.json") &&
                  strstr(g_err, "File too large"),
              "%s", g_err);
    cr_expect(exists("sc/scores_t500.npy"), "the score files were not written: the case is moot");
    cr_expect(!exists("sc/manifest.json"), "the old manifest was left beside the new scores");
    expect_failure(1, "counterfactual", (const char *[]){"sc/manifest.json", NULL},
                   "counterfactual --model %s/m --trajectory %s/s/trajectory.safetensors --scores "
                   "%s/sc --step 500 --k 2 --out %s/cf --quiet",
                   t, t, t, t);
    cr_assert_eq(jtrak(score, t, t, t, "sc"), 0, "%s", g_err);
    cr_assert_eq(jtrak(score, t, t, t, "sc_new"), 0, "%s", g_err);
    char a[300], b[300];
    snprintf(a, sizeof a, "%s/sc_new", t);
    snprintf(b, sizeof b, "%s/sc", t);
    cr_expect(same_tree(a, b));
}

/* ---- truncated artifacts are refused on open ------------------------------------------------- */

static void truncate_half(const char *sub) {
    char p[512];
    snprintf(p, sizeof p, "%s/%s", test_tmp, sub);
    struct stat sb;
    cr_assert(stat(p, &sb) == 0, "no %s", p);
    cr_assert(truncate(p, sb.st_size / 2) == 0);
}

Test(robust, truncated_artifacts_are_refused_naming_the_file) {
    prepare();
    const char *t = test_tmp;
    const char *score = "score --store %s/f --trajectory %s/s/trajectory.safetensors --out %s/o "
                        "--steps 500,0 --R 2 --quiet";
    /* a trained model's weights, a training state, a store's features and kernel, a trajectory,
     * a score matrix: each cut in half */
    cr_assert_eq(
        sh("cp -a %s/m %s/m2 && cp -a %s/f %s/f2 && cp -a %s/sc %s/sc2 && cp -a %s/s %s/s2", t, t,
           t, t, t, t, t, t),
        0, "%s", g_err);
    truncate_half("m/diffusion_pytorch_model.safetensors");
    expect_failure(1, "sample",
                   (const char *[]){"m/diffusion_pytorch_model.safetensors", "truncated", NULL},
                   "sample --model %s/m --out %s/o --n 1 --quiet", t, t);
    truncate_half("m/train_state.safetensors");
    expect_failure(1, "train", (const char *[]){"m/train_state.safetensors", "truncated", NULL},
                   TRAIN " --steps 12 --out %s/m", t, t, t);
    truncate_half("f/model_0/features.npy");
    expect_failure(1, "score", (const char *[]){"f/model_0/features.npy", "truncated", NULL}, score,
                   t, t, t);
    cr_assert_eq(sh("cp %s/f2/model_0/features.npy %s/f/model_0/", t, t), 0);
    truncate_half("f/model_0/kernel.npy");
    expect_failure(1, "score", (const char *[]){"f/model_0/kernel.npy", "truncated", NULL}, score,
                   t, t, t);
    truncate_half("s/trajectory.safetensors");
    expect_failure(
        1, "score", (const char *[]){"s/trajectory.safetensors", "truncated", NULL},
        "score --store %s/f2 --trajectory %s/s/trajectory.safetensors --out %s/o --quiet", t, t, t);
    /* before the fix: "no dense scores at step 500 (score without --topk-only ...)", which
     * hid the cause */
    truncate_half("sc/scores_t500.npy");
    expect_failure(1, "counterfactual", (const char *[]){"sc/scores_t500.npy", "truncated", NULL},
                   "counterfactual --model %s/m2 --trajectory %s/s2/trajectory.safetensors "
                   "--scores %s/sc --step 500 --k 2 --out %s/cf --quiet",
                   t, t, t, t);
    cr_expect(!exists("o") && !exists("cf"), "a refused command left its output folder");
}

/* Scoring is not resumable: a folder holding an interrupted run's partial files says so and
 * starts over (the kill -9 harness checks that the result is the uninterrupted one's). */
Test(robust, score_says_it_starts_over) {
    prepare();
    const char *t = test_tmp;
    char o[300];
    snprintf(o, sizeof o, "%s/o", t);
    cr_assert(mkdir(o, 0755) == 0);
    write_text("o/.scores_t500.npy.partial", "cut");
    cr_assert_eq(jtrak("score --store %s/f --trajectory %s/s/trajectory.safetensors --out %s/o "
                       "--steps 500 --R 2",
                       t, t, t),
                 0, "%s", g_err);
    cr_expect(strstr(g_err, "holds the partial score files of an interrupted run; scoring does "
                            "not resume: it starts over"),
              "%s", g_err);
    cr_expect(!exists("o/.scores_t500.npy.partial") && exists("o/manifest.json"));
}
