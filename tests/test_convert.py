"""headbake convert on the built-in demo: the whole pipeline, resume, failure handling, push, stock loading."""

from __future__ import annotations

import hashlib
import json
import subprocess
import sys
from pathlib import Path

import pytest
import yaml
from click.testing import CliRunner

from headbake.cli import main

sys.path.insert(0, str(Path(__file__).parent))
from hubserver import FakeHub  # noqa: E402

TOKEN = "hf_ConvertTestToken0123456789abcd"
FAST = ["--samples", "8", "--verify-samples", "2", "-q"]


def run(*args):
    return CliRunner().invoke(main, [str(a) for a in args], catch_exceptions=False)


@pytest.fixture(scope="module")
def home(tmp_path_factory):
    with pytest.MonkeyPatch.context() as mp:
        home = tmp_path_factory.mktemp("headbake-home")
        mp.setenv("HEADBAKE_HOME", str(home))
        yield home


@pytest.fixture(scope="module")
def converted(home, tmp_path_factory):
    out = tmp_path_factory.mktemp("convert") / "demo-headbake"
    r = run("convert", "demo", "--preset", "default", "--out", out, *FAST)
    assert r.exit_code == 0, r.output
    return out, r.output


def test_convert_demo_end_to_end(converted, home):
    out, output = converted
    assert "converted:" in output and "verify:" in output
    from headbake.hub import demo_dir

    src = demo_dir()
    src_files = {p.name for p in src.iterdir()}
    assert {p.name for p in out.iterdir()} == src_files | {"headbake.json", "README.md", "headbake_heatmap.png"}
    rec = json.loads((out / "headbake.json").read_text())
    assert rec["verification"]["passed"] and rec["verification"]["tensor"]["passed"]
    assert rec["gains"]["preset"]["name"] == "demo" and rec["gains"]["preset"]["requested"] == "default"
    assert rec["gains"]["samples"] == 8 and rec["reproduce"].splitlines()[1].startswith("headbake convert demo --preset default")
    # every weight file's sha256 was recorded by verify's streaming pass
    for name in [n for n in src_files if n.endswith(".safetensors")]:
        assert rec["files"][name]["source_sha256"] == hashlib.sha256((src / name).read_bytes()).hexdigest()
        assert rec["files"][name]["sha256"] == hashlib.sha256((out / name).read_bytes()).hexdigest()
    card = (out / "README.md").read_text()
    meta = yaml.safe_load(card.split("---")[1])
    assert meta["library_name"] == "transformers" and meta["pipeline_tag"] == "image-text-to-text"
    assert "headbake" in meta["tags"] and "2510.10285" in card and "from_pretrained" in card
    assert (out / "headbake_heatmap.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert f'model_id = "{out.name}"' in card  # the output's own name, not the work folder's
    # the work folder keeps only convert's cache keys (never published), nothing large
    work = out.parent / ".demo-headbake.headbake-work"
    assert sorted(p.name for p in work.iterdir()) == [".lock", "state.json"]
    assert "state.json" not in {p.name for p in out.iterdir()}


def test_rerun_reuses_every_stage(converted):
    out, _ = converted
    before = (out / "headbake.json").stat().st_mtime_ns
    r = run("convert", "demo", "--preset", "default", "--out", out, *FAST)
    assert r.exit_code == 0 and "up to date" in r.output
    assert (out / "headbake.json").stat().st_mtime_ns == before


def test_changed_inputs_need_overwrite(converted):
    out, _ = converted
    r = run("convert", "demo", "--preset", "default", "--g-perc", "1.2", "--out", out, *FAST)
    assert r.exit_code == 2 and "pass --overwrite" in r.output


def test_verification_failure_stops_before_output_and_push(home, tmp_path, monkeypatch):
    from huggingface_hub import constants

    import headbake.pipeline as verify_mod  # convert calls run_verify through the pipeline

    real = verify_mod.run_verify

    def failing(*a, **k):
        rep = real(*a, **{**k, "tensors_only": True})
        rep["passed"] = False
        rep["summary"] = ["model: FAILED (forced by the test)"]
        return rep

    monkeypatch.setattr(verify_mod, "run_verify", failing)
    monkeypatch.setenv("HF_TOKEN", TOKEN)
    monkeypatch.setenv("HF_HUB_OFFLINE", "0")
    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", False)  # as if huggingface_hub had been imported online
    hub = FakeHub(tokens={TOKEN: "alice"})
    hub.start()
    try:
        out = tmp_path / "o"
        r = run("convert", "demo", "--out", out, "--push-to-hub", "alice/x", "--endpoint", hub.url, *FAST)
        assert r.exit_code == 1 and "verification failed" in r.output and "nothing was published" in r.output
        assert not out.exists()
        assert not [q for q in hub.requests if "/commit/" in q.path or "repos/create" in q.path]
        work = tmp_path / ".o.headbake-work"
        assert (work / "heads.json").is_file() and (work / "baked" / "headbake.json").is_file()
    finally:
        hub.stop()


def test_convert_pushes_one_commit_to_the_hub(converted, home, tmp_path, monkeypatch):
    from huggingface_hub import constants

    monkeypatch.setenv("HF_HUB_OFFLINE", "0")
    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", False)  # as if huggingface_hub had been imported online
    monkeypatch.setenv("HF_TOKEN", TOKEN)
    monkeypatch.setattr(constants, "HF_TOKEN_PATH", str(tmp_path / "no-stored-token"))
    out, _ = converted
    hub = FakeHub(tokens={TOKEN: "alice"})
    hub.start()
    try:
        r = run("convert", "demo", "--preset", "default", "--out", out, "--push-to-hub", "alice/demo-headbake",
                "--private", "--endpoint", hub.url, *FAST)
        assert r.exit_code == 0, r.output
        assert "pushed:" in r.output and TOKEN not in r.output
        repo = hub.repos["alice/demo-headbake"]
        head = repo.commits[repo.branches["main"]]
        files = head.files
        # one commit on top of the repo's creation commit carries weights and card together
        assert repo.private and not any(f.endswith(".safetensors") for f in repo.commits[head.parent].files)
        for p in out.glob("*.safetensors"):
            assert files[p.name].lfs and files[p.name].oid == hashlib.sha256(p.read_bytes()).hexdigest()
        assert "README.md" in files and "headbake.json" in files
        # the card that went up (and the local one, rewritten after the push) names the repo
        assert 'model_id = "alice/demo-headbake"' in hub.file_bytes("alice/demo-headbake", "README.md").decode()
        assert 'model_id = "alice/demo-headbake"' in (out / "README.md").read_text()
    finally:
        hub.stop()


STOCK_LOAD = r"""
import sys, importlib.abc
class Block(importlib.abc.MetaPathFinder):
    def find_spec(self, name, path=None, target=None):
        if name == "headbake" or name.startswith("headbake."):
            raise ImportError("headbake is deliberately not importable here")
sys.meta_path.insert(0, Block())
try:
    import headbake  # noqa
    sys.exit("headbake was importable")
except ImportError:
    pass
import torch
from PIL import Image, ImageDraw
from transformers import AutoModelForImageTextToText, AutoProcessor
path = sys.argv[1]
model = AutoModelForImageTextToText.from_pretrained(path)
processor = AutoProcessor.from_pretrained(path)
img = Image.new("RGB", (160, 120), "white")
ImageDraw.Draw(img).ellipse([40, 30, 90, 80], fill="red")
messages = [{"role": "user", "content": [{"type": "image"}, {"type": "text", "text": "How many circles?"}]}]
text = processor.apply_chat_template(messages, add_generation_prompt=True)
inputs = processor(text=[text], images=[img], return_tensors="pt")
assert (inputs["input_ids"] == model.config.image_token_id).sum() > 0
out = model.generate(**inputs, max_new_tokens=6, min_new_tokens=6, do_sample=False)
print("GENERATED", out[0, inputs["input_ids"].shape[1]:].tolist())
"""


def test_baked_output_loads_and_generates_without_headbake(converted):
    out, _ = converted
    p = subprocess.run([sys.executable, "-c", STOCK_LOAD, str(out)], capture_output=True, text=True, timeout=300,
                       env={"PATH": "/usr/bin:/bin", "HF_HUB_OFFLINE": "1", "HOME": str(out.parent)})
    assert p.returncode == 0, p.stderr[-2000:]
    tokens = json.loads(p.stdout.split("GENERATED", 1)[1])
    assert len(tokens) == 6


def test_unknown_alias_suggests_the_nearest(home, tmp_path):
    r = run("convert", "Ocean-R2", "--out", tmp_path / "o", "-q")
    assert r.exit_code == 2 and "Ocean-R1" in r.output and len(r.output.strip().splitlines()) == 1
    assert not (tmp_path / "o").exists()


def test_push_without_token_fails_before_any_work(home, tmp_path, monkeypatch):
    from huggingface_hub import constants

    monkeypatch.delenv("HF_TOKEN", raising=False)
    monkeypatch.setenv("HF_HUB_OFFLINE", "0")
    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", False)  # as if huggingface_hub had been imported online
    monkeypatch.setattr(constants, "HF_TOKEN_PATH", str(tmp_path / "no-stored-token"))
    r = run("convert", "demo", "--out", tmp_path / "o", "--push-to-hub", "alice/x", "-q")
    assert r.exit_code == 3 and "token" in r.output.lower()
    assert not (tmp_path / "o").exists() and not (tmp_path / ".o.headbake-work").exists()


def test_push_target_is_checked_before_any_work(home, tmp_path, monkeypatch):
    monkeypatch.setenv("HF_TOKEN", TOKEN)
    monkeypatch.setenv("HF_HUB_OFFLINE", "0")
    r = run("convert", "demo", "--out", tmp_path / "o", "--push-to-hub", "not a repo", "-q")
    assert r.exit_code == 2 and "invalid repo id" in r.output
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    r = run("convert", "demo", "--out", tmp_path / "o", "--push-to-hub", "alice/x", "-q")
    assert r.exit_code == 3 and "HF_HUB_OFFLINE" in r.output
    assert not (tmp_path / "o").exists() and not (tmp_path / ".o.headbake-work").exists()


def test_damaged_output_is_not_reused(converted, tmp_path):
    import shutil

    out = tmp_path / "copy"
    shutil.copytree(converted[0], out)
    shard = sorted(out.glob("model-*.safetensors"))[-1]
    data = bytearray(shard.read_bytes())
    data[-100:] = bytes(100)
    shard.write_bytes(bytes(data))
    r = run("convert", "demo", "--preset", "default", "--out", out, *FAST)
    assert r.exit_code == 2 and "up to date" not in r.output and "--overwrite" in r.output


def test_changed_source_files_are_not_reused(home, tmp_path):
    import shutil

    from headbake.hub import ensure_demo

    src = tmp_path / "src"
    shutil.copytree(ensure_demo(progress=False), src)
    out = tmp_path / "o"
    assert run("convert", src, "--out", out, *FAST).exit_code == 0
    assert "up to date" in run("convert", src, "--out", out, *FAST).output
    tpl = src / "chat_template.jinja"
    tpl.write_text(tpl.read_text().replace("You are a helpful assistant.", "You are a careful assistant."))
    r = run("convert", src, "--out", out, *FAST)
    assert r.exit_code == 2 and "up to date" not in r.output


def test_bad_options_and_occupied_output_fail_before_resolving(home, tmp_path, monkeypatch):
    import headbake.hub as resolve_mod

    def no_resolve(*a, **k):
        raise AssertionError("resolve_model must not run")

    monkeypatch.setattr(resolve_mod, "resolve_model", no_resolve)
    occupied = tmp_path / "occupied"
    occupied.mkdir()
    (occupied / "mine.txt").write_text("x")
    for args, match in ((["--out", occupied], "pass --overwrite"),
                        (["--out", tmp_path / "o", "--device", "foo"], "unknown --device"),
                        (["--out", tmp_path / "o", "--samples", "0"], "0 is not in the range x>=1")):
        r = run("convert", "Ocean-R1", *args, "-q")
        assert r.exit_code == 2 and match in r.output, r.output
    assert (occupied / "mine.txt").read_text() == "x"


def test_published_files_name_no_local_path(converted, home):
    out, _ = converted
    from headbake.record import local_paths

    for name in ("README.md", "headbake.json"):
        text = (out / name).read_text()
        assert str(out.parent) not in text and str(home) not in text and str(Path.home()) not in text
        assert not local_paths(text), (name, local_paths(text))
    rec = json.loads((out / "headbake.json").read_text())
    assert rec["source"]["id"] == "demo" and "path" not in rec["source"]
    assert rec["settings"]["preset"] == "default" and rec["settings"]["samples"] == 8
    assert "convert_key" not in rec and "convert_stamps" not in rec and "bake_key" not in rec


def test_card_command_rerenders_the_same_card(converted, tmp_path):
    import shutil

    out, _ = converted
    copy = tmp_path / "demo-headbake"
    shutil.copytree(out, copy)
    from headbake.model_cards.render import card_repo_marker

    repo = card_repo_marker((out / "README.md").read_text())  # another test may have pushed it
    (copy / "README.md").unlink()
    r = run("card", copy, *(["--repo-id", repo] if repo else []))
    assert r.exit_code == 0, r.output
    assert (copy / "README.md").read_text() == (out / "README.md").read_text()
    (copy / "headbake.json").unlink()
    r = CliRunner().invoke(main, ["card", str(copy)])
    assert r.exit_code == 2 and "has no headbake.json" in r.output


def test_dry_run_and_json(converted, home):
    out, _ = converted
    r = run("convert", "demo", "--preset", "default", "--out", out, *FAST, "--dry-run", "--json")
    assert r.exit_code == 0, r.output
    plan = json.loads(r.stdout)
    assert plan["stages_cached"] == ["calibrate", "bake", "verify"] and plan["source"]["id"] == "demo"
    assert plan["weights_bytes"] > 0
    r = run("convert", "demo", "--preset", "default", "--out", out, *FAST, "--json")
    doc = json.loads(r.stdout)
    assert doc["reused"] is True and doc["record"]["verification"]["passed"]


def test_gains_file_and_verify_modes(converted, tmp_path, home):
    out, _ = converted
    r = run("convert", "demo", "--gains", out / "headbake.json", "--verify", "tensors", "-o", tmp_path / "t", "-q")
    assert r.exit_code == 0, r.output
    rec = json.loads((tmp_path / "t" / "headbake.json").read_text())
    assert rec["verification"]["passed"] and rec["verification"]["model"] is None
    assert rec["gains"]["gains"] == json.loads((out / "headbake.json").read_text())["gains"]["gains"]
    assert "headbake convert demo --gains headbake.json --verify tensors -o t" in rec["reproduce"]
    assert "tensor level only" in (tmp_path / "t" / "README.md").read_text()
    r = run("convert", "demo", "--gains", out / "headbake.json", "--verify", "none", "-o", tmp_path / "n", "-q")
    assert r.exit_code == 0, r.output
    rec = json.loads((tmp_path / "n" / "headbake.json").read_text())
    assert rec["verification"] is None
    assert "not been verified" in (tmp_path / "n" / "README.md").read_text()


def test_gains_from_a_baked_dir_and_ignored_flags_refused(converted, tmp_path, home):
    out, _ = converted
    r = run("convert", "demo", "--gains", out, "--verify", "none", "-o", tmp_path / "d", "-q")
    assert r.exit_code == 0, r.output  # a baked directory's gains, as the help says
    r = CliRunner().invoke(main, ["convert", "demo", "--gains", str(out), "--samples", "4", "-o", str(tmp_path / "e")])
    assert r.exit_code == 2 and "--samples would be ignored" in r.output
    assert not (tmp_path / "e").exists()


def test_reuse_keeps_each_stage_key(converted, home):
    out, _ = converted
    state = out.parent / ".demo-headbake.headbake-work" / "state.json"
    before = json.loads(state.read_text())
    r = run("convert", "demo", "--preset", "default", "--out", out, *FAST, "--json")
    assert json.loads(r.stdout)["reused"] is True
    after = json.loads(state.read_text())
    assert {k: after[k] for k in ("calibrate", "bake", "verify")} == {k: before[k] for k in ("calibrate", "bake",
                                                                                              "verify")}
    assert len({after["calibrate"], after["bake"], after["verify"]}) == 3
