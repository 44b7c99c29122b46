"""Model resolution: aliases, local dirs, HF cache snapshots, offline use, and the Hub path (fake server)."""

from __future__ import annotations

import hashlib
import json
import os
import socket
import sys
from pathlib import Path

import pytest
from click.testing import CliRunner

from headbake.errors import HeadbakeError
from headbake.hub import (
    aliases, cached_snapshot, find_alias, nearest_alias, resolve_model,
)

sys.path.insert(0, str(Path(__file__).parent))
from hubserver import FakeHub, git_blob_oid  # noqa: E402

SHA = "4f2e8c1d9b7a6e5f4c3b2a1908f7e6d5c4b3a291"


def fake_cache(cache: Path, repo_id: str, src: Path, sha: str = SHA, ref: str | None = "main") -> Path:
    """Lay ``src``'s files out exactly like huggingface_hub's cache: blobs, refs and symlinked snapshots."""
    repo = cache / ("models--" + repo_id.replace("/", "--"))
    snap = repo / "snapshots" / sha
    (repo / "blobs").mkdir(parents=True, exist_ok=True)
    snap.mkdir(parents=True, exist_ok=True)
    for f in sorted(src.iterdir()):
        if not f.is_file():
            continue
        data = f.read_bytes()
        oid = hashlib.sha256(data).hexdigest() if f.suffix == ".safetensors" else git_blob_oid(data)
        blob = repo / "blobs" / oid
        blob.write_bytes(data)
        (snap / f.name).symlink_to(os.path.relpath(blob, snap))
    if ref:
        (repo / "refs").mkdir(exist_ok=True)
        (repo / "refs" / ref).write_text(sha)
    return snap


@pytest.fixture
def online(monkeypatch):
    """huggingface_hub froze HF_HUB_OFFLINE=1 (conftest) at import; these tests talk to a local fake Hub,
    as a process started online would."""
    from huggingface_hub import constants

    monkeypatch.setenv("HF_HUB_OFFLINE", "0")
    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", False)
    monkeypatch.delenv("HF_TOKEN", raising=False)


# ----------------------------------------------------------------------------- aliases and names


@pytest.mark.parametrize("name, canonical", [
    ("Ocean-R1", "Ocean-R1"), ("ocean-r1", "Ocean-R1"), ("KIMI-VL", "Kimi-VL"), ("kimi-vl-2506", "Kimi-VL-2506"),
    ("r1-onevision", "R1-Onevision"), ("Demo", "demo"),
])
def test_aliases_match_case_insensitively(name, canonical):
    assert find_alias(name) == canonical


def test_alias_table_is_the_papers_models():
    a = aliases()
    assert a["Ocean-R1"]["repo"] == "minglingfeng/Ocean_R1_7B_Instruct"
    assert a["R1-Onevision"]["repo"] == "Fancy-MLLM/R1-Onevision-7B"
    assert a["Kimi-VL"]["repo"] == "moonshotai/Kimi-VL-A3B-Thinking"
    assert a["Kimi-VL-2506"]["repo"] == "moonshotai/Kimi-VL-A3B-Thinking-2506"
    assert {v["model_type"] for v in a.values()} == {"qwen2_5_vl", "kimi_vl"}


@pytest.mark.parametrize("typo, expected", [
    ("OceanR1", "Ocean-R1"), ("ocean", "Ocean-R1"), ("Ocean_R1_7B", "Ocean-R1"), ("R1-OneVison", "R1-Onevision"),
    ("kimi", "Kimi-VL"), ("Kimi-VL-2605", "Kimi-VL-2506"), ("demo2", "demo"),
])
def test_unknown_alias_suggests_the_nearest(typo, expected):
    assert nearest_alias(typo) == expected
    with pytest.raises(HeadbakeError) as e:
        resolve_model(typo, offline=True)
    msg = str(e.value)
    assert f"did you mean {expected!r}?" in msg and "headbake models" in msg and "\n" not in msg


@pytest.mark.parametrize("bad", ["org/", "/org", "org//name", "a b/c", "org/na me", "org/name--x"])
def test_malformed_hub_ids_are_refused_before_any_download(bad, tmp_path):
    with pytest.raises(HeadbakeError) as e:
        resolve_model(bad, offline=True, cache_dir=tmp_path)
    assert "\n" not in str(e.value) and bad in str(e.value)
    assert not any(tmp_path.iterdir())


def test_empty_and_missing_paths(tmp_path):
    with pytest.raises(HeadbakeError, match="no model given"):
        resolve_model("  ")
    with pytest.raises(HeadbakeError, match="neither an existing directory nor a Hub id"):
        resolve_model(str(tmp_path / "nope" / "deeper"))


# ----------------------------------------------------------------------------- local directories


def test_local_directory(tiny_bf16):
    r = resolve_model(str(tiny_bf16))
    assert r.path == Path(tiny_bf16).resolve() and r.is_local and r.revision is None
    assert r.source_id == str(Path(tiny_bf16).resolve()) and not r.is_hub_id
    with pytest.raises(HeadbakeError, match="--revision applies to Hub ids"):
        resolve_model(str(tiny_bf16), revision="main")


def test_local_directory_without_config_is_refused(tmp_path):
    (tmp_path / "weights.safetensors").write_bytes(b"")
    with pytest.raises(HeadbakeError, match="no config.json"):
        resolve_model(str(tmp_path))


def test_cache_snapshot_path_recovers_repo_id_and_sha(tiny_bf16, tmp_path):
    snap = fake_cache(tmp_path / "hub", "someone/Tiny-VL", tiny_bf16)
    r = resolve_model(str(snap))
    assert (r.source_id, r.revision, r.is_local) == ("someone/Tiny-VL", SHA, True)
    assert r.is_hub_id and r.source() == {"id": "someone/Tiny-VL", "revision": SHA, "path": str(snap.resolve())}


# ----------------------------------------------------------------------------- offline, from the cache


def test_offline_resolution_from_a_prepared_cache(tiny_bf16, tmp_path, monkeypatch):
    from headbake.checkpoint import open_checkpoint
    from headbake.model.info import load_model_info

    cache = tmp_path / "hub"
    snap = fake_cache(cache, "someone/Tiny-VL", tiny_bf16)
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("HF_HUB_CACHE", str(cache))
    r = resolve_model("someone/Tiny-VL")  # offline and cache location both read from the environment now
    assert r.path == snap and r.revision == SHA and r.source_id == "someone/Tiny-VL" and not r.is_local
    assert r.license is None  # the Hub cannot be asked offline
    assert load_model_info(r.path).num_layers == 4
    assert len(open_checkpoint(r.path).shards) >= 2
    assert resolve_model("someone/Tiny-VL", revision=SHA).path == snap
    assert cached_snapshot("someone/Tiny-VL") == snap


def test_offline_alias_resolves_to_its_cached_repo(tiny_bf16, tmp_path, monkeypatch):
    cache = tmp_path / "hub"
    snap = fake_cache(cache, "minglingfeng/Ocean_R1_7B_Instruct", tiny_bf16)
    monkeypatch.setenv("HF_HUB_CACHE", str(cache))
    r = resolve_model("ocean-r1", offline=True)
    assert (r.path, r.source_id, r.revision, r.alias) == (snap, "minglingfeng/Ocean_R1_7B_Instruct", SHA, "Ocean-R1")


def test_offline_without_a_cached_snapshot_is_one_clear_line(tiny_bf16, tmp_path, monkeypatch):
    cache = tmp_path / "hub"
    fake_cache(cache, "someone/Tiny-VL", tiny_bf16)
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    with pytest.raises(HeadbakeError) as e:
        resolve_model("someone/Other", cache_dir=cache)
    msg = str(e.value)
    assert "HF_HUB_OFFLINE" in msg and "someone/Other" in msg and str(cache) in msg and "\n" not in msg
    with pytest.raises(HeadbakeError, match="'dev'|dev"):
        resolve_model("someone/Tiny-VL", revision="dev", cache_dir=cache)


# ----------------------------------------------------------------------------- online, against a fake Hub


def _model_files(src: Path) -> dict[str, bytes]:
    return {f.name: f.read_bytes() for f in sorted(src.iterdir()) if f.is_file()}


def test_download_only_what_a_checkpoint_needs_and_record_the_sha(tiny_bf16, tmp_path, online):
    files = _model_files(tiny_bf16)
    files.update({"README.md": b"---\nlicense: mit\n---\n# card\n", "pytorch_model.bin": b"\0" * 64,
                  "onnx/model.onnx": b"\0" * 32, "image.png": b"\x89PNG"})
    cache = tmp_path / "hub"
    with FakeHub() as hub:
        hub.add_repo("org/tiny-vl", "alice", files=files)
        head = hub.head("org/tiny-vl")
        r = resolve_model("org/tiny-vl", endpoint=hub.url, cache_dir=cache, offline=False)
        assert hub.unhandled == []
    assert r.revision == head and r.source_id == "org/tiny-vl" and r.license == "mit" and not r.is_local
    got = sorted(p.name for p in r.path.iterdir())
    # every checkpoint file, but no README, .bin, ONNX, images or the demo builder's own note
    assert got == sorted(n for n in _model_files(tiny_bf16) if n != "headbake_demo.json")
    for name in got:
        assert hashlib.sha256((r.path / name).read_bytes()).digest() == hashlib.sha256(files[name]).digest()
    # the same snapshot now resolves offline, with no server at all
    again = resolve_model("org/tiny-vl", cache_dir=cache, offline=True)
    assert (again.path, again.revision) == (r.path, head)


def test_remote_code_files_come_only_with_auto_map(tmp_path, online):
    config = {"model_type": "kimi_vl", "auto_map": {"AutoModelForCausalLM": "modeling_kimi_vl.KimiVL"}}
    files = {"config.json": json.dumps(config).encode(), "model.safetensors": b"\x08\0\0\0\0\0\0\0{}      ",
             "modeling_kimi_vl.py": b"# remote code\n", "tiktoken.model": b"tok"}
    with FakeHub() as hub:
        hub.add_repo("moon/kimi-like", "alice", files=files)
        r = resolve_model("moon/kimi-like", endpoint=hub.url, cache_dir=tmp_path / "a", offline=False)
        assert {"modeling_kimi_vl.py", "tiktoken.model"} <= {p.name for p in r.path.iterdir()}
        r = resolve_model("moon/kimi-like", endpoint=hub.url, cache_dir=tmp_path / "b", offline=False,
                          trust_remote_code=False)
        assert "modeling_kimi_vl.py" not in {p.name for p in r.path.iterdir()}


def test_hub_errors_are_one_line_each(tiny_bf16, tmp_path, online):
    with FakeHub() as hub:
        hub.add_repo("org/tiny-vl", "alice", files=_model_files(tiny_bf16))
        hub.add_repo("carol/private-vl", "carol", private=True, files={"config.json": b"{}"})
        cases = [
            (dict(name="org/tiny-vl", revision="no-such-branch"), "revision 'no-such-branch' not found in org/tiny-vl"),
            (dict(name="org/missing"), "model 'org/missing' not found"),
            (dict(name="carol/private-vl"), "model 'carol/private-vl' not found"),
        ]
        for kw, expected in cases:
            with pytest.raises(HeadbakeError) as e:
                resolve_model(endpoint=hub.url, cache_dir=tmp_path / "c", offline=False, **kw)
            assert expected in str(e.value) and "\n" not in str(e.value)


def test_network_unreachable_without_cache_and_with_cache(tiny_bf16, tmp_path, online):
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    dead = f"http://127.0.0.1:{s.getsockname()[1]}"
    s.close()  # nothing listens there now
    with pytest.raises(HeadbakeError) as e:
        resolve_model("org/tiny-vl", endpoint=dead, cache_dir=tmp_path / "empty", offline=False)
    assert f"cannot reach {dead}" in str(e.value) and "not in the cache" in str(e.value)
    snap = fake_cache(tmp_path / "hub", "org/tiny-vl", tiny_bf16)
    r = resolve_model("org/tiny-vl", endpoint=dead, cache_dir=tmp_path / "hub", offline=False)
    assert r.path == snap and r.revision == SHA  # falls back to the cached snapshot


# ----------------------------------------------------------------------------- demo and `headbake models`


def test_demo_is_built_once_and_cached(tmp_path, monkeypatch):
    import headbake.demo

    calls = []

    def fake_build(out, **kw):
        calls.append(Path(out))
        out = Path(out)
        out.mkdir(parents=True)
        (out / "config.json").write_text('{"model_type": "qwen2_5_vl"}')
        (out / "headbake_demo.json").write_text("{}")
        return out

    monkeypatch.setenv("HEADBAKE_HOME", str(tmp_path / "home"))
    monkeypatch.setattr(headbake.demo, "build_tiny_qwen25vl", fake_build)
    first = resolve_model("demo", progress=False)
    second = resolve_model("DEMO", progress=False)
    assert first.path == second.path and len(calls) == 1
    assert first.path.is_relative_to(tmp_path / "home")
    assert (first.source_id, first.is_local, first.license, first.alias) == ("demo", True, "apache-2.0", "demo")
    with pytest.raises(HeadbakeError, match="--revision does not apply"):
        resolve_model("demo", revision="main")


def test_models_command_lists_aliases_with_architectures(tiny_bf16, tmp_path, monkeypatch):
    from headbake.cli import main

    monkeypatch.setenv("HF_HUB_CACHE", str(tmp_path / "hub"))
    monkeypatch.setenv("HEADBAKE_HOME", str(tmp_path / "home"))
    fake_cache(tmp_path / "hub", "Fancy-MLLM/R1-Onevision-7B", tiny_bf16)
    res = CliRunner().invoke(main, ["models"])
    assert res.exit_code == 0, res.output
    lines = res.output.splitlines()
    assert lines[0].split() == ["ALIAS", "REPO", "ARCHITECTURE", "CACHED", "NOTE"]
    row = {ln.split()[0]: ln for ln in lines[1:]}
    assert "minglingfeng/Ocean_R1_7B_Instruct" in row["Ocean-R1"] and "Qwen2.5-VL (qwen2_5_vl)" in row["Ocean-R1"]
    assert "moonshotai/Kimi-VL-A3B-Thinking " in row["Kimi-VL"] and "Kimi-VL (kimi_vl)" in row["Kimi-VL"]
    assert "moonshotai/Kimi-VL-A3B-Thinking-2506" in row["Kimi-VL-2506"]
    res = CliRunner().invoke(main, ["models", "--json"])
    table = {r["alias"]: r for r in json.loads(res.output)}
    assert table["R1-Onevision"]["cached"] is True and table["Ocean-R1"]["cached"] is False
    assert table["Kimi-VL"]["remote_code"] is True and table["demo"]["cached"] is False
