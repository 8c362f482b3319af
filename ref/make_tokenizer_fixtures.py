"""make_tokenizer_fixtures.py: the CLIP tokenizer's reference ids, from transformers' CLIPTokenizer.

1. Rebuilds the real CLIP BPE vocabulary offline from open-clip-torch's bpe_simple_vocab_16e6.txt.gz
   (MIT; ldm.md §4.2): merges = lines 1..48,894 of that file; vocab = the 256 byte symbols of GPT-2's
   bytes_to_unicode, the same with "</w>", one entry per merge, then <|startoftext|> 49406 and
   <|endoftext|> 49407. It is written as two tokenizer folders in the hub's format (vocab.json, merges.txt,
   special_tokens_map.json, tokenizer_config.json): SD-1's (pad <|endoftext|>) and SD-2's (pad "!"), under
   --cache (default ref/.cache/clip_tokenizer, git-ignored; not committed, see ref/README.md).
2. Builds a small vocabulary from it that covers the corpus (the 512 byte symbols, only the merges that BPE
   applies to the corpus words, in their original order, ids renumbered) and commits it as
   tests/fixtures/tokenizer/clip_small{,_bang}/, plus clip_small_tj/ (transformers 5's own save of the
   small tokenizer: tokenizer.json + tokenizer_config.json).
3. Writes tests/fixtures/tokenizer/clip_corpus.json: the corpus and, for each folder, transformers' ids at
   max_length 77 with truncation and padding, the count of real tokens and whether it truncated; and
   "variants": ten ways of spelling the special tokens in special_tokens_map.json / tokenizer_config.json
   (over the small vocabulary) with transformers' pad id and ids for a few probe strings.

Checks on the way: each folder loads with CLIPTokenizer.from_pretrained; the small vocabulary gives the same
tokens as the full one on every corpus string; the tokenizer.json folder gives the same ids as its source.
Usage: ref/.venv/bin/python ref/make_tokenizer_fixtures.py [--cache DIR]
"""

import argparse
import gzip
import json
import os
import random
import re
import shutil
import sys

import open_clip
import transformers
from transformers import CLIPTokenizer

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
FIX = os.path.join(ROOT, "tests", "fixtures", "tokenizer")
N_MERGES = 48894
MAX_LEN = 77


def bytes_to_unicode():
    """GPT-2's byte -> printable character table (written from its description), in its order: the
    printable Latin-1 bytes first (they map to themselves), then the other 68 bytes, which map to U+0100.. in
    byte order. The vocabulary's first 256 ids follow this order ("!" is id 0)."""
    keep = list(range(ord("!"), ord("~") + 1)) + list(range(0xA1, 0xAC + 1)) + list(range(0xAE, 0xFF + 1))
    table = {b: chr(b) for b in keep}
    for extra, b in enumerate(b for b in range(256) if b not in keep):
        table[b] = chr(256 + extra)
    return table


def build_full():
    path = os.path.join(os.path.dirname(open_clip.__file__), "bpe_simple_vocab_16e6.txt.gz")
    lines = gzip.open(path).read().decode("utf-8").split("\n")
    merges = [tuple(l.split()) for l in lines[1 : N_MERGES + 1]]
    assert all(len(m) == 2 for m in merges)
    symbols = list(bytes_to_unicode().values())
    tokens = symbols + [s + "</w>" for s in symbols] + ["".join(m) for m in merges]
    tokens += ["<|startoftext|>", "<|endoftext|>"]
    vocab = {t: i for i, t in enumerate(tokens)}
    assert len(vocab) == 49408 and vocab["<|endoftext|>"] == 49407
    return vocab, merges


def added(content):
    return {"content": content, "lstrip": False, "normalized": True, "rstrip": False, "single_word": False}


def write_folder(d, vocab, merges, pad):
    """A tokenizer folder as the hub's SD-1 / SD-2 pipelines have it (objects for bos/eos/unk,
    a plain string for pad)."""
    os.makedirs(d, exist_ok=True)
    with open(os.path.join(d, "vocab.json"), "w", encoding="utf-8") as f:
        json.dump(vocab, f, ensure_ascii=False)
    with open(os.path.join(d, "merges.txt"), "w", encoding="utf-8") as f:
        f.write("#version: 0.2\n" + "".join(f"{a} {b}\n" for a, b in merges))
    special = {"bos_token": added("<|startoftext|>"), "eos_token": added("<|endoftext|>"),
               "pad_token": pad, "unk_token": added("<|endoftext|>")}
    with open(os.path.join(d, "special_tokens_map.json"), "w", encoding="utf-8") as f:
        json.dump(special, f, indent=2)
    config = dict(special, add_prefix_space=False, do_lower_case=True, errors="replace",
                  model_max_length=MAX_LEN, tokenizer_class="CLIPTokenizer")
    with open(os.path.join(d, "tokenizer_config.json"), "w", encoding="utf-8") as f:
        json.dump(dict(sorted(config.items())), f, indent=2)


def corpus():
    long_prompt = " ".join(
        ("a highly detailed photograph of an old wooden boat drifting on a calm misty lake at dawn "
         "with mountains behind it and birds flying overhead").split() * 5)[: 100 * 7]
    long_prompt = " ".join(long_prompt.split()[:100])
    ten_k = ("Zürich café, it's 1024x768! t-shirt/top; naïve 東京 🙂 " * 250)[:10000]
    return [
        "a photo of a cat",
        "A Photo Of A CAT",
        "",
        "   ",
        "Hello, World!!!",
        "hello!",
        "1024x768",
        "t-shirt/top",
        "it's",
        "don't",
        "we'll",
        "I'M HERE, THEY'RE THERE, WE'VE, YOU'D",
        "rock'n'roll ''quoted'' 'single'",
        "café",
        "cafe\u0301 (combining acute, NFC composes it)",
        "q\u0301 (no precomposed form)",
        "naïve Zürich",
        "ΣΑΣ σας",
        "İstanbul",
        "東京タワー and 北京",
        "한국어 텍스트",
        "emoji 🙂👍🏽 ❤️",
        "tabs\tand\nnewlines\r\nand   many    spaces",
        "nbsp\u00a0ideographic\u3000space\u2003em",
        "file sep\u001c unit\u001f",
        "a<|endoftext|>b",
        "x <|endoftext|> y <|startoftext|> z",
        "<|ENDOFTEXT|> upper case special",
        "<|endoftext|>!!",
        "!<|endoftext|>",
        "price: $3.50 (50% off) #1 @home ~tilde~",
        "3.14159 ²³ ½ Ⅻ ٣",
        "snake_case and kebab-case and CamelCase",
        "https://example.com/path?q=1&r=2",
        "....!!!???",
        "x" * 300,
        "a painting in the style of van gogh, trending on artstation, 4k, hdr",
        "\u00c5ngstr\u00f6m \u212bngstr\u00f6m (Kelvin-angstrom sign NFC)",
        long_prompt,
        ten_k,
    ] + random_strings(20)


# Pieces for the seeded random strings: letters whose lower case is special (ẞ, İ, ǅ, ﬁ, the Ohm and
# Kelvin-angstrom signs that NFC replaces), zero-width and byte-order marks, supplementary planes,
# whitespace of every kind, contractions in upper case, the special tokens whole and broken.
PIECES = list("aAbBzZ0123456789 '\".,!?-_/\\<>|()[]{}#$%^&*+=~`;:") + [
    "'s", "'T", "'re", "'VE", "'m", "'ll", "'d", "  ", "\t", "\n", "\u00a0", "\u3000", "\u2028", "\u0085",
    "é", "É", "e\u0301", "ß", "\u1e9e", "\u0130", "ı", "Σ", "ς", "ǅ", "ﬁ", "\u2126", "\u212b", "东", "京",
    "ア", "ｱ", "한", "🙂", "👍🏽", "❤️", "\u200d", "\u200b", "\ufeff", "\u0663", "²", "½", "Ⅻ", "\u0301",
    "<|endoftext|>", "<|startoftext|>", "<|ENDOFTEXT|>", "<|endoftext|", "!", "\U0001d518", "\U00010400",
]


def random_strings(n):
    """n strings of 0..40 random pieces (seeded: the same strings every run). Differential runs of
    this kind (300 strings against the full vocabulary) found no difference before they were added."""
    rng = random.Random(14)
    return ["".join(rng.choice(PIECES) for _ in range(rng.randint(0, 40))) for _ in range(n)]


def special_token_variants(vocab):
    """Folders that spell the special tokens differently (strings or objects, normalized or not, in
    special_tokens_map.json or tokenizer_config.json, with or without an added_tokens_decoder): which
    added tokens transformers makes of them, and with which normalized flag, decides whether
    "<|ENDOFTEXT|>" and "!" in a prompt are special tokens. Each is the small vocabulary plus these two
    files (None: the file is absent)."""
    eot, sot = "<|endoftext|>", "<|startoftext|>"

    def obj(c, n=True):
        return {"content": c, "lstrip": False, "normalized": n, "rstrip": False, "single_word": False}

    def dec(n_sot, n_eot):
        return {str(vocab[sot]): dict(obj(sot, n_sot), special=True),
                str(vocab[eot]): dict(obj(eot, n_eot), special=True)}

    return [
        ("unk_string", {"bos_token": obj(sot), "eos_token": obj(eot), "unk_token": eot, "pad_token": obj(eot)}, {}),
        ("eos_string", {"bos_token": obj(sot), "eos_token": eot, "unk_token": obj(eot), "pad_token": obj(eot)}, {}),
        ("config_strings_pad_bang", None, {"bos_token": sot, "eos_token": eot, "pad_token": "!"}),
        ("map_over_config", {"pad_token": "!"}, {"pad_token": eot}),
        ("decoder_not_normalized", None, {"added_tokens_decoder": dec(True, False), "pad_token": eot}),
        ("decoder_ignores_map", {"pad_token": "!"}, {"added_tokens_decoder": dec(True, True), "pad_token": eot}),
        ("no_special_files", None, {}),
        ("bos_not_normalized", {"bos_token": obj(sot, False), "eos_token": obj(eot), "unk_token": obj(eot),
                                "pad_token": obj(eot)}, {}),
        ("objects_without_flag", {"eos_token": {"content": eot}, "unk_token": {"content": eot},
                                  "pad_token": {"content": eot}}, {}),
        ("pad_bang_object", {"bos_token": obj(sot), "eos_token": obj(eot), "unk_token": obj(eot),
                             "pad_token": obj("!")}, {}),
    ]


VARIANT_PROBES = ["a <|ENDOFTEXT|> b hi!", "<|StartOfText|>x<|endoftext|>!y", "hello!!", "a cat"]


def bpe_applied(word, ranks):
    """The merges that BPE applies to one word (symbols with "</w>" on the last), lowest rank first."""
    syms = list(word[:-1]) + [word[-1] + "</w>"]
    used = []
    while len(syms) > 1:
        best = min(((ranks.get((a, b), 1 << 30), i) for i, (a, b) in enumerate(zip(syms, syms[1:]))))
        if best[0] == 1 << 30:
            break
        i = best[1]
        used.append((syms[i], syms[i + 1]))
        syms[i : i + 2] = [syms[i] + syms[i + 1]]
    return used


def encode(tok, s):
    e = tok(s, max_length=MAX_LEN, padding="max_length", truncation=True)
    full = tok(s)["input_ids"]
    return {"ids": e["input_ids"], "n_real": int(sum(e["attention_mask"])), "truncated": len(full) > MAX_LEN}


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--cache", default=os.path.join(ROOT, "ref", ".cache", "clip_tokenizer"))
    args = ap.parse_args()
    vocab, merges = build_full()
    full = {"eot": os.path.join(args.cache, "eot"), "bang": os.path.join(args.cache, "bang")}
    write_folder(full["eot"], vocab, merges, "<|endoftext|>")
    write_folder(full["bang"], vocab, merges, "!")
    tok_full = {k: CLIPTokenizer.from_pretrained(d) for k, d in full.items()}
    strings = corpus()

    # The small vocabulary: the merges BPE applies to every word of the corpus (the full tokenizer's
    # own normaliser and pre-tokenizer make the words; the literal special strings are words too). The
    # added tokens cut the text first, which can make other words ("....!" with "!" an added token gives
    # "...."): the words of the text cut at the special strings, and at those and "!", are added too.
    ranks = {m: i for i, m in enumerate(merges)}
    b2u = bytes_to_unicode()
    backend = tok_full["eot"].backend_tokenizer
    needed = set()
    for s in strings:
        norm = backend.normalizer.normalize_str(s)
        cuts = [[norm], re.split(r"<\|startoftext\|>|<\|endoftext\|>", norm),
                re.split(r"<\|startoftext\|>|<\|endoftext\|>|!", norm)]
        for part in (p for c in cuts for p in c):
            for w, _ in backend.pre_tokenizer.pre_tokenize_str(part):
                needed.update(bpe_applied(w, ranks))
    small_merges = [m for m in merges if m in needed]
    symbols = list(b2u.values())
    tokens = symbols + [s + "</w>" for s in symbols] + ["".join(m) for m in small_merges]
    tokens += ["<|startoftext|>", "<|endoftext|>"]
    small_vocab = {t: i for i, t in enumerate(tokens)}
    small = {"small_eot": os.path.join(FIX, "clip_small"), "small_bang": os.path.join(FIX, "clip_small_bang")}
    for d in small.values():
        shutil.rmtree(d, ignore_errors=True)
    write_folder(small["small_eot"], small_vocab, small_merges, "<|endoftext|>")
    write_folder(small["small_bang"], small_vocab, small_merges, "!")
    toks = {k: CLIPTokenizer.from_pretrained(d) for k, d in small.items()}
    tj = os.path.join(FIX, "clip_small_tj")
    shutil.rmtree(tj, ignore_errors=True)
    toks["small_eot"].save_pretrained(tj)
    assert sorted(os.listdir(tj)) == ["tokenizer.json", "tokenizer_config.json"], os.listdir(tj)
    tok_tj = CLIPTokenizer.from_pretrained(tj)

    expected = {}
    for name, tok in list(toks.items()) + [("full_" + k, t) for k, t in tok_full.items()]:
        expected[name] = [encode(tok, s) for s in strings]
    # the small vocabulary must tokenise every string like the full one (same token strings)
    inv_small = {i: t for t, i in small_vocab.items()}
    for k in ("eot", "bang"):
        for s, a, b in zip(strings, expected["small_" + k], expected["full_" + k]):
            assert [inv_small[i] for i in a["ids"]] == tok_full[k].convert_ids_to_tokens(b["ids"]), s
    for s, e in zip(strings, expected["small_eot"]):
        assert encode(tok_tj, s) == e, s

    variants = []
    for name, stm, cfg in special_token_variants(small_vocab):
        d = os.path.join(args.cache, "variant_" + name)
        shutil.rmtree(d, ignore_errors=True)
        os.makedirs(d)
        for f in ("vocab.json", "merges.txt"):
            shutil.copy(os.path.join(small["small_eot"], f), d)
        if stm is not None:
            with open(os.path.join(d, "special_tokens_map.json"), "w", encoding="utf-8") as f:
                json.dump(stm, f)
        with open(os.path.join(d, "tokenizer_config.json"), "w", encoding="utf-8") as f:
            json.dump(dict(cfg, model_max_length=MAX_LEN), f)
        tok = CLIPTokenizer.from_pretrained(d)
        variants.append({"name": name, "special_tokens_map": stm, "tokenizer_config": cfg,
                         "pad_id": tok.pad_token_id,
                         "expected": [encode(tok, p) for p in VARIANT_PROBES]})

    out = {
        "generator": "ref/make_tokenizer_fixtures.py",
        "transformers": transformers.__version__,
        "open_clip_torch": open_clip.__version__,
        "max_length": MAX_LEN,
        "folders": {"small_eot": "clip_small", "small_bang": "clip_small_bang", "small_tj": "clip_small_tj",
                    "full_eot": "<cache>/eot", "full_bang": "<cache>/bang"},
        "strings": strings,
        "expected": expected,
        "variant_probes": VARIANT_PROBES,
        "variants": variants,
    }
    with open(os.path.join(FIX, "clip_corpus.json"), "w", encoding="utf-8") as f:
        json.dump(out, f, ensure_ascii=True, indent=None, separators=(",", ":"))
        f.write("\n")
    n_trunc = sum(e["truncated"] for e in expected["full_eot"])
    print(f"full vocab {len(vocab)} tokens, {len(merges)} merges -> {args.cache}/{{eot,bang}}")
    print(f"small vocab {len(small_vocab)} tokens, {len(small_merges)} merges -> {FIX}")
    print(f"corpus {len(strings)} strings, {n_trunc} truncated at {MAX_LEN}; "
          f"pad ids: eot {tok_full['eot'].pad_token_id}, bang {tok_full['bang'].pad_token_id}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
