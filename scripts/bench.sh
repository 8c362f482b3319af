#!/usr/bin/env bash
# `make bench`: one run on one machine that measures, with the same thread count throughout,
#
#   1. OpenBLAS SGEMM's peak GFLOP/s (bench/bench_sgemm.c): the yardstick for the rest
#   2. the U-Net forward and training step (batch 64, the shipped Fashion-MNIST configs; and the
#      class-conditional training step of fm-xs with num_class_embeds 11) of jtrak
#      (bench/bench_unet.c) and of diffusers' UNet2DModel in PyTorch (ref/bench_torch.py): images/s,
#      achieved GFLOP/s (unet/unet_flops.h) and % of the SGEMM peak, peak memory; the latent,
#      text-conditional networks (ldm-xs UNet2DConditionModel, vae-fm AutoencoderKL: bench/
#      bench_ldm.c beside ref/bench_torch_ldm.py)
#   3. sampling: U-Net evaluations/s of the DDIM loop at batches 16 and 64, jtrak and diffusers
#   4. featurize (k = 2048, S = 20) and score of jtrak and the traker library on the CPU with the
#      same model (scripts/bench-attrib.sh; traker's float16 run is skipped unless FP16=1):
#      images/s, GFLOP/s, peak memory, score seconds
#   5. the random projections (bench/bench_project, when built): speed of each kind beside the
#      dense Rademacher one
#   6. scaling: featurize and score time as the training set and the targets grow, with fitted
#      exponents (scripts/bench-scaling.sh)
#
# Every measurement runs in its own process, so each peak memory figure is its own. The PyTorch and
# traker sides need the reference twin's virtual environment (ref/.venv, made by `make fixtures`) or
# JTRAK_TORCH_PYTHON; without it only jtrak is measured (the other columns show "-").
#
# Results: one combined table on stdout (scripts/bench_report.py), the same tables as Markdown in
# $BUILD/bench.md (for the README), JSON lines in $BUILD/bench.jsonl, $BUILD/bench-attrib.jsonl and
# $BUILD/bench-scaling.jsonl, progress and the parts' logs on stderr. Defaults take about 15
# minutes on a 2-core machine (plus the wait for an idle machine).
#
# Knobs (environment): THREADS (2), BATCH (U-Net batch, 64), ITERS (timed iterations, 5),
# ROUNDS (alternating jtrak/diffusers rounds of the forward and training step, 3),
# CONFIGS (configs/fm-xs.json configs/fm-s.json), SAMPLE_BATCHES (16,64), SAMPLE_STEPS (10),
# SGEMM_SIZES (1024,2048,4096), COND_CONFIG (configs/fm-xs.json) and COND_K (11) of the
# class-conditional training step; COND=0 / LDM=0 / ATTRIB=0 / SCALING=0 / PROJECT=0 / TWIN=0 skip a part; the
# attribution part reads N, S, K, ATTRIB_BATCH (its BATCH), NT, STEPS, R, FP16 (scripts/
# bench-attrib.sh) and the scaling part SIZES, SCALE_S, TARGETS, ... (scripts/bench-scaling.sh);
# LOAD_MAX, WAIT_S: wait up to WAIT_S seconds for the load average to drop below LOAD_MAX first.
# A small end-to-end run: SMALL=1 make bench (tiny sizes, about a minute; numbers meaningless).
set -euo pipefail
cd "$(dirname "$0")/.."
. scripts/bench-lib.sh
BUILD=${1:-build}
if [ "${SMALL:-0}" = 1 ]; then
  : "${ITERS:=1}" "${ROUNDS:=2}" "${BATCH:=8}" "${SAMPLE_BATCHES:=2,4}" "${SAMPLE_STEPS:=2}" "${SGEMM_SIZES:=256,512}"
  : "${N:=16}" "${S:=2}" "${K:=256}" "${NT:=2}" "${STEPS:=900,100}" "${R:=2}" "${N16:=8}"
  : "${SIZES:=16,32,64}" "${SCALE_S:=1}" "${TARGETS:=1,2,4}" "${NT0:=2}" "${SCALE_R:=1}"
  : "${SGEMM_MIN_S:=0.05}" "${WAIT_S:=0}" "${CONFIGS:=configs/fm-xs.json}" "${PROJECT_ITERS:=1}"
  export N S K NT STEPS R N16 SIZES SCALE_S TARGETS NT0 SCALE_R
fi
THREADS=${THREADS:-2}
BATCH=${BATCH:-64}
ITERS=${ITERS:-5}
ROUNDS=${ROUNDS:-3}
CONFIGS=${CONFIGS:-configs/fm-xs.json configs/fm-s.json}
SAMPLE_BATCHES=${SAMPLE_BATCHES:-16,64}
SAMPLE_STEPS=${SAMPLE_STEPS:-10}
SGEMM_SIZES=${SGEMM_SIZES:-1024,2048,4096}
SGEMM_MIN_S=${SGEMM_MIN_S:-0.5}
LOAD_MAX=${LOAD_MAX:-1.0}
WAIT_S=${WAIT_S:-300}
PY=${JTRAK_TORCH_PYTHON:-ref/.venv/bin/python}
OUT="$BUILD/bench.jsonl"
export THREADS
: > "$OUT"

for exe in bench_unet bench_ldm bench_sgemm jtrak; do
  [ -x "$BUILD/$exe" ] || { echo "bench: $BUILD/$exe not built (run make)" >&2; exit 1; }
done
HAVE_TORCH=0
if [ "${TWIN:-1}" = 1 ] && [ -x "$PY" ] && "$PY" -c "import torch, diffusers" 2>/dev/null; then
  HAVE_TORCH=1
else
  echo "bench: no PyTorch twin ($PY with torch and diffusers; 'make twin' creates ref/.venv):" \
       "jtrak only" >&2
fi

wait_for_idle bench
CPU=$(lscpu | sed -n 's/^Model name: *//p')
python3 -c 'import json, sys; print(json.dumps(dict(impl="machine", what="machine", cpu=sys.argv[1],
  cores=int(sys.argv[2]), threads=int(sys.argv[3]), load_avg=float(sys.argv[4]), date=sys.argv[5],
  kernel=sys.argv[6])))' "$CPU" "$(nproc)" "$THREADS" "$(load1)" "$(date -u +%Y-%m-%dT%H:%MZ)" \
  "$(uname -r)" >> "$OUT"
echo "machine: $CPU, $(nproc) cores; threads $THREADS, batch $BATCH, load average $(load1)" >&2
T0=$(date +%s)

# 1. SGEMM peak
echo "bench: OpenBLAS SGEMM peak (n = $SGEMM_SIZES)" >&2
OMP_NUM_THREADS=$THREADS "$BUILD/bench_sgemm" --sizes "$SGEMM_SIZES" --min-seconds "$SGEMM_MIN_S" \
  >> "$OUT"

# 2-3. U-Net forward, training step and sampling; one process per measurement. Forward and
# training step run in ROUNDS alternating rounds (jtrak, then diffusers, then jtrak again, ...):
# this machine's speed drifts by 10-20% over minutes (other tenants of the host), so one
# measurement of each side would compare different machines; the report gives the median of the
# rounds and the range of the per-round ratios.
jtrak_unet() { # cfg what [round]
  echo "bench: jtrak $1 $2${3:+ (round $3)}" >&2
  OMP_NUM_THREADS=$THREADS "$BUILD/bench_unet" "$1" --what "$2" --batch "$BATCH" \
    --iters "$ITERS" --sample-batches "$SAMPLE_BATCHES" --sample-steps "$SAMPLE_STEPS" \
    --class-embeds "${CLASS_EMBEDS:-0}" | tagged_round "${3:-1}" >> "$OUT"
}
torch_unet() { # cfg what [round]
  [ "$HAVE_TORCH" = 1 ] || return 0
  echo "bench: diffusers $1 $2${3:+ (round $3)}" >&2
  # flops is counted on a batch of 2 (the count is per image and does not depend on it)
  local b=$BATCH; [ "$2" = flops ] && b=2
  OMP_NUM_THREADS=$THREADS "$PY" ref/bench_torch.py "$1" --what "$2" --batch "$b" \
    --threads "$THREADS" --iters "$ITERS" --warmup 1 --sample-batches "$SAMPLE_BATCHES" \
    --sample-steps "$SAMPLE_STEPS" --class-embeds "${CLASS_EMBEDS:-0}" 2> "$BUILD/bench_torch.log" \
    | tagged_round "${3:-1}" >> "$OUT" \
    || { tail -20 "$BUILD/bench_torch.log" >&2; exit 1; }
}
for cfg in $CONFIGS; do
  "$BUILD/bench_unet" "$cfg" --flops >> "$OUT"
  torch_unet "$cfg" flops
  for round in $(seq 1 "$ROUNDS"); do
    for what in forward train_step; do
      jtrak_unet "$cfg" "$what" "$round"
      torch_unet "$cfg" "$what" "$round"
    done
  done
  jtrak_unet "$cfg" sample
  torch_unet "$cfg" sample
done

# 2b. the class-conditional training step (COND_CONFIG with num_class_embeds COND_K, labels drawn
# per batch on both sides; its rows are config "<name>-cls<K>"), in the same alternating rounds.
if [ "${COND:-1}" = 1 ]; then
  COND_CONFIG=${COND_CONFIG:-configs/fm-xs.json}
  COND_K=${COND_K:-11}
  "$BUILD/bench_unet" "$COND_CONFIG" --flops --class-embeds "$COND_K" >> "$OUT"
  CLASS_EMBEDS=$COND_K torch_unet "$COND_CONFIG" flops
  for round in $(seq 1 "$ROUNDS"); do
    CLASS_EMBEDS=$COND_K jtrak_unet "$COND_CONFIG" train_step "$round"
    CLASS_EMBEDS=$COND_K torch_unet "$COND_CONFIG" train_step "$round"
  done
fi

# 2c. the latent, text-conditional networks (bench/bench_ldm.c beside ref/bench_torch_ldm.py):
# the ldm-xs UNet2DConditionModel's forward and training step with a 16 x 384 context (the demo's
# MiniLM captions) and the vae-fm AutoencoderKL's encode and decode at 32 x 32, in the same
# alternating rounds.
if [ "${LDM:-1}" = 1 ]; then
  jtrak_ldm() { # cfg what round
    echo "bench: jtrak $1 $2 (round $3)" >&2
    OMP_NUM_THREADS=$THREADS "$BUILD/bench_ldm" "$1" --what "$2" --batch "$BATCH" \
      --iters "$ITERS" --ctx-len 16 | tagged_round "$3" >> "$OUT"
  }
  torch_ldm() { # cfg what round
    [ "$HAVE_TORCH" = 1 ] || return 0
    echo "bench: diffusers $1 $2 (round $3)" >&2
    OMP_NUM_THREADS=$THREADS "$PY" ref/bench_torch_ldm.py "$1" --what "$2" --batch "$BATCH" \
      --threads "$THREADS" --iters "$ITERS" --warmup 1 --ctx-len 16 2> "$BUILD/bench_torch.log" \
      | tagged_round "$3" >> "$OUT" || { tail -20 "$BUILD/bench_torch.log" >&2; exit 1; }
  }
  for round in $(seq 1 "$ROUNDS"); do
    for what in forward train_step; do
      jtrak_ldm configs/ldm-xs.json "$what" "$round"
      torch_ldm configs/ldm-xs.json "$what" "$round"
    done
    for what in encode decode; do
      jtrak_ldm configs/vae-fm.json "$what" "$round"
      torch_ldm configs/vae-fm.json "$what" "$round"
    done
  done
fi

# 4. featurize and score beside traker (its own table goes to $BUILD/bench-attrib.txt)
if [ "${ATTRIB:-1}" = 1 ]; then
  echo "bench: featurize and score (scripts/bench-attrib.sh)" >&2
  ( [ "$HAVE_TORCH" = 1 ] || export JTRAK_TORCH_PYTHON=/nonexistent
    BATCH=${ATTRIB_BATCH:-16} FP16=${FP16:-0} WAIT_S=0 ROUNDS=$ROUNDS scripts/bench-attrib.sh "$BUILD" ) \
    > "$BUILD/bench-attrib.txt"
else
  : > "$BUILD/bench-attrib.jsonl"
fi

# 5. projections (bench/bench_project.c, when it is built)
if [ "${PROJECT:-1}" = 1 ] && [ -x "$BUILD/bench_project" ]; then
  echo "bench: projections (bench_project)" >&2
  OMP_NUM_THREADS=$THREADS "$BUILD/bench_project" --config configs/fm-xs.json --k "${K:-2048}" \
    --batch "${ATTRIB_BATCH:-16}" --iters "${PROJECT_ITERS:-3}" \
    | grep '"what" *: *"project"' >> "$OUT" || echo "bench: bench_project failed; no projection rows" >&2
fi

# 6. scaling (its own table goes to $BUILD/bench-scaling.txt)
if [ "${SCALING:-1}" = 1 ]; then
  echo "bench: scaling (scripts/bench-scaling.sh)" >&2
  scripts/bench-scaling.sh "$BUILD" > "$BUILD/bench-scaling.txt"
else
  : > "$BUILD/bench-scaling.jsonl"
fi

echo "bench: done in $(( $(date +%s) - T0 )) s" >&2
python3 scripts/bench_report.py --markdown "$BUILD/bench.md" \
  "$OUT" "$BUILD/bench-attrib.jsonl" "$BUILD/bench-scaling.jsonl"
echo "bench: JSON lines in $OUT, $BUILD/bench-attrib.jsonl, $BUILD/bench-scaling.jsonl; Markdown in $BUILD/bench.md" >&2
