#!/usr/bin/env bash
# `make bench`: U-Net throughput of jtrak beside diffusers' UNet2DModel in PyTorch, measured in the
# same run on the same machine with the same batch and thread count. The PyTorch side needs the
# reference twin's virtual environment (ref/.venv, made by `make fixtures`) or JTRAK_TORCH_PYTHON;
# without it only jtrak is measured. Results: a table on stdout, JSON lines in $BUILD/bench.jsonl.
set -euo pipefail
cd "$(dirname "$0")/.."
BUILD=${1:-build}
THREADS=${THREADS:-2}
BATCH=${BATCH:-64}
ITERS=${ITERS:-5}
OUT="$BUILD/bench.jsonl"
PY=${JTRAK_TORCH_PYTHON:-ref/.venv/bin/python}
: > "$OUT"

echo "machine: $(lscpu | sed -n 's/^Model name: *//p'), $(nproc) cores; threads $THREADS, batch $BATCH" >&2
for cfg in configs/fm-xs.json configs/fm-s.json; do
  echo "bench: jtrak $cfg" >&2
  OMP_NUM_THREADS=$THREADS "$BUILD/bench_unet" "$cfg" "$BATCH" "$ITERS" >> "$OUT"
  if [ -x "$PY" ] && "$PY" -c "import torch, diffusers" 2>/dev/null; then
    echo "bench: diffusers $cfg" >&2
    "$PY" ref/bench_torch.py "$cfg" --batch "$BATCH" --threads "$THREADS" --iters "$ITERS" >> "$OUT"
  fi
done
if ! [ -x "$PY" ]; then
  echo "bench: no PyTorch twin ($PY); run 'make fixtures' to create ref/.venv for the side-by-side" >&2
fi

python3 - "$OUT" <<'PY'
import json, sys
rows = [json.loads(l) for l in open(sys.argv[1]) if l.strip()]
by = {}
for r in rows:
    name = r["config"].split("/")[-1].removesuffix(".json")
    by.setdefault((name, r["what"]), {})[r["impl"]] = r
print(f"{'config':<12} {'measure':<11} {'jtrak img/s':>12} {'diffusers img/s':>16} {'ratio':>7} {'jtrak MB':>9} {'torch MB':>9}")
for (cfg, what), d in sorted(by.items()):
    j, t = d.get("jtrak"), d.get("diffusers")
    ratio = f"{j['images_per_s'] / t['images_per_s']:.2f}" if j and t else "-"
    print(f"{cfg:<12} {what:<11} {j['images_per_s'] if j else float('nan'):>12.1f} "
          f"{t['images_per_s'] if t else float('nan'):>16.1f} {ratio:>7} "
          f"{j['peak_rss_mb'] if j else float('nan'):>9.0f} {t['peak_rss_mb'] if t else float('nan'):>9.0f}")
PY
