#!/usr/bin/env bash
# `make bench-attrib`: Journey-TRAK attribution throughput of jtrak beside the traker library (PyPI
# `traker`, MadryLab/trak, driven as journey-TRAK's diffusion_trak drives it) on the CPU, measured in
# the same run on the same machine, for the same diffusers model, the same first N Fashion-MNIST
# training images, the same S, k, batch and thread count, and the same targets, steps and R:
#
#   featurize  per-example gradients of the training output function (S timesteps, fresh noise,
#              summed), projected to k, stored; then the kernel (X^T X + lambda I)^-1 / mean|.|
#   score      N_T targets of one 1000-step DDPM trajectory (jtrak sample), x0_hat of each step
#              re-noised R times, projected, scored against the features
#
# The traker side needs the reference twin's environment (ref/.venv with torch, diffusers, traker)
# or JTRAK_TORCH_PYTHON; without it only jtrak is measured. traker runs twice: in float32
# (use_half_precision=False: the same precision as jtrak, and traker's faster setting on a CPU) on the
# same N images, and with its default float16 (use_half_precision=True) on N16 images (per-image
# rates). With N < k, X^T X is singular: jtrak adds the smallest working ridge (--auto-ridge) and
# traker gets the same lambda (lambda_reg).
#
# Achieved GFLOP/s of featurize (both tools, the same count): FLOPs per training image = S x 3 x
# the U-Net forward (unet/unet_flops.h; per-example backward = 2 x forward) + 2 p k (the projection
# as one dense p x k product); random numbers, the store and the kernel are not counted.
#
# The two featurize measurements the headline ratio compares (jtrak's default dense projection and
# traker fp32) run in ROUNDS alternating rounds (default 3): the report gives each side's median and
# the range of the rounds' own ratios, as `make bench` does for the U-Net.
#
# Results: a table on stdout (scripts/bench_report.py), JSON lines in $BUILD/bench-attrib.jsonl,
# logs and stores under $BUILD/bench-attrib/. Defaults take about 7 minutes on a 2-core machine
# (plus the wait for an idle machine). Each measurement records how much CPU the rest of the machine used meanwhile
# (other_cpu_cores) and the table warns when that is not ~0: PyTorch's OpenMP threads slow down by
# several times when they share the cores.
set -euo pipefail
cd "$(dirname "$0")/.."
. scripts/bench-lib.sh
BUILD=${1:-build}
THREADS=${THREADS:-2}
N=${N:-256}             # training images (jtrak and traker fp32)
N16=${N16:-32}          # training images for traker's float16 default (slow on a CPU)
S=${S:-20}
K=${K:-2048}
BATCH=${BATCH:-16}
NT=${NT:-4}             # targets
STEPS=${STEPS:-900,500,100}
R=${R:-20}
FP16=${FP16:-1}         # 0: skip traker's float16 run
ROUNDS=${ROUNDS:-3}     # alternating rounds of jtrak's and traker fp32's featurize
LOAD_MAX=${LOAD_MAX:-1.0}  # wait (up to WAIT_S seconds) for the 1-minute load average to drop below this
WAIT_S=${WAIT_S:-300}
PY=${JTRAK_TORCH_PYTHON:-ref/.venv/bin/python}
JT="$BUILD/jtrak"
WORK="$BUILD/bench-attrib"
OUT="$BUILD/bench-attrib.jsonl"
mkdir -p "$WORK"
: > "$OUT"

[ -x "$JT" ] || { echo "bench-attrib: $JT not built (run make)" >&2; exit 1; }
[ -x "$BUILD/bench_unet" ] || { echo "bench-attrib: $BUILD/bench_unet not built (run make)" >&2; exit 1; }
[ -x /usr/bin/time ] || { echo "bench-attrib: /usr/bin/time is needed for peak memory (apt-get install time)" >&2; exit 1; }
HAVE_TRAKER=0
if [ -x "$PY" ] && "$PY" -c "import torch, diffusers, trak, safetensors" 2>/dev/null; then HAVE_TRAKER=1; fi

# The model: the demo's if there is one, else a small fm-xs (the demo's architecture; the cost of a
# gradient does not depend on how long the model was trained).
MODEL=${MODEL:-}
if [ -z "$MODEL" ]; then
  if [ -f out/demo/model/config.json ]; then MODEL=out/demo/model; else MODEL="$WORK/model"; fi
fi
if ! [ -f "$MODEL/config.json" ]; then
  echo "bench-attrib: training a small fm-xs model folder in $MODEL (5 steps)" >&2
  "$JT" train --config fm-xs --steps 5 --out "$MODEL" --quiet >/dev/null
fi

# FLOPs of the model's forward per image and its parameter count (bench_unet --flops).
"$BUILD/bench_unet" "$MODEL/config.json" --flops > "$WORK/flops.json"

wait_for_idle bench-attrib
LOAD_START=$(load1)
CPU=$(lscpu | sed -n 's/^Model name: *//p')
echo "machine: $CPU, $(nproc) cores; threads $THREADS; load average $LOAD_START; model $MODEL" >&2
echo "bench-attrib: N=$N S=$S k=$K batch $BATCH; targets $NT, steps $STEPS, R=$R" >&2

# busy CPU seconds of the whole machine (user nice system irq softirq steal)
HZ=$(getconf CLK_TCK)
busy() { awk -v hz="$HZ" '/^cpu / { printf "%.2f", ($2 + $3 + $4 + $7 + $8 + $9) / hz }' /proc/stat; }
# CPU the rest of the machine used during a command, in cores on average: $1 busy before, $2 busy
# after, $3 time -v report of the command, $4 wall seconds. Near 0 on an idle machine.
other_cores() {
  awk -F': *' -v b0="$1" -v b1="$2" -v wall="$4" '/User time|System time/ { own += $2 }
    END { o = (b1 - b0 - own) / wall; if (o < 0) o = 0; printf "%.2f", o }' "$3"
}

# --- jtrak: featurize -------------------------------------------------------------------------
# $1 projection (rademacher: the default dense one, or a fast one), $2 store folder
run_jtrak_featurize() {
rm -rf "$2"
echo "bench-attrib: jtrak featurize ($N images, projection $1)" >&2
t0=$(now); b0=$(busy)
OMP_NUM_THREADS=$THREADS /usr/bin/time -v -o "$WORK/featurize.time" \
  "$JT" featurize --models "$MODEL" --out "$2" --limit "$N" --S "$S" --k "$K" --projection "$1" \
  --batch "$BATCH" --auto-ridge --quiet 2> "$WORK/featurize.log" > /dev/null \
  || { cat "$WORK/featurize.log" >&2; exit 1; }
t1=$(now); b1=$(busy)
FEAT_PEAK=$(peak_mb "$WORK/featurize.time")
OTHER=$(other_cores "$b0" "$b1" "$WORK/featurize.time" "$(awk -v a="$t0" -v b="$t1" 'BEGIN { print b - a }')")
python3 - "$2" "$N" "$K" "$S" "$BATCH" "$THREADS" "$t0" "$t1" "$FEAT_PEAK" "$LOAD_START" "$CPU" "$OTHER" "$1" "$ROUND" >> "$OUT" <<'PY'
import json, sys
store, n, k, s, batch, threads, t0, t1, peak, load, cpu, other, proj, rnd = sys.argv[1:]
rows = [json.loads(l) for l in open(f"{store}/log.jsonl") if l.strip()]
feat = [r for r in rows if "rows_per_s" in r][-1]
kern = [r for r in rows if "kernel" in r][-1]["kernel"]
base = dict(impl="jtrak", n=int(n), k=int(k), S=int(s), batch=int(batch), threads=int(threads),
            precision="fp32", projector=f"{proj} (regenerated)", load_avg=float(load), cpu=cpu,
            round=int(rnd))
sec = feat["elapsed_s"]
print(json.dumps(dict(base, what="featurize", images_per_s=round(int(n) / sec, 3), seconds=sec,
                      other_cpu_cores=float(other),
                      wall_seconds=round(float(t1) - float(t0), 2), peak_rss_mb=float(peak))))
if proj == "rademacher":
    print(json.dumps(dict(base, what="finalize", seconds=kern["seconds"], **{"lambda": kern["lambda_used"]},
                          peak_rss_mb=float(peak))))
PY
}
rm -rf "$WORK/samples" "$WORK/scores"
ROUND=1
run_jtrak_featurize rademacher "$WORK/store"
FAST_PROJ=${FAST_PROJ:-hadamard}  # also featurize with this projection ("" to skip)
if [ -n "$FAST_PROJ" ]; then run_jtrak_featurize "$FAST_PROJ" "$WORK/store-$FAST_PROJ"; fi
LAMBDA=$(python3 -c 'import json,sys; r=json.load(open(sys.argv[1]))["kernel"]["per_model"][0]; print(repr(r["lambda_used"]) if r else 0)' "$WORK/store/manifest.json")

# --- jtrak: targets and score -----------------------------------------------------------------
echo "bench-attrib: jtrak sample ($NT targets, 1000-step DDPM; not timed)" >&2
OMP_NUM_THREADS=$THREADS "$JT" sample --model "$MODEL" --out "$WORK/samples" --n "$NT" --steps 1000 \
  --quiet > /dev/null 2> "$WORK/sample.log" || { cat "$WORK/sample.log" >&2; exit 1; }
TRAJ="$WORK/samples/trajectory.safetensors"
TARGETS=$(seq -s, 0 $((NT - 1)))
echo "bench-attrib: jtrak score (journey, targets $TARGETS, steps $STEPS, R=$R)" >&2
t0=$(now); b0=$(busy)
OMP_NUM_THREADS=$THREADS /usr/bin/time -v -o "$WORK/score.time" \
  "$JT" score --store "$WORK/store" --trajectory "$TRAJ" --out "$WORK/scores" --method journey \
  --steps "$STEPS" --targets "$TARGETS" --R "$R" --batch "$BATCH" --quiet \
  > "$WORK/score.out" 2> "$WORK/score.log" || { cat "$WORK/score.log" >&2; exit 1; }
t1=$(now); b1=$(busy)
OTHER=$(other_cores "$b0" "$b1" "$WORK/score.time" "$(awk -v a="$t0" -v b="$t1" 'BEGIN { print b - a }')")
python3 - "$N" "$K" "$S" "$NT" "$STEPS" "$R" "$THREADS" "$t0" "$t1" "$(peak_mb "$WORK/score.time")" "$OTHER" >> "$OUT" <<'PY'
import json, sys
n, k, s, nt, steps, r, threads, t0, t1, peak, other = sys.argv[1:]
sec = float(t1) - float(t0)
steps = [int(x) for x in steps.split(",")]
print(json.dumps(dict(impl="jtrak", what="score", n=int(n), k=int(k), S=int(s), threads=int(threads),
                      precision="fp32", targets=int(nt), steps=steps, R=int(r), seconds=round(sec, 2),
                      target_grads_per_s=round(int(nt) * len(steps) / sec, 3), peak_rss_mb=float(peak),
                      other_cpu_cores=float(other))))
PY

# --- traker ------------------------------------------------------------------------------------
if [ "$HAVE_TRAKER" = 1 ]; then
  run_traker() {  # $1 = precision, $2 = n
    echo "bench-attrib: traker $1 featurize ($2 images) + score (lambda_reg $LAMBDA)" >&2
    local lam=$LAMBDA
    OMP_NUM_THREADS=$THREADS /usr/bin/time -v -o "$WORK/traker_$1.time" \
      "$PY" ref/bench_traker.py "$MODEL" --n "$2" --S "$S" --k "$K" --batch "$BATCH" \
      --threads "$THREADS" --trajectory "$TRAJ" --targets "$NT" --steps "$STEPS" --R "$R" \
      --lambda "$lam" --precision "$1" --workdir "$WORK/traker_$1" \
      --scores-out "$WORK/traker_$1_scores.npz" 2> "$WORK/traker_$1.log" | tagged_round "$ROUND" >> "$OUT" \
      || { tail -30 "$WORK/traker_$1.log" >&2; exit 1; }
  }
  run_traker fp32 "$N"
  if [ "$FP16" = 1 ]; then run_traker fp16 "$N16"; fi
else
  echo "bench-attrib: no traker environment ($PY with torch, diffusers, traker); run 'make twin' to create ref/.venv" >&2
fi

# Further rounds of the two featurize measurements the headline ratio compares (jtrak's default
# projection, traker fp32), alternating: the machine's speed drifts over minutes (README,
# Performance), so the report takes each side's median and gives the range of the rounds' ratios.
for ROUND in $(seq 2 "$ROUNDS"); do
  run_jtrak_featurize rademacher "$WORK/store-round"
  if [ "$HAVE_TRAKER" = 1 ]; then run_traker fp32 "$N"; fi
done
rm -rf "$WORK/store-round"

# GFLOP/s of every featurize row (convention at the top of this file).
python3 - "$OUT" "$WORK/flops.json" <<'PY'
import json, os, sys
out, flops = sys.argv[1:]
f = json.load(open(flops))
rows = [json.loads(l) for l in open(out) if l.strip()]
for r in rows:
    if r["what"] == "featurize":
        per = r["S"] * 3 * f["forward_flops"] + 2 * f["params"] * r["k"]
        r.update(forward_flops=f["forward_flops"], params=f["params"], flops_per_image=per,
                 gflops=round(r["images_per_s"] * per / 1e9, 3))
with open(out + ".partial", "w") as fo:
    fo.writelines(json.dumps(r) + "\n" for r in rows)
os.replace(out + ".partial", out)
PY

python3 scripts/bench_report.py "$OUT"
echo "bench-attrib: JSON lines in $OUT" >&2
