#!/usr/bin/env bash
# Creates the reference twin's virtual environment ref/.venv (git-ignored, never committed) and
# installs ref/requirements.txt from PyPI into it. Idempotent. make fixtures and make bench use it.
set -euo pipefail
cd "$(dirname "$0")/.."
VENV=ref/.venv
if [ ! -x "$VENV/bin/python" ]; then
  python3 -m venv "$VENV"
fi
"$VENV/bin/pip" install -q -r ref/requirements.txt
