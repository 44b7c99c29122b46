"""Path safety: names read from inputs stay inside their folder, links out are refused, the token never leaks."""

from __future__ import annotations

import hashlib
import json
import os
import shutil
from pathlib import Path

import pytest
from click.testing import CliRunner

from builders import write_gains
from headbake.checkpoint import INDEX_NAME, open_checkpoint
from headbake.cli import main
from headbake.errors import HeadbakeError
from headbake.model.info import load_model_info
from headbake.safepaths import check_no_token, hf_tokens, safe_member

CANARY = "hf_CANARYcanaryCANARYcanary0123456789"


def run(*args):
    return CliRunner().invoke(main, [str(a) for a in args], catch_exceptions=False)


def tree(d: Path) -> dict[str, bytes]:
    return {p.relative_to(d).as_posix(): p.read_bytes() for p in sorted(d.rglob("*")) if p.is_file()}


@pytest.fixture
def src(tiny_bf16, tmp_path):
    out = tmp_path / "src"
    shutil.copytree(tiny_bf16, out)
    return out


@pytest.fixture
def gains(src, tmp_path):
    return write_gains(tmp_path / "gains.json", load_model_info(src), {(0, 1): 1.2, (3, 0): 1.3})


def shards(src: Path) -> list[Path]:
    return sorted(src.glob("model-*.safetensors"))


# ----------------------------------------------------------------------------- names


@pytest.mark.parametrize("name", [
    "../x.safetensors", "a/../../x", "/etc/passwd", "a\0b", "", "a\\b", ".", "..", "a//b", "./a", "a/./b", "a/",
    5, None, ["a"],
])
def test_bad_names_refused(tmp_path, name):
    with pytest.raises(HeadbakeError) as e:
        safe_member(tmp_path, name)
    assert "\n" not in str(e.value)


def test_plain_names(tmp_path):
    assert safe_member(tmp_path, "model-00001-of-00002.safetensors", plain=True) == \
        tmp_path / "model-00001-of-00002.safetensors"
    assert safe_member(tmp_path, "sub/dir/file.json") == tmp_path / "sub" / "dir" / "file.json"
    with pytest.raises(HeadbakeError, match="not a plain file name"):
        safe_member(tmp_path, "sub/file.safetensors", plain=True)


def test_record_and_push_names_use_the_same_rule(tmp_path):
    """The names a record's ``files`` or a push list carry go through ``safe_member`` too."""
    (tmp_path / "outside").write_text("x")
    folder = tmp_path / "baked"
    folder.mkdir()
    (folder / "ok.json").write_text("{}")
    (folder / "link").symlink_to(tmp_path / "outside")
    for name in ["../outside", str(tmp_path / "outside"), "link"]:
        with pytest.raises(HeadbakeError):
            safe_member(folder, name, what="headbake.json file")
    assert safe_member(folder, "ok.json").is_file()


# ----------------------------------------------------------------------------- the index


def _retarget_index(src: Path, target: str) -> None:
    """Point every tensor of the first shard at ``target`` (a copy of that shard placed there)."""
    index = json.loads((src / INDEX_NAME).read_text())
    first = shards(src)[0].name
    index["weight_map"] = {k: (target if v == first else v) for k, v in index["weight_map"].items()}
    (src / INDEX_NAME).write_text(json.dumps(index))


@pytest.mark.parametrize("how", ["relative", "absolute"])
def test_index_cannot_name_a_shard_outside_the_folder(src, gains, tmp_path, how):
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    shutil.copy(shards(src)[0], elsewhere / "shard.safetensors")
    target = "../elsewhere/shard.safetensors" if how == "relative" else str(elsewhere / "shard.safetensors")
    _retarget_index(src, target)
    before = tree(tmp_path)
    r = run("bake", src, "--gains", gains, "--out", tmp_path / "out" / "baked", "-q")
    assert r.exit_code == 2, r.output
    assert r.output.startswith("Error: ") and r.output.count("\n") == 1 and "shard.safetensors" in r.output
    assert tree(tmp_path) == before  # nothing read into an output, nothing written anywhere
    with pytest.raises(HeadbakeError, match="shard"):
        open_checkpoint(src)


@pytest.mark.parametrize("bad", ["a\0b.safetensors", "", 7, None, "sub/x.safetensors"])
def test_index_shard_names_must_be_plain(src, bad):
    _retarget_index(src, bad)
    with pytest.raises(HeadbakeError, match=INDEX_NAME):
        open_checkpoint(src)


def test_tensor_in_two_shards_refused(src):
    a, b = shards(src)[:2]
    from safetensors import safe_open
    from safetensors.torch import save_file

    with safe_open(str(b), "pt") as f:
        tensors = {k: f.get_tensor(k) for k in f.keys()}
        meta = f.metadata()
    with safe_open(str(a), "pt") as f:
        k = next(iter(f.keys()))
        tensors[k] = f.get_tensor(k)
    save_file(tensors, str(b), metadata=meta)
    with pytest.raises(HeadbakeError, match="in two shards"):
        open_checkpoint(src)


# ----------------------------------------------------------------------------- symlinks


@pytest.mark.parametrize("what", ["tokenizer_extra.txt", "weights"])
def test_links_out_of_the_folder_refused(src, gains, tmp_path, what):
    outside = tmp_path / "outside"
    outside.mkdir()
    if what == "weights":
        shard = shards(src)[0]
        shutil.move(shard, outside / shard.name)
        shard.symlink_to(outside / shard.name)
    else:
        (outside / "secret.txt").write_text("not part of the model")
        (src / what).symlink_to(outside / ("secret.txt"))
    r = run("bake", src, "--gains", gains, "--out", tmp_path / "baked", "-q")
    assert r.exit_code == 2 and "refusing to follow it" in r.output and r.output.count("\n") == 1, r.output
    assert not (tmp_path / "baked").exists() and not list(tmp_path.glob(".baked.*"))


def test_links_inside_the_folder_are_fine(src, gains, tmp_path):
    (src / "sub").mkdir()
    (src / "sub" / "notes.txt").write_text("notes")
    (src / "notes.txt").symlink_to("sub/notes.txt")
    r = run("bake", src, "--gains", gains, "--out", tmp_path / "baked", "-q")
    assert r.exit_code == 0, r.output
    assert (tmp_path / "baked" / "notes.txt").read_text() == "notes"


def _hub_snapshot(model: Path, cache: Path) -> Path:
    """The model laid out as huggingface_hub caches it: snapshots/<sha>/* are links into ../../blobs."""
    repo = cache / "models--org--tiny"
    blobs, snap = repo / "blobs", repo / "snapshots" / ("a" * 40)
    blobs.mkdir(parents=True)
    snap.mkdir(parents=True)
    for p in sorted(model.rglob("*")):
        if p.is_file():
            rel = p.relative_to(model)
            digest = hashlib.sha256(p.read_bytes()).hexdigest()
            shutil.copy(p, blobs / digest)
            (snap / rel).parent.mkdir(parents=True, exist_ok=True)
            (snap / rel).symlink_to(os.path.relpath(blobs / digest, (snap / rel).parent))
    return snap


def test_hub_cache_snapshot_links_into_its_blob_store_are_fine(tiny_bf16, gains, tmp_path):
    snap = _hub_snapshot(tiny_bf16, tmp_path / "hub")
    assert all(p.is_symlink() for p in snap.iterdir())
    r = run("bake", snap, "--gains", gains, "--out", tmp_path / "baked", "-q")
    assert r.exit_code == 0, r.output
    out = tmp_path / "baked"
    assert not any(p.is_symlink() for p in out.rglob("*"))
    assert (out / "config.json").read_bytes() == (tiny_bf16 / "config.json").read_bytes()


def test_hub_cache_snapshot_link_to_another_repo_refused(tiny_bf16, tmp_path):
    snap = _hub_snapshot(tiny_bf16, tmp_path / "hub")
    other = tmp_path / "hub" / "models--org--other" / "blobs"
    other.mkdir(parents=True)
    (other / "x").write_text("{}")
    (snap / "extra.json").symlink_to(os.path.relpath(other / "x", snap))
    with pytest.raises(HeadbakeError, match="outside .* and its Hub-cache blob store"):
        open_checkpoint(snap)


# ----------------------------------------------------------------------------- the token


@pytest.fixture
def canary_home(tmp_path, monkeypatch):
    home = tmp_path / "hf-home"
    home.mkdir()
    (home / "token").write_text(CANARY)
    monkeypatch.setenv("HF_HOME", str(home))
    monkeypatch.setenv("HF_TOKEN", CANARY)
    monkeypatch.delenv("HF_TOKEN_PATH", raising=False)
    return home


def test_hf_tokens_finds_env_and_file(canary_home, monkeypatch):
    assert hf_tokens() == [CANARY]
    monkeypatch.delenv("HF_TOKEN")
    assert CANARY in hf_tokens()  # from $HF_HOME/token alone


def _assert_no_canary(tmp_path: Path, home: Path, *texts: str):
    for p in tmp_path.rglob("*"):
        if p.is_file() and home not in p.parents and not p.is_symlink():
            assert CANARY.encode() not in p.read_bytes(), p
    for t in texts:
        assert CANARY not in t


@pytest.mark.parametrize("how", ["symlink", "copy"])
def test_canary_token_never_reaches_the_output(src, gains, tmp_path, canary_home, caplog, capfd, how):
    if how == "symlink":
        (src / "notes.txt").symlink_to(canary_home / "token")  # a link to the token file
    else:
        shutil.copy(canary_home / "token", src / "notes.txt")  # the token copied into the folder
    r = run("bake", src, "--gains", gains, "--out", tmp_path / "baked")
    assert r.exit_code == 2, r.output
    assert "notes.txt" in r.output and r.output.count("\n") == 1
    assert not (tmp_path / "baked").exists()
    cap = capfd.readouterr()
    if how == "copy":
        (src / "notes.txt").unlink()  # the source itself holds it; the check below is for what headbake wrote
    _assert_no_canary(tmp_path, canary_home, r.output, str(r.exception or ""), caplog.text, cap.out, cap.err)


def test_check_no_token_scans_across_chunks(tmp_path, canary_home, monkeypatch):
    import headbake.safepaths as sp

    monkeypatch.setattr(sp, "_CHUNK", 16)
    (tmp_path / "big.txt").write_bytes(b"x" * 37 + CANARY.encode() + b"y" * 50)
    (tmp_path / "clean.txt").write_bytes(b"x" * 200)
    check_no_token(tmp_path, ["clean.txt"])
    with pytest.raises(HeadbakeError, match="big.txt holds your Hugging Face token") as e:
        check_no_token(tmp_path, ["clean.txt", "big.txt"])
    assert CANARY not in str(e.value)


def test_canary_through_convert_and_push(src, gains, tmp_path, canary_home, caplog, capfd, monkeypatch):
    """The canary is the real credential here: it authenticates the push, yet reaches no file, upload or log."""
    import sys

    from huggingface_hub import constants

    sys.path.insert(0, str(Path(__file__).parent))
    from hubserver import FakeHub

    monkeypatch.setenv("HF_HUB_OFFLINE", "0")
    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", False)
    monkeypatch.setattr(constants, "HF_TOKEN_PATH", str(canary_home / "token"))
    hub = FakeHub(tokens={CANARY: "alice"})
    hub.start()
    try:
        out = tmp_path / "out"
        r = run("convert", src, "--gains", gains, "--verify", "tensors", "-o", out, "--push-to-hub", "alice/m",
                "--endpoint", hub.url, "-q")
        assert r.exit_code == 0, r.output
        uploaded = [hub.file_bytes("alice/m", f) for f in hub.tree("alice/m", "main")]
        assert uploaded and not any(CANARY.encode() in b for b in uploaded)

        # a token planted in the baked folder after the bake: the push refuses before any upload
        commits = len(hub.commits("alice/m"))
        shutil.copy(canary_home / "token", out / "notes.txt")
        r = run("push", out, "alice/m", "--endpoint", hub.url)
        assert r.exit_code == 2 and "notes.txt" in r.output, r.output
        assert len(hub.commits("alice/m")) == commits
        (out / "notes.txt").unlink()

        # a source that links to the token file: convert refuses before anything is written or pushed
        (src / "notes.txt").symlink_to(canary_home / "token")
        r = run("convert", src, "--gains", gains, "--verify", "tensors", "-o", tmp_path / "out2",
                "--push-to-hub", "alice/m2", "--endpoint", hub.url, "-q")
        assert r.exit_code == 2 and "notes.txt" in r.output, r.output
        assert "alice/m2" not in hub.repos and not (tmp_path / "out2").exists()
        assert not list(tmp_path.glob(".out2.headbake-work*"))  # a refusal before work creates nothing
        cap = capfd.readouterr()
        _assert_no_canary(tmp_path, canary_home, r.output, caplog.text, cap.out, cap.err)
    finally:
        hub.stop()
