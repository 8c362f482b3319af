#!/usr/bin/env bash
# Runs every libFuzzer target of BUILD (default build-fuzz, made by `make fuzz`) for FUZZ_SECONDS
# seconds each (default 60), one after the other, under ASan+UBSan, starting from the committed
# seed corpus tests/fuzz/corpus/<target>/ plus what earlier runs added in BUILD/fuzz-corpus/<target>/
# (the committed seeds are never written). A finding (crash, leak, UB, timeout, out-of-memory) is
# saved under BUILD/fuzz-findings/<target>/ and stops that target. Prints one row per target:
# executions, exec/s, corpus size (inputs libFuzzer kept), findings; exits 1 if any target found
# something. FUZZ_TARGETS="npy idx" runs only those; FUZZ_RUNS=N stops a target after N
# executions (FUZZ_SECONDS still caps it), for a pass that aims at a number of executions;
# FUZZ_SEED=N fixes libFuzzer's random seed, so that with FUZZ_RUNS the pass tries the same inputs
# every time (CI's pass: reproducible, it cannot go red by chance on a defect it did not meet before).
set -uo pipefail
cd "$(dirname "$0")/.."
BUILD=${1:-build-fuzz}
SECONDS_EACH=${FUZZ_SECONDS:-60}
SEEDS=tests/fuzz/corpus
targets=${FUZZ_TARGETS:-$(ls tests/fuzz/fuzz_*.c | sed 's|.*/fuzz_||; s|\.c$||')}
mkdir -p "$BUILD/fuzz-logs"
printf '%-14s %12s %9s %7s %9s\n' target executions exec/s corpus findings
total_findings=0
total_execs=0
for t in $targets; do
    bin=$BUILD/fuzz_$t
    [ -x "$bin" ] || { echo "fuzz: $bin is not built (make fuzz builds it)"; exit 2; }
    [ -d "$SEEDS/$t" ] || { echo "fuzz: no seed corpus $SEEDS/$t"; exit 2; }
    work=$BUILD/fuzz-corpus/$t
    findings=$BUILD/fuzz-findings/$t
    log=$BUILD/fuzz-logs/$t.log
    mkdir -p "$work" "$findings"
    before=$(ls "$findings" | wc -l)
    runs=()
    [ -n "${FUZZ_RUNS:-}" ] && runs=(-runs="$FUZZ_RUNS")
    seed=()
    [ -n "${FUZZ_SEED:-}" ] && seed=(-seed="$FUZZ_SEED")
    dict=()
    [ -f "tests/fuzz/$t.dict" ] && dict=(-dict="tests/fuzz/$t.dict")
    # -timeout: an input that takes 10 s is a hang; -rss_limit_mb / -malloc_limit_mb: a reader
    # that asks for 2 GiB on a fuzz input of a few KB has skipped its limit check.
    "$bin" "$work" "$SEEDS/$t" "${dict[@]}" "${runs[@]}" "${seed[@]}" -max_total_time="$SECONDS_EACH" -timeout=10 \
        -rss_limit_mb=2048 -malloc_limit_mb=2048 -artifact_prefix="$findings/" \
        -print_final_stats=1 >"$log" 2>&1
    rc=$?
    execs=$(sed -n 's/^stat::number_of_executed_units: *//p' "$log" | tail -1)
    rate=$(sed -n 's/^stat::average_exec_per_sec: *//p' "$log" | tail -1)
    corpus=$(grep -o 'corp: [0-9]*' "$log" | tail -1 | cut -d' ' -f2)
    after=$(ls "$findings" | wc -l)
    found=$((after - before))
    if [ "$rc" -ne 0 ] && [ "$found" -eq 0 ]; then found=1; fi
    printf '%-14s %12s %9s %7s %9s\n' "$t" "${execs:-?}" "${rate:-?}" "${corpus:-?}" "$found"
    if [ "$found" -gt 0 ]; then
        total_findings=$((total_findings + found))
        grep -m1 -E 'ERROR: (AddressSanitizer|LeakSanitizer|libFuzzer)|runtime error|CHECK failed|panic' "$log" | sed 's/^/    /'
        ls -t "$findings" | head -"$found" | sed "s|^|    saved: $findings/|"
        echo "    log: $log"
    fi
    total_execs=$((total_execs + ${execs:-0}))
done
echo "fuzz: $total_execs executions in all, $total_findings finding(s), ${SECONDS_EACH}s per target"
[ "$total_findings" -eq 0 ]
