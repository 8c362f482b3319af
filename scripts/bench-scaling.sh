#!/usr/bin/env bash
# `make bench` part 6: how featurize and score times grow. For a diffusers model folder on the
# first n Fashion-MNIST training images:
#
#   featurize vs n        jtrak featurize at n in SIZES (S = SCALE_S draws, k = K): seconds of the
#                         gradient + projection phase (n / rows_per_s from the store's log.jsonl),
#                         and the kernel (finalize) seconds separately
#   score vs n            jtrak score of NT0 targets against each of those stores
#   score vs targets      jtrak score of each count in TARGETS against the largest store
#
# Targets come from one DDIM trajectory of max(TARGETS) samples with SAMPLE_STEPS steps (not
# timed); score uses every step of it (--steps all), R = SCALE_R draws per target gradient.
# A least-squares line through (log x, log seconds) gives the growth exponent. What the algorithm
# predicts: featurize is linear in n (every row is one independent per-example gradient and
# projection: exponent 1); the kernel is X^T X (n k^2) plus an inversion (k^3), so sub-linear in n
# while k^3 dominates; score = target gradients (independent of n) + a (n x k) by (k x targets)
# product, so nearly flat in n at these sizes (also fitted as a + b n: b is the per-row cost) and
# linear in the number of targets. The line over the three or four points is what is printed;
# with SIZES of one point there is no fit.
#
# Results: a table on stdout, JSON lines in $BUILD/bench-scaling.jsonl, stores and logs under
# $BUILD/bench-scaling/. Defaults (n = 1k..8k at S = 2, targets 4..32) take about 6 minutes on a
# 2-core machine. Small runs: SIZES=32,64 TARGETS=1,2 K=256.
set -euo pipefail
cd "$(dirname "$0")/.."
. scripts/bench-lib.sh
BUILD=${1:-build}
THREADS=${THREADS:-2}
SIZES=${SIZES:-1000,2000,4000,8000}
SCALE_S=${SCALE_S:-2}
K=${K:-2048}
TARGETS=${TARGETS:-4,8,16,32}
NT0=${NT0:-8}               # targets of the score-vs-n runs
SCALE_R=${SCALE_R:-5}
SAMPLE_STEPS=${SAMPLE_STEPS:-3}
SCALE_BATCH=${SCALE_BATCH:-16}
JT="$BUILD/jtrak"
WORK="$BUILD/bench-scaling"
OUT="$BUILD/bench-scaling.jsonl"
mkdir -p "$WORK"
: > "$OUT"

[ -x "$JT" ] || { echo "bench-scaling: $JT not built (run make)" >&2; exit 1; }
[ -x /usr/bin/time ] || { echo "bench-scaling: /usr/bin/time is needed for peak memory (apt-get install time)" >&2; exit 1; }

# The model: as bench-attrib.sh picks it (the demo's, else a 5-step fm-xs; the cost of a gradient
# does not depend on how long the model was trained).
MODEL=${MODEL:-}
if [ -z "$MODEL" ]; then
  if [ -f out/demo/model/config.json ]; then MODEL=out/demo/model
  elif [ -f "$BUILD/bench-attrib/model/config.json" ]; then MODEL="$BUILD/bench-attrib/model"
  else MODEL="$WORK/model"; fi
fi
if ! [ -f "$MODEL/config.json" ]; then
  echo "bench-scaling: training a small fm-xs model folder in $MODEL (5 steps)" >&2
  "$JT" train --config fm-xs --steps 5 --out "$MODEL" --quiet >/dev/null
fi

IFS=, read -r -a sizes <<< "$SIZES"
IFS=, read -r -a targets <<< "$TARGETS"
max_t=0
for t in "${targets[@]}" "$NT0"; do [ "$t" -gt "$max_t" ] && max_t=$t; done
largest=0
for n in "${sizes[@]}"; do [ "$n" -gt "$largest" ] && largest=$n; done

elapsed() { awk -v a="$1" -v b="$2" 'BEGIN { printf "%.3f", b - a }'; }

echo "bench-scaling: model $MODEL; featurize n = $SIZES at S=$SCALE_S k=$K; score targets $TARGETS (R=$SCALE_R, $SAMPLE_STEPS DDIM steps)" >&2
for n in "${sizes[@]}"; do
  st="$WORK/store_$n"
  rm -rf "$st"
  echo "bench-scaling: featurize n=$n" >&2
  t0=$(now)
  OMP_NUM_THREADS=$THREADS /usr/bin/time -v -o "$WORK/featurize_$n.time" \
    "$JT" featurize --models "$MODEL" --out "$st" --limit "$n" --S "$SCALE_S" --k "$K" \
    --batch "$SCALE_BATCH" --auto-ridge --quiet > /dev/null 2> "$WORK/featurize_$n.log" \
    || { cat "$WORK/featurize_$n.log" >&2; exit 1; }
  t1=$(now)
  python3 - "$st" "$n" "$K" "$SCALE_S" "$THREADS" "$(elapsed "$t0" "$t1")" "$(peak_mb "$WORK/featurize_$n.time")" >> "$OUT" <<'PY'
import json, sys
store, n, k, s, threads, wall, peak = sys.argv[1:]
rows = [json.loads(l) for l in open(f"{store}/log.jsonl") if l.strip()]
feat = [r for r in rows if "rows_per_s" in r][-1]
kern = [r for r in rows if "kernel" in r][-1]["kernel"]
print(json.dumps(dict(impl="jtrak", what="scale_featurize", n=int(n), k=int(k), S=int(s),
                      threads=int(threads), seconds=round(int(n) / feat["rows_per_s"], 3),
                      kernel_seconds=kern["seconds"], wall_seconds=float(wall), peak_rss_mb=float(peak))))
PY
done

echo "bench-scaling: sampling $max_t targets ($SAMPLE_STEPS DDIM steps; not timed)" >&2
rm -rf "$WORK/samples"
OMP_NUM_THREADS=$THREADS "$JT" sample --model "$MODEL" --out "$WORK/samples" --n "$max_t" \
  --sampler ddim --steps "$SAMPLE_STEPS" --quiet > /dev/null 2> "$WORK/sample.log" \
  || { cat "$WORK/sample.log" >&2; exit 1; }
TRAJ="$WORK/samples/trajectory.safetensors"

score() {  # $1 = n (store), $2 = targets, $3 = row kind
  local out="$WORK/scores_$1_$2"
  rm -rf "$out"
  echo "bench-scaling: score n=$1, $2 targets" >&2
  t0=$(now)
  OMP_NUM_THREADS=$THREADS /usr/bin/time -v -o "$out.time" \
    "$JT" score --store "$WORK/store_$1" --trajectory "$TRAJ" --out "$out" --method journey \
    --steps all --targets "$(seq -s, 0 $(($2 - 1)))" --R "$SCALE_R" --batch "$SCALE_BATCH" --quiet \
    > /dev/null 2> "$out.log" || { cat "$out.log" >&2; exit 1; }
  t1=$(now)
  printf '{"impl":"jtrak","what":"%s","n":%d,"targets":%d,"steps":%d,"R":%d,"k":%d,"threads":%d,"seconds":%s,"peak_rss_mb":%s}\n' \
    "$3" "$1" "$2" "$SAMPLE_STEPS" "$SCALE_R" "$K" "$THREADS" "$(elapsed "$t0" "$t1")" \
    "$(peak_mb "$out.time")" >> "$OUT"
}
for n in "${sizes[@]}"; do score "$n" "$NT0" scale_score_n; done
for t in "${targets[@]}"; do score "$largest" "$t" scale_score_targets; done

# The stores (n x k floats each) are not needed any more; KEEP=1 keeps them.
[ "${KEEP:-0}" = 1 ] || rm -rf "$WORK"/store_* "$WORK"/scores_*/

python3 scripts/bench_report.py --scaling-only "$OUT"
echo "bench-scaling: JSON lines in $OUT" >&2
