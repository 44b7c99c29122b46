"""Stream a checkpoint to a baked copy: clone every file, then patch the o_proj bytes in place.

Because the fold keeps each tensor's dtype and shape, every edited tensor
occupies exactly the same byte range in the output. So the output is the
source cloned file by file (headers, tensor order, metadata and shard layout
untouched) with only the edited ranges rewritten; peak memory is one o_proj
tensor, and on copy-on-write filesystems the new disk is only the patches.
"""

from __future__ import annotations

import os
import time
from collections import Counter, deque
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

from headbake.bake.clone import clone_file
from headbake.bake.fold import DTYPE_MAX, FoldOverflow, fold_bytes, nonfinite_count
from headbake.bake.output_dir import atomic_directory, check_target
from headbake.checkpoint import open_checkpoint
from headbake.errors import HeadbakeError
from headbake.gains import load_gains, validate_gains
from headbake.hashing import sha256_bytes, sha256_files
from headbake.model.info import load_model_info, o_proj_targets
from headbake.progress import bar
from headbake.record import ADDED_FILES, RECORD, Record, public_source, read_record, write_record
from headbake.safepaths import check_no_token

WINDOW = 2  # folded o_proj tensors in flight (and fold workers: numpy and sha256 release the GIL)


@dataclass
class BakeResult:
    out: Path
    edited_tensors: int
    edited_heads: int
    copy_methods: Counter = field(default_factory=Counter)
    seconds: float = 0.0
    record: Record | None = None
    warnings: list[str] = field(default_factory=list)  # for the caller to show (bake prints nothing itself)


def _pread_exact(fd: int, n: int, offset: int) -> bytes:
    buf = os.pread(fd, n, offset)
    if len(buf) != n:
        raise HeadbakeError(f"short read at byte {offset}: the file changed or is truncated")
    return buf


def _pwrite_all(fd: int, data: bytes, offset: int) -> None:
    view = memoryview(data)
    while view:
        n = os.pwrite(fd, view, offset)
        view, offset = view[n:], offset + n


def _fold_one(path, entry, gains, head_dim, layer):
    """Fold one o_proj; refuses (before its bytes are written) a gain that would overflow the dtype."""
    with open(path, "rb") as f:
        before = _pread_exact(f.fileno(), entry.nbytes, entry.start)
    try:
        after = fold_bytes(before, entry.dtype, entry.shape, gains, head_dim, check=True)
    except FoldOverflow as e:
        raise HeadbakeError(
            f"gain {e.gain:g} at layer {layer} head {e.head} would overflow {e.dtype} in {entry.name}: "
            f"max |W| of that head is {e.amax:.4g}, times the gain {e.product:.4g}, beyond the largest {e.dtype} "
            f"({DTYPE_MAX[e.dtype]:.4g}); use a smaller gain"
        ) from None
    bad = nonfinite_count(before, entry.dtype)
    warning = (f"{entry.name} already holds {bad} non-finite value{'s' if bad != 1 else ''} (inf/NaN) in the "
               "source; they stay non-finite in the bake") if bad else None
    return after, {"sha256_before": sha256_bytes(before), "sha256_after": sha256_bytes(after)}, warning


def _progress(total: int, enabled: bool, desc: str):
    return bar(total, desc, unit="B", enabled=enabled, unit_scale=True, unit_divisor=1024)


@dataclass
class _Plan:
    """Everything checked before the first byte is written."""
    src: Path
    ckpt: object
    info: object
    doc: dict
    by_shard: dict  # shard name -> o_proj targets with a gain != 1 in that shard
    others: list  # non-weight files to copy
    skipped: list  # weight files the checkpoint does not use
    previous: dict | None  # the record of a --force re-bake's source


def _plan(src: Path, gains, out: Path, overwrite: bool, force: bool) -> _Plan:
    if not src.is_dir():
        raise HeadbakeError(f"source checkpoint directory not found: {src}")
    ckpt = open_checkpoint(src)  # first: it refuses links out of the folder before any file is read
    info = load_model_info(src)
    targets = o_proj_targets(info, ckpt)
    if isinstance(gains, (str, os.PathLike)):
        doc = load_gains(gains, info)
    else:
        doc = dict(gains)
        doc["gains"] = validate_gains(doc.get("gains"), info.num_layers, info.num_heads)
    previous = None
    if (src / RECORD).exists():
        if not force:
            raise HeadbakeError(
                f"{src} is already baked (it has {RECORD}); baking again compounds the gains. Pass --force if you mean it"
            )
        previous = read_record(src).to_dict()
    check_target(out, overwrite, protected=[src])
    by_shard: dict[str, list] = {}
    for t in targets:
        if any(g != 1.0 for g in doc["gains"][t.layer]):
            by_shard.setdefault(ckpt.tensors[t.weight].file, []).append(t)
    # The source's own card (and a previous bake's record and heatmap) describe another model.
    others = [f for f in ckpt.other_files() if f not in ADDED_FILES]
    # A file that holds the user's Hugging Face token is never copied (see headbake.safepaths).
    check_no_token(src, others + ([ckpt.index_file] if ckpt.index_file else []))
    return _Plan(src, ckpt, info, doc, by_shard, others, ckpt.stray_weights(), previous)


def _patch_shard(plan: _Plan, name: str, shard, tmp: Path, pool, methods: Counter, edited: list, warnings: list):
    """Clone one shard and rewrite its edited o_proj ranges in place.

    The first o_proj tensors are folded in a worker while the kernel clones the file; at most WINDOW
    folded tensors are held at once, so memory stays about one o_proj whatever the shard's size.
    """
    tensors, gains, width = plan.ckpt.tensors, plan.doc["gains"], plan.info.head_dim
    patches = sorted(plan.by_shard.get(name, []), key=lambda t: tensors[t.weight].start)

    def fold(t):
        return pool.submit(_fold_one, shard.path, tensors[t.weight], gains[t.layer], width, t.layer)

    pending = deque(fold(t) for t in patches[:WINDOW])
    methods[clone_file(str(shard.path), str(tmp / name))] += 1
    if not patches:
        return
    dfd = os.open(tmp / name, os.O_WRONLY)
    try:
        for i, t in enumerate(patches):
            after, digests, warning = pending.popleft().result()
            if warning:
                warnings.append(warning)
            if i + WINDOW < len(patches):
                pending.append(fold(patches[i + WINDOW]))
            _pwrite_all(dfd, after, tensors[t.weight].start)
            del after
            edited.append({"tensor": t.weight, "file": name, "layer": t.layer,
                           "heads": {str(h): g for h, g in enumerate(gains[t.layer]) if g != 1.0}, **digests})
    finally:
        os.close(dfd)


def _file_digests(plan: _Plan, tmp: Path, checksums: bool, progress: bool) -> dict:
    """Size and sha256 of every output file (weight shards hashed only with ``checksums``: verify does it)."""
    src, others = plan.src, plan.others
    rels = others + sorted(plan.ckpt.weight_files())
    if checksums:
        nbytes = 2 * sum((src / r).stat().st_size for r in rels)
        with _progress(nbytes, progress, "sha256") as bar_:
            digests_src = sha256_files([src / r for r in rels], bar_)
            digests_out = sha256_files([tmp / r for r in rels], bar_)
    else:
        digests_src = sha256_files([src / r for r in others])
        digests_out = sha256_files([tmp / r for r in others])
    return {r: {"size": (tmp / r).stat().st_size, "sha256": digests_out.get(str(tmp / r)),
                "source_sha256": digests_src.get(str(src / r))} for r in rels}


def bake_checkpoint(
    src,
    gains,
    out,
    *,
    overwrite: bool = False,
    force: bool = False,
    source: dict | None = None,
    checksums: bool = False,
    progress: bool = True,
) -> BakeResult:
    """Bake ``gains`` (a gains-file path or document) from checkpoint ``src`` into ``out``.

    Everything is validated before the first byte is written; the output
    appears only when complete (see ``output_dir.atomic_directory``).
    """
    t0 = time.perf_counter()
    src, out = Path(src), Path(out)
    plan = _plan(src, gains, out, overwrite, force)
    ckpt, doc = plan.ckpt, plan.doc
    warnings: list[str] = []
    if plan.skipped:
        warnings.append(f"not copying weight files the checkpoint does not use: {', '.join(plan.skipped)}")
    edited: list = []
    methods: Counter = Counter()
    with atomic_directory(out, overwrite=overwrite) as tmp:
        for rel in plan.others + ([ckpt.index_file] if ckpt.index_file else []):
            (tmp / rel).parent.mkdir(parents=True, exist_ok=True)
            methods[clone_file(str(src / rel), str(tmp / rel))] += 1
        total = sum(s.size for s in ckpt.shards.values())
        with _progress(total, progress, "bake") as bar_, ThreadPoolExecutor(max_workers=WINDOW) as pool:
            for name, shard in ckpt.shards.items():
                _patch_shard(plan, name, shard, tmp, pool, methods, edited, warnings)
                bar_.update(shard.size)
        doc["source"] = public_source(doc.get("source"))
        record = Record(
            source=public_source(source or {"id": str(src.resolve()), "revision": None}),
            model=plan.info.identity(), gains=doc, edited=edited, files=_file_digests(plan, tmp, checksums, progress),
            skipped_files=plan.skipped, previous_bake=plan.previous,
        )
        write_record(tmp, record)
    return BakeResult(
        out=out, edited_tensors=len(edited), edited_heads=sum(len(e["heads"]) for e in edited),
        copy_methods=methods, seconds=time.perf_counter() - t0, record=record, warnings=warnings,
    )
