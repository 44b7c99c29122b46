"""headbake bake: layout identity, exact fold, provenance, and every bad input."""

from __future__ import annotations

import json
import os
import shutil
import struct
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from click.testing import CliRunner
from safetensors import safe_open

from builders import build_deepseek_v3, build_kimi_layout, write_gains
from headbake.bake.writer import bake_checkpoint
from headbake.bake.fold import fold_columns
from headbake.checkpoint import open_checkpoint
from headbake.cli import main
from headbake.model.info import load_model_info

CELLS = {(0, 1): 1.16, (1, 0): 1.3, (1, 3): 1.3, (3, 2): 1.16}


def run(*args):
    return CliRunner().invoke(main, [str(a) for a in args], catch_exceptions=False)


def files_of(d: Path) -> dict[str, bytes]:
    return {p.relative_to(d).as_posix(): p.read_bytes() for p in sorted(d.rglob("*")) if p.is_file()}


@pytest.fixture(scope="module")
def gains_bf16(tiny_bf16, tmp_path_factory):
    return write_gains(tmp_path_factory.mktemp("g") / "gains.json", load_model_info(tiny_bf16), CELLS)


@pytest.fixture(scope="module")
def baked_bf16(tiny_bf16, gains_bf16, tmp_path_factory):
    out = tmp_path_factory.mktemp("b") / "baked"
    r = run("bake", tiny_bf16, "--gains", gains_bf16, "--out", out, "-q")
    assert r.exit_code == 0, r.output
    return out


def test_layout_identity_and_exact_fold(tiny_bf16, baked_bf16):
    src, out = files_of(tiny_bf16), files_of(baked_bf16)
    assert set(out) == set(src) | {"headbake.json"}
    ck_s, ck_o = open_checkpoint(tiny_bf16), open_checkpoint(baked_bf16)
    assert len(ck_s.shards) >= 2 and list(ck_s.shards) == list(ck_o.shards)
    for name in src:
        if not name.endswith(".safetensors"):
            assert out[name] == src[name], f"{name} not byte-identical"
    for name, shard in ck_s.shards.items():
        assert ck_o.shards[name].header_bytes == shard.header_bytes  # order, dtypes, offsets, metadata
    info = load_model_info(tiny_bf16)
    gains = json.loads((baked_bf16 / "headbake.json").read_text())["gains"]["gains"]
    changed = 0
    for name, e in ck_s.tensors.items():
        a, b = src[e.file][e.start:e.end], out[e.file][e.start:e.end]
        layer = int(name.split(".")[2]) if name.endswith("o_proj.weight") and "layers" in name else None
        if layer is not None and any(g != 1.0 for g in gains[layer]):
            with safe_open(str(tiny_bf16 / e.file), "pt") as f:
                w = f.get_tensor(name)
            with safe_open(str(baked_bf16 / e.file), "pt") as f:
                got = f.get_tensor(name)
            assert torch.equal(got, fold_columns(w, gains[layer], info.head_dim))
            for h, g in enumerate(gains[layer]):  # gain-1 heads are bit-identical
                cols = slice(h * info.head_dim, (h + 1) * info.head_dim)
                assert torch.equal(got[:, cols], w[:, cols]) == (g == 1.0)
            changed += 1
        else:
            assert a == b, f"{name} changed"
    assert changed == 3  # layers 0, 1, 3


def test_provenance_record(tiny_bf16, baked_bf16, gains_bf16):
    rec = json.loads((baked_bf16 / "headbake.json").read_text())
    assert rec["format"] == "headbake.baked/v1"
    assert rec["gains"]["gains"] == json.loads(Path(gains_bf16).read_text())["gains"]
    assert rec["model"] == {"model_type": "qwen2_5_vl", "num_layers": 4, "num_heads": 4, "head_dim": 16}
    assert {e["layer"] for e in rec["edited"]} == {0, 1, 3}
    assert rec["edited"][0]["sha256_before"] != rec["edited"][0]["sha256_after"]
    assert rec["torch_version"] and rec["transformers_version"] and rec["headbake_version"]
    import hashlib

    cfg = rec["files"]["config.json"]
    assert cfg["sha256"] == cfg["source_sha256"] == hashlib.sha256((tiny_bf16 / "config.json").read_bytes()).hexdigest()


def test_checksums_flag_hashes_every_shard(tiny_bf16, gains_bf16, tmp_path):
    import hashlib

    res = bake_checkpoint(tiny_bf16, gains_bf16, tmp_path / "o", checksums=True, progress=False)
    patched = {e["file"] for e in res.record.edited}
    assert patched
    for name in open_checkpoint(tiny_bf16).shards:
        f = res.record.files[name]
        assert f["source_sha256"] == hashlib.sha256((tiny_bf16 / name).read_bytes()).hexdigest()
        assert f["sha256"] == hashlib.sha256((tmp_path / "o" / name).read_bytes()).hexdigest()
        assert (f["sha256"] != f["source_sha256"]) == (name in patched)


def test_verify_passes_and_gain_changes_logits(tiny_bf16, baked_bf16, tmp_path):
    report = tmp_path / "report.json"
    r = run("verify", tiny_bf16, baked_bf16, "--report", report, "-q", "--samples", "3")
    assert r.exit_code == 0, r.output
    rep = json.loads(report.read_text())
    m = rep["model"]
    assert rep["tensor"]["edited_bit_exact"] == 3 and rep["tensor"]["passed"]
    assert m["dtype"] == "bfloat16" and m["passed"]
    assert m["max_abs_logit"] <= m["limits"]["max_abs_logit"]
    # the bake did something the rounding cannot explain
    assert m["effect"]["max_abs_logit"] > 5 * m["max_abs_logit"]
    assert m["effect"]["kl_mean"] > 10 * m["kl_mean"]


def test_fp32_single_file_bake_and_verify(tiny_fp32, tmp_path):
    # merge the fp32 model's shards into one model.safetensors to cover the single-file path
    from safetensors.torch import load_file, save_file

    single = tmp_path / "single"
    shutil.copytree(tiny_fp32, single, ignore=shutil.ignore_patterns("*.safetensors", "*.index.json"))
    tensors = {}
    for p in sorted(tiny_fp32.glob("*.safetensors")):
        tensors.update(load_file(p))
    save_file(tensors, str(single / "model.safetensors"), metadata={"format": "pt"})
    info = load_model_info(single)
    g = write_gains(tmp_path / "g.json", info, CELLS)
    r = run("bake", single, "--gains", g, "--out", tmp_path / "out", "-q")
    assert r.exit_code == 0, r.output
    report = tmp_path / "r.json"
    r = run("verify", single, tmp_path / "out", "--report", report, "-q", "--samples", "3")
    assert r.exit_code == 0, r.output
    m = json.loads(report.read_text())["model"]
    assert m["dtype"] == "float32" and m["noise_floor"]["reference_dtype"] == "float64"
    assert m["max_abs_logit"] < 1e-4 and m["top1_agreement"] == 1.0 and m["greedy_match"] == 1.0
    assert m["effect"]["max_abs_logit"] > 1e-2


def test_fp16_bake_is_exact(tiny_fp32, tmp_path):
    from safetensors.torch import load_file, save_file

    half = tmp_path / "half"
    shutil.copytree(tiny_fp32, half)
    for p in half.glob("*.safetensors"):
        save_file({k: v.half() for k, v in load_file(p).items()}, str(p), metadata={"format": "pt"})
    g = write_gains(tmp_path / "g.json", load_model_info(half), CELLS)
    assert run("bake", half, "--gains", g, "--out", tmp_path / "o", "-q").exit_code == 0
    r = run("verify", half, tmp_path / "o", "--tensors-only", "-q")
    assert r.exit_code == 0 and "3/3 edited o_proj bit-exact" in r.output


def test_kimi_layout_bake_and_tensor_verify(tmp_path):
    src = build_kimi_layout(tmp_path / "kimi")
    info = load_model_info(src)
    assert (info.num_heads, info.head_dim) == (4, 8)
    g = write_gains(tmp_path / "g.json", info, {(0, 1): 1.3, (2, 3): 1.16})
    assert run("bake", src, "--gains", g, "--out", tmp_path / "o", "-q").exit_code == 0
    rec = json.loads((tmp_path / "o" / "headbake.json").read_text())
    assert [e["tensor"] for e in rec["edited"]] == [
        "language_model.model.layers.0.self_attn.o_proj.weight", "language_model.model.layers.2.self_attn.o_proj.weight"]
    # the safetensors metadata survives (save_pretrained would drop it)
    with safe_open(str(tmp_path / "o" / "model-00001-of-00002.safetensors"), "pt") as f:
        assert f.metadata()["origin"] == "headbake-test"
    r = run("verify", src, tmp_path / "o", "--tensors-only", "-q")
    assert r.exit_code == 0 and "2/2 edited o_proj bit-exact" in r.output


def test_deepseek_mla_width_is_v_head_dim(tmp_path):
    src = build_deepseek_v3(tmp_path / "ds")
    info = load_model_info(src)
    assert info.head_dim == 12
    g = write_gains(tmp_path / "g.json", info, {(0, 1): 1.3, (1, 2): 1.16})
    assert run("bake", src, "--gains", g, "--out", tmp_path / "o", "-q").exit_code == 0
    report = tmp_path / "r.json"
    r = run("verify", src, tmp_path / "o", "--report", report, "-q", "--samples", "2")
    assert r.exit_code == 0, r.output
    m = json.loads(report.read_text())["model"]
    assert m["passed"] and m["effect"]["max_abs_logit"] > 100 * m["max_abs_logit"]


def test_verify_detects_tampering(tiny_bf16, baked_bf16, tmp_path):
    bad = tmp_path / "bad"
    shutil.copytree(baked_bf16, bad)
    ck = open_checkpoint(bad)
    e = ck.tensors["model.layers.2.mlp.up_proj.weight"]
    with open(bad / e.file, "r+b") as f:
        f.seek(e.start + 10)
        b = f.read(1)
        f.seek(e.start + 10)
        f.write(bytes([b[0] ^ 1]))
    r = run("verify", tiny_bf16, bad, "--tensors-only", "-q")
    assert r.exit_code == 1 and "bytes differ outside the edited" in r.output and "FAIL" in r.output


def test_verify_detects_wrong_gains(tiny_bf16, baked_bf16, tmp_path):
    other = write_gains(tmp_path / "g.json", load_model_info(tiny_bf16), {(0, 1): 1.2})
    r = run("verify", tiny_bf16, baked_bf16, "--gains", other, "--tensors-only", "-q")
    assert r.exit_code == 1 and "FAIL" in r.output


def test_overwrite_replaces_atomically(tiny_bf16, gains_bf16, tmp_path):
    out = tmp_path / "o"
    out.mkdir()
    (out / "stale.txt").write_text("old")
    r = run("bake", tiny_bf16, "--gains", gains_bf16, "--out", out, "-q")
    assert r.exit_code == 2 and "exists" in r.output and (out / "stale.txt").exists()
    assert run("bake", tiny_bf16, "--gains", gains_bf16, "--out", out, "-q", "--overwrite").exit_code == 0
    assert not (out / "stale.txt").exists() and (out / "headbake.json").exists()
    assert not list(tmp_path.glob(".o.headbake-*"))


def test_empty_existing_dir_is_fine(tiny_bf16, gains_bf16, tmp_path):
    (tmp_path / "o").mkdir()
    assert run("bake", tiny_bf16, "--gains", gains_bf16, "--out", tmp_path / "o", "-q").exit_code == 0


# ---------------------------------------------------------------- bad input


@pytest.fixture()
def src_copy(tiny_bf16, tmp_path):
    d = tmp_path / "src"
    shutil.copytree(tiny_bf16, d)
    return d


def snapshot(d: Path):
    return {p: (p.stat().st_size, p.stat().st_mtime_ns) for p in d.rglob("*")}


def assert_refused(args, src, out, match):
    before = snapshot(src)
    r = run("bake", *args)
    assert r.exit_code != 0, r.output
    lines = [l for l in r.output.strip().splitlines() if l.strip()]
    assert len(lines) == 1 and lines[0].startswith("Error: "), r.output
    assert match in lines[0], lines[0]
    assert "Traceback" not in r.output
    assert not out.exists()
    assert not list(out.parent.glob(f".{out.name}.headbake-*"))
    assert snapshot(src) == before


def gains_with(tmp_path, info, mutate):
    doc = json.loads(write_gains(tmp_path / "g0.json", info, {}).read_text())
    mutate(doc)
    p = tmp_path / "bad-gains.json"
    p.write_text(json.dumps(doc).replace('"NaN"', "NaN").replace('"Inf"', "Infinity"))
    return p


def test_missing_src(tmp_path, gains_bf16):
    r = run("bake", tmp_path / "nope", "--gains", gains_bf16, "--out", tmp_path / "o")
    assert r.exit_code == 2 and r.output.startswith("Error: ") and "neither an existing directory nor a Hub id" in r.output


def test_missing_config(src_copy, gains_bf16, tmp_path):
    (src_copy / "config.json").unlink()
    assert_refused([src_copy, "--gains", gains_bf16, "--out", tmp_path / "o"], src_copy, tmp_path / "o", "not a model checkpoint (no config.json)")


def test_unsupported_architecture(src_copy, gains_bf16, tmp_path):
    cfg = json.loads((src_copy / "config.json").read_text())
    cfg["model_type"] = "gpt_neox"
    (src_copy / "config.json").write_text(json.dumps(cfg))
    assert_refused([src_copy, "--gains", gains_bf16, "--out", tmp_path / "o"], src_copy, tmp_path / "o", "unsupported model_type 'gpt_neox'")


@pytest.mark.parametrize("mutate,match", [
    (lambda d: d["gains"].pop(), "expected 4 layers"),
    (lambda d: d["gains"][1].append(1.0), "layer 1 has 5 gains"),
    (lambda d: d["gains"][2].__setitem__(0, "NaN"), "finite and > 0"),
    (lambda d: d["gains"][2].__setitem__(1, "Inf"), "finite and > 0"),
    (lambda d: d["gains"][0].__setitem__(3, 0.0), "finite and > 0"),
    (lambda d: d["gains"][0].__setitem__(3, -1.2), "finite and > 0"),
    (lambda d: d.__setitem__("format", "other"), "not a headbake.gains/v1"),
    (lambda d: d.__setitem__("num_heads", 8), "num_heads=8"),
])
def test_bad_gains(src_copy, tmp_path, mutate, match):
    g = gains_with(tmp_path, load_model_info(src_copy), mutate)
    assert_refused([src_copy, "--gains", g, "--out", tmp_path / "o"], src_copy, tmp_path / "o", match)


def test_gains_not_json(src_copy, tmp_path):
    (tmp_path / "g.json").write_text("{nope")
    assert_refused([src_copy, "--gains", tmp_path / "g.json", "--out", tmp_path / "o"], src_copy, tmp_path / "o", "not valid JSON")


def _shard(src):
    return sorted(src.glob("model-*.safetensors"))[0]


def test_truncated_safetensors(src_copy, gains_bf16, tmp_path):
    p = _shard(src_copy)
    data = p.read_bytes()
    p.write_bytes(data[:-100])
    assert_refused([src_copy, "--gains", gains_bf16, "--out", tmp_path / "o"], src_copy, tmp_path / "o", "truncated")


def test_corrupt_header(src_copy, gains_bf16, tmp_path):
    p = _shard(src_copy)
    data = bytearray(p.read_bytes())
    data[10:20] = b"\x00garbage!\xff"
    p.write_bytes(bytes(data))
    assert_refused([src_copy, "--gains", gains_bf16, "--out", tmp_path / "o"], src_copy, tmp_path / "o", "corrupt safetensors header")


def test_header_length_beyond_file(src_copy, gains_bf16, tmp_path):
    p = _shard(src_copy)
    data = bytearray(p.read_bytes())
    data[:8] = struct.pack("<Q", len(data) * 2)
    p.write_bytes(bytes(data))
    assert_refused([src_copy, "--gains", gains_bf16, "--out", tmp_path / "o"], src_copy, tmp_path / "o", "corrupt safetensors header")


def test_index_names_missing_shard(src_copy, gains_bf16, tmp_path):
    _shard(src_copy).unlink()
    assert_refused([src_copy, "--gains", gains_bf16, "--out", tmp_path / "o"], src_copy, tmp_path / "o", "names a missing shard")


def test_tensor_shape_not_matching_config(src_copy, gains_bf16, tmp_path):
    cfg = json.loads((src_copy / "config.json").read_text())
    cfg["text_config"]["head_dim"] = 8  # config now implies 4 x 8 = 32 columns, the tensors have 64
    (src_copy / "config.json").write_text(json.dumps(cfg))
    assert_refused([src_copy, "--gains", gains_bf16, "--out", tmp_path / "o"], src_copy, tmp_path / "o", "in_features")


def test_output_exists(src_copy, gains_bf16, tmp_path):
    out = tmp_path / "o"
    out.mkdir()
    (out / "keep.txt").write_text("mine")
    r = run("bake", src_copy, "--gains", gains_bf16, "--out", out)
    assert r.exit_code == 2 and "pass --overwrite" in r.output and (out / "keep.txt").read_text() == "mine"


def test_output_inside_source(src_copy, gains_bf16):
    r = run("bake", src_copy, "--gains", gains_bf16, "--out", src_copy / "baked")
    assert r.exit_code == 2 and "overlaps the source" in r.output


def test_already_baked_source(baked_bf16, gains_bf16, tmp_path):
    r = run("bake", baked_bf16, "--gains", gains_bf16, "--out", tmp_path / "o")
    assert r.exit_code == 2 and "already baked" in r.output and "--force" in r.output
    assert not (tmp_path / "o").exists()
    r = run("bake", baked_bf16, "--gains", gains_bf16, "--out", tmp_path / "o", "--force", "-q")
    assert r.exit_code == 0
    assert "previous_bake" in json.loads((tmp_path / "o" / "headbake.json").read_text())


def test_pickle_weights_refused(tmp_path, gains_bf16, tiny_bf16):
    d = tmp_path / "pickled"
    d.mkdir()
    shutil.copy(tiny_bf16 / "config.json", d)
    (d / "pytorch_model.bin").write_bytes(b"\x80\x04not really")
    assert_refused([d, "--gains", gains_bf16, "--out", tmp_path / "o"], d, tmp_path / "o", "unpickling runs arbitrary code")


def test_disk_full_leaves_nothing(src_copy, gains_bf16, tmp_path):
    mnt = tmp_path / "small"
    mnt.mkdir()
    mounted = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=200k", "tmpfs", str(mnt)],
                             capture_output=True).returncode == 0
    if not mounted:
        pytest.skip("cannot mount a small tmpfs here (test_disk_full_simulated covers the path)")
    try:
        r = run("bake", src_copy, "--gains", gains_bf16, "--out", mnt / "o", "-q")
        assert r.exit_code != 0 and "no space left on device" in r.output
        assert "Traceback" not in r.output
        assert list(mnt.iterdir()) == []
    finally:
        subprocess.run(["umount", str(mnt)], check=False)


def test_disk_full_simulated(src_copy, gains_bf16, tmp_path, monkeypatch):
    import errno

    import headbake.bake.writer as bake_mod

    def full(*a, **k):
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(bake_mod, "_pwrite_all", full)
    before = snapshot(src_copy)
    r = run("bake", src_copy, "--gains", gains_bf16, "--out", tmp_path / "o", "-q")
    assert r.exit_code == 3 and "no space left on device" in r.output
    assert not (tmp_path / "o").exists() and not list(tmp_path.glob(".o.headbake-*"))
    assert snapshot(src_copy) == before


SLOW_BAKE = """
import signal, sys, time, pathlib
# A child inherits ignored signals (a suite started as a background job ignores SIGINT): restore Python's own.
signal.signal(signal.SIGINT, signal.default_int_handler)
signal.signal(signal.SIGTERM, signal.SIG_DFL)
marker, src, gains, out = sys.argv[1:5]
import headbake.bake.writer as b
orig = b.clone_file
def slow(src, dst):
    m = orig(src, dst)
    if src.endswith('.safetensors'):
        pathlib.Path(marker).touch()
        time.sleep(30)
    return m
b.clone_file = slow
from headbake.cli import main
sys.argv = ['headbake', 'bake', src, '--gains', gains, '--out', out, '-q']
main()
"""


@pytest.mark.parametrize("sig", ["SIGINT", "SIGTERM"])
def test_interrupt_leaves_no_partial_output(src_copy, gains_bf16, tmp_path, sig):
    import signal
    import time

    marker, out = tmp_path / "started", tmp_path / "o"
    p = subprocess.Popen([sys.executable, "-c", SLOW_BAKE, marker, src_copy, gains_bf16, out],
                         stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    deadline = time.time() + 60
    while not marker.exists() and time.time() < deadline and p.poll() is None:
        time.sleep(0.1)
    assert marker.exists(), p.communicate()[0]
    assert list(tmp_path.glob(".o.headbake-tmp-*"))  # work in progress is hidden
    p.send_signal(getattr(signal, sig))
    output = p.communicate(timeout=30)[0]
    assert p.returncode != 0
    assert "Traceback" not in output and "Interrupted" in output
    assert not out.exists() and not list(tmp_path.glob(".o.headbake-*"))


def test_stale_temp_from_killed_run_is_swept(src_copy, gains_bf16, tmp_path):
    stale = tmp_path / ".o.headbake-tmp-999999999"
    stale.mkdir()
    (stale / "junk").write_text("x")
    assert run("bake", src_copy, "--gains", gains_bf16, "--out", tmp_path / "o", "-q").exit_code == 0
    assert not stale.exists()


def test_verify_with_device_map_reloads_for_the_reference(tiny_bf16, baked_bf16, tmp_path):
    """--device-map models are reloaded in the reference dtype, not cast in place; figures must not change."""
    a, b = tmp_path / "a.json", tmp_path / "b.json"
    assert run("verify", tiny_bf16, baked_bf16, "--report", a, "-q", "--samples", "2").exit_code == 0
    r = run("verify", tiny_bf16, baked_bf16, "--report", b, "-q", "--samples", "2", "--device-map", "auto")
    assert r.exit_code == 0, r.output
    ma, mb = json.loads(a.read_text())["model"], json.loads(b.read_text())["model"]
    assert mb["device"] == "device_map=auto"
    for key in ("max_abs_logit", "kl_max", "top1_agreement"):
        assert ma[key] == pytest.approx(mb[key], rel=1e-6, abs=1e-9)
        assert ma["noise_floor"][key] == pytest.approx(mb["noise_floor"][key], rel=1e-6, abs=1e-9)


def test_source_card_and_stray_weights_are_not_copied(src_copy, gains_bf16, tmp_path):
    (src_copy / "README.md").write_text("# The base model's card\n")
    (src_copy / "pytorch_model.bin").write_bytes(b"\x80\x04pickle")
    (src_copy / "consolidated.safetensors").write_bytes((src_copy / "config.json").read_bytes())
    r = run("bake", src_copy, "--gains", gains_bf16, "--out", tmp_path / "o")
    assert r.exit_code == 0 and "not copying weight files" in r.output
    names = {p.name for p in (tmp_path / "o").iterdir()}
    assert not names & {"README.md", "pytorch_model.bin", "consolidated.safetensors"}
    rec = json.loads((tmp_path / "o" / "headbake.json").read_text())
    assert rec["skipped_files"] == ["consolidated.safetensors", "pytorch_model.bin"]
    assert run("verify", src_copy, tmp_path / "o", "--tensors-only", "-q").exit_code == 0
    (tmp_path / "o" / "pytorch_model.bin").write_bytes(b"x")  # but a stray weight *in the output* is flagged
    r = run("verify", src_copy, tmp_path / "o", "--tensors-only", "-q")
    assert r.exit_code == 1 and "extra weight file in baked" in r.output


def test_verify_accepts_a_forced_rebake(baked_bf16, gains_bf16, tmp_path):
    assert run("bake", baked_bf16, "--gains", gains_bf16, "--out", tmp_path / "o", "--force", "-q").exit_code == 0
    r = run("verify", baked_bf16, tmp_path / "o", "--tensors-only", "-q")
    assert r.exit_code == 0, r.output


def test_failed_final_rename_restores_the_previous_output(tiny_bf16, gains_bf16, tmp_path, monkeypatch):
    import headbake.bake.output_dir as od

    out = tmp_path / "o"
    out.mkdir()
    (out / "previous.txt").write_text("keep me")
    real, calls = os.replace, []

    def flaky(a, b):
        calls.append((a, b))
        if len(calls) == 2:  # out -> old worked; tmp -> out fails
            raise OSError(5, "I/O error")
        return real(a, b)

    monkeypatch.setattr(od.os, "replace", flaky)
    r = run("bake", tiny_bf16, "--gains", gains_bf16, "--out", out, "--overwrite", "-q")
    assert r.exit_code == 3 and "I/O error" in r.output  # an environment problem
    assert (out / "previous.txt").read_text() == "keep me"
    assert not list(tmp_path.glob(".o.headbake-*"))


@pytest.mark.parametrize("args,match", [
    (["--gains", "{tmp}"], "gains file is a directory"),
    (["--gains", "{gains}", "--out", "{file}/sub"], "is not a directory"),
])
def test_bake_path_errors_are_one_line(tiny_bf16, gains_bf16, tmp_path, args, match):
    (tmp_path / "afile").write_text("x")
    fill = {"tmp": str(tmp_path), "gains": str(gains_bf16), "file": str(tmp_path / "afile")}
    args = [a.format(**fill) for a in args]
    if "--out" not in args:
        args += ["--out", str(tmp_path / "o")]
    r = run("bake", tiny_bf16, *args)
    assert r.exit_code == 2 and r.output.startswith("Error: ") and match in r.output
    assert len(r.output.strip().splitlines()) == 1


@pytest.mark.parametrize("args,match", [
    (["--device", "foo"], "unknown --device 'foo'"),
    (["--samples", "0"], "0 is not in the range"),
    (["--new-tokens", "-1"], "-1 is not in the range"),
    (["--report", "{file}/r.json"], "is not a directory"),
])
def test_verify_argument_errors_fail_fast(tiny_bf16, baked_bf16, tmp_path, args, match):
    (tmp_path / "afile").write_text("x")
    args = [a.format(file=tmp_path / "afile") for a in args]
    r = run("verify", tiny_bf16, baked_bf16, "-q", *args)
    assert r.exit_code == 2 and match in r.output and "Traceback" not in r.output
    assert "tensors:" not in r.output  # refused before any work


def test_gains_can_come_from_a_baked_directory(tiny_bf16, baked_bf16, tmp_path):
    """`--gains BAKED_DIR` (or its headbake.json) re-bakes the same edit; `heads` reads it too."""
    for g in (baked_bf16, baked_bf16 / "headbake.json"):
        out = tmp_path / ("o" + str(len(list(tmp_path.iterdir()))))
        assert run("bake", tiny_bf16, "--gains", g, "--out", out, "-q").exit_code == 0
        for shard in open_checkpoint(tiny_bf16).shards:
            assert (out / shard).read_bytes() == (baked_bf16 / shard).read_bytes()
    r = run("heads", baked_bf16 / "headbake.json", "--no-png")
    assert r.exit_code == 0 and "layer" in r.output


def test_relative_missing_source_is_named_as_a_path(tmp_path, gains_bf16, monkeypatch):
    monkeypatch.chdir(tmp_path)
    r = run("bake", "./models/nope", "--gains", gains_bf16, "--out", "o")
    assert r.exit_code == 2 and "./models/nope is neither an existing directory nor a Hub id" in r.output


def test_gains_of_a_compound_bake_are_refused(baked_bf16, gains_bf16, tiny_bf16, tmp_path):
    twice = tmp_path / "twice"
    assert run("bake", baked_bf16, "--gains", gains_bf16, "--out", twice, "--force", "-q").exit_code == 0
    r = run("bake", tiny_bf16, "--gains", twice, "--out", tmp_path / "o")
    assert r.exit_code == 2 and "on top of an earlier bake" in r.output


def test_force_rebake_does_not_carry_the_old_card_or_heatmap(baked_bf16, gains_bf16, tmp_path):
    src = tmp_path / "src"
    shutil.copytree(baked_bf16, src)
    (src / "README.md").write_text("# card of the first bake\n")
    (src / "headbake_heatmap.png").write_bytes(b"\x89PNG old")
    assert run("bake", src, "--gains", gains_bf16, "--out", tmp_path / "o", "--force", "-q").exit_code == 0
    assert not {"README.md", "headbake_heatmap.png"} & {p.name for p in (tmp_path / "o").iterdir()}


def test_verify_asks_with_the_prompt_the_bake_was_calibrated_with(tiny_bf16, gains_bf16, tmp_path):
    doc = json.loads(gains_bf16.read_text())
    doc["prompt"] = {"system": "You are careful.", "user": "Look closely. {question} Think first.",
                     "source": "test prompt"}
    g = tmp_path / "g.json"
    g.write_text(json.dumps(doc))
    out = tmp_path / "o"
    assert run("bake", tiny_bf16, "--gains", g, "--out", out, "-q").exit_code == 0
    from headbake.bake.verify import prompt_of

    assert prompt_of(out).render("Q?") == "Look closely. Q? Think first." and prompt_of(out).system
    r = run("verify", tiny_bf16, out, "--samples", "2", "--new-tokens", "2", "-q", "--json")
    assert r.exit_code == 0, r.output
    assert json.loads(r.stdout)["model"]["prompt"] == "test prompt"
