#!/usr/bin/env bash
# kill9.sh: the kill -9 harness (issue 15, item 3). For each of train, featurize (an ensemble of
# two models), score, lds and counterfactual at toy sizes (the t8 preset on 32 Fashion-MNIST images
# resized to 8x8), it makes a reference output uninterrupted (twice: the two must be equal), then for every round starts the same command in a fresh folder,
# SIGKILLs it after a random delay (a fraction of the reference run's measured time, drawn from a
# seeded generator and printed), starts it again and SIGKILLs that too (KILL9_KILLS kills per
# round), reruns it to completion and compares every output file byte for byte with the
# reference, and the completing run's stdout with the reference's.
#
# Not compared, by name (the only files that legitimately differ between runs):
#   .lock                 every lock file: it holds the PID of the last process that held it
#   featurize log.jsonl   one line per invocation (rows done by that invocation, rates, elapsed time)
# train's log.jsonl (also inside lds/ and counterfactual/ model folders) is compared with its two
# timing fields ("images_per_s", "elapsed_s") removed: the steps, losses and learning rates must be
# the same lines as the reference's, each once.
#
# usage: kill9.sh JTRAK_BINARY [WORK_DIR]
# env:   KILL9_ROUNDS (default 2) rounds per command; KILL9_KILLS (default 2) kills per round;
#        KILL9_SEED (default 15) the delays' seed; KILL9_COMMANDS (default all five);
#        KILL9_KEEP=1 keeps WORK_DIR.
# Exit 0 when every output matched, 1 on any mismatch or unexpected exit, 77 (skipped) when
# Debian's dataset-fashion-mnist is not installed.
set -uo pipefail

JTRAK=${1:?usage: kill9.sh JTRAK_BINARY [WORK_DIR]}
JTRAK=$(readlink -f "$JTRAK")
ROUNDS=${KILL9_ROUNDS:-2}
KILLS=${KILL9_KILLS:-2}
SEED=${KILL9_SEED:-15}
COMMANDS=${KILL9_COMMANDS:-"train featurize score lds counterfactual"}
FMNIST=/usr/share/datasets/fashion-mnist/train-images-idx3-ubyte.gz
if [ ! -r "$FMNIST" ]; then
    echo "kill9: SKIPPED: Debian's dataset-fashion-mnist is not installed ($FMNIST)"
    exit 77
fi
if [ $# -ge 2 ]; then
    WORK=$2
    rm -rf "$WORK" && mkdir -p "$WORK"
else
    WORK=$(mktemp -d /tmp/jtrak-kill9-XXXXXX)
fi
WORK=$(readlink -f "$WORK")
[ "${KILL9_KEEP:-0}" = 1 ] || trap 'rm -rf "$WORK"' EXIT
# One thread by default: on a loaded machine OpenMP's spinning threads make the run times (and so
# where the kills land) erratic; the results do not depend on it (tests/determinism).
export OMP_NUM_THREADS=${OMP_NUM_THREADS:-1} OPENBLAS_NUM_THREADS=1
RANDOM=$SEED # bash's generator, seeded: the same delays every run

IN=$WORK/in
DATA="--data fashion-mnist --limit 32 --fit resize"
TRAJ=$IN/s/trajectory.safetensors
args_of() {
    case $1 in
    train) echo "train --config t8 --size 8 $DATA --batch 8 --steps 40 --warmup 2 --save-every 6 --log-every 4 --out out --quiet" ;;
    featurize) echo "featurize --models $IN/m,$IN/m2 $DATA --out out --S 2 --k 16 --batch 4 --quiet" ;;
    score) echo "score --store $IN/f --trajectory $TRAJ --out out --R 4 --quiet" ;;
    lds) echo "lds --model $IN/m --trajectory $TRAJ --scores $IN/sc --out out --K 3 --ceiling 1 --R-eval 2 --grid 2 --steps 500,0 --replicates 20 --quiet" ;;
    counterfactual) echo "counterfactual --model $IN/m --trajectory $TRAJ --scores $IN/sc --step 500 --k 2 --targets 0 --out out --quiet" ;;
    esac
}

now() { date +%s.%N; }
fail=0
say() { echo "kill9: $*"; }

# The inputs every command shares (absolute paths: the manifests record them).
mkdir -p "$IN"
setup() {
    (cd "$IN" &&
        "$JTRAK" train --config t8 --size 8 $DATA --batch 8 --steps 16 --warmup 2 --out m --quiet >/dev/null &&
        "$JTRAK" train --config t8 --size 8 $DATA --batch 8 --steps 16 --warmup 2 --seed 1 --out m2 --quiet >/dev/null &&
        "$JTRAK" sample --model m --out s --n 2 --sampler ddim --steps 10 --quiet >/dev/null &&
        "$JTRAK" featurize --models m $DATA --out f --S 2 --k 8 --quiet >/dev/null &&
        "$JTRAK" score --store f --trajectory s/trajectory.safetensors --out sc --steps 500,0 --R 2 --quiet >/dev/null) 2>"$IN/setup.err"
}
if ! setup; then
    say "FAILED: could not make the inputs:"
    cat "$IN/setup.err"
    exit 1
fi

# The files of folder $1 that are compared (relative paths, sorted), for command $2.
listing() {
    (cd "$1" && find . \( -type f -o -type l \) ! -name .lock | sort) |
        if [ "$2" = featurize ]; then grep -v '^\./log\.jsonl$'; else cat; fi
}
strip_timing() { sed -E 's/,"images_per_s":[0-9.eE+-]+//; s/,"elapsed_s":[0-9.eE+-]+//' "$1"; }
# Compares output folder $2 with the reference $1 for command $3; prints each difference.
compare() {
    local ref=$1 got=$2 cmd=$3 bad=0
    if ! diff <(listing "$ref" "$cmd") <(listing "$got" "$cmd") >"$WORK/list.diff"; then
        say "  MISMATCH: the files differ from the reference's (< reference, > this run):"
        sed 's/^/      /' "$WORK/list.diff" | grep '^      [<>]'
        bad=1
    fi
    while read -r f; do
        [ -e "$got/$f" ] || continue
        if [ "$(basename "$f")" = log.jsonl ]; then
            cmp -s <(strip_timing "$ref/$f") <(strip_timing "$got/$f") ||
                { say "  MISMATCH: $f (timing fields removed) differs"; bad=1; }
        else
            cmp -s "$ref/$f" "$got/$f" || { say "  MISMATCH: $f differs: $(cmp "$ref/$f" "$got/$f" 2>&1 | head -1)"; bad=1; }
        fi
    done < <(listing "$ref" "$cmd")
    return $bad
}

declare -A T_REF N_KILLED N_EARLY N_BAD N_FILES
total_start=$(now)
for cmd in $COMMANDS; do
    args=$(args_of "$cmd")
    [ -n "$args" ] || { say "unknown command '$cmd' in KILL9_COMMANDS"; exit 2; }
    ref=$WORK/$cmd/ref
    # Two uninterrupted runs: the second must equal the first (else nothing below could), and the
    # faster one's time is the span the kill delays are drawn from (the first pays cold caches).
    best=
    for rr in ref ref2; do
        mkdir -p "$WORK/$cmd/$rr"
        t0=$(now)
        (cd "$WORK/$cmd/$rr" && "$JTRAK" $args >stdout 2>stderr)
        st=$?
        t1=$(now)
        if [ $st -ne 0 ]; then
            say "$cmd: FAILED: the uninterrupted run $rr exited $st:"
            cat "$WORK/$cmd/$rr/stderr"
            fail=1
            continue 2
        fi
        best=$(awk -v a="$t0" -v b="$t1" -v m="$best" 'BEGIN { d = b - a; if (m != "" && m < d) d = m; printf "%.3f", d }')
    done
    T_REF[$cmd]=$best
    if ! out=$(compare "$ref/out" "$WORK/$cmd/ref2/out" "$cmd") || ! cmp -s "$ref/stdout" "$WORK/$cmd/ref2/stdout"; then
        say "$cmd: FAILED: two uninterrupted runs differ:"
        echo "$out"
        fail=1
        continue
    fi
    N_FILES[$cmd]=$(listing "$ref/out" "$cmd" | wc -l)
    N_KILLED[$cmd]=0 N_EARLY[$cmd]=0 N_BAD[$cmd]=0
    say "$cmd: jtrak $args"
    say "$cmd: uninterrupted ${T_REF[$cmd]} s (twice, identical); ${N_FILES[$cmd]} files compared byte for byte:" \
        "$(listing "$ref/out" "$cmd" | sed 's|^\./||' | tr '\n' ' ')"
    for ((r = 1; r <= ROUNDS; r++)); do
        dir=$WORK/$cmd/round$r
        mkdir -p "$dir"
        line="round $r:"
        for ((k = 1; k <= KILLS; k++)); do
            # kill k lands in 5% .. 95%/k of the reference's time (a resumed run has less to do)
            permille=$((50 + RANDOM % (950 / k - 49)))
            delay=$(awk -v t="${T_REF[$cmd]}" -v p=$permille 'BEGIN { printf "%.3f", t * p / 1000 }')
            (cd "$dir" && exec "$JTRAK" $args >/dev/null 2>>stderr.killed) &
            pid=$!
            sleep "$delay"
            kill -9 $pid 2>/dev/null
            wait $pid 2>/dev/null
            st=$?
            if [ $st -eq 137 ]; then
                line="$line kill $k after ${delay}s: killed;"
                N_KILLED[$cmd]=$((N_KILLED[$cmd] + 1))
            elif [ $st -eq 0 ]; then
                line="$line kill $k after ${delay}s: it had finished;"
                N_EARLY[$cmd]=$((N_EARLY[$cmd] + 1))
            else
                line="$line kill $k after ${delay}s: it exited $st (see $dir/stderr.killed);"
                N_BAD[$cmd]=$((N_BAD[$cmd] + 1))
                fail=1
            fi
        done
        (cd "$dir" && "$JTRAK" $args >stdout 2>stderr)
        st=$?
        if [ $st -ne 0 ]; then
            say "$cmd: $line rerun FAILED (exit $st):"
            sed 's/^/    /' "$dir/stderr"
            N_BAD[$cmd]=$((N_BAD[$cmd] + 1))
            fail=1
            continue
        fi
        ok=1
        cmp -s "$ref/stdout" "$dir/stdout" || { ok=0; }
        out=$(compare "$ref/out" "$dir/out" "$cmd") || ok=0
        if [ $ok = 1 ]; then
            say "$cmd: $line resumed: identical"
        else
            say "$cmd: $line resumed: DIFFERS from the reference"
            [ -n "$out" ] && echo "$out"
            cmp -s "$ref/stdout" "$dir/stdout" || say "  MISMATCH: stdout differs"
            N_BAD[$cmd]=$((N_BAD[$cmd] + 1))
            fail=1
        fi
    done
done
total=$(awk -v a="$total_start" -v b="$(now)" 'BEGIN { printf "%.0f", b - a }')

echo
echo "kill9: seed $SEED, $ROUNDS round(s) x $KILLS kill(s) per command, ${total} s"
printf 'kill9: %-15s %8s %6s %7s %14s %9s\n' command ref_s files killed finished_first failures
for cmd in $COMMANDS; do
    [ -n "${T_REF[$cmd]:-}" ] || continue
    printf 'kill9: %-15s %8s %6s %7s %14s %9s\n' "$cmd" "${T_REF[$cmd]}" "${N_FILES[$cmd]}" \
        "${N_KILLED[$cmd]}" "${N_EARLY[$cmd]}" "${N_BAD[$cmd]}"
done
if [ $fail -ne 0 ]; then
    say "FAILED (work folder: $WORK)"
    trap - EXIT
    exit 1
fi
say "every resumed output is byte for byte the reference's"
