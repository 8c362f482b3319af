#!/usr/bin/env bash
# The latent, text-conditional system's measurements (issue 13, in the README), on the demo's
# instance (jtrak demo-ldm: the vae-fm AutoencoderKL trained by jtrak on the first 5,000
# Fashion-MNIST training images padded to 32x32, the ldm-xs UNet2DConditionModel on their
# posterior samples with the MiniLM caption contexts of data/fm-captions and caption dropout 0.1):
#
#   1. caption agreement: $N_SAMPLES guided samples (w = $W, prompt i mod 10 = "a photo of a
#      <class i>"), featurized rows with their own captions, journey scores at $T_GRID; per step the
#      fraction of each sample's top-10 proponents whose caption is the sample's prompt, beside the
#      permuted control (each sample against another sample's prompt);
#   2. LDS on a small latent instance: the first $LDS_N latents, a U-Net trained $LDS_STEPS steps,
#      $LDS_K subset models, journey scores of $LDS_TARGETS samples (jtrak lds).
# The VAE, latents, U-Net and features are those of `jtrak demo-ldm --out $OUT` (the same
# commands: either reuses the other's). Every stage resumes (run the same command again after an
# interruption).
set -euo pipefail
cd "$(dirname "$0")/../.."
J=${JTRAK:-build/jtrak}
OUT=${OUT:-out/demo-ldm}
N_SAMPLES=${N_SAMPLES:-20}
W=${W:-3}
S=${S:-5}; K=${K:-2048}; R=${R:-20}
T_GRID=${T_GRID:-900,700,500,300,100,0}
LDS_N=${LDS_N:-1000}; LDS_STEPS=${LDS_STEPS:-400}; LDS_K=${LDS_K:-16}; LDS_TARGETS=${LDS_TARGETS:-8}
LDS_KPROJ=${LDS_KPROJ:-256} # projection dimension of the LDS features (below the rows: X^T X invertible)
CAPTIONS=${CAPTIONS:-data/fm-captions/minilm-l16.npy}
COND="--cond npy:$CAPTIONS --cond-index labels"
start=$(date +%s)
stage() { echo "[bench-ldm $(( $(date +%s) - start ))s] $*" >&2; }

stage "the demo's VAE, latents and U-Net (jtrak demo-ldm stages)"
$J train-vae --preset vae-fm --limit 5000 --size 32 --fit pad --steps 300 --out "$OUT/vae" \
  --quiet >/dev/null
[ -f "$OUT/latents.npy" ] ||
  $J encode --vae "$OUT/vae" --limit 5000 --size 32 --fit pad --out "$OUT/latents.npy" --quiet >/dev/null
LAT="--data latents:$OUT/latents.npy"
$J train --config ldm-xs $LAT $COND --uncond row:10 --uncond-prob 0.1 --steps 1500 --warmup 100 \
  --out "$OUT/model" --quiet >/dev/null

stage "samples: $N_SAMPLES guided (w $W), prompt i mod 10"
PROMPTS=$(seq -s, 0 $((N_SAMPLES - 1)) | tr , '\n' | awk '{printf "%s%d", (NR > 1 ? "," : ""), $1 % 10}')
[ -f "$OUT/bench-samples/trajectory.safetensors" ] ||
  $J sample --model "$OUT/model" --out "$OUT/bench-samples" --context "npy:$CAPTIONS" \
    --prompt-index "$PROMPTS" --uncond row:10 --guidance "$W" --vae "$OUT/vae" --quiet >/dev/null

stage "features (k $K, S $S, own captions) and journey scores at $T_GRID (R $R, top 10)"
$J featurize --models "$OUT/model" $LAT $COND --k "$K" --S "$S" --projection sparse --batch 32 \
  --out "$OUT/features" --quiet >/dev/null
[ -f "$OUT/bench-scores/manifest.json" ] ||
  $J score --store "$OUT/features" --trajectory "$OUT/bench-samples/trajectory.safetensors" \
    --out "$OUT/bench-scores" --steps "$T_GRID" --R "$R" --topk 10 --topk-only --quiet >/dev/null

stage "caption agreement"
python3 bench/cond/class_agreement.py \
  --labels /usr/share/datasets/fashion-mnist/train-labels-idx1-ubyte.gz \
  --cond "$OUT/bench-scores/topk.json" --target-classes "$PROMPTS" | tee "$OUT/caption_agreement.md"

if [ "${LDS:-1}" = 1 ]; then
  stage "LDS: $LDS_N latents, $LDS_STEPS steps, K $LDS_K, $LDS_TARGETS targets"
  LL="$LAT --limit $LDS_N"
  $J train --config ldm-xs $LL $COND --uncond row:10 --uncond-prob 0.1 --steps "$LDS_STEPS" \
    --out "$OUT/lds-model" --quiet >/dev/null
  [ -f "$OUT/lds-samples/trajectory.safetensors" ] ||
    $J sample --model "$OUT/lds-model" --out "$OUT/lds-samples" --context "npy:$CAPTIONS" \
      --prompt-index "$(seq -s, 0 $((LDS_TARGETS - 1)))" --sampler ddim --steps 50 --quiet >/dev/null
  $J featurize --models "$OUT/lds-model" $LL $COND --k "$LDS_KPROJ" --S "$S" --projection sparse \
    --out "$OUT/lds-features" --quiet >/dev/null
  [ -f "$OUT/lds-journey/manifest.json" ] ||
    $J score --store "$OUT/lds-features" --trajectory "$OUT/lds-samples/trajectory.safetensors" \
      --out "$OUT/lds-journey" --steps all --R 10 --quiet >/dev/null
  $J lds --model "$OUT/lds-model" --trajectory "$OUT/lds-samples/trajectory.safetensors" \
    --scores "$OUT/lds-journey" --out "$OUT/lds" --K "$LDS_K" --ceiling 2 \
    --steps 980,700,500,300,100,0 --R-eval 20 --quiet | tee "$OUT/lds.txt"
fi
stage "done"
