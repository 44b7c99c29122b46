"""Small files written all-or-nothing: write a hidden sibling, then rename over the target."""

from __future__ import annotations

import contextlib
import json
import os
import shutil
from pathlib import Path

from headbake.errors import HeadbakeError


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


def pid_alive(pid: int) -> bool:
    """Whether a process ``pid`` exists on this machine (one we may not signal still counts)."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    except (OverflowError, ValueError):
        return False
    return True


def sweep_dead_pid_dirs(parent: str | os.PathLike, prefix: str) -> list[Path]:
    """Remove ``parent/PREFIX<pid>`` folders whose process is gone (a kill -9'd run's leftovers).

    Folders of live processes, and names whose suffix is not a pid, are kept.
    Returns what was removed.
    """
    removed = []
    parent = Path(parent)
    if not parent.is_dir():
        return removed
    for p in parent.iterdir():
        if not p.name.startswith(prefix):
            continue
        suffix = p.name[len(prefix):]
        if not suffix.isdigit() or int(suffix) <= 0 or pid_alive(int(suffix)):
            continue
        if p.is_dir() and not p.is_symlink():
            shutil.rmtree(p, ignore_errors=True)
        else:
            p.unlink(missing_ok=True)
        removed.append(p)
    return removed
