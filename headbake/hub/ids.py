"""What a MODEL or repo name is: a Hub repo id, a commit sha or a path (aliases: ``headbake.model.aliases``).

The repo-id rule lives here once, for resolving a model, naming a push target and
deciding whether a card may cite a source as ``base_model``.
"""

from __future__ import annotations

import os
import re

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
