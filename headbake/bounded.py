"""Read an input file with a size bound, refusing anything that is not a regular file.

A gains, record or data path can name ``/dev/zero`` (endless), a FIFO (blocks
forever) or a huge file by mistake or on purpose. Files are opened
non-blocking (so a FIFO with no writer cannot hang the open), checked with
``fstat`` on the open descriptor (so a swap after the check changes nothing),
and never read past the bound.
"""

from __future__ import annotations

import os
import stat
from pathlib import Path
from typing import BinaryIO

from headbake.errors import HeadbakeError

MAX_JSON_BYTES = 64 << 20  # gains files, records, configs, indexes: real ones are under a few MB
MAX_JSONL_BYTES = 64 << 20  # calibration data lists (the images are separate files)
MAX_IMAGE_BYTES = 256 << 20  # one calibration image file (the decoded size has PIL's own bomb limit)


def _size(n: int) -> str:
    return f"{n / (1 << 20):.0f} MiB" if n >= 1 << 20 else f"{n} bytes"


def open_regular(path: str | os.PathLike, what: str, limit: int) -> BinaryIO:
    """Open ``path`` for reading if it is a regular file of at most ``limit`` bytes (the caller closes it)."""
    path = Path(path)
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK | getattr(os, "O_CLOEXEC", 0))
    except FileNotFoundError:
        raise HeadbakeError(f"{what} not found: {path}") from None
    except IsADirectoryError:
        raise HeadbakeError(f"{what} is a directory: {path}") from None
    except OSError as e:
        raise HeadbakeError(f"cannot read {what} {path}: {e.strerror or e}") from None
    try:
        st = os.fstat(fd)
        if stat.S_ISDIR(st.st_mode):
            raise HeadbakeError(f"{what} is a directory: {path}")
        if not stat.S_ISREG(st.st_mode):
            raise HeadbakeError(f"{what} is not a regular file (a device, FIFO or socket): {path}")
        if st.st_size > limit:
            raise HeadbakeError(f"{what} is {_size(st.st_size)}, more than the {_size(limit)} headbake reads: {path}")
        os.set_blocking(fd, True)
        return os.fdopen(fd, "rb")
    except BaseException:
        os.close(fd)
        raise


def read_bounded(path: str | os.PathLike, what: str, limit: int) -> bytes:
    """The bytes of a regular file of at most ``limit`` bytes (also if it grows while being read)."""
    chunks, total = [], 0
    with open_regular(path, what, limit) as f:
        # In pieces: f.read(limit + 1) would allocate the whole bound up front for a 100-byte file.
        while chunk := f.read(min(1 << 20, limit + 1 - total)):
            chunks.append(chunk)
            total += len(chunk)
            if total > limit:
                raise HeadbakeError(f"{what} grew past the {_size(limit)} headbake reads while being read: {path}")
    return b"".join(chunks)


def read_text(path: str | os.PathLike, what: str, limit: int) -> str:
    """A bounded regular file as UTF-8 text (one line naming the file and byte when it is not UTF-8)."""
    data = read_bounded(path, what, limit)
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError as e:
        raise HeadbakeError(f"{what} is not UTF-8 text: {path} ({e.reason} at byte {e.start})") from None
