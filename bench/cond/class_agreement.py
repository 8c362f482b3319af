#!/usr/bin/env python3
"""class_agreement.py: per scored step, the fraction of each target's top-10 proponents that share
the target's class, for bench/cond/run.sh (see there). Standard library only: reads jtrak's
topk.json files, the class labels of a trajectory file (safetensors tensor "class_labels") and an
IDX label file. Prints a Markdown table: mean over targets with a 95% bootstrap interval (over
targets, 2000 resamples, fixed seed)."""

import argparse
import gzip
import json
import random
import struct


def idx_labels(path):
    with (gzip.open if path.endswith(".gz") else open)(path, "rb") as f:
        magic, n = struct.unpack(">II", f.read(8))
        if magic != 2049:
            raise SystemExit(f"{path}: not an IDX label file (magic {magic})")
        return list(f.read(n))


def trajectory_labels(path):
    with open(path, "rb") as f:
        (hlen,) = struct.unpack("<Q", f.read(8))
        header = json.loads(f.read(hlen))
        t = header.get("class_labels")
        if t is None:
            raise SystemExit(f"{path}: no class_labels tensor (not a class-conditional trajectory)")
        if t["dtype"] != "I32":
            raise SystemExit(f"{path}: class_labels is {t['dtype']}, expected I32")
        start, end = t["data_offsets"]
        f.seek(8 + hlen + start)
        data = f.read(end - start)
        return list(struct.unpack(f"<{len(data) // 4}i", data))


def results(path):
    with open(path) as f:
        return json.load(f)["results"]


def agreement(res, target_class, labels):
    """{step: [fraction per target]}"""
    out = {}
    for e in res:
        c = target_class[e["sample"]]
        props = e["proponents"]
        same = sum(1 for p in props if labels[p["source_index"]] == c)
        out.setdefault(e["step"], []).append(same / len(props))
    return out


def mean_ci(xs, rng):
    m = sum(xs) / len(xs)
    boots = sorted(sum(rng.choice(xs) for _ in xs) / len(xs) for _ in range(2000))
    return m, boots[49], boots[1949]


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--labels", required=True)
    ap.add_argument("--cond", required=True, help="topk.json of the conditional model's samples")
    ap.add_argument("--cond-trajectory", help="the conditional samples' trajectory (class_labels)")
    ap.add_argument("--target-classes", help="or: each conditional sample's class, comma-separated "
                    "(a text-conditional model's prompts: prompt i = class i)")
    ap.add_argument("--uncond", help="topk.json of the unconditional model's samples")
    ap.add_argument("--nearest", help="pixel top-1 at t = 0 of the unconditional samples")
    a = ap.parse_args()
    if bool(a.cond_trajectory) == bool(a.target_classes):
        raise SystemExit("give --cond-trajectory or --target-classes")
    if bool(a.uncond) != bool(a.nearest):
        raise SystemExit("--uncond and --nearest go together")
    labels = idx_labels(a.labels)
    cond_class = (trajectory_labels(a.cond_trajectory) if a.cond_trajectory
                  else [int(c) for c in a.target_classes.split(",")])
    nearest = ({e["sample"]: labels[e["proponents"][0]["source_index"]] for e in results(a.nearest)}
               if a.nearest else None)
    n = len(cond_class)
    # permuted: each conditional sample against the class of the next sample with another class
    shifted = {}
    for i in range(n):
        j = next(k % n for k in range(i + 1, i + 1 + n) if cond_class[k % n] != cond_class[i])
        shifted[i] = cond_class[j]
    rows = {"conditional": agreement(results(a.cond), cond_class, labels)}
    if nearest is not None:
        rows["unconditional"] = agreement(results(a.uncond), nearest, labels)
    rows["permuted"] = agreement(results(a.cond), shifted, labels)
    rng = random.Random(0)
    steps = sorted(rows["conditional"], key=lambda s: -s if isinstance(s, int) else 1)
    print("| step t | " + " | ".join(rows) + " |")
    print("|---|" + "---|" * len(rows))
    for s in steps:
        cells = []
        for name in rows:
            m, lo, hi = mean_ci(rows[name][s], rng)
            cells.append(f"{m:.2f} [{lo:.2f}, {hi:.2f}]")
        print(f"| {s} | " + " | ".join(cells) + " |")
    print(f"\n{n} targets per model; top-{len(results(a.cond)[0]['proponents'])} proponents; "
          "mean over targets [95% bootstrap interval over targets]")


if __name__ == "__main__":
    main()
