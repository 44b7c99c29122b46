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

from headbake import strictjson
from headbake.bounded import MAX_JSON_BYTES, open_regular, read_bounded
from headbake.errors import HeadbakeError
from headbake.safepaths import check_inside, check_name, safe_member

INDEX_NAME = "model.safetensors.index.json"
SINGLE_NAME = "model.safetensors"
# Pickle-based weight files: loading them runs arbitrary code, so we never do.
PICKLE_SUFFIXES = (".bin", ".pt", ".pth", ".ckpt", ".pkl")

# Bits per element of every dtype the safetensors format (0.8) defines; F4/F6 pack several per byte.
DTYPE_BITS = {
    "BOOL": 8, "U8": 8, "I8": 8, "F8_E5M2": 8, "F8_E4M3": 8, "F8_E8M0": 8, "F8_E4M3FNUZ": 8, "F8_E5M2FNUZ": 8,
    "I16": 16, "U16": 16, "F16": 16, "BF16": 16, "I32": 32, "U32": 32, "F32": 32, "I64": 64, "U64": 64,
    "F64": 64, "C64": 64, "F4": 4, "F6_E2M3": 6, "F6_E3M2": 6,
}
DTYPE_BYTES = {k: v // 8 for k, v in DTYPE_BITS.items() if v % 8 == 0}
MAX_HEADER = 100_000_000  # the reference reader's limit (decimal, not MiB)
U64 = 2**64


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
        return list_files(self.root)

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


def list_files(root: Path) -> list[str]:
    """Every file of a checkpoint folder (relative POSIX paths), refusing links that lead out of it
    (see ``safepaths``); hidden ``.cache``/``.git`` folders are not part of the checkpoint."""
    out = []
    for p in sorted(root.rglob("*")):
        rel = p.relative_to(root).as_posix()
        if rel.startswith((".cache/", ".git/")) or rel in (".cache", ".git"):
            continue
        if p.is_symlink():
            check_inside(root, p)
        if p.is_file():
            out.append(rel)
    return out


def _weight_like(rel: str) -> bool:
    return rel.endswith(WEIGHT_SUFFIXES) or rel.endswith(".safetensors.index.json") or rel.endswith(".bin.index.json")


def read_json(path: Path, what: str, *, limit: int = MAX_JSON_BYTES, strict: bool = False,
              allow_nan: bool = False) -> dict:
    """A JSON object from a regular file of at most ``limit`` bytes.

    ``strict`` (headbake's own formats and the weight index) also refuses what
    ``strictjson`` refuses: repeated keys, NaN, numbers beyond a double.
    Configs stay lenient: transformers reads them with Python's ``json``.
    ``allow_nan`` (with ``strict``) lets NaN/Infinity through for a caller that
    refuses them with its own message.
    """
    raw = read_bounded(path, what, limit)
    try:
        data = strictjson.loads(raw, allow_nan=allow_nan) if strict else json.loads(raw)
    except (ValueError, UnicodeDecodeError, RecursionError) as e:
        reason = str(e).splitlines()[0] if str(e) else type(e).__name__
        raise HeadbakeError(f"{what} is not valid JSON: {path} ({reason})") from None
    if not isinstance(data, dict):
        raise HeadbakeError(f"{what} must hold a JSON object: {path}")
    return data


def _is_u64(x) -> bool:
    return type(x) is int and 0 <= x < U64  # not bool, not a NegativeInt/WideInt from strictjson


def _entry(shard: str, tname: str, info) -> tuple[str, tuple[int, ...], int, int]:
    """(dtype, shape, start, end) of one header entry, checked as the format defines it."""
    def bad(why: str):
        return HeadbakeError(f"{shard}: corrupt safetensors header entry for {tname!r} ({why})")

    if not isinstance(info, dict):
        raise bad("not a JSON object")
    for key in ("dtype", "shape", "data_offsets"):
        if key not in info:
            raise bad(f"no {key!r}")
    dtype, shape, offsets = info["dtype"], info["shape"], info["data_offsets"]
    if dtype not in DTYPE_BITS:
        raise bad(f"dtype {dtype!r} is not a safetensors dtype")
    if not isinstance(shape, list) or not all(_is_u64(d) for d in shape):
        raise bad(f"shape must be a list of non-negative integers, got {json.dumps(shape)[:60]}")
    if not (isinstance(offsets, list) and len(offsets) == 2 and all(_is_u64(o) for o in offsets)):
        raise bad(f"data_offsets must be two non-negative integers, got {json.dumps(offsets)[:60]}")
    numel = 1
    for d in shape:  # the reference multiplies in u64 and refuses on the first overflow
        numel *= d
        if numel >= U64:
            raise bad("the shape's element count overflows")
    bits = numel * DTYPE_BITS[dtype]
    if bits >= U64:
        raise bad("the shape's byte size overflows")
    if bits % 8:
        raise bad(f"{numel} {dtype} elements do not end on a byte boundary")
    s, e = offsets
    if e >= s and e - s != bits // 8:
        raise bad(f"shape {shape} of {dtype} is {bits // 8} bytes, data_offsets span {e - s}")
    return dtype, tuple(shape), s, e


def parse_header(shard: str, header_bytes: bytes, data_len: int) -> tuple[dict | None, dict[str, tuple]]:
    """Validate a safetensors header exactly as the format (and its reference reader) does.

    Returns ``(metadata, {name: (dtype, shape, start, end)})`` with offsets
    relative to the data section, in header order. Refused, in one line naming
    ``shard`` and the rule: invalid UTF-8 or JSON (strictly: see ``strictjson``),
    a name given twice (the reference keeps the last copy; another reader may
    keep the first, so it is ambiguous), ``__metadata__`` other than a
    string-to-string map, unknown dtypes, shapes of anything but non-negative
    integers, shape x dtype size != byte length, and tensors that do not tile
    the data section exactly: sorted by offset, each starts where the previous
    ended, from 0 to the last byte of the file (no hole, no overlap, no trailing
    bytes). Unknown fields in an entry are ignored, as the reference does.
    """
    try:
        header = strictjson.loads(header_bytes)
    except strictjson.StrictJSONError as e:
        raise HeadbakeError(f"{shard}: corrupt safetensors header ({e})") from None
    if not isinstance(header, dict):
        raise HeadbakeError(f"{shard}: corrupt safetensors header (not a JSON object)")
    metadata = header.pop("__metadata__", None)
    if metadata is not None:
        if not isinstance(metadata, dict):
            raise HeadbakeError(f"{shard}: corrupt safetensors header (__metadata__ must be an object of strings)")
        for k, v in metadata.items():
            if not isinstance(v, str):
                raise HeadbakeError(f"{shard}: corrupt safetensors header (__metadata__ {k!r} holds "
                                    f"{type(v).__name__}, not a string)")
    entries = {name: _entry(shard, name, info) for name, info in header.items()}
    pos, prev = 0, None
    for name, (_, _, s, e) in sorted(entries.items(), key=lambda kv: (kv[1][2], kv[1][3])):
        if e < s:
            raise HeadbakeError(f"{shard}: tensor {name!r} ends (byte {e}) before it starts (byte {s})")
        if s > pos:
            raise HeadbakeError(f"{shard}: a hole of {s - pos} bytes before tensor {name!r} "
                                f"(data bytes {pos}..{s} belong to no tensor)")
        if s < pos:
            raise HeadbakeError(f"{shard}: tensor {name!r} overlaps {prev!r} (starts at byte {s}, "
                                f"{prev!r} ends at {pos})")
        pos, prev = e, name
    if pos > data_len:
        raise HeadbakeError(f"{shard}: truncated safetensors file (the header needs {pos} data bytes, "
                            f"the file has {data_len})")
    if pos < data_len:
        extra = data_len - pos
        raise HeadbakeError(f"{shard}: {extra} byte{'s' if extra != 1 else ''} after the last tensor "
                            "(the format requires the tensors to cover the data exactly)")
    return metadata, entries


def read_shard(root: Path, name: str) -> Shard:
    """Parse and validate one safetensors header (catches truncation and every malformed layout)."""
    path = safe_member(root, name, plain=True, what="weight file")
    if not path.exists():
        raise HeadbakeError(f"weight file missing: {path}")
    with open_regular(path, "weight file", limit=U64) as f:
        size = os.fstat(f.fileno()).st_size
        head = f.read(8)
        if len(head) < 8:
            raise HeadbakeError(f"{name}: not a safetensors file (only {size} bytes)")
        (n,) = struct.unpack("<Q", head)
        if n > MAX_HEADER:
            raise HeadbakeError(f"{name}: corrupt safetensors header (declares {n} header bytes, more than "
                                f"the format's {MAX_HEADER})")
        if 8 + n > size:
            raise HeadbakeError(f"{name}: corrupt safetensors header (declares {n} header bytes in a {size}-byte file)")
        header_bytes = f.read(n)
    if len(header_bytes) != n:
        raise HeadbakeError(f"{name}: short read of the safetensors header: the file changed while being read")
    metadata, entries = parse_header(name, header_bytes, size - 8 - n)
    shard = Shard(name=name, path=path, header_bytes=header_bytes, metadata=metadata, size=size)
    base = 8 + n
    for tname, (dtype, shape, s, e) in entries.items():
        shard.tensors[tname] = TensorEntry(tname, name, dtype, shape, base + s, base + e)
    return shard


def open_checkpoint(root: str | os.PathLike) -> Checkpoint:
    """Locate and validate every weight shard of a checkpoint directory."""
    root = Path(root)
    if not root.exists():
        raise HeadbakeError(f"checkpoint directory not found: {root}")
    if not root.is_dir():
        raise HeadbakeError(f"not a directory: {root}")
    list_files(root)  # links out of the folder are refused before any file is read
    index_path = root / INDEX_NAME
    if index_path.is_file():
        index = read_json(index_path, "weight index", strict=True)
        wmap = index.get("weight_map")
        if not isinstance(wmap, dict) or not wmap:
            raise HeadbakeError(f"{INDEX_NAME} has no weight_map")
        for tname, shard_name in wmap.items():
            check_name(shard_name, plain=True, what=f"{INDEX_NAME}: shard of {tname!r},")
        names = sorted(set(wmap.values()))
        for n in names:
            if not safe_member(root, n, plain=True, what=f"{INDEX_NAME}: shard").is_file():
                raise HeadbakeError(f"{INDEX_NAME} names a missing shard: {n}")
        shards = {n: read_shard(root, n) for n in names}
        owner: dict[str, str] = {}
        for n, shard in shards.items():
            for tname in shard.tensors:
                if tname in owner:
                    raise HeadbakeError(f"tensor {tname!r} is in two shards, {owner[tname]} and {n}")
                owner[tname] = n
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
