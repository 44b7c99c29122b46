"""One writer per output: an exclusive lock on a file in the work folder.

Two ``convert`` runs to the same OUT share ``.OUT.headbake-work``; without a
lock the second one deletes or overwrites the first one's stages and fails
with an unrelated error. The lock is a non-blocking ``flock`` on
``WORK/.lock``: the kernel drops it when the process dies (even on
``kill -9``), so a stale lock cannot outlive its run.
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import os
from pathlib import Path

from headbake.errors import HeadbakeError

LOCK_NAME = ".lock"


@contextlib.contextmanager
def writer_lock(work: str | os.PathLike, out: str | os.PathLike):
    """Hold the lock of ``work`` (created if missing) for the block, or refuse at once.

    Refusal: ``another headbake is writing OUT``. Removing ``work`` inside the
    block is fine (do it there, not after: once the lock is released another
    run may already be using the folder). Create nothing before the checks
    that can refuse the run: this creates ``work``.
    """
    work = Path(work)
    lock = work / LOCK_NAME
    while True:
        work.mkdir(parents=True, exist_ok=True)
        try:
            fd = os.open(lock, os.O_RDWR | os.O_CREAT | getattr(os, "O_CLOEXEC", 0), 0o644)
        except FileNotFoundError:  # the holder removed the folder between our mkdir and open
            continue
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError as e:
            os.close(fd)
            if e.errno in (errno.EWOULDBLOCK, errno.EAGAIN, errno.EACCES):
                raise HeadbakeError(f"another headbake is writing {out}; wait for it to finish, "
                                    "or stop it first") from None
            raise HeadbakeError(f"cannot lock {lock}: {e.strerror or e}") from None
        # The folder may have been removed (and made again) by the previous holder after we opened the
        # file: then we hold a lock on a file nobody else will open. Retry on the current one.
        try:
            a, b = os.stat(lock), os.fstat(fd)
            same = (a.st_dev, a.st_ino) == (b.st_dev, b.st_ino)
        except FileNotFoundError:
            same = False
        if same:
            break
        os.close(fd)
    try:
        yield work
    finally:
        os.close(fd)  # releases the lock
