#!/usr/bin/env python3
"""bench_report.py: the tables of `make bench` from the JSON lines its parts write (standard library
only, so it runs without the twin's environment):

  $BUILD/bench.jsonl          machine, OpenBLAS SGEMM (bench/bench_sgemm.c), U-Net forward /
                              training step / sampling of jtrak (bench/bench_unet.c) and diffusers
                              (ref/bench_torch.py), FLOP counts, projections (bench/bench_project.c)
  $BUILD/bench-attrib.jsonl   featurize, kernel and score of jtrak and traker (scripts/bench-attrib.sh)
  $BUILD/bench-scaling.jsonl  featurize and score times as n and the targets grow (scripts/bench-scaling.sh)

Prints aligned text on stdout; --markdown FILE also writes the same tables as Markdown (for the
README). Sections whose rows are missing are left out; without the twin the diffusers and traker
columns show "-".

Run: python3 scripts/bench_report.py [--markdown FILE] [--scaling-only] FILE.jsonl...
"""

import argparse
import json
import math
import os
import sys


def load(paths):
    rows = []
    for p in paths:
        if not os.path.exists(p):
            continue
        with open(p) as f:
            for line in f:
                line = line.strip()
                if line.startswith("{"):
                    rows.append(json.loads(line))
    return rows


def cfg_name(r):
    return os.path.basename(str(r.get("config", ""))).removesuffix(".json")


def fmt(x, spec="{:.1f}"):
    if x is None or (isinstance(x, float) and math.isnan(x)):
        return "-"
    return spec.format(x)


def ratio(a, b, spec="{:.2f}x"):
    return spec.format(a / b) if a is not None and b else "-"


def pct(x, peak):
    return f"{100 * x / peak:.0f}%" if x is not None and peak else "-"


def fit_loglog(xs, ys):
    """Least-squares slope of log y against log x (None with fewer than two distinct x)."""
    pts = [(math.log(x), math.log(y)) for x, y in zip(xs, ys) if x > 0 and y > 0]
    if len({p[0] for p in pts}) < 2:
        return None
    mx = sum(p[0] for p in pts) / len(pts)
    my = sum(p[1] for p in pts) / len(pts)
    sxx = sum((p[0] - mx) ** 2 for p in pts)
    return sum((p[0] - mx) * (p[1] - my) for p in pts) / sxx


def fit_line(xs, ys):
    """y = a + b x by least squares: (a, b), or None."""
    if len(set(xs)) < 2:
        return None
    mx, my = sum(xs) / len(xs), sum(ys) / len(ys)
    b = sum((x - mx) * (y - my) for x, y in zip(xs, ys)) / sum((x - mx) ** 2 for x in xs)
    return my - b * mx, b


def text_columns(headers, rows):
    """Which columns hold text (left-aligned): the first, and those whose every cell but "-" starts
    with a letter; the others hold numbers (right-aligned)."""
    def text(i):
        cells = [r[i] for r in rows if r[i] not in ("-", "")]
        return bool(cells) and all(c[:1].isalpha() for c in cells)
    return [i == 0 or text(i) for i in range(len(headers))]


class Out:
    """Collects sections; renders them as aligned text and as Markdown."""

    def __init__(self):
        self.parts = []  # ("title", str) | ("table", headers, rows) | ("note", str)

    def title(self, s):
        self.parts.append(("title", s))

    def note(self, s):
        self.parts.append(("note", s))

    def table(self, headers, rows):
        if rows:
            self.parts.append(("table", headers, [[str(c) for c in r] for r in rows]))

    def text(self):
        out = []
        for p in self.parts:
            if p[0] == "title":
                out += ["", p[1]]
            elif p[0] == "note":
                out.append(p[1])
            else:
                headers, rows = p[1], p[2]
                w = [max(len(str(h)), *(len(r[i]) for r in rows)) for i, h in enumerate(headers)]
                left = text_columns(headers, rows)
                line = lambda cells: "  ".join(
                    (c.ljust(w[i]) if left[i] else c.rjust(w[i])) for i, c in enumerate(cells)).rstrip()
                out.append(line(headers))
                out += [line(r) for r in rows]
        return "\n".join(out).lstrip("\n") + "\n"

    def markdown(self):
        out = []
        for p in self.parts:
            if p[0] == "title":
                out += [f"**{p[1]}**", ""]
            elif p[0] == "note":
                out += [p[1], ""]
            else:
                headers, rows = p[1], p[2]
                out.append("| " + " | ".join(headers) + " |")
                out.append("| " + " | ".join("---" if t else "---:" for t in text_columns(headers, rows)) + " |")
                out += ["| " + " | ".join(r) + " |" for r in rows]
                out.append("")
        return "\n".join(out).lstrip("\n") + "\n"


def median_row(rs):
    """The row of the median images_per_s (the lower middle one of an even count)."""
    return sorted(rs, key=lambda r: r["images_per_s"])[(len(rs) - 1) // 2]


def first(rows, **kw):
    for r in rows:
        if all(r.get(k) == v for k, v in kw.items()):
            return r
    return None


def machine_section(o, rows):
    m = first(rows, what="machine")
    peak = first(rows, what="sgemm_peak")
    torch = next((r["torch"] for r in rows if r.get("impl") == "diffusers" and "torch" in r), None)
    traker = next((r["traker"] for r in rows if r.get("impl") == "traker" and "traker" in r), None)
    if m:
        s = f"machine: {m['cpu']}, {m['cores']} cores, {m['threads']} threads used"
        if peak:
            s += f"; {peak.get('openblas', 'OpenBLAS')}"
        s += f"; torch {torch or '-'}, traker {traker or '-'}; {m.get('date', '')}"
        s += f"; load average at start {m.get('load_avg', '-')}"
        o.note(s)


def sgemm_section(o, rows):
    peak = first(rows, what="sgemm_peak")
    sg = [r for r in rows if r.get("what") == "sgemm"]
    if not peak:
        return None
    o.title(f"SGEMM peak (n x n, 2 n^3 FLOPs; best call): {peak['gflops']:.1f} GFLOP/s on "
            f"{peak['threads']} threads ({peak.get('impl', 'openblas')}, {peak['mode']}, n = {peak['n']})")
    best = {}
    for r in sg:
        key = (r.get("impl", "openblas"), r["mode"])
        if key not in best or r["gflops"] > best[key]["gflops"]:
            best[key] = r
    desc = {"single": "1 thread", "threaded": "one call on T threads",
            "concurrent": "T single-threaded calls at once (jtrak's pattern)"}
    o.table(["kernel", "mode", "best n", "GFLOP/s"],
            [[k[0], f"{k[1]}: {desc.get(k[1], '')}", r["n"], fmt(r["gflops"])] for k, r in best.items()])
    return peak["gflops"]


def unet_section(o, rows, peak):
    flops = {cfg_name(r): r for r in rows if r.get("what") == "flops" and r.get("impl") == "jtrak"}
    tflops = {cfg_name(r): r for r in rows if r.get("what") == "flops" and r.get("impl") == "diffusers"}
    runs = {}  # (cfg, what, batch) -> impl -> rows of its rounds, in order
    for r in rows:
        if r.get("what") in ("forward", "train_step", "sample") and "images_per_s" in r:
            runs.setdefault((cfg_name(r), r["what"], r["batch"]), {}).setdefault(r["impl"], []).append(r)
    if not runs:
        return
    # each side's median round; the rounds' own ratios (jtrak round i / diffusers round i) as a range
    by = {k: {impl: median_row(rs) for impl, rs in d.items()} for k, d in runs.items()}

    def round_ratios(key):
        d = runs[key]
        pairs = list(zip(d.get("jtrak", []), d.get("diffusers", [])))
        if len(pairs) < 2:
            return ""
        rs = [j["images_per_s"] / t["images_per_s"] for j, t in pairs]
        return f" ({min(rs):.2f}-{max(rs):.2f}, {len(rs)} rounds)"
    order = {"forward": 0, "train_step": 1, "sample": 2}
    cfgs = sorted({k[0] for k in by})

    def gf(r, cfg, what):
        """GFLOP/s of a row with jtrak's FLOP count for the config (the same work on both sides)."""
        f = flops.get(cfg)
        if not (r and f):
            return None
        per = f["train_flops"] if what == "train_step" else f["forward_flops"]
        return r["images_per_s"] * per / 1e9

    o.title("U-Net: jtrak vs diffusers UNet2DModel (PyTorch), same config, batch and threads")
    notes = []
    for c in cfgs:
        f = flops.get(c)
        if f:
            s = (f"{c}: {f['params']:,} parameters, {f['forward_flops'] / 1e6:.1f} MFLOP forward per "
                 f"{f['size']}x{f['size']} image")
            t = tflops.get(c)
            if t:
                s += (f" (torch.utils.flop_counter: {t['forward_flops'] / 1e6:.1f} forward, "
                      f"{t['train_flops'] / t['forward_flops']:.2f}x with backward)")
            notes.append(s)
    tab = []
    for (c, what, b), d in sorted(by.items(), key=lambda kv: (kv[0][0], order[kv[0][1]], kv[0][2])):
        if what == "sample":
            continue
        j, t = d.get("jtrak"), d.get("diffusers")
        gj, gt = gf(j, c, what), gf(t, c, what)
        tab.append([c, "forward" if what == "forward" else "train step (fwd+bwd+AdamW)", b,
                    fmt(j and j["images_per_s"]), fmt(t and t["images_per_s"]),
                    ratio(j and j["images_per_s"], t and t["images_per_s"]) + round_ratios((c, what, b)),
                    fmt(gj), pct(gj, peak), fmt(gt), pct(gt, peak),
                    f"{fmt(j and j['peak_rss_mb'], '{:.0f}')} / {fmt(t and t['peak_rss_mb'], '{:.0f}')}"])
    o.table(["config", "measure", "batch", "jtrak img/s", "diffusers img/s", "jtrak/diffusers",
             "jtrak GFLOP/s", "% peak", "diffusers GFLOP/s", "% peak", "peak MB jtrak / torch"], tab)
    for s in notes:
        o.note(s)
    for (c, what, b), d in sorted(by.items()):
        j = d.get("jtrak")
        if what == "train_step" and j and "conv_gflops" in j:
            o.note(f"{c} train step, the convolutions alone (their forward, input- and weight-gradient "
                   f"FLOPs over the time spent in them): {j['conv_gflops']:.1f} GFLOP/s = "
                   f"{pct(j['conv_gflops'], peak)} of the SGEMM peak, {100 * j['conv_share']:.0f}% of the "
                   f"step's time")
    o.note("FLOPs (unet_flops.h): 2 x multiply-adds of convolutions, linear layers and attention "
           "(q/k/v/out projections, QK^T, softmax V); elementwise work not counted; a training step "
           "is 3 x forward (backward = 2 x forward); AdamW not counted. Both columns divide the same "
           "count by their own time. Forward and training step: the median of alternating rounds "
           "(jtrak, diffusers, jtrak, ...); in brackets the range of the rounds' own ratios.")

    samp = [(k, d) for k, d in by.items() if k[1] == "sample"]
    if samp:
        o.title("Sampling: U-Net evaluations/s of the sampler loop (DDIM, eta 0, no grad)")
        tab = []
        for (c, _, b), d in sorted(samp):
            j, t = d.get("jtrak"), d.get("diffusers")
            gj = gf(j, c, "sample")
            steps = (j or t).get("steps", "-")
            tab.append([c, b, steps, fmt(j and j["images_per_s"]), fmt(t and t["images_per_s"]),
                        ratio(j and j["images_per_s"], t and t["images_per_s"]), fmt(gj), pct(gj, peak),
                        f"{fmt(j and j['peak_rss_mb'], '{:.0f}')} / {fmt(t and t['peak_rss_mb'], '{:.0f}')}"])
        o.table(["config", "batch", "steps", "jtrak evals/s", "diffusers evals/s", "jtrak/diffusers",
                 "jtrak GFLOP/s", "% peak", "peak MB jtrak / torch"], tab)


def vae_section(o, rows):
    runs = {}  # (cfg, what, batch) -> impl -> rows of its rounds
    for r in rows:
        if r.get("what") in ("encode", "decode") and "images_per_s" in r:
            runs.setdefault((cfg_name(r), r["what"], r["batch"]), {}).setdefault(r["impl"], []).append(r)
    if not runs:
        return
    o.title("AutoencoderKL: jtrak vs diffusers (PyTorch), same config, batch and threads")
    tab = []
    for (c, what, b), d in sorted(runs.items()):
        j = median_row(d["jtrak"]) if "jtrak" in d else None
        t = median_row(d["diffusers"]) if "diffusers" in d else None
        tab.append([c, what, b, fmt(j and j["images_per_s"]), fmt(t and t["images_per_s"]),
                    ratio(j and j["images_per_s"], t and t["images_per_s"]),
                    f"{fmt(j and j['peak_rss_mb'], '{:.0f}')} / {fmt(t and t['peak_rss_mb'], '{:.0f}')}"])
    o.table(["config", "measure", "batch", "jtrak img/s", "diffusers img/s", "jtrak/diffusers",
             "peak MB jtrak / torch"], tab)
    o.note("encode: encoder + quant_conv (the posterior moments); decode: post_quant_conv + decoder; "
           "forward only, the median of alternating rounds.")


def attrib_section(o, rows, peak):
    def get(impl, what, prec=None):
        for r in rows:
            if r.get("impl") == impl and r.get("what") == what and (prec is None or r.get("precision") == prec):
                return r
    def rounds(impl, prec):
        """Featurize rows of the default projection (jtrak) or of one precision (traker), in order."""
        return [r for r in rows if r.get("impl") == impl and r.get("what") == "featurize"
                and r.get("precision") == prec
                and (impl != "jtrak" or r.get("projector", "rademacher").startswith("rademacher"))]
    jrs, trs = rounds("jtrak", "fp32"), rounds("traker", "fp32")
    jf, jk, js = median_row(jrs) if jrs else None, get("jtrak", "finalize"), get("jtrak", "score")
    if not jf:
        return
    tf = median_row(trs) if trs else None
    tk, ts = get("traker", "finalize", "fp32"), get("traker", "score", "fp32")
    pairs = list(zip(jrs, trs))
    spread = ""
    if len(pairs) > 1:
        rs = [j["images_per_s"] / t["images_per_s"] for j, t in pairs]
        spread = f" ({min(rs):.2f}-{max(rs):.2f}, {len(rs)} rounds)"
    hf, hs = get("traker", "featurize", "fp16"), get("traker", "score", "fp16")
    who = f"traker {tf['traker']}" if tf else "traker (not run)"
    o.title(f"Featurize and score: jtrak vs {who} on the CPU, same model, S = {jf['S']}, k = {jf['k']}, "
            f"batch {jf['batch']}, {jf['n']} images")
    g = lambda r: r.get("gflops") if r else None
    jfast = next((r for r in rows if r.get("impl") == "jtrak" and r.get("what") == "featurize"
                  and not r.get("projector", "rademacher").startswith("rademacher")), None)
    tab = [
        ["featurize training images/s", fmt(jf["images_per_s"], "{:.2f}"), fmt(tf and tf["images_per_s"], "{:.2f}"),
         ratio(jf["images_per_s"], tf and tf["images_per_s"]) + spread, fmt(hf and hf["images_per_s"], "{:.2f}")],
    ]
    if jfast:
        tab.append([f"  jtrak with the {jfast['projector'].split()[0]} projection", fmt(jfast["images_per_s"], "{:.2f}"),
                    "", ratio(jfast["images_per_s"], tf and tf["images_per_s"]), ""])
    tab += [
        ["featurize GFLOP/s", fmt(g(jf)), fmt(g(tf)), "", fmt(g(hf))],
        ["featurize % of SGEMM peak", pct(g(jf), peak), pct(g(tf), peak), "", pct(g(hf), peak)],
        ["featurize seconds", fmt(jf["seconds"]), fmt(tf and tf["seconds"]), "", fmt(hf and hf["seconds"])],
        ["  traker: gradients / projection seconds", "",
         f"{fmt(tf['grad_seconds'])} / {fmt(tf['project_seconds'])}" if tf and "grad_seconds" in tf else "-", "",
         f"{fmt(hf['grad_seconds'])} / {fmt(hf['project_seconds'])}" if hf and "grad_seconds" in hf else "-"],
        ["kernel (finalize) seconds", fmt(jk and jk["seconds"], "{:.2f}"), fmt(tk and tk["seconds"], "{:.2f}"), "", ""],
    ]
    if js:
        tab.append([f"score seconds ({js['targets']} targets x {len(js['steps'])} steps, R = {js['R']})",
                    fmt(js["seconds"], "{:.2f}"), fmt(ts and ts["seconds"], "{:.2f}"),
                    ratio(ts and ts["seconds"], js["seconds"]), fmt(hs and hs["seconds"], "{:.2f}")])
    tab.append(["peak MB featurize", fmt(jf["peak_rss_mb"], "{:.0f}"), fmt(tf and tf["peak_rss_mb"], "{:.0f}"), "",
                fmt(hf and hf["peak_rss_mb"], "{:.0f}")])
    if js:
        tab.append(["peak MB score", fmt(js["peak_rss_mb"], "{:.0f}"), fmt(ts and ts["peak_rss_mb"], "{:.0f}"), "",
                    fmt(hs and hs["peak_rss_mb"], "{:.0f}")])
    o.table(["measure", "jtrak", "traker fp32", "jtrak/traker", "traker fp16"
             + (f" ({hf['n']} img)" if hf else "")], tab)
    if "flops_per_image" in jf:
        o.note(f"featurize FLOPs per training image = S x 3 x forward + 2 p k = {jf['S']} x 3 x "
               f"{jf['forward_flops'] / 1e6:.1f} M + 2 x {jf['params']:,} x {jf['k']} = "
               f"{jf['flops_per_image'] / 1e9:.2f} GFLOP (per-example gradients as forward + 2 x forward "
               f"backward; the projection as one dense p x k product, for either tool; random-number "
               f"generation, the store and the kernel not counted).")
    if spread:
        o.note("featurize images/s of jtrak (default projection) and traker fp32: the median of alternating "
               "rounds; in brackets the range of the rounds' own ratios.")
    others = [(f"{r['impl']} {r.get('precision', '')} {r['what']}", r["other_cpu_cores"])
              for r in (jf, js, tf, ts, hf, hs) if r and "other_cpu_cores" in r]
    if any(c > 0.25 for _, c in others):
        o.note("WARNING: other processes used the CPUs during: "
               + ", ".join(f"{n} ({c:.2f} cores)" for n, c in others if c > 0.25) + "; rerun on an idle machine")


def project_section(o, rows):
    pr = [r for r in rows if r.get("what") == "project"]
    if not pr:
        return
    kind_key = next((k for k in ("kind", "projector", "proj") if k in pr[0]), None)
    rate_key = next((k for k in ("rows_per_s", "examples_per_s", "images_per_s", "gflops") if k in pr[0]), None)
    time_key = next((k for k in ("seconds_per_batch", "seconds", "ms", "ms_per_row", "seconds_per_row", "s") if k in pr[0]), None)
    if not kind_key or not (rate_key or time_key):
        o.title("Projections (bench_project: unrecognised fields, raw rows)")
        for r in pr:
            o.note(json.dumps(r))
        return
    skip = {"impl", "what", kind_key, rate_key, time_key, "peak_rss_mb", "gflops", "threads", "iters"}
    params = [k for k in pr[0] if k not in skip and not isinstance(pr[0][k], (dict, list))]
    speed = (lambda r: r[rate_key]) if rate_key else (lambda r: 1.0 / r[time_key])
    o.title("Projections: G (batch x p) -> (batch x k), speed-up over the dense Rademacher projector")
    tab = []
    for r in pr:
        base = next((b for b in pr if b[kind_key] == "rademacher"
                     and all(b.get(p) == r.get(p) for p in params)), None)
        tab.append([r[kind_key]] + [r.get(p, "-") for p in params]
                   + ([fmt(r[rate_key], "{:.2f}")] if rate_key else [])
                   + ([fmt(r[time_key], "{:.4g}")] if time_key else [])
                   + [ratio(speed(r), base and speed(base))])
    o.table([kind_key] + params + ([rate_key] if rate_key else []) + ([time_key] if time_key else [])
            + ["vs rademacher"], tab)


def scaling_section(o, rows):
    fe = sorted([r for r in rows if r.get("what") == "scale_featurize"], key=lambda r: r["n"])
    sn = sorted([r for r in rows if r.get("what") == "scale_score_n"], key=lambda r: r["n"])
    stg = sorted([r for r in rows if r.get("what") == "scale_score_targets"], key=lambda r: r["targets"])
    if not (fe or sn or stg):
        return
    if fe:
        f0 = fe[0]
        o.title(f"Scaling: featurize as n grows (S = {f0['S']}, k = {f0['k']}) and score (R = "
                f"{(sn or stg or [{}])[0].get('R', '-')}, {(sn or stg or [{}])[0].get('steps', '-')} steps)")
        e_f = fit_loglog([r["n"] for r in fe], [r["seconds"] for r in fe])
        e_k = fit_loglog([r["n"] for r in fe], [r["kernel_seconds"] for r in fe])
        scores = {r["n"]: r for r in sn}
        e_s = fit_loglog([r["n"] for r in sn], [r["seconds"] for r in sn])
        tab = [[r["n"], fmt(r["seconds"], "{:.2f}"), fmt(r["n"] / r["seconds"], "{:.1f}"),
                fmt(r["kernel_seconds"], "{:.2f}"), fmt(r["peak_rss_mb"], "{:.0f}"),
                fmt(scores[r["n"]]["seconds"], "{:.2f}") if r["n"] in scores else "-"] for r in fe]
        tab.append(["fitted exponent", fmt(e_f, "n^{:.2f}"), "", fmt(e_k, "n^{:.2f}"), "", fmt(e_s, "n^{:.2f}")])
        tab.append(["expected", "n^1", "", "< n^1 (k^3 + n k^2)", "", "~n^0 (gradients) + n"])
        o.table(["n", "featurize s", "img/s", "kernel s", "peak MB",
                 f"score s ({sn[0]['targets']} targets)" if sn else "score s"], tab)
        lin = fit_line([r["n"] for r in sn], [r["seconds"] for r in sn]) if sn else None
        if lin:
            o.note(f"score vs n as a + b n: a = {lin[0]:.2f} s (target gradients), "
                   f"b = {1e3 * lin[1]:.3f} s per 1,000 training rows")
    if stg:
        e_t = fit_loglog([r["targets"] for r in stg], [r["seconds"] for r in stg])
        tab = [[r["targets"], fmt(r["seconds"], "{:.2f}"), fmt(r["peak_rss_mb"], "{:.0f}")] for r in stg]
        tab.append(["fitted exponent", fmt(e_t, "T^{:.2f}"), ""])
        tab.append(["expected", "T^1 (minus fixed start-up)", ""])
        o.table([f"targets (n = {stg[0]['n']})", "score s", "peak MB"], tab)
        lin = fit_line([r["targets"] for r in stg], [r["seconds"] for r in stg])
        if lin:
            o.note(f"score vs targets as a + b T: a = {lin[0]:.2f} s (start-up: model, store, "
                   f"trajectory), b = {lin[1]:.3f} s per target")


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("files", nargs="+")
    ap.add_argument("--markdown", help="also write the tables as Markdown here")
    ap.add_argument("--scaling-only", action="store_true")
    args = ap.parse_args()
    rows = load(args.files)
    o = Out()
    if args.scaling_only:
        scaling_section(o, rows)
    else:
        machine_section(o, rows)
        peak = sgemm_section(o, rows)
        unet_section(o, rows, peak)
        vae_section(o, rows)
        attrib_section(o, rows, peak)
        project_section(o, rows)
        scaling_section(o, rows)
    sys.stdout.write(o.text())
    if args.markdown:
        tmp = args.markdown + ".partial"
        with open(tmp, "w") as f:
            f.write(o.markdown())
        os.replace(tmp, args.markdown)


if __name__ == "__main__":
    main()
