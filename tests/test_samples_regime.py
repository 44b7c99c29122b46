"""The embedded set is in the paper's regime: image tokens through Qwen2.5-VL-7B's image processor, content, forms."""

from __future__ import annotations

import re

import pytest

from headbake.calibrate.token_stats import (
    MIN_MEAN_IMAGE_TOKENS, QWEN25VL_7B_IMAGE_PROCESSOR, image_token_warning, processor_image_tokens,
    qwen25vl_7b_image_processor, summarize,
)
from headbake.data.samples import LONG_SIDE, fingerprint, kinds, synthetic_samples


@pytest.fixture(scope="module")
def processor_7b():
    p = qwen25vl_7b_image_processor()
    # transformers 5 keeps min_pixels/max_pixels as size["shortest_edge"/"longest_edge"] (pixel counts)
    assert (p.size["shortest_edge"], p.size["longest_edge"], p.patch_size, p.merge_size) == (3136, 12845056, 14, 2)
    return p


@pytest.fixture(scope="module")
def embedded():
    return synthetic_samples(64, seed=0)


def test_old_size_gave_48_tokens_and_the_new_set_several_hundred(processor_7b, embedded):
    from PIL import Image

    # the former embedded size, and a size checked by hand: 896x672 -> 64x48 patches -> 32x24 merged tokens
    assert processor_image_tokens(processor_7b, [Image.new("RGB", (224, 168))]) == [48]
    assert processor_image_tokens(processor_7b, [Image.new("RGB", (896, 672))]) == [768]
    counts = processor_image_tokens(processor_7b, [s.image for s in embedded])
    stats = summarize(counts)
    assert stats["n"] == 64
    assert stats["mean"] >= 400 and stats["min"] >= 150 and stats["max"] <= 1400, stats
    assert image_token_warning(stats["mean"], is_demo=False) is None
    for s in embedded:
        assert LONG_SIDE[0] <= max(s.image.size) <= LONG_SIDE[1]


def test_content_and_question_forms(embedded):
    assert [s.kind for s in embedded[:len(kinds())]] == kinds()
    assert {"bar_chart", "line_chart", "pie_chart", "function_plot", "geometry", "table", "text", "counting",
            "photo"} == set(kinds())
    forms = {"mc": 0, "yn": 0, "num": 0}
    for s in embedded:
        q = s.question
        if re.search(r"\nOptions:\nA\. .+\nB\. .+\n(?:[C-E]\. .+\n){0,3}Answer with the option's letter", q):
            forms["mc"] += 1
        elif q.endswith("Please answer yes or no."):
            forms["yn"] += 1
        elif re.search(r"\(Answer with [^)]+\.\)$", q):
            forms["num"] += 1
        else:
            pytest.fail(f"question in no benchmark form: {q!r}")
    assert min(forms.values()) >= 8, forms
    photos = [s for s in embedded if s.kind == "photo"]
    assert len({fingerprint([p]) for p in photos}) == len(photos)  # real photographs, no two alike


def test_deterministic_prefix_stable_and_seeded(embedded):
    assert fingerprint(synthetic_samples(64, seed=0)) == fingerprint(embedded)
    assert fingerprint(synthetic_samples(10, seed=0)) == fingerprint(embedded[:10])
    assert fingerprint(synthetic_samples(10, seed=1)) != fingerprint(embedded[:10])
    fixed = synthetic_samples(3, seed=0, size=(224, 168))
    assert all(s.image.size == (224, 168) for s in fixed if s.kind != "photo")


def test_token_warning_only_for_real_models_below_the_regime():
    assert image_token_warning(48.0, is_demo=False).startswith("the calibration images gave 48 image tokens")
    assert image_token_warning(48.0, is_demo=True) is None
    assert image_token_warning(float(MIN_MEAN_IMAGE_TOKENS), is_demo=False) is None
    assert summarize([]) == {"mean": None, "min": None, "max": None, "n": 0}
    assert QWEN25VL_7B_IMAGE_PROCESSOR["max_pixels"] == 12845056
