#!/usr/bin/env bash
# Tests the dependency floors: every package pyproject.toml declares (core and extras), installed at
# the lowest version its ">=" allows, in a second venv, against a fast subset of the tests.
#
# A floor nobody installs is a guess; this makes each one a tested fact. torch and torchvision are
# the exception: only the pinned pair that scripts/install.sh puts into the base Python can be
# installed on these machines (any other build is a multi-GB CUDA download), so the venv sees them
# through --system-site-packages, and their floors must equal what the base Python has.
#
# Usage: bash scripts/check_floors.sh [pytest args...]   (default: the fast subset below)
# Env:   PYTHON (base interpreter, default python3), HEADBAKE_FLOORS_VENV (where the venv goes).
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-python3}
VENV=${HEADBAKE_FLOORS_VENV:-${TMPDIR:-/tmp}/headbake-floors-venv}
start=$SECONDS

# One test file or node per concern, so every declared package is exercised at its floor:
# fold/safetensors/numpy, model knowledge on real transformers configs, the Hub client (push,
# resolve: huggingface_hub + httpx2), the card (jinja2), the probe on transformers' attention
# (eager vs registry, padded batches), calibrate end to end (processor: tokenizers, torchvision,
# pillow; heatmap: matplotlib; click), datasets, math-verify/sympy, and a model-level verify with
# accelerate's device_map; optuna's journal storage and samplers (tune).
SUBSET=(
    tests/test_fold.py
    tests/test_modelinfo.py
    tests/test_push.py
    tests/test_resolve.py
    tests/test_card.py
    tests/test_calibrate_probe.py
    tests/test_calibrate_cli.py
    tests/test_calibrate_data.py
    tests/test_eval_recipes.py
    tests/test_eval_scoring.py
    tests/test_dependencies.py
    tests/test_hardening_header.py
    tests/test_samples_regime.py
    tests/test_memory.py
    tests/test_tune.py
    "tests/test_bake.py::test_verify_passes_and_gain_changes_logits"
    "tests/test_bake.py::test_verify_with_device_map_reloads_for_the_reference"
)
if [ "$#" -gt 0 ]; then SUBSET=("$@"); fi

"$PY" -m venv --clear --system-site-packages "$VENV"
VPY="$VENV/bin/python"
PINS="$VENV/floors.txt"

# pyproject.toml -> one "name==floor" line per declared package (base-Python packages checked, not pinned).
"$VPY" - "$PINS" <<'EOF'
import sys
from importlib.metadata import PackageNotFoundError, version

from packaging.requirements import Requirement
from packaging.utils import canonicalize_name
from packaging.version import Version

try:
    import tomllib
except ImportError:  # Python 3.10
    import tomli as tomllib

FROM_BASE = {"torch", "torchvision"}
# Extras that need a CUDA GPU to install or import (vLLM): untestable on the CPU machines that run this.
GPU_EXTRAS = {"vllm"}
project = tomllib.load(open("pyproject.toml", "rb"))["project"]
reqs = list(project["dependencies"])
for name, extra in project.get("optional-dependencies", {}).items():
    if name not in GPU_EXTRAS:
        reqs.extend(extra)
floors, bad = {}, []
for line in reqs:
    r = Requirement(line)
    if r.marker and not r.marker.evaluate():
        continue
    lows = [s.version for s in r.specifier if s.operator == ">="]
    if len(lows) != 1:
        bad.append(f"{line!r} has no single '>=' floor")
        continue
    name = canonicalize_name(r.name)
    if floors.get(name, lows[0]) != lows[0]:
        bad.append(f"{name} has two floors: {floors[name]} and {lows[0]}")
    floors[name] = lows[0]
for name in sorted(FROM_BASE & floors.keys()):
    try:
        have = version(name)
    except PackageNotFoundError:
        have = None
    if have is None or Version(have) != Version(floors[name]):
        bad.append(f"{name} floor is {floors[name]} but the base Python has {have}: "
                   f"install that version there first (scripts/install.sh does)")
if bad:
    sys.exit("check_floors: the floors cannot be tested:\n  " + "\n  ".join(bad))
with open(sys.argv[1], "w") as f:
    f.writelines(f"{n}=={v}\n" for n, v in sorted(floors.items()) if n not in FROM_BASE)
EOF

# pip warns once for every package the machine's local index mirrors lack: keep that out of the log.
pip_install() {
    local rc=0
    "$VPY" -m pip install -q --disable-pip-version-check "$@" >"$VENV/pip.log" 2>&1 || rc=$?
    grep -vE "^WARNING: Location 'file:" "$VENV/pip.log" || true
    return "$rc"
}
pip_install -r "$PINS"
pip_install --no-deps -e .

# What the tests will import is the floor (from the venv, or from the base Python where that holds the
# floor itself), never a newer copy.
"$VPY" - "$PINS" <<'EOF'
import importlib
import sys
from importlib.metadata import distribution
from pathlib import Path

from packaging.version import Version

import headbake.bake

MODULE = {"pillow": "PIL", "math-verify": "math_verify", "huggingface-hub": "huggingface_hub", "scikit-image": "skimage"}
venv = Path(sys.prefix).resolve()
rows, bad = [], []
for line in open(sys.argv[1]).read().split():
    name, floor = line.split("==")
    d = distribution(name)
    where = Path(d.locate_file("")).resolve()
    importlib.import_module(MODULE.get(name, name.replace("-", "_")))
    rows.append((name, floor, d.version, "venv" if venv in where.parents else "base Python"))
    if Version(d.version) != Version(floor):
        bad.append(name)
for name in ("torch", "torchvision"):
    d = distribution(name)
    rows.append((name, d.version, d.version, "base Python (checked equal to the floor above)"))
print(f"check_floors: Python {sys.version.split()[0]}; tested versions:")
for r in rows:
    print(f"  {r[0]:<16} floor {r[1]:<9} installed {r[2]:<9} from {r[3]}")
here = Path.cwd().resolve()
if not all(here in Path(m.__file__).resolve().parents for m in (headbake, headbake.bake)):
    bad.append(f"headbake (imported from {Path(headbake.__file__).parent}, not this checkout)")
print(f"  headbake         {headbake.__version__} from {here}")
if bad:
    sys.exit(f"check_floors: not at their floor: {', '.join(bad)}")
EOF

echo "check_floors: venv $VENV ready in $((SECONDS - start)) s; running ${#SUBSET[@]} test files/nodes"
# Plugins that the base Python happens to have (and that may need a newer pytest) stay out.
# pytest's summary stays the last line: CI reads it.
PYTEST_DISABLE_PLUGIN_AUTOLOAD=1 "$VPY" -m pytest -q -p no:cacheprovider "${SUBSET[@]}"
