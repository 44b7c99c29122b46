"""Read a safetensors checkpoint directory without loading any tensor.

Everything downstream (bake, verify, push) needs byte offsets rather than
tensors: a bake patches the edited ranges of a cloned file in place, so the
header, the tensor order and the metadata stay exactly as published.
"""

from __future__ import annotations

import json
import os
import struct
from dataclasses import dataclass, field
from pathlib import Path

from headbake.errors import HeadbakeError

INDEX_NAME = "model.safetensors.index.json"
SINGLE_NAME = "model.safetensors"
# Pickle-based weight files: loading them runs arbitrary code, so we never do.
PICKLE_SUFFIXES = (".bin", ".pt", ".pth", ".ckpt", ".pkl")

DTYPE_BYTES = {
    "F64": 8, "F32": 4, "F16": 2, "BF16": 2, "I64": 8, "I32": 4, "I16": 2,
    "I8": 1, "U8": 1, "BOOL": 1, "F8_E4M3": 1, "F8_E5M2": 1, "U16": 2, "U32": 4, "U64": 8,
}
MAX_HEADER = 100 * 1024 * 1024


@dataclass(frozen=True)
class TensorEntry:
    name: str
    file: str  # shard file name, relative to the checkpoint dir
    dtype: str
    shape: tuple[int, ...]
    start: int  # absolute byte offset in the file
    end: int

    @property
    def nbytes(self) -> int:
        return self.end - self.start


@dataclass
class Shard:
    name: str
    path: Path
    header_bytes: bytes
    metadata: dict | None
    tensors: dict[str, TensorEntry] = field(default_factory=dict)
    size: int = 0


@dataclass
class Checkpoint:
    root: Path
    shards: dict[str, Shard]
    index_file: str | None

    @property
    def tensors(self) -> dict[str, TensorEntry]:
        out: dict[str, TensorEntry] = {}
        for shard in self.shards.values():
            out.update(shard.tensors)
        return out

    def weight_files(self) -> set[str]:
        files = set(self.shards)
        if self.index_file:
            files.add(self.index_file)
        return files

    def _files(self) -> list[str]:
        out = []
        for p in sorted(self.root.rglob("*")):
            rel = p.relative_to(self.root).as_posix()
            if rel.startswith((".cache/", ".git/")) or not p.is_file():
                continue
            out.append(rel)
        return out

    def other_files(self) -> list[str]:
        """Every non-weight file (config, tokenizer, processor, ...), relative paths."""
        weights = self.weight_files()
        return [rel for rel in self._files() if rel not in weights and not _weight_like(rel)]

    def stray_weights(self) -> list[str]:
        """Weight files beside the checkpoint that it does not use (``pytorch_model.bin``, an unindexed
        ``consolidated.safetensors``...): copied as they are, they would ship unbaked weights."""
        weights = self.weight_files()
        return [rel for rel in self._files() if rel not in weights and _weight_like(rel)]


WEIGHT_SUFFIXES = (".safetensors", ".gguf", ".h5", ".msgpack") + PICKLE_SUFFIXES


def _weight_like(rel: str) -> bool:
    return rel.endswith(WEIGHT_SUFFIXES) or rel.endswith(".safetensors.index.json") or rel.endswith(".bin.index.json")


def read_json(path: Path, what: str) -> dict:
    try:
        with open(path, "rb") as f:
            data = json.load(f)
    except FileNotFoundError:
        raise HeadbakeError(f"{what} not found: {path}") from None
    except (ValueError, UnicodeDecodeError) as e:
        raise HeadbakeError(f"{what} is not valid JSON: {path} ({e})") from None
    if not isinstance(data, dict):
        raise HeadbakeError(f"{what} must hold a JSON object: {path}")
    return data


def read_shard(root: Path, name: str) -> Shard:
    """Parse and bounds-check one safetensors header (catches truncation)."""
    path = root / name
    if not path.is_file():
        raise HeadbakeError(f"weight file missing: {path}")
    size = path.stat().st_size
    with open(path, "rb") as f:
        head = f.read(8)
        if len(head) < 8:
            raise HeadbakeError(f"{name}: not a safetensors file (only {size} bytes)")
        (n,) = struct.unpack("<Q", head)
        if n > MAX_HEADER or 8 + n > size:
            raise HeadbakeError(f"{name}: corrupt safetensors header (declares {n} header bytes in a {size}-byte file)")
        header_bytes = f.read(n)
    try:
        header = json.loads(header_bytes)
        if not isinstance(header, dict):
            raise ValueError("header is not an object")
    except (ValueError, UnicodeDecodeError) as e:
        raise HeadbakeError(f"{name}: corrupt safetensors header ({e})") from None
    metadata = header.pop("__metadata__", None)
    shard = Shard(name=name, path=path, header_bytes=header_bytes, metadata=metadata, size=size)
    base = 8 + n
    data_end = 0
    for tname, info in header.items():
        try:
            dtype = info["dtype"]
            shape = tuple(int(d) for d in info["shape"])
            s, e = (int(x) for x in info["data_offsets"])
        except (KeyError, TypeError, ValueError):
            raise HeadbakeError(f"{name}: corrupt safetensors header entry for {tname!r}") from None
        numel = 1
        for d in shape:
            numel *= d
        if dtype not in DTYPE_BYTES or e - s != numel * DTYPE_BYTES[dtype] or s < 0 or e < s:
            raise HeadbakeError(f"{name}: corrupt safetensors header entry for {tname!r}")
        data_end = max(data_end, e)
        shard.tensors[tname] = TensorEntry(tname, name, dtype, shape, base + s, base + e)
    if base + data_end > size:
        raise HeadbakeError(
            f"{name}: truncated safetensors file ({size} bytes on disk, header needs {base + data_end})"
        )
    return shard


def open_checkpoint(root: str | os.PathLike) -> Checkpoint:
    """Locate and validate every weight shard of a checkpoint directory."""
    root = Path(root)
    if not root.exists():
        raise HeadbakeError(f"checkpoint directory not found: {root}")
    if not root.is_dir():
        raise HeadbakeError(f"not a directory: {root}")
    index_path = root / INDEX_NAME
    if index_path.is_file():
        index = read_json(index_path, "weight index")
        wmap = index.get("weight_map")
        if not isinstance(wmap, dict) or not wmap:
            raise HeadbakeError(f"{INDEX_NAME} has no weight_map")
        names = sorted(set(wmap.values()))
        for n in names:
            if not (root / n).is_file():
                raise HeadbakeError(f"{INDEX_NAME} names a missing shard: {n}")
        shards = {n: read_shard(root, n) for n in names}
        for tname, shard_name in wmap.items():
            if tname not in shards[shard_name].tensors:
                raise HeadbakeError(f"{INDEX_NAME} maps {tname!r} to {shard_name}, which does not hold it")
        return Checkpoint(root, shards, INDEX_NAME)
    if (root / SINGLE_NAME).is_file():
        return Checkpoint(root, {SINGLE_NAME: read_shard(root, SINGLE_NAME)}, None)
    singles = sorted(p.name for p in root.glob("*.safetensors"))
    if len(singles) == 1:
        return Checkpoint(root, {singles[0]: read_shard(root, singles[0])}, None)
    pickles = sorted(p.name for p in root.iterdir() if p.suffix in PICKLE_SUFFIXES)
    if pickles:
        raise HeadbakeError(
            f"{root} has only pickle weights ({pickles[0]}...): headbake loads safetensors only, because "
            "unpickling runs arbitrary code; convert them to safetensors first"
        )
    raise HeadbakeError(f"no safetensors weights in {root}")
