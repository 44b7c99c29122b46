"""headbake uses libraries through their public APIs, and declares every package it imports.

A private name of huggingface_hub can change or vanish in any release; an undeclared
package works only where something else happened to install it.
"""

from __future__ import annotations

import ast
import re
import sys
from importlib.metadata import packages_distributions
from pathlib import Path

from packaging.requirements import Requirement

try:
    import tomllib
except ImportError:  # Python 3.10
    import tomli as tomllib

ROOT = Path(__file__).resolve().parents[1]
PACKAGES = ["headbake", "bake", "calibrate", "model_cards"]
OWN = {"headbake"}


def _sources():
    for pkg in PACKAGES:
        for path in sorted((ROOT / pkg).rglob("*.py")):
            yield path, ast.parse(path.read_text(encoding="utf-8"), filename=str(path))


def private_hub_uses(tree: ast.AST) -> list[str]:
    """Private huggingface_hub names a module imports or reaches through an attribute."""
    found, bound = [], set()
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom) and (node.module or "").split(".")[0] == "huggingface_hub":
            if any(p.startswith("_") for p in node.module.split(".")):
                found.append(node.module)
            for a in node.names:
                if a.name.startswith("_"):
                    found.append(f"{node.module}.{a.name}")
                bound.add(a.asname or a.name)
        elif isinstance(node, ast.Import):
            for a in node.names:
                if a.name.split(".")[0] == "huggingface_hub":
                    if any(p.startswith("_") for p in a.name.split(".")):
                        found.append(a.name)
                    bound.add(a.asname or a.name.split(".")[0])
    for node in ast.walk(tree):
        if isinstance(node, ast.Attribute) and node.attr.startswith("_") and not node.attr.startswith("__"):
            base = node.value
            while isinstance(base, ast.Attribute):
                base = base.value
            if isinstance(base, ast.Name) and base.id in bound:
                found.append(f"{base.id}...{node.attr}")
    return found


def imported_top_levels(tree: ast.AST) -> set[str]:
    out = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            out.update(a.name.split(".")[0] for a in node.names)
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            out.add(node.module.split(".")[0])
    return out


def _norm(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def declared_distributions() -> set[str]:
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    reqs = list(project.get("dependencies", []))
    for extra in project.get("optional-dependencies", {}).values():
        reqs.extend(extra)
    return {_norm(Requirement(r).name) for r in reqs}


def test_the_checker_sees_private_names():
    bad = ast.parse(
        "from huggingface_hub.utils import _http\n"
        "from huggingface_hub import constants\n"
        "import huggingface_hub as hh\n"
        "x = hh.utils._http._GLOBAL_CLIENT_FACTORY\n"
        "def f(op):\n    from huggingface_hub.utils._runtime import is_xet_available\n"
    )
    found = private_hub_uses(bad)
    assert "huggingface_hub.utils._http" in found and "huggingface_hub.utils._runtime" in found
    assert any("_GLOBAL_CLIENT_FACTORY" in f for f in found)
    assert private_hub_uses(ast.parse("from huggingface_hub import HfApi, constants\nconstants.ENDPOINT\n")) == []


def test_no_private_huggingface_hub_names():
    offenders = {str(p.relative_to(ROOT)): found for p, tree in _sources() if (found := private_hub_uses(tree))}
    assert offenders == {}


def test_every_imported_package_is_declared():
    dists = packages_distributions()
    declared = declared_distributions()
    missing = {}
    for path, tree in _sources():
        for mod in imported_top_levels(tree) - OWN - set(sys.stdlib_module_names):
            names = {_norm(d) for d in dists.get(mod, [])} or {_norm(mod)}  # not installed (a GPU-only extra)
            if not names & declared:
                missing.setdefault(mod, []).append(str(path.relative_to(ROOT)))
    assert missing == {}, f"imported but not declared in pyproject.toml: {missing}"


def test_the_declared_check_knows_a_missing_package():
    assert "httpx2" in declared_distributions() and "huggingface-hub" in declared_distributions()
    assert _norm("PyYAML") not in declared_distributions()  # imported only by the tests' fake Hub
    assert imported_top_levels(ast.parse("import yaml.constructor\nfrom PIL import Image\nfrom . import x\n")) == {
        "yaml", "PIL"}
