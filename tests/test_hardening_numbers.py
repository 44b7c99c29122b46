"""Gains whose fold overflows the stored dtype are refused; non-finite source weights are reported."""

from __future__ import annotations

import shutil
import struct

import numpy as np
import pytest
import torch
from click.testing import CliRunner

from builders import write_gains
from headbake.bake.writer import bake_checkpoint
from headbake.bake.fold import fold_bytes, fold_columns
from headbake.checkpoint import open_checkpoint
from headbake.cli import main
from headbake.errors import HeadbakeError
from headbake.model.info import load_model_info, o_proj_targets


def run(*args):
    return CliRunner().invoke(main, [str(a) for a in args], catch_exceptions=False)


@pytest.fixture(scope="module")
def tiny_fp16(tmp_path_factory):
    from headbake.demo import build_tiny_qwen25vl

    return build_tiny_qwen25vl(tmp_path_factory.mktemp("models") / "tiny-fp16", dtype="float16", seed=2)


def _copy(model, tmp_path):
    dst = tmp_path / "src"
    shutil.copytree(model, dst)
    return dst


def _set_weight(src, layer: int, row: int, col: int, value: float) -> None:
    """Overwrite one element of layer ``layer``'s o_proj in place."""
    info = load_model_info(src)
    ck = open_checkpoint(src)
    e = ck.tensors[o_proj_targets(info, ck)[layer].weight]
    off = e.start + (row * e.shape[1] + col) * 2
    raw = {"F16": np.array([value], "<f2").tobytes(),
           "BF16": struct.pack("<I", struct.unpack("<I", np.float32(value).tobytes())[0])[2:]}[e.dtype]
    with open(src / e.file, "r+b") as f:
        f.seek(off)
        f.write(raw)


@pytest.mark.parametrize("model, gain", [("tiny_fp16", 1e30), ("tiny_bf16", 1e39), ("tiny_fp32", 1e39)])
def test_gain_overflowing_the_dtype_refused(request, tmp_path, model, gain):
    src = _copy(request.getfixturevalue(model), tmp_path)
    g = write_gains(tmp_path / "g.json", load_model_info(src), {(1, 2): gain})
    r = run("bake", src, "--gains", g, "--out", tmp_path / "out", "-q")
    assert r.exit_code == 2, r.output
    assert "layer 1 head 2" in r.output and "overflow" in r.output and r.output.count("\n") == 1
    assert not (tmp_path / "out").exists() and not list(tmp_path.glob(".out.headbake-*"))


def test_small_gain_on_a_large_weight_refused(tiny_fp16, tmp_path):
    """The check is on max |W[:, cols]| x gain, not on the gain alone."""
    src = _copy(tiny_fp16, tmp_path)
    info = load_model_info(src)
    _set_weight(src, 0, 3, 1 * info.head_dim + 2, 60000.0)  # inside head 1 of layer 0
    ok = write_gains(tmp_path / "ok.json", info, {(0, 0): 1.5, (0, 2): 1.5})  # other heads of that layer
    bake_checkpoint(src, ok, tmp_path / "fine", progress=False)
    bad = write_gains(tmp_path / "bad.json", info, {(0, 1): 1.2})  # 72000 > 65504
    with pytest.raises(HeadbakeError, match=r"layer 0 head 1 .*overflow.*F16"):
        bake_checkpoint(src, bad, tmp_path / "out", progress=False)
    assert not (tmp_path / "out").exists()


def test_largest_gain_that_fits_is_baked(tiny_fp16, tmp_path):
    src = _copy(tiny_fp16, tmp_path)
    info = load_model_info(src)
    _set_weight(src, 2, 0, 0, 30000.0)
    g = write_gains(tmp_path / "g.json", info, {(2, 0): 2.18})  # 65400: rounds to a finite fp16
    res = bake_checkpoint(src, g, tmp_path / "out", progress=False)
    assert res.edited_heads == 1 and not res.warnings


def test_non_finite_source_weights_warned_not_printed(tiny_bf16, tmp_path, capfd):
    src = _copy(tiny_bf16, tmp_path)
    info = load_model_info(src)
    _set_weight(src, 1, 0, 0, float("inf"))
    _set_weight(src, 1, 1, 5, float("nan"))
    g = write_gains(tmp_path / "g.json", info, {(1, 3): 1.3})
    res = bake_checkpoint(src, g, tmp_path / "out", progress=False)
    assert len(res.warnings) == 1
    assert "layers.1.self_attn.o_proj.weight" in res.warnings[0] and "2 non-finite" in res.warnings[0]
    assert "non-finite" not in capfd.readouterr().err


@pytest.mark.parametrize("dtype, np_dtype, big", [("F16", "<f2", 40000.0), ("F32", "<f4", 3e38)])
def test_fold_overflow_matches_torch(dtype, np_dtype, big):
    from headbake.bake.fold import FoldOverflow

    w = np.full((2, 4), 0.5, np_dtype)
    w[1, 3] = big  # in head 1
    gains = [1.0, 2.0]
    with pytest.raises(FoldOverflow) as e:
        fold_bytes(w.tobytes(), dtype, w.shape, gains, 2, check=True)
    assert e.value.head == 1 and e.value.gain == 2.0
    torch_out = fold_columns(torch.from_numpy(w.astype(np.float32)).to({"F16": torch.float16, "F32": torch.float32}[dtype]),
                             gains, 2)
    assert torch.isinf(torch_out).any()  # torch agrees the fold overflows
    assert fold_bytes(w.tobytes(), dtype, w.shape, [2.0, 1.0], 2, check=True)  # head 0 is small: fine
