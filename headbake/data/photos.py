"""Real photographs for the embedded calibration set, from scikit-image's bundled sample data.

SEED-Bench, MMStar and HallusionBench ask about natural photographs, whose
attention patterns drawings do not reproduce. scikit-image ships a few in its
wheel (read through its public ``skimage.data`` API, nothing downloaded),
each public domain or CC0 as its docstring states; only those are used.
Questions follow the benchmarks' forms, including yes/no questions about
objects that are absent (HallusionBench / POPE style).
"""

from __future__ import annotations

from functools import lru_cache

import numpy as np
from PIL import Image

from headbake.data.drawings import multiple_choice, number, yes_no

# name -> (licence as skimage.data states it, questions: kind, text, [correct, distractors...])
PHOTOS = {
    "astronaut": ("public domain (NASA)", [
        ("yn", "Is the person in the image wearing a spacesuit?"),
        ("yn", "Is there a dog in the image?"),
        ("mc", "What is the person in the image holding?", ["a helmet", "a cup", "a book", "a phone"]),
    ]),
    "chelsea": ("CC0 (Stefan van der Walt)", [
        ("mc", "Which animal is shown in the image?", ["a cat", "a dog", "a rabbit", "a fox"]),
        ("yn", "Is there a dog in the image?"),
        ("yn", "Is the animal looking at the camera?"),
    ]),
    "coffee": ("CC0 (Rachel Michetti)", [
        ("yn", "Is there a spoon in the image?"),
        ("mc", "What is in the cup?", ["coffee", "orange juice", "soup", "milk shake"]),
        ("yn", "Is the cup on a saucer?"),
    ]),
    "coins": ("no known copyright restrictions (Walters Art Museum)", [
        ("num", "How many coins are in the image?"),
        ("yn", "Are all the coins the same size?"),
        ("mc", "How are the coins arranged?", ["in rows", "in a single pile", "in a circle", "in a bag"]),
    ]),
    "rocket": ("public domain (SpaceX)", [
        ("yn", "Is the rocket in flight?"),
        ("mc", "What is shown in the image?", ["a rocket on a launch pad", "an airplane", "a lighthouse",
                                               "a ship"]),
        ("num", "How many rockets are in the image?"),
    ]),
    "camera": ("CC0 (Lav Varshney)", [
        ("yn", "Is the person in the image holding a camera?"),
        ("yn", "Is this image in colour?"),
        ("mc", "What is the person using?", ["a camera on a tripod", "a telescope", "a microphone",
                                             "an umbrella"]),
    ]),
    "hubble_deep_field": ("public domain (NASA)", [
        ("mc", "Which best describes the image?", ["galaxies in deep space", "a city at night",
                                                   "an underwater scene", "a forest"]),
        ("yn", "Was this image taken underwater?"),
        ("num", "How many spiral galaxies can you count in the image?"),
    ]),
    "horse": ("CC0 (Andreas Preuss)", [
        ("mc", "Which animal is shown as a silhouette?", ["a horse", "a cow", "a dog", "a deer"]),
        ("yn", "Is the animal jumping?"),
    ]),
}


@lru_cache(maxsize=None)
def _load(name: str):
    """The photo as an RGB PIL image (decoded once per process)."""
    try:
        from skimage import data
    except ImportError:
        from headbake.errors import HeadbakeError

        raise HeadbakeError("the embedded calibration set needs scikit-image (pip install scikit-image)") from None

    arr = np.asarray(getattr(data, name)())
    if arr.dtype == bool:
        arr = np.where(arr, 255, 0).astype(np.uint8)
    return Image.fromarray(arr).convert("RGB")


def draw_photo(rng, size, index: int):
    """Photo ``index`` (cycling over ``PHOTOS``), cropped, maybe mirrored and resized to ``size``'s long side."""
    name = list(PHOTOS)[index % len(PHOTOS)]
    img = _load(name)
    w, h = img.size
    keep = rng.uniform(0.85, 1.0)
    cw, ch = int(w * keep), int(h * keep)
    x, y = rng.randint(0, w - cw), rng.randint(0, h - ch)
    img = img.crop((x, y, x + cw, y + ch))
    if rng.random() < 0.5:
        img = img.transpose(Image.Transpose.FLIP_LEFT_RIGHT)
    long_side = max(size)
    scale = long_side / max(img.size)
    img = img.resize((max(28, round(img.size[0] * scale)), max(28, round(img.size[1] * scale))),
                     Image.Resampling.BICUBIC)
    q = rng.choice(PHOTOS[name][1])
    if q[0] == "yn":
        text = yes_no(q[1])
    elif q[0] == "num":
        text = number(q[1])
    else:
        text = multiple_choice(rng, q[1], q[2][0], q[2][1:])
    return img, text, name
