"""Synthetic image+question samples that headbake can ship and regenerate exactly.

Charts, geometry figures and counting scenes drawn with PIL from a seed, with
questions that mix perception ("how many...") and reasoning ("what is the
sum..."). Calibration uses them as its embedded default set and verify uses
them as real image inputs, so neither needs a download or a licence.
"""

from __future__ import annotations

import hashlib
import io
import math
import random
from dataclasses import dataclass

COLORS = {"red": (220, 40, 40), "blue": (40, 80, 220), "green": (40, 170, 70), "orange": (240, 150, 30), "purple": (140, 60, 180)}


@dataclass(frozen=True)
class Sample:
    image: object  # PIL.Image.Image
    question: str
    kind: str


def _canvas(rng, size):
    from PIL import Image, ImageDraw

    img = Image.new("RGB", size, (250, 250, 245))
    return img, ImageDraw.Draw(img)


def _counting(rng: random.Random, size) -> Sample:
    img, d = _canvas(rng, size)
    color = rng.choice(list(COLORS))
    other = rng.choice([c for c in COLORS if c != color])
    n, m = rng.randint(2, 7), rng.randint(1, 5)
    for name, count in ((color, n), (other, m)):
        for _ in range(count):
            r = rng.randint(6, 14)
            x, y = rng.randint(r, size[0] - r), rng.randint(r, size[1] - r)
            if rng.random() < 0.5:
                d.ellipse([x - r, y - r, x + r, y + r], fill=COLORS[name])
            else:
                d.rectangle([x - r, y - r, x + r, y + r], fill=COLORS[name])
    q = rng.choice([
        f"How many {color} shapes are in the image?",
        f"Count the {color} shapes and the {other} shapes. How many shapes are there in total?",
        f"Are there more {color} shapes than {other} shapes? Explain step by step.",
    ])
    return Sample(img, q, "counting")


def _bar_chart(rng: random.Random, size) -> Sample:
    img, d = _canvas(rng, size)
    labels = ["A", "B", "C", "D", "E"][: rng.randint(3, 5)]
    values = [rng.randint(1, 9) for _ in labels]
    w = size[0] // (len(labels) + 1)
    base = size[1] - 20
    for i, (lab, v) in enumerate(zip(labels, values)):
        x = (i + 0.5) * w + 10
        d.rectangle([x, base - v * (base - 20) / 10, x + w * 0.7, base], fill=COLORS[rng.choice(list(COLORS))])
        d.text((x + w * 0.25, base + 4), lab, fill=(0, 0, 0))
    d.line([8, base, size[0] - 8, base], fill=(0, 0, 0), width=2)
    a, b = rng.sample(labels, 2)
    q = rng.choice([
        "Which bar in the chart is the tallest?",
        f"What is the difference between bar {a} and bar {b}?",
        "What is the sum of all the bars in the chart? Think step by step.",
    ])
    return Sample(img, q, "chart")


def _geometry(rng: random.Random, size) -> Sample:
    img, d = _canvas(rng, size)
    cx, cy = size[0] / 2, size[1] / 2
    r = min(size) * 0.38
    angles = sorted(rng.uniform(0, 2 * math.pi) for _ in range(3))
    pts = [(cx + r * math.cos(t), cy + r * math.sin(t)) for t in angles]
    d.polygon(pts, outline=(0, 0, 0), width=2)
    for name, (x, y) in zip("ABC", pts):
        d.text((x + 3, y + 3), name, fill=(0, 0, 0))
    if rng.random() < 0.5:
        d.ellipse([cx - r, cy - r, cx + r, cy + r], outline=(120, 120, 120))
    a, b = rng.randint(30, 80), rng.randint(30, 80)
    q = rng.choice([
        f"In triangle ABC, angle A is {a} degrees and angle B is {b} degrees. What is angle C?",
        "Is the triangle in the figure inscribed in a circle? Answer yes or no, then justify.",
        "Which vertex of the triangle is closest to the top of the image?",
    ])
    return Sample(img, q, "geometry")


def _layout(rng: random.Random, size) -> Sample:
    img, d = _canvas(rng, size)
    c1, c2 = rng.sample(list(COLORS), 2)
    x1, x2 = rng.randint(10, size[0] // 2 - 30), rng.randint(size[0] // 2, size[0] - 40)
    if rng.random() < 0.5:
        x1, x2 = x2, x1
    y = rng.randint(10, size[1] - 40)
    d.rectangle([x1, y, x1 + 28, y + 28], fill=COLORS[c1])
    d.ellipse([x2, y, x2 + 28, y + 28], fill=COLORS[c2])
    q = rng.choice([
        f"Is the {c1} square to the left of the {c2} circle?",
        "Describe the image in one sentence.",
        f"What color is the circle, and what color is the square?",
    ])
    return Sample(img, q, "layout")


GENERATORS = (_counting, _bar_chart, _geometry, _layout)


def synthetic_samples(n: int = 32, seed: int = 0, size: tuple[int, int] = (224, 168)) -> list[Sample]:
    """``n`` samples cycling over the four kinds; same seed, same pixels."""
    rng = random.Random(seed)
    return [GENERATORS[i % len(GENERATORS)](rng, size) for i in range(n)]


def fingerprint(samples) -> str:
    """sha256 over every image's PNG bytes (each image of a multi-image sample in turn) and question, in order."""
    h = hashlib.sha256()
    for s in samples:
        for image in s.image if isinstance(s.image, (list, tuple)) else [s.image]:
            buf = io.BytesIO()
            image.save(buf, format="PNG")
            h.update(hashlib.sha256(buf.getvalue()).digest())
        h.update(s.question.encode())
    return h.hexdigest()
