#!/usr/bin/env bash
# matrix.sh: the determinism matrix (issue 15, item 6; house-style.md, determinism). featurize,
# then score and lds on its store, for OMP_NUM_THREADS 1 and 2 times 1 and 2 MPI processes
# (featurize's rows and lds's models are shared among the processes; score runs as one process
# with the cell's threads), at toy size (the t8 preset on 24 Fashion-MNIST images resized to 8x8).
# Every cell's store, score folder and LDS folder must equal the 1-thread, 1-process cell's byte
# for byte. Each cell writes to the same paths (moved aside afterwards), because the manifests
# record the paths of their inputs. Not compared: .lock (the PID of the last holder) and
# featurize's log.jsonl (per-invocation lines with rates and times); train logs inside the LDS
# folder are compared with their timing fields removed.
#
# usage: matrix.sh JTRAK_BINARY [WORK_DIR]
# env:   JTRAK_MPI_BUILT=0|1 (from CMake; else guessed from the binary's libraries).
# The MPI cells are skipped with a message when the build has no MPI or mpirun is absent; the
# whole script exits 77 (skipped) when Debian's dataset-fashion-mnist is not installed.
set -uo pipefail

JTRAK=$(readlink -f "${1:?usage: matrix.sh JTRAK_BINARY [WORK_DIR]}")
FMNIST=/usr/share/datasets/fashion-mnist/train-images-idx3-ubyte.gz
if [ ! -r "$FMNIST" ]; then
    echo "determinism: SKIPPED: Debian's dataset-fashion-mnist is not installed ($FMNIST)"
    exit 77
fi
if [ $# -ge 2 ]; then
    W=$2
    rm -rf "$W" && mkdir -p "$W"
else
    W=$(mktemp -d /tmp/jtrak-determinism-XXXXXX)
    trap 'rm -rf "$W"' EXIT
fi
W=$(readlink -f "$W")
export OPENBLAS_NUM_THREADS=1
MPI_BUILT=${JTRAK_MPI_BUILT:-}
[ -n "$MPI_BUILT" ] || { ldd "$JTRAK" 2>/dev/null | grep -q libmpi && MPI_BUILT=1 || MPI_BUILT=0; }
RANKS="1 2"
if [ "$MPI_BUILT" != 1 ] && [ "$MPI_BUILT" != ON ] && [ "$MPI_BUILT" != TRUE ]; then
    echo "determinism: the 2-process cells are SKIPPED: jtrak was built without MPI"
    RANKS=1
elif ! command -v mpirun >/dev/null 2>&1; then
    echo "determinism: the 2-process cells are SKIPPED: mpirun is not installed"
    RANKS=1
fi

DATA="--data fashion-mnist --limit 24 --fit resize"
fail=0
run() { # run LOG LAUNCH... : the command, its stderr appended to LOG; fails the script loudly
    local log=$1
    shift
    if ! "$@" >>"$log.out" 2>>"$log"; then
        echo "determinism: FAILED: $*"
        sed 's/^/    /' "$log"
        exit 1
    fi
}
cd "$W" || exit 1
run setup.err "$JTRAK" train --config t8 --size 8 $DATA --batch 8 --steps 12 --warmup 2 --out m --quiet
run setup.err "$JTRAK" sample --model m --out s --n 2 --sampler ddim --steps 10 --quiet

strip_timing() { sed -E 's/,"images_per_s":[0-9.eE+-]+//; s/,"elapsed_s":[0-9.eE+-]+//' "$1"; }
listing() { (cd "$1" && find . -type f ! -name .lock ! -path ./store/log.jsonl | sort); }

t_start=$(date +%s)
cells=()
for ranks in $RANKS; do
    for threads in 1 2; do
        cell=t${threads}_p${ranks}
        launch=()
        if [ "$ranks" -gt 1 ]; then
            # leak checks off: OpenMPI's own allocations under ASan
            launch=(env ASAN_OPTIONS=detect_leaks=0 mpirun --allow-run-as-root --oversubscribe -np "$ranks" -x OMP_NUM_THREADS="$threads" -x ASAN_OPTIONS)
        fi
        rm -rf store scores lds
        export OMP_NUM_THREADS=$threads
        run "$cell.err" "${launch[@]}" "$JTRAK" featurize --models m $DATA --out store --S 2 --k 16 --batch 4 --quiet
        run "$cell.err" "$JTRAK" score --store store --trajectory s/trajectory.safetensors --out scores --steps 500,0 --R 2 --quiet
        run "$cell.err" "${launch[@]}" "$JTRAK" lds --model m --trajectory s/trajectory.safetensors --scores scores --out lds --K 2 --ceiling 1 --R-eval 2 --grid 2 --steps 500,0 --replicates 20 --quiet
        mkdir -p "cells/$cell"
        mv store scores lds "cells/$cell/"
        mv "$cell.err.out" "cells/$cell/stdout" # featurize's, score's and lds's stdout (tables)
        cells+=("$cell")
        echo "determinism: $cell: OMP_NUM_THREADS=$threads, $ranks process(es): featurize, score, lds done"
    done
done

ref=cells/${cells[0]}
n_files=$(listing "$ref" | wc -l)
for cell in "${cells[@]:1}"; do
    got=cells/$cell
    bad=0
    if ! diff <(listing "$ref") <(listing "$got") >/dev/null; then
        echo "determinism: MISMATCH: $cell holds other files than ${cells[0]}:"
        diff <(listing "$ref") <(listing "$got") | grep '^[<>]' | sed 's/^/    /'
        bad=1
    fi
    while read -r f; do
        [ -e "$got/$f" ] || continue
        if [ "$(basename "$f")" = log.jsonl ]; then
            cmp -s <(strip_timing "$ref/$f") <(strip_timing "$got/$f") ||
                { echo "determinism: MISMATCH: $cell: $f (timing fields removed) differs"; bad=1; }
        else
            cmp -s "$ref/$f" "$got/$f" ||
                { echo "determinism: MISMATCH: $cell: $f: $(cmp "$ref/$f" "$got/$f" 2>&1 | head -1)"; bad=1; }
        fi
    done < <(listing "$ref")
    if [ $bad = 0 ]; then
        echo "determinism: $cell equals ${cells[0]}: $n_files files byte for byte"
    else
        fail=1
    fi
done
echo "determinism: ${#cells[@]} cells, $(($(date +%s) - t_start)) s; files compared:" \
    "$(listing "$ref" | sed 's|^\./||' | tr '\n' ' ')"
if [ $fail -ne 0 ]; then
    echo "determinism: FAILED (work folder: $W)"
    trap - EXIT
    exit 1
fi
echo "determinism: every cell is byte for byte the 1-thread, 1-process one"
