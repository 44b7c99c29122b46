#!/usr/bin/env bash
# Installs headbake and what its tests need into the current Python.
# torch/torchvision first, pinned: the only pair whose torchvision imports on these machines
# (the Qwen2.5-VL processor needs torchvision in transformers 5.x). They are also pyproject.toml's
# torch/torchvision floors: scripts/check_floors.sh tests the floors on this base Python's pair.
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-python3}
"$PY" -m pip install -q --disable-pip-version-check "torch==2.14.1" "torchvision==0.29.1"
"$PY" -m pip install -q --disable-pip-version-check -e ".[test]"
