#!/usr/bin/env bash
# Regenerates the seed corpus tests/fuzz/corpus/<target>/ (small valid and near-valid files, a few
# KB each): model configs and scheduler configs from tests/fixtures, small .npy fixtures, IDX,
# CIFAR-10, PNG and JPEG files written here, a trajectory file and a feature-store manifest made by
# the jtrak CLI on a 12x12 fixture model. Usage: scripts/fuzz-seeds.sh [BUILD] (default build).
set -euo pipefail
cd "$(dirname "$0")/.."
BUILD=${1:-build}
JTRAK=$BUILD/jtrak
[ -x "$JTRAK" ] || { echo "fuzz-seeds: $JTRAK not built (run make)"; exit 1; }
C=tests/fuzz/corpus
rm -rf "$C"
mkdir -p "$C"/{safetensors,model_config,sched_config,idx,cifar,npy,image,trajectory,manifest,indices,data_spec}
W=$(mktemp -d)
trap 'rm -rf "$W"' EXIT

# configs: every UNet2DModel fixture, the shipped presets' config.json, known-but-unsupported classes
for f in tests/fixtures/unet/*/config.json; do cp "$f" "$C/model_config/$(basename "$(dirname "$f")").json"; done
for f in tests/fixtures/model/to_json/*.json; do cp "$f" "$C/model_config/preset_$(basename "$f")"; done
printf '{"_class_name": "AutoencoderKL", "in_channels": 3, "latent_channels": 4}' >"$C/model_config/vae.json"
printf '{"_class_name": "UNet2DConditionModel", "cross_attention_dim": 32}' >"$C/model_config/unet_cond.json"
printf '{"architectures": ["CLIPTextModel"], "hidden_size": 32}' >"$C/model_config/clip.json"
for f in tests/fixtures/sched/*/scheduler_config.json; do cp "$f" "$C/sched_config/$(basename "$(dirname "$f")").json"; done

# .npy: the small fixtures of every dtype and rank (C order), and uint8 images
for f in tests/fixtures/stats/sp_index.npy tests/fixtures/stats/lds_mask.npy \
    tests/fixtures/sched/ddpm_loop_timesteps.npy tests/fixtures/sched/betas_linear.npy \
    tests/fixtures/stats/boot_means.npy tests/fixtures/sched/ddim_step_meta.npy; do
    [ "$(stat -c %s "$f")" -le 8192 ] && cp "$f" "$C/npy/$(basename "$f")"
done

python3 - "$C" <<'PY'
import json, os, struct, sys, zlib
C = sys.argv[1]
def w(sub, name, data):
    with open(os.path.join(C, sub, name), "wb") as f: f.write(data)
# IDX: 3 images of 4x5, their labels, gzip'd copies, a truncated one
imgs = bytes(range(60))
idx3 = struct.pack(">IIII", 0x803, 3, 4, 5) + imgs
idx1 = struct.pack(">II", 0x801, 3) + bytes([0, 7, 9])
w("idx", "images3.idx3", idx3); w("idx", "labels3.idx1", idx1)
w("idx", "images3.idx3.gz", __import__("gzip").compress(idx3, mtime=0))
w("idx", "labels3.idx1.gz", __import__("gzip").compress(idx1, mtime=0))
w("idx", "images_truncated.idx3", idx3[:40])
w("idx", "labels_big.idx1", struct.pack(">II", 0x801, 12) + bytes(range(12)))
# CIFAR-10: 2 records, and a record with a bad label
rec = lambda lab: bytes([lab]) + bytes((i * 7) & 255 for i in range(3072))
w("cifar", "two.bin", rec(3) + rec(9)); w("cifar", "badlabel.bin", rec(10)); w("cifar", "half.bin", rec(1)[:1600])
# .npy images (N,H,W[,C]) uint8 and labels, written as numpy.save does (format 1.0)
def npy(descr, shape, payload):
    d = "{'descr': '%s', 'fortran_order': False, 'shape': (%s), }" % (descr, ", ".join(map(str, shape)) + ("," if len(shape) == 1 else ""))
    h = d + " " * (64 - (10 + len(d) + 1) % 64) + "\n"
    return b"\x93NUMPY\x01\x00" + struct.pack("<H", len(h)) + h.encode() + payload
w("npy", "images_2x3x3x3.npy", npy("|u1", (2, 3, 3, 3), bytes(range(54))))
w("npy", "images_2x4x4.npy", npy("|u1", (2, 4, 4), bytes(range(32))))
w("npy", "labels_i8.npy", npy("<i8", (2,), struct.pack("<qq", 1, 4)))
w("npy", "labels_i4.npy", npy("<i4", (3,), struct.pack("<iii", 0, 2, 65535)))
w("npy", "scalar_f8.npy", npy("<f8", (), struct.pack("<d", 1.5)))
# PNG: 3x2 RGB, 2x2 gray+alpha, 2x2 16-bit gray, a palette image
def png(wd, ht, depth, ctype, raw, plte=b""):
    chunk = lambda t, d: struct.pack(">I", len(d)) + t + d + struct.pack(">I", zlib.crc32(t + d))
    out = b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", struct.pack(">IIBBBBB", wd, ht, depth, ctype, 0, 0, 0))
    if plte: out += chunk(b"PLTE", plte)
    return out + chunk(b"IDAT", zlib.compress(raw)) + chunk(b"IEND", b"")
w("image", "rgb3x2.png", png(3, 2, 8, 2, b"".join(b"\x00" + bytes(range(r * 9, r * 9 + 9)) for r in range(2))))
w("image", "ga2x2.png", png(2, 2, 8, 4, b"\x00\x10\xff\x20\x80\x01\x30\x40\x50\x60"))
w("image", "gray16_2x2.png", png(2, 2, 16, 0, b"\x00\x12\x34\xab\xcd\x02\x00\x01\xff\xff"))
w("image", "palette2x2.png", png(2, 2, 8, 3, b"\x00\x00\x01\x00\x01\x00", b"\xff\x00\x00\x00\xff\x00"))
# safetensors: two tensors (F32, F16), metadata; an I32 one; an empty file's worth of header
def st(tensors, meta=None):
    hdr, off, data = {}, 0, b""
    if meta: hdr["__metadata__"] = meta
    for name, dt, shape, payload in tensors:
        hdr[name] = {"dtype": dt, "shape": shape, "data_offsets": [off, off + len(payload)]}
        off += len(payload); data += payload
    h = json.dumps(hdr, separators=(",", ":")).encode()
    h += b" " * (-len(h) % 8)
    return struct.pack("<Q", len(h)) + h + data
w("safetensors", "two.safetensors", st([("w", "F32", [2, 3], struct.pack("<6f", *range(6))),
                                        ("b", "F16", [2], b"\x00\x3c\x00\xc0")], {"format": "pt"}))
w("safetensors", "mixed.safetensors", st([("i", "I32", [3], struct.pack("<3i", 1, -2, 3)),
                                          ("d", "F64", [1], struct.pack("<d", 0.25)),
                                          ("h", "BF16", [1, 1], b"\x80\x3f"), ("e", "U8", [0], b"")]))
w("safetensors", "empty.safetensors", st([]))
PY
# JPEG: stb_image_write's baseline encoder (libstb), gray and colour
cat >"$W/jpg.c" <<'CEOF'
#define STB_IMAGE_WRITE_IMPLEMENTATION
#include <stb/stb_image_write.h>
int main(int argc, char **argv) {
    unsigned char px[8 * 6 * 3];
    for (int i = 0; i < 8 * 6 * 3; i++) px[i] = (unsigned char)(i * 37);
    return !(stbi_write_jpg(argv[1], 8, 6, 3, px, 90) && stbi_write_jpg(argv[2], 4, 4, 1, px, 50));
}
CEOF
cc -O1 -o "$W/jpg" "$W/jpg.c" -lm
"$W/jpg" "$C/image/rgb8x6.jpg" "$C/image/gray4x4.jpg"

# a trajectory and a feature store from a 12x12 fixture model (2 samples, 2 DDIM steps), and a
# class-conditional trajectory
"$JTRAK" init --config tests/fixtures/unet/fm3_12x12/config.json --out "$W/m" >/dev/null
"$JTRAK" sample --model "$W/m" --out "$W/s" --n 2 --sampler ddim --steps 2 --quiet >/dev/null
cp "$W/s/trajectory.safetensors" "$C/trajectory/ddim2.safetensors"
cp "$W/s/trajectory.safetensors" "$C/safetensors/trajectory.safetensors"
"$JTRAK" init --config tests/fixtures/unet/cls_fm3_12x12/config.json --out "$W/mc" >/dev/null
"$JTRAK" sample --model "$W/mc" --out "$W/sc" --n 2 --sampler ddim --steps 2 --class 0,1 --guidance 2 --quiet >/dev/null
cp "$W/sc/trajectory.safetensors" "$C/trajectory/cfg2.safetensors"
"$JTRAK" featurize --models "$W/m" --out "$W/st" --data fashion-mnist --limit 4 --fit crop --k 4 --S 1 --quiet >/dev/null
sed "s|$W/||" "$W/st/manifest.json" >"$C/manifest/store.json" # no machine-specific path
printf '{"format": "jtrak-scores-v1", "method": "journey"}' >"$C/manifest/scores.json"
printf '{"format": "jtrak-lds-v1"}' >"$C/manifest/lds.json"
# index files and dataset descriptions (as stores record them)
printf '0\n5\n  7  # seven\n\n99\n' >"$C/indices/ok.txt"
printf '# only comments\n\n' >"$C/indices/empty.txt"
printf '3\n3\n' >"$C/indices/dup.txt"
printf '1\n100\n' >"$C/indices/range.txt"
printf '12\r\n0x10\n-1\n' >"$C/indices/bad.txt"
sed -n 's/.*"spec":\t*"\(.*\)".*/\1/p' "$C/manifest/store.json" >"$C/data_spec/store.txt"
printf 'data=cifar10:/data/c;classes=0,3;limit=10;indices=none;fit=resize;size=16x24;channels=3;color=rgb;flip=random' >"$C/data_spec/cifar.txt"
printf 'data=folder:imgs;fit=pad;size=source;channels=source;color=gray;flip=all' >"$C/data_spec/folder.txt"
printf 'data=npy:x.npy,y.npy;classes=sneaker,bag;indices=idx.txt' >"$C/data_spec/npy.txt"

# libFuzzer dictionaries for the JSON readers: every key and string value of their seeds, and
# JSON's punctuation and literals
python3 - "$C" tests/fuzz <<'PY'
import json, os, sys
C, out = sys.argv[1], sys.argv[2]
def walk(v, acc):
    if isinstance(v, dict):
        for k, x in v.items(): acc.add(k); walk(x, acc)
    elif isinstance(v, list):
        for x in v: walk(x, acc)
    elif isinstance(v, str) and len(v) <= 40: acc.add(v)
for t in ("model_config", "sched_config", "manifest"):
    acc = set()
    for f in sorted(os.listdir(os.path.join(C, t))):
        walk(json.load(open(os.path.join(C, t, f))), acc)
    toks = ['"\\"%s\\""' % json.dumps(a)[1:-1] for a in sorted(acc)]
    toks += ['"{"', '"}"', '"["', '"]"', '":"', '","', '"true"', '"false"', '"null"', '"-1"', '"0"',
             '"1e309"', '"2147483648"', '"9007199254740993"', '"0.5"']
    with open(os.path.join(out, t + ".dict"), "w") as f:
        f.write("# libFuzzer dictionary, written by scripts/fuzz-seeds.sh\n" + "\n".join(toks) + "\n")
PY
echo "fuzz-seeds: $(find "$C" -type f | wc -l) files, $(du -sk "$C" | cut -f1) KB in $C"
