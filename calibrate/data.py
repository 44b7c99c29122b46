"""Calibration samples: the embedded synthetic set, a JSONL file, or a Hugging Face dataset.

Every image is decoded when the data is loaded, so an unreadable image stops
the run before the model is even loaded, with the line that named it. The
fingerprint (sha256 over each image's PNG bytes and each question, in order)
goes into the gains file, so a calibration can be matched to its data.
"""

from __future__ import annotations

import io
from dataclasses import dataclass
from pathlib import Path

from PIL import Image

from headbake import strictjson
from headbake.bounded import MAX_IMAGE_BYTES, MAX_JSONL_BYTES, open_regular, read_text
from headbake.checkpoint import read_json
from headbake.data.samples import Sample, fingerprint, synthetic_samples  # noqa: F401 (fingerprint: used as data.fingerprint)
from headbake.errors import HeadbakeError, first_line

EMBEDDED_DEFAULT_SAMPLES = 64
EMBEDDED_SEED = 0


@dataclass
class CalibrationData:
    name: str
    samples: list  # of headbake.data.samples.Sample; .image is a PIL image or a list of them
    origins: list  # per sample, where it came from (for error messages)
    note: str | None = None  # e.g. fewer samples than asked for
    image_files: list | None = None  # per sample, the image file(s) it was read from (JSONL only)


def embedded(n: int | None = None) -> CalibrationData:
    """The shipped set: charts, geometry figures and counting scenes drawn from a fixed seed."""
    n = EMBEDDED_DEFAULT_SAMPLES if n is None else n
    samples = synthetic_samples(n, seed=EMBEDDED_SEED)
    return CalibrationData(
        f"headbake-synthetic(seed={EMBEDDED_SEED})", samples, [f"embedded sample {i}" for i in range(n)]
    )


def _open_image(path: Path, where: str):
    """Decode one image; every failure (missing, not a regular file, too large, a decompression bomb,
    truncated, not an image) is refused naming the data line and the image file."""
    try:
        f = open_regular(path, "image", MAX_IMAGE_BYTES)
    except HeadbakeError as e:  # "image not found: PATH", "image is not a regular file ...: PATH", ...
        raise HeadbakeError(f"{where}: {e}") from None
    try:
        with f, Image.open(f) as im:
            return im.convert("RGB")
    except Exception as e:  # noqa: BLE001 - PIL raises many types (DecompressionBombError, SyntaxError...)
        raise HeadbakeError(f"{where}: cannot read image {path} ({type(e).__name__}: {first_line(e)})") from None


def load_jsonl(path, limit: int | None = None) -> CalibrationData:
    """``{"image": path | [paths], "question": str}`` per line; image paths relative to the file."""
    path = Path(path)
    text = read_text(path, "data file", MAX_JSONL_BYTES)
    samples, origins, files = [], [], []
    total = 0
    for lineno, line in enumerate(text.splitlines(), 1):
        if not line.strip():
            continue
        where = f"{path} line {lineno}"
        try:
            rec = strictjson.loads(line)  # a key given twice would make the line ambiguous
        except ValueError as e:
            raise HeadbakeError(f"{where}: not valid JSON ({e})") from None
        if not isinstance(rec, dict):
            raise HeadbakeError(f"{where}: expected a JSON object with \"image\" and \"question\"")
        q = rec.get("question")
        if not isinstance(q, str) or not q.strip():
            raise HeadbakeError(f"{where}: \"question\" must be a non-empty string")
        img = rec.get("image")
        paths = img if isinstance(img, list) else [img]
        if not paths or not all(isinstance(p, str) and p for p in paths):
            raise HeadbakeError(f"{where}: \"image\" must be a path or a non-empty list of paths")
        total += 1
        if limit is not None and len(samples) >= limit:
            continue  # keep validating JSON, but do not decode images we will not use
        full = [(path.parent / p) if not Path(p).is_absolute() else Path(p) for p in paths]
        images = [_open_image(p, where) for p in full]
        samples.append(Sample(images[0] if len(images) == 1 else images, q, "jsonl"))
        origins.append(where)
        files.append([str(p) for p in full])
    if not samples:
        raise HeadbakeError(f"data file has no samples: {path}")
    note = None
    if limit is not None and total < limit:
        note = f"asked for {limit} samples, {path} has {total}"
    # named by file name only: the name is published in heads.json and the card (never the user's path)
    return CalibrationData(f"jsonl:{Path(path).name}", samples, origins, note, image_files=files)


def _hf_image(value, where):
    """A datasets image cell: PIL image, {"bytes"/"path"} dict, path string, or a list of those."""
    if isinstance(value, (list, tuple)):
        if not value:
            raise HeadbakeError(f"{where}: empty image list")
        out = [_hf_image(v, where) for v in value]
        return out[0] if len(out) == 1 else out
    if isinstance(value, Image.Image):
        return value.convert("RGB")
    if isinstance(value, dict):
        if value.get("bytes"):
            try:
                with Image.open(io.BytesIO(value["bytes"])) as im:
                    return im.convert("RGB")
            except Exception as e:  # noqa: BLE001 - any decoder failure is a bad sample
                raise HeadbakeError(f"{where}: cannot decode image bytes ({type(e).__name__}: {e})") from None
        if value.get("path"):
            return _open_image(Path(value["path"]), where)
    if isinstance(value, str):
        return _open_image(Path(value), where)
    raise HeadbakeError(f"{where}: unsupported image value of type {type(value).__name__}")


def load_hf_dataset(name: str, split: str, image_column: str, question_column: str, limit: int | None) -> CalibrationData:
    """Rows of a Hugging Face dataset (needs the optional ``datasets`` package)."""
    try:
        import datasets
    except ImportError:
        raise HeadbakeError("--dataset needs the optional 'datasets' package: pip install 'headbake[datasets]'") from None
    # Slice at load time ("train[:64]") so a large split is not fully prepared for a few samples.
    wanted = f"{split}[:{limit}]" if limit is not None and "[" not in split else split
    try:
        ds = datasets.load_dataset(name, split=wanted)
    except Exception as e:  # noqa: BLE001 - datasets raises many types; report in one line
        msg = first_line(e)
        raise HeadbakeError(f"cannot load dataset {name!r} split {split!r}: {msg}") from None
    for col in (image_column, question_column):
        if col not in ds.column_names:
            raise HeadbakeError(f"dataset {name!r} has no column {col!r} (columns: {', '.join(ds.column_names)})")
    n = len(ds) if limit is None else min(limit, len(ds))
    if n == 0:
        raise HeadbakeError(f"dataset {name!r} split {split!r} has no rows")
    samples, origins = [], []
    for i in range(n):
        row = ds[i]
        where = f"dataset {name} [{split}] row {i}"
        q = row[question_column]
        if not isinstance(q, str) or not q.strip():
            raise HeadbakeError(f"{where}: column {question_column!r} must hold a non-empty string")
        samples.append(Sample(_hf_image(row[image_column], where), q, "dataset"))
        origins.append(where)
    note = f"asked for {limit} samples, the split has {len(ds)}" if limit is not None and len(ds) < limit else None
    shown = Path(name).name if Path(name).exists() else name  # a local dataset folder: its name, not its path
    return CalibrationData(f"hf:{shown}[{split}]", samples, origins, note)


def min_image_side(processor) -> int | None:
    """The side, in pixels, of the image area one visual token covers: patch size x spatial merge
    (14 x 2 = 28 for Qwen2-VL/Qwen2.5-VL). ``processor`` is a processor, an image processor or its
    config dict; None when it names no patch size (nothing is checked then)."""
    ip = getattr(processor, "image_processor", processor)
    get = ip.get if isinstance(ip, dict) else (lambda k, d=None: getattr(ip, k, d))
    patch = get("patch_size")
    if isinstance(patch, dict):
        patch = min(patch.get("height", 0), patch.get("width", 0)) or None
    merge = get("merge_size") or get("merge_kernel_size") or get("spatial_merge_size") or 1
    if isinstance(merge, (list, tuple)):
        merge = max(merge) if merge else 1
    if isinstance(patch, bool) or not isinstance(patch, int) or patch < 1 or not isinstance(merge, int):
        return None
    return patch * max(merge, 1)


def min_image_side_of_model(model_dir) -> int | None:
    """``min_image_side`` from the processor config saved beside a model, without loading anything:
    ``preprocessor_config.json`` (Hub layout) or ``processor_config.json``'s ``image_processor``."""
    model_dir = Path(model_dir)
    if (model_dir / "preprocessor_config.json").is_file():
        return min_image_side(read_json(model_dir / "preprocessor_config.json", "preprocessor_config.json"))
    if (model_dir / "processor_config.json").is_file():
        cfg = read_json(model_dir / "processor_config.json", "processor_config.json").get("image_processor")
        return min_image_side(cfg) if isinstance(cfg, dict) else None
    return None


def check_image_sizes(data: CalibrationData, min_side: int | None) -> None:
    """Refuse any image whose shorter side is under ``min_side`` pixels.

    Decided: refuse, not upsample. The processor would silently scale a 1x1 or
    20-pixel-wide image up to its minimum size, so the model would see a few
    pixels smeared over many visual tokens; their attention share would then
    enter S_v as if it were a real picture. An image that small is almost
    always a mistake (a thumbnail, an icon, a broken export), so say which one.
    """
    if not min_side:
        return
    for i, sample in enumerate(data.samples):
        images = sample.image if isinstance(sample.image, list) else [sample.image]
        names = data.image_files[i] if data.image_files else [None] * len(images)
        for im, name in zip(images, names):
            w, h = im.size
            if min(w, h) < min_side:
                what = f"image {name}" if name else "the image"
                raise HeadbakeError(
                    f"{data.origins[i]}: {what} is {w}x{h} pixels, smaller than the {min_side}x{min_side} area "
                    f"one visual token of this model covers; use images at least {min_side} pixels on each "
                    "side (headbake does not upsample them)"
                )
