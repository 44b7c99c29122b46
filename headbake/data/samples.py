"""The embedded calibration set: benchmark-like images and questions that headbake regenerates exactly.

The paper set its thresholds on MathVista, MathVision, HallusionBench, MMStar
and SEED-Bench, whose images a Qwen2.5-VL-7B processor turns into several
hundred image tokens each, and S_v (a sum of attention over image tokens)
scales with that count. So the set is rendered at realistic sizes (long side
448-1024 px) with content close to those benchmarks -- charts with values,
function plots, geometry with labelled lengths and angles, tables, text in
images, counting scenes (``headbake.data.drawings``) and public-domain/CC0
photographs (``headbake.data.photos``) -- asked as multiple choice, yes/no or for a
number. Same seed, same pixels; calibration uses it as its default data and
verify as real image inputs, so neither needs a download.
"""

from __future__ import annotations

import hashlib
import random
from dataclasses import dataclass

from headbake.data.drawings import DRAWINGS
from headbake.data.photos import draw_photo

LONG_SIDE = (448, 1024)  # pixels, inclusive
ASPECTS = ((4, 3), (3, 2), (1, 1), (16, 10), (3, 4), (2, 3))


@dataclass(frozen=True)
class Sample:
    image: object  # PIL.Image.Image, or a list of them
    question: str
    kind: str


def _size(rng: random.Random) -> tuple[int, int]:
    long_side = rng.randint(*LONG_SIDE)
    a, b = rng.choice(ASPECTS)
    if a >= b:
        return long_side, max(28, round(long_side * b / a))
    return max(28, round(long_side * a / b)), long_side


def kinds() -> list[str]:
    """The sample kinds, in the order the set cycles through them."""
    return [*DRAWINGS, "photo"]


def synthetic_samples(n: int = 32, seed: int = 0, size: tuple[int, int] | None = None) -> list[Sample]:
    """``n`` samples cycling over ``kinds()``; same seed, same pixels; sample i does not depend on n.

    ``size`` fixes every image's size (else each gets a long side of 448-1024 px
    and a common aspect ratio).
    """
    order = kinds()
    out = []
    for i in range(n):
        rng = random.Random(f"headbake-samples:{seed}:{i}")
        dims = tuple(size) if size is not None else _size(rng)
        kind = order[i % len(order)]
        if kind == "photo":
            img, question, _ = draw_photo(rng, dims, i // len(order))
        else:
            img, question = DRAWINGS[kind](rng, dims)
        out.append(Sample(img, question, kind))
    return out


def fingerprint(samples) -> str:
    """sha256 over every image's mode, size and raw pixels (each image of a multi-image sample in turn) and
    question, in order -- independent of any encoder, and fast for large images."""
    h = hashlib.sha256()
    for s in samples:
        for image in s.image if isinstance(s.image, (list, tuple)) else [s.image]:
            h.update(f"{image.mode}:{image.size[0]}x{image.size[1]}:".encode())
            h.update(hashlib.sha256(image.tobytes()).digest())
        h.update(s.question.encode())
    return h.hexdigest()
