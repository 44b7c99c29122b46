"""Calibration images: every failure names the JSONL line and the image file; too-small images are refused."""

from __future__ import annotations

import json

import pytest
from PIL import Image

from headbake.calibrate import data
from headbake.errors import HeadbakeError


def _jsonl(tmp_path, *images):
    f = tmp_path / "d.jsonl"
    f.write_text("".join(json.dumps({"image": im, "question": "How many?"}) + "\n" for im in images))
    return f


@pytest.fixture
def good(tmp_path):
    Image.new("RGB", (64, 48), (10, 200, 10)).save(tmp_path / "good.png")
    return "good.png"


def _truncated(tmp_path):
    Image.effect_noise((64, 64), 80).convert("RGB").save(tmp_path / "full.png")
    raw = (tmp_path / "full.png").read_bytes()
    (tmp_path / "truncated.png").write_bytes(raw[: len(raw) // 2])
    return "truncated.png"


def _garbage(tmp_path):
    (tmp_path / "garbage.png").write_bytes(b"this is not an image at all" * 3)
    return "garbage.png"


def _bomb(tmp_path, monkeypatch):
    Image.new("L", (200, 200)).save(tmp_path / "bomb.png")
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", 5000)  # 40000 px > 2 x 5000: PIL's DecompressionBombError
    return "bomb.png"


@pytest.mark.parametrize("make, kind", [
    (lambda t, m: _truncated(t), "truncated"),
    (lambda t, m: _garbage(t), "UnidentifiedImageError"),
    (_bomb, "DecompressionBombError"),
    (lambda t, m: "/dev/zero", "not a regular file"),
    (lambda t, m: "missing.png", "not found"),
])
def test_every_image_error_names_line_and_file(tmp_path, monkeypatch, good, make, kind):
    bad = make(tmp_path, monkeypatch)
    f = _jsonl(tmp_path, good, good, bad)
    with pytest.raises(HeadbakeError) as e:
        data.load_jsonl(f)
    msg = str(e.value)
    assert "\n" not in msg
    assert f"{f} line 3" in msg and bad.rsplit("/", 1)[-1] in msg
    assert kind in msg or kind.lower() in msg.lower(), msg


def test_hf_dataset_bytes_bomb_names_the_row(tmp_path, monkeypatch):
    import io

    buf = io.BytesIO()
    Image.new("L", (40, 40)).save(buf, format="PNG")
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", 100)
    with pytest.raises(HeadbakeError, match=r"dataset x \[train\] row 4: .*DecompressionBombError"):
        data._hf_image({"bytes": buf.getvalue()}, "dataset x [train] row 4")


# ----------------------------------------------------------------------------- too small


def test_min_image_side_from_processor_and_config(tiny_bf16):
    from transformers import AutoProcessor

    proc = AutoProcessor.from_pretrained(str(tiny_bf16))
    assert data.min_image_side(proc) == 28  # patch 14 x merge 2
    assert data.min_image_side_of_model(tiny_bf16) == 28  # from the saved processor config, no loading
    assert data.min_image_side({"patch_size": 14, "merge_size": 2}) == 28
    assert data.min_image_side({"patch_size": 14, "merge_kernel_size": [2, 2]}) == 28
    assert data.min_image_side({}) is None


@pytest.mark.parametrize("size, refused", [((1, 1), True), ((27, 400), True), ((28, 28), False), ((300, 40), False)])
def test_too_small_image_refused(tmp_path, good, size, refused):
    Image.new("RGB", size, (200, 0, 0)).save(tmp_path / "small.png")
    d = data.load_jsonl(_jsonl(tmp_path, good, [good, "small.png"]))
    if refused:
        with pytest.raises(HeadbakeError) as e:
            data.check_image_sizes(d, 28)
        msg = str(e.value)
        assert "d.jsonl line 2" in msg and "small.png" in msg and f"{size[0]}x{size[1]}" in msg and "28" in msg
    else:
        data.check_image_sizes(d, 28)
    data.check_image_sizes(d, None)  # a processor with no known patch size: nothing to check


def test_calibrate_refuses_a_one_pixel_image_before_loading_the_model(tiny_bf16, tmp_path, good, monkeypatch):
    from headbake.calibrate import run as run_mod

    Image.new("RGB", (1, 1)).save(tmp_path / "dot.png")
    f = _jsonl(tmp_path, good, "dot.png")

    def no_model(*a, **k):
        raise AssertionError("the model was loaded")

    monkeypatch.setattr(run_mod, "load_model", no_model)
    with pytest.raises(HeadbakeError, match=r"d.jsonl line 2: image .*dot.png is 1x1 pixels"):
        run_mod.calibrate(run_mod.CalibrateOptions(model=str(tiny_bf16), preset="demo", data=str(f), progress=False))


def test_processor_rejection_names_the_sample_and_its_file(tiny_bf16, tmp_path, good):
    from transformers import AutoProcessor

    from headbake.calibrate.run import _rejected
    from headbake.data.prompts import build_inputs

    Image.new("RGB", (30, 6100)).save(tmp_path / "skinny.png")  # aspect ratio > 200: Qwen's processor refuses
    d = data.load_jsonl(_jsonl(tmp_path, good, "skinny.png", good))
    data.check_image_sizes(d, 28)  # large enough on each side
    proc = AutoProcessor.from_pretrained(str(tiny_bf16))
    with pytest.raises(ValueError) as e:
        build_inputs(proc, d.samples)
    msg = str(_rejected(proc, d, 0, d.samples, e.value))
    assert "d.jsonl line 2" in msg and "skinny.png" in msg and "aspect ratio" in msg and "\n" not in msg
