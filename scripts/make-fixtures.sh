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
(cd ref && "../$VENV/bin/python" make_transformer_op_fixtures.py)
echo "fixtures written under tests/fixtures/"
