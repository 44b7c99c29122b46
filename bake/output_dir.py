"""Write a directory completely or not at all.

Work happens in a hidden sibling ``.NAME.headbake-tmp-PID``; only a finished
directory is renamed to NAME. SIGTERM is turned into an exception so the
temporary directory is removed on ``kill`` as well as Ctrl-C; a SIGKILL'd
run's leftover is swept by the next run (its PID is gone).
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
from pathlib import Path

from headbake.errors import HeadbakeError
from headbake.fsutil import pid_alive


def check_target(out: Path, overwrite: bool, protected: list[Path] = ()) -> None:
    """Refuse outputs that would clobber data, before any work starts."""
    out_r = out.resolve()
    for p in protected:
        p = p.resolve()
        if out_r == p or p in out_r.parents or out_r in p.parents:
            raise HeadbakeError(f"output {out} overlaps the source {p}; choose another --out")
    if out.exists() and not out.is_dir():
        raise HeadbakeError(f"output {out} exists and is not a directory")
    for parent in out_r.parents:
        if parent.exists():
            if not parent.is_dir():
                raise HeadbakeError(f"cannot create output {out}: {parent} is not a directory")
            break
    if out.is_dir() and any(out.iterdir()) and not overwrite:
        raise HeadbakeError(f"output directory {out} exists and is not empty; pass --overwrite to replace it")


def _sweep_stale(out: Path) -> None:
    for p in out.parent.glob(f".{out.name}.headbake-*-*"):
        try:
            pid = int(p.name.rsplit("-", 1)[1])
        except ValueError:
            continue
        if not pid_alive(pid):
            shutil.rmtree(p, ignore_errors=True)


class _Terminated(KeyboardInterrupt):
    pass


@contextlib.contextmanager
def _sigterm_as_interrupt():
    def handler(signum, frame):
        raise _Terminated()

    try:
        old = signal.signal(signal.SIGTERM, handler)
    except ValueError:  # not the main thread
        yield
        return
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, old)


@contextlib.contextmanager
def atomic_directory(out: Path, overwrite: bool = False):
    """Yield a temporary directory that becomes ``out`` only if the block succeeds."""
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    _sweep_stale(out)
    tmp = out.parent / f".{out.name}.headbake-tmp-{os.getpid()}"
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir()
    try:
        with _sigterm_as_interrupt():
            yield tmp
            if out.exists():
                if any(out.iterdir()) and not overwrite:
                    raise HeadbakeError(f"output directory {out} appeared during the run; not replacing it")
                old = out.parent / f".{out.name}.headbake-old-{os.getpid()}"
                os.replace(out, old)
                try:
                    os.replace(tmp, out)
                except BaseException:
                    os.replace(old, out)  # put the previous output back
                    raise
                if old.is_symlink() or not old.is_dir():
                    old.unlink()
                else:
                    shutil.rmtree(old, ignore_errors=True)
            else:
                os.replace(tmp, out)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
