"""Tensor-level verification: a streaming, exact comparison of a baked directory with its source.

Both files of every shard are read once, side by side, in chunks: bytes
outside the edited o_proj ranges must be identical, and each edited tensor
must equal the fold of the source bit for bit. The same pass yields the
sha256 of every file for the provenance record.
"""

from __future__ import annotations

import hashlib
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from headbake.bake.fold import fold_bytes
from headbake.checkpoint import open_checkpoint
from headbake.model.info import load_model_info, o_proj_targets
from headbake.progress import bar as progress_bar
from headbake.record import ADDED_FILES

CHUNK = 16 << 20
MAX_PROBLEMS = 20


def _uncovered(a: int, b: int, ranges):
    """Sub-ranges of [a, b) outside the sorted, disjoint ``ranges``."""
    pos = a
    for s, e in ranges:
        if e <= pos:
            continue
        if s >= b:
            break
        if s > pos:
            yield pos, min(s, b)
        pos = max(pos, e)
        if pos >= b:
            return
    if pos < b:
        yield pos, b


def _compare_file(src: Path, dst: Path, skip, pool, bar) -> tuple[bool, str, str]:
    hs, hd = hashlib.sha256(), hashlib.sha256()
    same = True
    with open(src, "rb") as fs, open(dst, "rb") as fd:
        off = 0
        while True:
            a, b = fs.read(CHUNK), fd.read(CHUNK)
            if not a and not b:
                break
            futs = [pool.submit(hs.update, a), pool.submit(hd.update, b)]
            if len(a) != len(b):
                same = False
            elif same and a != b:
                ma, mb = memoryview(a), memoryview(b)
                for s, e in _uncovered(off, off + len(a), skip):
                    if ma[s - off:e - off] != mb[s - off:e - off]:
                        same = False
                        break
            for f in futs:
                f.result()
            off += len(a)
            if bar is not None:
                bar.update(len(a))
    return same, hs.hexdigest(), hd.hexdigest()


def verify_tensors(src, baked, gains, progress: bool = True) -> dict:
    """Compare ``baked`` with ``src`` given the ``gains`` matrix; returns a JSON-able report."""
    src, baked = Path(src), Path(baked)
    info = load_model_info(src)
    sck, bck = open_checkpoint(src), open_checkpoint(baked)
    problems: list[str] = []

    def problem(msg):
        if len(problems) < MAX_PROBLEMS:
            problems.append(msg)

    src_files = set(sck.other_files()) | sck.weight_files()
    baked_files = set(bck.other_files()) | bck.weight_files()
    for f in sorted(src_files - baked_files - set(ADDED_FILES)):
        problem(f"missing in baked: {f}")
    for f in sorted(baked_files - src_files - set(ADDED_FILES)):
        problem(f"extra file in baked: {f}")
    for f in bck.stray_weights():
        problem(f"extra weight file in baked (not part of the checkpoint, so not baked): {f}")
    if set(sck.shards) != set(bck.shards):
        problem(f"shard names differ: {sorted(sck.shards)} vs {sorted(bck.shards)}")

    targets = o_proj_targets(info, sck)
    stensors, btensors = sck.tensors, bck.tensors
    edited = {t.weight: t for t in targets if any(g != 1.0 for g in gains[t.layer])}
    for name, e in stensors.items():
        b = btensors.get(name)
        if b is None:
            problem(f"tensor missing in baked: {name}")
        elif (b.file, b.dtype, b.shape, b.start, b.end) != (e.file, e.dtype, e.shape, e.start, e.end):
            problem(f"tensor {name} moved or changed layout ({e.file} {e.dtype} {list(e.shape)} -> {b.file} {b.dtype} {list(b.shape)})")
    for name in sorted(set(btensors) - set(stensors)):
        problem(f"extra tensor in baked: {name}")

    hashes: dict[str, dict] = {}
    # headbake's own files (a --force re-bake's source has a headbake.json too) are not the source's content
    compare = sorted((src_files & baked_files) - set(ADDED_FILES))
    total = sum((src / f).stat().st_size for f in compare)
    fold_exact = 0
    with ThreadPoolExecutor(max_workers=2) as pool, progress_bar(
        total, "verify tensors", unit="B", enabled=progress, unit_scale=True, unit_divisor=1024,
    ) as bar:
        for f in compare:
            shard = sck.shards.get(f)
            skip = []
            if shard is not None:
                if bck.shards.get(f) and bck.shards[f].header_bytes != shard.header_bytes:
                    problem(f"{f}: safetensors header differs (order, metadata or offsets)")
                skip = sorted((stensors[n].start, stensors[n].end) for n in edited if stensors[n].file == f)
            same, hs, hd = _compare_file(src / f, baked / f, skip, pool, bar)
            hashes[f] = {"source_sha256": hs, "sha256": hd, "size": (baked / f).stat().st_size}
            if not same:
                problem(f"{f}: bytes differ outside the edited o_proj tensors" if shard else f"{f}: differs from the source")
        for name, t in edited.items():
            e = stensors[name]
            with open(src / e.file, "rb") as fs, open(baked / e.file, "rb") as fd:
                fs.seek(e.start)
                fd.seek(e.start)
                want = fold_bytes(fs.read(e.nbytes), e.dtype, e.shape, gains[t.layer], info.head_dim)
                got = fd.read(e.nbytes)
            if want == got:
                fold_exact += 1
            else:
                problem(f"{name}: not equal to the fold of the source (gains of layer {t.layer})")
    return {
        "passed": not problems,
        "files_compared": len(compare),
        "tensors": len(stensors),
        "edited_tensors": len(edited),
        "edited_bit_exact": fold_exact,
        "problems": problems,
        "files": hashes,
    }
