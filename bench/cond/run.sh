#!/usr/bin/env bash
# Class agreement of Journey-TRAK's proponents, per step (issue 12's measurement, in the README):
# for each generated sample, the fraction of its top-10 proponents (training images with the
# largest scores at step t) that share the sample's class, for
#   conditional    a class-conditional fm-xs (--cond class, condition dropout 0.1) and guided
#                  samples of known class (--class all --guidance $W),
#   unconditional  the same recipe without conditioning; a sample's class is the label of its
#                  nearest training image (pixel cosine at t = 0, jtrak score --method pixel),
#   permuted       the conditional samples' proponents against another sample's class (the
#                  classes shifted by one among the samples): the chance level of this data.
# Both models: the demo's recipe on the first 5000 Fashion-MNIST training images. Every stage
# resumes (run the same command again after an interruption). About 25 minutes on 2 cores.
set -euo pipefail
cd "$(dirname "$0")/../.."
J=${JTRAK:-build/jtrak}
OUT=${OUT:-out/bench-cond}
N_TRAIN=${N_TRAIN:-5000}
STEPS=${STEPS:-1500}
N_SAMPLES=${N_SAMPLES:-20}   # two per class with --class all
W=${W:-3}                    # guidance scale of the conditional samples
S=${S:-5}; K=${K:-2048}; R=${R:-20}
T_GRID=${T_GRID:-900,700,500,300,100,0}
DATA="--data fashion-mnist --limit $N_TRAIN"
RECIPE="--config fm-xs --steps $STEPS --batch 64 --lr 2e-3 --warmup 100"
start=$(date +%s)
stage() { echo "[bench-cond $(( $(date +%s) - start ))s] $*" >&2; }

stage "models: unconditional and class-conditional (condition dropout 0.1)"
$J train $RECIPE $DATA --out "$OUT/uncond" --quiet >/dev/null
$J train $RECIPE $DATA --cond class --uncond-prob 0.1 --out "$OUT/cond" --quiet >/dev/null

stage "samples: $N_SAMPLES of each (DDPM, 1000 steps); conditional ones guided ($W), class i mod 10"
[ -f "$OUT/samples-uncond/trajectory.safetensors" ] ||
  $J sample --model "$OUT/uncond" --out "$OUT/samples-uncond" --n "$N_SAMPLES" --quiet >/dev/null
[ -f "$OUT/samples-cond/trajectory.safetensors" ] ||
  $J sample --model "$OUT/cond" --out "$OUT/samples-cond" --n "$N_SAMPLES" --class all \
    --guidance "$W" --quiet >/dev/null

stage "features (k $K, S $S) and scores at t = $T_GRID (R $R, top 10)"
for m in uncond cond; do
  $J featurize --models "$OUT/$m" $DATA --out "$OUT/features-$m" --k "$K" --S "$S" --batch 32 \
    --quiet >/dev/null
  [ -f "$OUT/scores-$m/manifest.json" ] ||
    $J score --store "$OUT/features-$m" --trajectory "$OUT/samples-$m/trajectory.safetensors" \
      --out "$OUT/scores-$m" --steps "$T_GRID" --R "$R" --topk 10 --topk-only --quiet >/dev/null
done
[ -f "$OUT/nearest-uncond/manifest.json" ] ||
  $J score --method pixel $DATA --trajectory "$OUT/samples-uncond/trajectory.safetensors" \
    --out "$OUT/nearest-uncond" --steps 0 --topk 1 --topk-only --quiet >/dev/null

stage "class agreement"
python3 bench/cond/class_agreement.py --labels /usr/share/datasets/fashion-mnist/train-labels-idx1-ubyte.gz \
  --cond "$OUT/scores-cond/topk.json" --cond-trajectory "$OUT/samples-cond/trajectory.safetensors" \
  --uncond "$OUT/scores-uncond/topk.json" --nearest "$OUT/nearest-uncond/topk.json" |
  tee "$OUT/class_agreement.md"
stage "done"
