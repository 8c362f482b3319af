#!/usr/bin/env bash
# tests/e2e/pipeline.sh JTRAK: scripts/demo-pipeline.sh at tiny sizes (TINY=1) on the committed
# fixtures instead of the real CLIP vocabulary: the tokenizer tests/fixtures/tokenizer/clip_small
# (869 ids) and a clip-tiny-like CLIPTextModel of vocabulary 1000 made by `jtrak init --config`
# from the config.json written below. The chain export -> captions -> encode-text -> train
# (a pipeline folder) -> sample --prompt -> featurize -> score -> report runs on every commit.
# Checks what each stage left (the files, the prompt recorded and shown, the empty prompt's ids
# and context), that a second run skips every stage, and tokenize --out's refusal. Exit 77 (skip)
# without Debian's dataset-fashion-mnist.
set -euo pipefail
JTRAK=$(cd "$(dirname "$1")" && pwd)/$(basename "$1")
ROOT=$(cd "$(dirname "$0")/../.." && pwd)
FM=/usr/share/datasets/fashion-mnist
if [ ! -e "$FM/train-images-idx3-ubyte.gz" ] && [ ! -e "$FM/train-images-idx3-ubyte" ]; then
    echo "e2e pipeline: Debian's dataset-fashion-mnist is not installed: skipped"
    exit 77
fi
T=$(mktemp -d "${TMPDIR:-/tmp}/jtrak-e2e.XXXXXX")
trap 'rm -rf "$T"' EXIT
fail() {
    echo "e2e pipeline: FAIL: $*" >&2
    exit 1
}
TOK=$ROOT/tests/fixtures/tokenizer/clip_small
# clip-tiny's shape (32 wide, 4 heads, 2 layers, MLP 37, 77 positions, quick_gelu) over 1000 ids;
# bos/eos as the fixture tokenizer's (867, 868)
cat >"$T/clip.json" <<'JSON'
{
  "architectures": ["CLIPTextModel"],
  "attention_dropout": 0.0,
  "bos_token_id": 867,
  "eos_token_id": 868,
  "pad_token_id": 868,
  "hidden_act": "quick_gelu",
  "hidden_size": 32,
  "initializer_factor": 1.0,
  "initializer_range": 0.02,
  "intermediate_size": 37,
  "layer_norm_eps": 1e-05,
  "max_position_embeddings": 77,
  "model_type": "clip_text_model",
  "num_attention_heads": 4,
  "num_hidden_layers": 2,
  "projection_dim": 32,
  "vocab_size": 1000
}
JSON
W=$T/run
run_demo() {
    TINY=1 W=$W TOKENIZER=$TOK TEXT_CONFIG=$T/clip.json CHECK=0 JTRAK=$JTRAK \
        "$ROOT/scripts/demo-pipeline.sh" >"$T/stdout" 2>"$T/stderr" ||
        { tail -30 "$T/stderr" >&2; fail "scripts/demo-pipeline.sh exited $?"; }
}
t0=$(date +%s)
run_demo
t1=$(date +%s)
echo "e2e pipeline: the tiny chain took $((t1 - t0)) s"

# stdout is the report's path alone
[ "$(cat "$T/stdout")" = "$W/report.html" ] || fail "stdout: $(head -c 300 "$T/stdout")"
# export: 32 PNGs and their captions, header first, read back by encode-text
[ "$(ls "$W/fm" | grep -c '\.png$')" = 32 ] || fail "export: $(ls "$W/fm" | grep -c png) PNGs"
[ "$(head -1 "$W/fm/captions.csv")" = "file,caption" ] || fail "captions.csv header"
[ "$(sed -n 2p "$W/fm/captions.csv")" = "00000.png,a photo of a Ankle boot" ] ||
    fail "captions.csv row 0: $(sed -n 2p "$W/fm/captions.csv")"
grep -q '"format": "jtrak-export-v1"' "$W/fm/manifest.json" || fail "export manifest"
# contexts (32, 77, 32) float32 made for this dataset; the empty prompt's (1, 77, 32)
grep -q "(32, 77, 32)" <(head -c 128 "$W/ctx.npy") || fail "ctx.npy shape: $(head -c 80 "$W/ctx.npy")"
grep -q "dataset_text_fingerprint" "$W/ctx.npy.json" || fail "ctx.npy.json has no dataset"
grep -q "(1, 77, 32)" <(head -c 128 "$W/empty_ctx.npy") || fail "empty_ctx.npy shape"
# the empty prompt's context equals tokenize --out + encode-text --ids of "" (the two paths agree
# bit for bit), and tokenize --out wrote the ids `jtrak tokenize` prints: bos, eos, then the pad
"$JTRAK" tokenize --tokenizer "$TOK" --out "$T/empty_ids.npy" "" >/dev/null || fail "tokenize --out"
"$JTRAK" encode-text --text-encoder "$W/text_encoder" --ids "$T/empty_ids.npy" \
    --out "$T/empty_ctx_ids.npy" >/dev/null || fail "encode-text --ids"
cmp -s "$W/empty_ctx.npy" "$T/empty_ctx_ids.npy" || fail "encode-text --text '' != tokenize + --ids"
want=$("$JTRAK" tokenize --tokenizer "$TOK" "")
got=$(od -An -v -t d4 -j 128 "$T/empty_ids.npy" | tr -s ' \n' ' ' | sed 's/^ //; s/ $//')
[ "$got" = "$want" ] || fail "empty_ids.npy: $got, tokenize prints $want"
# the pipeline folder: every component, and jtrak reads it as one
for f in model_index.json unet/config.json unet/diffusion_pytorch_model.safetensors \
    vae/config.json text_encoder/config.json text_encoder/model.safetensors \
    tokenizer/vocab.json scheduler/scheduler_config.json; do
    [ -s "$W/pipe/$f" ] || fail "pipe/$f missing"
done
grep -q '"cross_attention_dim":[[:space:]]*32' "$W/pipe/unet/config.json" || fail "cross_attention_dim"
"$JTRAK" info "$W/pipe" >"$T/info" 2>&1 || fail "jtrak info: $(cat "$T/info")"
grep -q "text_encoder" "$T/info" || fail "info lists no text_encoder: $(cat "$T/info")"
# the sample from the typed prompt, its trajectory, scores per step and the report showing it
[ -s "$W/samples/trajectory.safetensors" ] && [ -s "$W/samples/samples.png" ] || fail "samples"
grep -q "a photo of a trouser" "$W/samples/trajectory.safetensors" || fail "prompt not recorded"
ls "$W/scores"/scores_t*.npy >/dev/null 2>&1 || fail "no scores_t*.npy"
[ "$(ls "$W/scores"/scores_t*.npy | wc -l)" = 4 ] || fail "scores for $(ls "$W/scores" | tr '\n' ' ')"
grep -q "a photo of a trouser" "$W/report.html" || fail "the report does not show the prompt"
[ -s "$W/figure.png" ] || fail "figure.png"
# every stage timed
for s in text_encoder export vae encode contexts empty train sample featurize score report; do
    grep -q "^$s .* s$" "$W/times.txt" || fail "times.txt lacks $s: $(cat "$W/times.txt")"
done

# a second run skips every stage and gives the same report path
run_demo
[ "$(cat "$T/stdout")" = "$W/report.html" ] || fail "second run's stdout"
[ "$(grep -c 'skipped$' "$W/times.txt")" = 11 ] || fail "second run redid stages: $(cat "$W/times.txt")"

# tokenize --out: a file that cannot be written is one line, exit 1
if "$JTRAK" tokenize --tokenizer "$TOK" --out "$T/no/such/dir/ids.npy" "" 2>"$T/err"; then
    fail "tokenize --out into a missing folder succeeded"
fi
[ "$(wc -l <"$T/err")" = 1 ] && grep -q "^jtrak tokenize: .*ids.npy" "$T/err" ||
    fail "tokenize --out error: $(cat "$T/err")"
echo "e2e pipeline: OK"
