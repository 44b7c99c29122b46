"""What a MODEL or repo name is: a Hub repo id, a commit sha, a path, or one of headbake's aliases.

The repo-id rule lives here once, for resolving a model, naming a push target and
deciding whether a card may cite a source as ``base_model``.
"""

from __future__ import annotations

import difflib
import json
import os
import re
from functools import lru_cache
from importlib import resources

# namespace/name as the Hub accepts it: each part starts with a letter or digit (a name may start with "_"),
# no "--" or "..", no trailing "." or "-", a name of at most 96 characters.
_REPO_ID = re.compile(r"[A-Za-z0-9][\w.-]*/[A-Za-z0-9_][\w.-]*")
_HEX40 = re.compile(r"[0-9a-f]{40}")


def looks_like_repo_id(s) -> bool:
    """``namespace/name`` as the Hub spells it (not a path)."""
    return (isinstance(s, str) and bool(_REPO_ID.fullmatch(s)) and "--" not in s and ".." not in s
            and not s.endswith((".", "-")) and len(s.split("/")[1]) <= 96 and not os.path.isabs(s))


def is_commit_sha(s: str) -> bool:
    """A full 40-hex-digit commit id (what a cache snapshot folder is named after)."""
    return bool(_HEX40.fullmatch(s))


def looks_like_path(name: str) -> bool:
    """Written like a file system path rather than a Hub id or an alias."""
    return name.startswith((".", "/", "~")) or name.endswith(("/", os.sep)) or name.count("/") > 1 or "\\" in name


@lru_cache(maxsize=1)
def aliases() -> dict[str, dict]:
    """The model aliases shipped in ``aliases.json`` (keys starting with ``_`` are comments)."""
    text = resources.files("headbake").joinpath("aliases.json").read_text()
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
