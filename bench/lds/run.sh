#!/usr/bin/env bash
# The LDS benchmark of jtrak: the Fashion-MNIST analogue of the CIFAR-2 benchmark of the diffusion
# attribution literature (landscape.md 0), run end to end with jtrak alone. See bench/lds/README.md.
#
#   bench/lds/run.sh            the full protocol (K = 64 subsets, ensembles of 1, 4 and 8 models)
#   QUICK=1 bench/lds/run.sh    the smoke variant (K = 16, ensembles of 1 and 2)
#
# Every stage resumes: run the same command again after an interruption.
set -euo pipefail
cd "$(dirname "$0")/../.."
J=${JTRAK:-build/jtrak}
if [ "${QUICK:-0}" = 1 ]; then
  K=${K:-16}; M=${M:-2}; CEIL=${CEIL:-2}; OUT=${OUT:-out/bench-lds-quick}
else
  K=${K:-64}; M=${M:-8}; CEIL=${CEIL:-4}; OUT=${OUT:-out/bench-lds}
fi
N_TRAIN=${N_TRAIN:-1000}   # training images: the first N of Fashion-MNIST train, resized to 16x16
STEPS=${STEPS:-750}        # optimiser steps of 64 images, for the full and every subset model
N_TARGETS=${N_TARGETS:-16} # generated samples (targets)
S=${S:-20}                 # draws per training feature
K_PROJ=${K_PROJ:-512}      # projection dimension (below the 1,000 training images: X^T X invertible)
R=${R:-20}                 # draws per target gradient
R_EVAL=${R_EVAL:-100}      # draws per ground-truth value
T_GRID=${T_GRID:-900,700,500,300,100,0}
CF_TARGETS=${CF_TARGETS:-0,1,2,3} # counterfactual: targets, step and images removed (fixed in advance)
CF_STEP=${CF_STEP:-500}
CF_K=${CF_K:-50}
DATA="--data fashion-mnist --limit $N_TRAIN --fit resize"
RECIPE="--config bench/lds/fm16.json --steps $STEPS --batch 64 --lr 2e-3 --warmup 50"
start=$(date +%s)
stage() { echo "[bench-lds $(( $(date +%s) - start ))s] $*" >&2; }

stage "full models: an ensemble of $M (seeds 0..$((M-1)))"
models=""
for m in $(seq 0 $((M-1))); do
  $J train $RECIPE $DATA --seed "$m" --out "$OUT/full/m$m" --quiet >/dev/null
  models="${models:+$models,}$OUT/full/m$m"
done

stage "targets: $N_TARGETS samples of model 0 (DDPM, 1000 steps)"
[ -f "$OUT/samples/trajectory.safetensors" ] ||
  $J sample --model "$OUT/full/m0" --out "$OUT/samples" --n "$N_TARGETS" --quiet >/dev/null
TRAJ="$OUT/samples/trajectory.safetensors"

stage "features: loss output, k $K_PROJ, S $S, $M models; S 5 for model 0; D-TRAK output for model 0"
$J featurize --models "$models" $DATA --out "$OUT/features" --k "$K_PROJ" --S "$S" --batch 32 --quiet >/dev/null
$J featurize --models "$OUT/full/m0" $DATA --out "$OUT/features-S5" --k "$K_PROJ" --S 5 --batch 32 --quiet >/dev/null
$J featurize --models "$OUT/full/m0" $DATA --out "$OUT/features-dtrak" --k "$K_PROJ" --S "$S" --output sqnorm --batch 32 --quiet >/dev/null

stage "features with the faster projections (model 0, k $K_PROJ, S $S): sparse JL and block Hadamard"
for p in sparse hadamard; do
  $J featurize --models "$OUT/full/m0" $DATA --out "$OUT/features-$p" --k "$K_PROJ" --S "$S" --projection "$p" --batch 32 --quiet >/dev/null
done

stage "scores"
score() { # name, then score options
  local name=$1; shift
  [ -f "$OUT/scores/$name/manifest.json" ] ||
    $J score --trajectory "$TRAJ" --out "$OUT/scores/$name" --R "$R" --quiet "$@" >/dev/null
  SCORES="${SCORES:+$SCORES,}$OUT/scores/$name"
}
SCORES=""
for e in 1 $( [ "$M" -ge 4 ] && echo 4 ) $( [ "$M" -gt 1 ] && echo "$M" ); do
  score "journey-M$e" --store "$OUT/features" --ensemble "$e" --steps "$T_GRID"
done
score journey-S5 --store "$OUT/features-S5" --steps "$T_GRID"
score "trak-M$M" --store "$OUT/features" --method trak
score dtrak-M1 --store "$OUT/features-dtrak" --method dtrak
score pixel --method pixel $DATA --size 16 --steps "$T_GRID"
for p in sparse hadamard; do
  score "journey-M1-$p" --store "$OUT/features-$p" --steps "$T_GRID"
done

N_HELD=${N_HELD:-32}       # held-out real targets: the first N Fashion-MNIST test images
HELD="fashion-mnist:test"
stage "held-out targets: the first $N_HELD Fashion-MNIST test images (D-TRAK protocol, val)"
score_heldout() { # name, then score options
  local name=$1; shift
  [ -f "$OUT/scores/$name/manifest.json" ] ||
    $J score --targets-data "$HELD" --targets-limit "$N_HELD" --targets-fit resize \
      --out "$OUT/scores/$name" --R "$R" --quiet "$@" >/dev/null
  SCORES="${SCORES:+$SCORES,}$OUT/scores/$name"
}
score_heldout "trak-M$M-heldout" --store "$OUT/features" --method trak
score_heldout dtrak-M1-heldout --store "$OUT/features-dtrak" --method dtrak
score_heldout pixel-heldout --method pixel $DATA --size 16

stage "LDS: $K subset models (+$CEIL for the noise ceiling), ground truth, statistics"
$J lds --model "$OUT/full/m0" --trajectory "$TRAJ" --out "$OUT/lds" --scores "$SCORES" \
  --heldout-data "$HELD" --heldout-limit "$N_HELD" --heldout-fit resize \
  --K "$K" --ceiling "$CEIL" --steps "$T_GRID" --R-eval "$R_EVAL" --quiet | tee "$OUT/lds-table.txt"

stage "counterfactual: targets $CF_TARGETS without the top $CF_K by journey-M$M at t = $CF_STEP, $CF_K random, $CF_K nearest"
$J counterfactual --model "$OUT/full/m0" --trajectory "$TRAJ" --scores "$OUT/scores/journey-M$M" \
  --step "$CF_STEP" --k "$CF_K" --targets "$CF_TARGETS" --out "$OUT/counterfactual" --quiet | tee "$OUT/counterfactual-table.txt"
stage "done: $OUT/lds/lds.json, $OUT/lds/lds.png, $OUT/counterfactual/counterfactual.json"
