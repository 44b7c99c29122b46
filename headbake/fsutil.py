"""Small files written all-or-nothing: write a hidden sibling, then rename over the target."""

from __future__ import annotations

import contextlib
import json
import os
from pathlib import Path


@contextlib.contextmanager
def atomic_path(path: str | os.PathLike):
    """Yield a hidden sibling of ``path`` to write; it replaces ``path`` only if the block succeeds."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.stem}.tmp-{os.getpid()}{path.suffix}")
    try:
        yield tmp
        os.replace(tmp, path)
    finally:
        if tmp.exists():
            tmp.unlink()


def write_text_atomic(path: str | os.PathLike, text: str) -> None:
    with atomic_path(path) as tmp:
        tmp.write_text(text, encoding="utf-8")


def write_json_atomic(path: str | os.PathLike, doc: dict) -> None:
    write_text_atomic(path, json.dumps(doc, indent=2) + "\n")


def ensure_writable(path: str | os.PathLike, what: str = "output") -> None:
    """Fail before a long run, not after it, when ``path`` cannot be written.

    Probes with a hidden file in the nearest existing ancestor (missing parent
    directories are created later, by the writer) and leaves nothing behind.
    """
    from headbake.errors import HeadbakeError

    path = Path(path).absolute()
    if path.is_dir():
        raise HeadbakeError(f"{what} {path} is a directory")
    base = path.parent
    while not base.exists():
        base = base.parent
    if not base.is_dir():
        raise HeadbakeError(f"cannot write {what} {path}: {base} is not a directory")
    probe = base / f".{path.name}.probe-{os.getpid()}"
    try:
        probe.write_bytes(b"")
        probe.unlink()
    except OSError as e:
        raise HeadbakeError(f"cannot write {what} {path}: {e.strerror or e}") from None
