"""Short model names (``Ocean-R1``, ``Kimi-VL``, ``demo``...), as data in ``aliases.json``.

Each alias names its Hub repo (or a built-in model), its architecture and the
settings that belong to it, so ``headbake convert Ocean-R1`` needs no other
knowledge.
"""

from __future__ import annotations

import difflib
import json
import re
from functools import lru_cache
from importlib import resources


@lru_cache(maxsize=1)
def aliases() -> dict[str, dict]:
    """The model aliases shipped in ``aliases.json`` (keys starting with ``_`` are comments)."""
    text = resources.files("headbake.model").joinpath("aliases.json").read_text()
    return {k: v for k, v in json.loads(text).items() if not k.startswith("_")}


def find_alias(name: str) -> str | None:
    """The canonical alias spelling for ``name`` (case-insensitive), or None."""
    low = name.strip().lower()
    return next((a for a in aliases() if a.lower() == low), None)


def nearest_alias(name: str) -> str | None:
    """The alias a typo most likely meant, compared case- and punctuation-insensitively."""
    def norm(s: str) -> str:
        return re.sub(r"[^a-z0-9]", "", s.lower())

    keys = {norm(a): a for a in aliases()}
    for a, spec in aliases().items():
        if spec.get("repo"):
            keys.setdefault(norm(spec["repo"]), a)
            keys.setdefault(norm(spec["repo"].split("/")[-1]), a)
    for c in (norm(name), norm(name.split("/")[-1])):
        hit = difflib.get_close_matches(c, list(keys), n=1, cutoff=0.5)
        if hit:
            return keys[hit[0]]
    return None


def identify_model(model_id: str | None = None, alias: str | None = None) -> str | None:
    """The alias a model is known by: ``alias`` itself, or the alias whose name or Hub repo is ``model_id``."""
    table = aliases()
    for name in (alias, model_id):
        if not name:
            continue
        low = str(name).lower()
        for a, spec in table.items():
            if a.lower() == low or str(spec.get("repo", "")).lower() == low:
                return a
    return None
