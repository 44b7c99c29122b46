"""sha256 of whole files, two at a time (hashlib releases the GIL on big buffers)."""

from __future__ import annotations

import hashlib
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

CHUNK = 8 << 20


def sha256_file(path, progress=None) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while True:
            b = f.read(CHUNK)
            if not b:
                break
            h.update(b)
            if progress is not None:
                progress.update(len(b))
    return h.hexdigest()


def sha256_files(paths, progress=None, workers: int = 2) -> dict[str, str]:
    paths = [Path(p) for p in paths]
    with ThreadPoolExecutor(max_workers=workers) as pool:
        digests = pool.map(lambda p: sha256_file(p, progress), paths)
        return {str(p): d for p, d in zip(paths, digests)}


def sha256_bytes(b) -> str:
    return hashlib.sha256(b).hexdigest()
