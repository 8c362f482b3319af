#!/usr/bin/env bash
# demo-pipeline.sh (`make demo-pipeline`): issue 14 item 5, end to end on a pipeline folder made
# here. A small StableDiffusionPipeline whose text encoder is a tiny CLIP (random weights, the
# real 49,408-token CLIP vocabulary), trained briefly by jtrak on captioned Fashion-MNIST, sampled
# from a typed prompt, attributed and reported. Each stage is the jtrak command a user would type:
#
#   tokenizer     jtrak tokenizer --bpe bpe_simple_vocab_16e6.txt.gz   (the real CLIP vocabulary)
#   text_encoder  jtrak init --config clip-tiny                        (random CLIPTextModel)
#   export        jtrak export --data fashion-mnist --caption "a photo of a {class}"
#   vae, encode   jtrak train-vae / encode on captions:W/fm/captions.csv (padded to 32x32)
#   contexts      jtrak encode-text --captions ...; the empty prompt's (encode-text --text '')
#   train         jtrak train --config ldm-xs (cross_attention_dim 32) ... --vae --text-encoder
#                 --tokenizer --out W/pipe                             (a pipeline folder)
#   sample        jtrak sample --model W/pipe --prompt "a photo of a trouser" --guidance 3 (DDIM)
#   featurize, score, report   the training latents with their own captions; every sampler step
#   check         ref/check_pipeline.py W/pipe (diffusers loads it), when ref/.venv exists
#
# Resumable: a stage whose marker W/.done-STAGE exists is skipped (delete W, or the marker, to redo
# it). Each stage's wall time is printed, and the table again at the end (W/times.txt).
#
# usage: scripts/demo-pipeline.sh [BUILD_DIR]      (default: build)
# environment:
#   W=DIR          work folder (default out/demo-pipeline; out/demo-pipeline-quick with QUICK=1)
#   BPE=FILE       OpenCLIP's bpe_simple_vocab_16e6.txt.gz (default: ref/.venv's open_clip)
#   QUICK=1        tiny sizes (about a minute; not a useful model); TINY=1 even smaller (the test)
#   N=2000         training images (the first N of Fashion-MNIST train)
#   TOKENIZER=DIR  use this tokenizer folder instead of building one from BPE
#   TEXT_CONFIG=F  a CLIPTextModel config.json for jtrak init instead of clip-tiny
#   CHECK=0        skip ref/check_pipeline.py
#   JTRAK=FILE     the jtrak binary (default BUILD_DIR/jtrak)
set -euo pipefail
ROOT=$(cd "$(dirname "$0")/.." && pwd)
BUILD=${1:-build}
case $BUILD in /*) ;; *) BUILD=$ROOT/$BUILD ;; esac
J=${JTRAK:-$BUILD/jtrak}
[ -x "$J" ] || { echo "demo-pipeline: $J not built (run make)" >&2; exit 1; }
export OMP_WAIT_POLICY=${OMP_WAIT_POLICY:-PASSIVE}

QUICK=${QUICK:-0}
TINY=${TINY:-0}
if [ "$TINY" = 1 ]; then
    DEF_W=out/demo-pipeline-tiny; DEF_N=32; VAE_STEPS=2; VAE_WARMUP=1; STEPS=4; WARMUP=1
    SAMPLE_STEPS=4; NSAMP=2; K=16; S=1; R=2
elif [ "$QUICK" = 1 ]; then
    DEF_W=out/demo-pipeline-quick; DEF_N=200; VAE_STEPS=30; VAE_WARMUP=5; STEPS=100; WARMUP=10
    SAMPLE_STEPS=10; NSAMP=2; K=128; S=2; R=4
else
    DEF_W=out/demo-pipeline; DEF_N=2000; VAE_STEPS=200; VAE_WARMUP=50; STEPS=1000; WARMUP=100
    SAMPLE_STEPS=20; NSAMP=4; K=1024; S=5; R=20
fi
W=${W:-$ROOT/$DEF_W}
N=${N:-$DEF_N}
PROMPT=${PROMPT:-a photo of a trouser}
mkdir -p "$W"
W=$(cd "$W" && pwd)
TIMES=$W/times.txt
: >"$TIMES.new"
LOAD0=$(cut -d" " -f1-3 /proc/loadavg)

# stage NAME CMD...: runs CMD (printed first) unless W/.done-NAME exists; records its wall time.
stage() {
    local name=$1
    shift
    if [ -e "$W/.done-$name" ]; then
        echo "demo-pipeline: $name: done before (W/.done-$name), skipped" >&2
        printf '%-13s skipped\n' "$name" >>"$TIMES.new"
        return 0
    fi
    echo >&2
    echo "demo-pipeline: [$name] $*" >&2
    local t0 t1
    t0=$(date +%s.%N)
    "$@" >&2 # results too: stdout is the report path alone
    t1=$(date +%s.%N)
    local dt
    dt=$(awk -v a="$t0" -v b="$t1" 'BEGIN { printf "%.1f", b - a }')
    echo "demo-pipeline: [$name] ${dt} s" >&2
    printf '%-13s %8s s\n' "$name" "$dt" >>"$TIMES.new"
    touch "$W/.done-$name"
}

# a) the tokenizer: the real CLIP vocabulary from OpenCLIP's BPE merges (never committed here)
if [ -n "${TOKENIZER:-}" ]; then
    TOK=$TOKENIZER
else
    TOK=$W/tokenizer
    if [ ! -e "$W/.done-tokenizer" ]; then
        if [ -z "${BPE:-}" ]; then
            for f in "$ROOT"/ref/.venv/lib/python3*/site-packages/open_clip/bpe_simple_vocab_16e6.txt.gz; do
                [ -f "$f" ] && BPE=$f
            done
        fi
        if [ -z "${BPE:-}" ] || [ ! -f "$BPE" ]; then
            cat >&2 <<'EOF'
demo-pipeline: OpenCLIP's BPE file bpe_simple_vocab_16e6.txt.gz was not found (looked in BPE=FILE
and ref/.venv/lib/python3*/site-packages/open_clip/). It ships in the PyPI wheel open-clip-torch
(MIT); to get it without installing anything:
    pip download open-clip-torch==3.3.0 --no-deps -d /tmp/oc
    unzip -o /tmp/oc/open_clip_torch-3.3.0-*.whl 'open_clip/bpe_simple_vocab_16e6.txt.gz' -d /tmp/oc
    BPE=/tmp/oc/open_clip/bpe_simple_vocab_16e6.txt.gz make demo-pipeline
EOF
            exit 1
        fi
    fi
    stage tokenizer "$J" tokenizer --bpe "${BPE:-}" --out "$TOK"
fi

# b) the text encoder: a random CLIPTextModel, 32 wide, over the tokenizer's vocabulary
stage text_encoder "$J" init --config "${TEXT_CONFIG:-clip-tiny}" --out "$W/text_encoder"

# c) the captioned dataset: PNGs + captions.csv, read back as captions:W/fm/captions.csv
CAPS=captions:$W/fm/captions.csv
stage export "$J" export --data fashion-mnist --limit "$N" --caption "a photo of a {class}" \
    --out "$W/fm"

# d) the VAE (demo-ldm's vae-fm: 32x32 -> 4x8x8) and the latents
stage vae "$J" train-vae --preset vae-fm --data "$CAPS" --size 32 --fit pad --steps "$VAE_STEPS" \
    --warmup "$VAE_WARMUP" --out "$W/vae"
stage encode "$J" encode --vae "$W/vae" --data "$CAPS" --size 32 --fit pad --out "$W/latents.npy"

# e) the contexts: every row's caption through the text encoder, and the empty prompt's (the
# unconditional context of caption dropout and guidance, as StableDiffusionPipeline encodes "")
stage contexts "$J" encode-text --captions "$CAPS" --text-encoder "$W/text_encoder" \
    --tokenizer "$TOK" --out "$W/ctx.npy"
empty_context() {
    "$J" encode-text --text "" --text-encoder "$W/text_encoder" --tokenizer "$TOK" \
        --out "$W/empty_ctx.npy"
}
stage empty "empty_context"

# f) the U-Net: ldm-xs with cross-attention to the tiny CLIP's 32-wide states, trained straight
# into a pipeline folder (model_index.json + unet/ vae/ text_encoder/ tokenizer/ scheduler/)
sed 's/"cross_attention_dim": 384/"cross_attention_dim": 32/' "$ROOT/configs/ldm-xs.json" \
    >"$W/unet_config.json"
grep -q '"cross_attention_dim": 32' "$W/unet_config.json"
stage train "$J" train --config "$W/unet_config.json" --data "latents:$W/latents.npy" \
    --cond "npy:$W/ctx.npy" --uncond "npy:$W/empty_ctx.npy" --uncond-prob 0.1 --steps "$STEPS" \
    --warmup "$WARMUP" --vae "$W/vae" --text-encoder "$W/text_encoder" --tokenizer "$TOK" \
    --out "$W/pipe"

# g) samples from a typed prompt (DDIM; the pipeline's own text encoder, tokenizer and VAE)
stage sample "$J" sample --model "$W/pipe" --prompt "$PROMPT" --guidance 3 --sampler ddim \
    --steps "$SAMPLE_STEPS" --n "$NSAMP" --out "$W/samples"

# h) attribution: the training latents featurized with their own captions, the samples scored at
# every sampler step with their prompt, and the report (x̂_0 decoded through the pipeline's VAE)
stage featurize "$J" featurize --models "$W/pipe" --data "latents:$W/latents.npy" \
    --cond "npy:$W/ctx.npy" --k "$K" --S "$S" --projection sparse --batch 32 --out "$W/features"
stage score "$J" score --store "$W/features" --trajectory "$W/samples/trajectory.safetensors" \
    --out "$W/scores" --R "$R" --topk 10
stage report "$J" report --scores "$W/scores" --out "$W/report.html" --png "$W/figure.png"

# i) diffusers loads the folder and runs it (the twin's environment only)
PY=$ROOT/ref/.venv/bin/python
if [ "${CHECK:-1}" != 0 ] && [ -x "$PY" ]; then
    stage check "$PY" "$ROOT/ref/check_pipeline.py" "$W/pipe" --prompt "$PROMPT"
else
    echo "demo-pipeline: check skipped (no ref/.venv, or CHECK=0)" >&2
    printf '%-13s skipped (no ref/.venv)\n' check >>"$TIMES.new"
fi

mv "$TIMES.new" "$TIMES"
echo >&2
echo "demo-pipeline: wall time per stage (load average at the start $LOAD0, at the end $(cut -d' ' -f1-3 /proc/loadavg); $(nproc) cores):" >&2
cat "$TIMES" >&2
echo "$W/report.html"
