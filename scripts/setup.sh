#!/usr/bin/env bash
# Sets up cinecube in a virtual environment at .venv (repository root). Safe to run again.
# torch is pinned to 2.13.0: on CPU machines pip takes the local CPU build instead of a
# multi-GB CUDA download.
set -euo pipefail
cd "$(dirname "$0")/.."
PYTHON=${PYTHON:-python3}
if [ ! -x .venv/bin/python ]; then
  "$PYTHON" -m venv .venv
fi
.venv/bin/python -m pip install --quiet --upgrade pip
.venv/bin/python -m pip install --quiet "torch==2.13.0"
.venv/bin/python -m pip install --quiet -e ".[test]"
echo "cinecube is set up in .venv"
