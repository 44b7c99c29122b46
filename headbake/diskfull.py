"""What a full disk leaves behind, in the words the error line uses.

``bake`` and ``calibrate`` write all-or-nothing, so after ENOSPC nothing was
kept. ``convert`` keeps its finished stages in the work folder so that a
re-run resumes; its message must say so rather than "nothing was kept".
"""

from __future__ import annotations

import errno
import os
from pathlib import Path

from headbake.checkpoint import read_json
from headbake.errors import HeadbakeError


def is_disk_full(exc: BaseException) -> bool:
    return isinstance(exc, OSError) and exc.errno in (errno.ENOSPC, errno.EDQUOT)


def kept_in_work(work: str | os.PathLike) -> str | None:
    """The resumable state a convert work folder holds, as a phrase; None when it holds none."""
    work = Path(work)
    parts = []
    if (work / "heads.json").is_file():
        parts.append("the calibration (heads.json)")
    record = work / "baked" / "headbake.json"
    if record.is_file():
        try:
            verified = (read_json(record, "headbake.json").get("verification") or {}).get("passed") is True
        except (HeadbakeError, AttributeError):
            verified = False
        parts.append("the verified baked copy" if verified else "the baked copy")
    if not parts:
        return None
    return f"{' and '.join(parts)} {'is' if len(parts) == 1 else 'are'} kept in {work}"


def disk_full_message(exc: OSError, kept: str | None = None) -> str:
    """``no space left on device writing FILE; <what was kept>`` on one line.

    ``kept`` None: the command keeps nothing (its partial output was removed).
    Otherwise say what survives and that re-running resumes from it.
    """
    where = f" writing {exc.filename}" if getattr(exc, "filename", None) else ""
    what = "quota exceeded" if exc.errno == errno.EDQUOT else "no space left on device"
    if kept:
        return f"{what}{where}; {kept}: free space and run the same command again to resume from there"
    return f"{what}{where}; nothing was kept (the partial output was removed)"
