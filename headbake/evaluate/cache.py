"""Resumable per-row results: one JSONL line per (model, arm, settings, row), appended as rows finish.

A long evaluation (reasoning models write thousands of tokens per answer)
must survive an interruption: each finished row is appended and flushed at
once, and a rerun with the same key finds it and skips the row. The key
covers everything that decides a row's output -- the checkpoint's files
(content digests, not paths), the arm (its gains or per-input settings), the
generation settings and the row's exact prompt text and image bytes -- so a
changed model, setting or row is recomputed, never served stale. The gold
answer is not in the key: correcting a label re-scores without re-running.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from headbake.errors import HeadbakeError
from headbake.hashing import sha256_file

FORMAT = "headbake.eval-cache/v1"
_HEX64 = re.compile(r"^[0-9a-f]{64}$")
# Files that never change a model's outputs (a bake's record and card, repo plumbing).
_IGNORED = {"README.md", ".gitattributes", "headbake.json", "headbake_demo.json", "headbake_heatmap.png"}
_MEMO: dict = {}


def _canonical(obj) -> bytes:
    return json.dumps(obj, sort_keys=True, separators=(",", ":"), ensure_ascii=False).encode()


def digest(obj) -> str:
    """sha256 of ``obj`` in canonical JSON."""
    return hashlib.sha256(_canonical(obj)).hexdigest()


def _blob_name(path: Path) -> str | None:
    """The sha256 a Hugging Face cache snapshot's LFS file is already named by (its blob), if it is one."""
    real = Path(os.path.realpath(path))
    if real != Path(path).absolute() and _HEX64.match(real.name) and real.parent.name == "blobs":
        return real.name
    return None


def file_digest(path: Path) -> str:
    """sha256 of a file (free for Hugging Face cache snapshots; remembered per size and mtime in this process)."""
    blob = _blob_name(path)
    if blob:
        return blob
    real = Path(os.path.realpath(path))
    st = real.stat()
    key = (str(real), st.st_size, st.st_mtime_ns)
    got = _MEMO.get(key)
    if got is None:
        got = _MEMO[key] = sha256_file(real)
    return got


def model_fingerprint(model_dir) -> str:
    """A digest of every file that defines the model's outputs (weights, config, tokenizer, processor).

    Content, not paths: a copied or moved checkpoint keeps its cached results;
    a re-baked one does not. Weights are hashed two files at a time (~1 GB/s
    each on one core; free for Hub snapshots).
    """
    root = Path(model_dir)
    files = sorted(
        p for p in root.rglob("*")
        if p.is_file() and p.name not in _IGNORED and not any(part.startswith(".") for part in p.relative_to(root).parts)
    )
    if not files:
        raise HeadbakeError(f"no model files in {root}")
    with ThreadPoolExecutor(max_workers=2) as pool:
        digests = list(pool.map(file_digest, files))
    return digest([[p.relative_to(root).as_posix(), d] for p, d in zip(files, digests)])


def image_digest(image) -> str:
    """sha256 of an image file's bytes, or of a decoded image's mode, size and pixels."""
    if isinstance(image, (str, os.PathLike)):
        return file_digest(Path(image))
    h = hashlib.sha256(f"{image.mode}:{image.size}".encode())
    h.update(image.tobytes())
    return h.hexdigest()


class ResultCache:
    """Append-only JSONL of per-row results; ``path=None`` keeps them in memory only."""
    def __init__(self, path=None):
        self.path = Path(path) if path is not None else None
        self._rows: dict[str, dict] = {}
        if self.path is not None and self.path.exists():
            self._load()

    def _load(self) -> None:
        try:
            raw = self.path.read_bytes()
        except IsADirectoryError:
            raise HeadbakeError(f"the eval cache is a directory: {self.path}") from None
        if raw and not raw.endswith(b"\n"):
            # An interrupted write left half a line: drop it, so the next append starts clean.
            raw = raw[: raw.rfind(b"\n") + 1]
            with open(self.path, "r+b") as f:
                f.truncate(len(raw))
        for lineno, line in enumerate(raw.decode("utf-8", errors="replace").splitlines(), 1):
            if not line.strip():
                continue
            try:
                rec = json.loads(line)
            except ValueError:
                raise HeadbakeError(f"eval cache {self.path} line {lineno} is not JSON; delete the file "
                                    "(its results are recomputed) or name another cache") from None
            if not isinstance(rec, dict) or rec.get("format") != FORMAT or "key" not in rec:
                raise HeadbakeError(f"eval cache {self.path} line {lineno} is not a {FORMAT} record")
            self._rows[rec["key"]] = rec["result"]

    def __len__(self) -> int:
        return len(self._rows)

    @staticmethod
    def key(model: str, arm: dict, settings: str, row: str) -> str:
        return digest({"model": model, "arm": arm, "settings": settings, "row": row})

    def get(self, key: str) -> dict | None:
        return self._rows.get(key)

    def put(self, key: str, result: dict, **label) -> None:
        """Keep ``result`` under ``key``; on disk, append one flushed line (``label``: readable context)."""
        self._rows[key] = result
        if self.path is None:
            return
        self.path.parent.mkdir(parents=True, exist_ok=True)
        line = json.dumps({"format": FORMAT, "key": key, **label, "result": result}, ensure_ascii=False)
        with open(self.path, "a", encoding="utf-8") as f:
            f.write(line + "\n")
            f.flush()
