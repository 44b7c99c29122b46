"""Pushing a baked directory with the real huggingface_hub client against a fake Hub on 127.0.0.1."""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import socket
import subprocess
import sys
from pathlib import Path

import pytest
from click.testing import CliRunner
from huggingface_hub import ModelCard

import headbake.hub.push as hubmod
from headbake.cli import main
from headbake.errors import HeadbakeError
from headbake.hub import check_publishable, folder_files, publish, push_folder, scrub, xet_allowed
from headbake.model_cards.render import render_card

sys.path.insert(0, str(Path(__file__).parent))
from hubserver import FakeHub  # noqa: E402

# huggingface_hub 2.4's LFS PUT passes a file object as ``data=``; httpx2 warns about it, not our code.
pytestmark = pytest.mark.filterwarnings("ignore:Use 'content=<...>':DeprecationWarning")

TOKEN = "hf_TestWriteToken0123456789abcdef"
OTHER = "hf_BobsToken9876543210fedcba"
SRC_SHA = "4f2e8c1d9b7a6e5f4c3b2a1908f7e6d5c4b3a291"


def sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


@pytest.fixture
def env(monkeypatch, tmp_path):
    """Online, a token in HF_TOKEN, no stored login, xet left to push's own decision, fast retries."""
    from huggingface_hub import constants

    monkeypatch.setenv("HF_HUB_OFFLINE", "0")
    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", False)  # conftest imported huggingface_hub offline
    monkeypatch.setenv("HF_TOKEN", TOKEN)
    monkeypatch.delenv("HF_ENDPOINT", raising=False)
    monkeypatch.delenv("HF_HUB_DISABLE_XET", raising=False)
    monkeypatch.setattr(constants, "HF_TOKEN_PATH", str(tmp_path / "no-stored-token"))
    monkeypatch.setattr(hubmod, "RETRY_WAIT", 0.01)
    monkeypatch.setattr(hubmod, "TIMEOUT", 30.0)
    assert constants.HF_HUB_DISABLE_XET is False  # hf_xet is installed: push itself must keep it off here
    return monkeypatch


@pytest.fixture
def hub():
    server = FakeHub(tokens={TOKEN: "alice", OTHER: "bob"})
    server.start()
    try:
        yield server
    finally:
        server.stop()


def make_baked(src: Path, out: Path, verification: dict | None | str = "passed") -> Path:
    """A folder shaped like `headbake bake` output: the tiny model's files, headbake.json and a card."""
    shutil.copytree(src, out)
    config = json.loads((out / "config.json").read_text())
    tc = config.get("text_config", config)
    layers, heads = tc["num_hidden_layers"], tc["num_attention_heads"]
    gains = [[1.0] * heads for _ in range(layers)]
    gains[0][1], gains[layers - 1][0] = 1.16, 1.3
    files = {p.name: {"size": p.stat().st_size, "sha256": sha256(p.read_bytes()), "source_sha256": None}
             for p in sorted(out.iterdir()) if p.is_file()}
    if verification == "passed":
        verification = {"passed": True, "tensor": {"passed": True, "files_compared": len(files), "tensors": 80,
                                                   "edited_tensors": 2, "edited_bit_exact": 2, "problems": []},
                        "model": None}
    record = {
        "format": "headbake.baked/v1", "headbake_version": "0.1.0", "torch_version": "2", "transformers_version": "5",
        "created": "2026-05-01T00:00:00+00:00",
        "source": {"id": "someone/Tiny-VL", "revision": SRC_SHA, "license": "apache-2.0"},
        "model": {"model_type": "qwen2_5_vl", "num_layers": layers, "num_heads": heads, "head_dim": 16},
        "gains": {"format": "headbake.gains/v1", "num_layers": layers, "num_heads": heads, "head_dim": 16,
                  "gains": gains},
        "edited": [], "files": files, "verification": verification, "command": None,
    }
    (out / "headbake.json").write_text(json.dumps(record, indent=2))
    render_card(out, record)
    return out


@pytest.fixture
def baked(tiny_bf16, tmp_path):
    return make_baked(tiny_bf16, tmp_path / "Tiny-VL-headbake")


def push_cli(*args, env_extra=None):
    res = CliRunner().invoke(main, ["push", *map(str, args)], catch_exceptions=False)
    return res


# ----------------------------------------------------------------------------- the happy path


def test_push_uploads_everything_in_one_commit(baked, hub, env):
    res = push_cli(baked, "alice/Tiny-VL-headbake", "--endpoint", hub.url)
    assert res.exit_code == 0, res.output
    assert "Pushed" in res.output and "alice/Tiny-VL-headbake" in res.output
    assert hub.unhandled == []
    commits = hub.commits("alice/Tiny-VL-headbake")
    assert len(commits) == 2 and commits[-1].summary == "initial commit"  # weights and card came together
    assert commits[0].summary == "headbake: someone/Tiny-VL with rescaled attention heads"
    tree = hub.tree("alice/Tiny-VL-headbake")
    local = folder_files(baked)
    assert sorted(set(tree) - {".gitattributes"}) == sorted(local)
    for rel in local:
        assert sha256(hub.file_bytes("alice/Tiny-VL-headbake", rel)) == sha256((baked / rel).read_bytes()), rel
    weights = [p for p in local if p.endswith(".safetensors")]
    assert len(weights) >= 2 and all(tree[p].lfs for p in weights)  # weights went through LFS, not the commit body
    assert all(hub.lfs[tree[p].oid] == (baked / p).read_bytes() for p in weights)
    # the card as the Hub sees it
    card = ModelCard(hub.file_bytes("alice/Tiny-VL-headbake", "README.md").decode())
    m = card.data.to_dict()
    assert m["base_model"] == "someone/Tiny-VL" and m["base_model_relation"] == "finetune"
    assert m["library_name"] == "transformers" and m["pipeline_tag"] == "image-text-to-text"
    assert m["license"] == "apache-2.0" and "headbake" in m["tags"]
    assert 'model_id = "alice/Tiny-VL-headbake"' in card.text  # the snippet was pointed at the repo
    assert hub.repos["alice/Tiny-VL-headbake"].private is False
    assert set(hub.auth_headers()) == {f"Bearer {TOKEN}"}


def test_second_identical_push_is_a_no_op(baked, hub, env):
    res = push_cli(baked, "alice/m", "--endpoint", hub.url)  # also points the card's snippet at alice/m
    assert res.exit_code == 0 and "Pushed" in res.output
    head = hub.head("alice/m")
    n_requests = len(hub.requests)
    again = push_folder(baked, "alice/m", endpoint=hub.url)
    assert again.no_op and again.commit_oid == head and again.files_uploaded == 0
    assert hub.head("alice/m") == head and len(hub.commits("alice/m")) == 2
    assert not any(r["path"].startswith("/lfs/upload") for r in hub.requests[n_requests:])  # no bytes re-sent
    res = push_cli(baked, "alice/m", "--endpoint", hub.url)
    assert res.exit_code == 0 and "Nothing to push" in res.output and head[:10] in res.output
    assert len(hub.commits("alice/m")) == 2
    # one changed file makes a commit with just that file
    (baked / "generation_config.json").write_text('{"max_new_tokens": 7}\n')
    third = push_folder(baked, "alice/m", endpoint=hub.url)
    assert not third.no_op and third.files_uploaded == 1 and hub.head("alice/m") == third.commit_oid
    assert third.files_total == len(folder_files(baked))


def test_private_repo(baked, hub, env):
    res = push_cli(baked, "alice/secret-vl", "--private", "--endpoint", hub.url)
    assert res.exit_code == 0, res.output
    assert hub.repos["alice/secret-vl"].private is True
    # an existing public repo is refused, not silently filled with files meant to be private
    hub.add_repo("alice/public-vl", "alice", private=False)
    res = push_cli(baked, "alice/public-vl", "--private", "--endpoint", hub.url)
    assert res.exit_code == 3 and "already exists and is public" in res.output
    assert len(hub.commits("alice/public-vl")) == 1


def test_create_pr_leaves_main_alone(baked, hub, env):
    push_folder(baked, "alice/m", endpoint=hub.url)
    main_head = hub.head("alice/m")
    (baked / "eval_results.json").write_text('{"mmstar": 0.51}\n')  # a file the bake did not record
    res = push_cli(baked, "alice/m", "--create-pr", "--endpoint", hub.url, "-m", "Add eval results")
    assert res.exit_code == 0, res.output
    repo = hub.repos["alice/m"]
    assert len(repo.prs) == 1 and repo.prs[0]["title"] == "Add eval results" and repo.prs[0]["target"] == "main"
    assert f"{hub.url}/alice/m/discussions/1" in res.output
    assert hub.head("alice/m") == main_head
    pr_tree = repo.commits[repo.prs[0]["commit"]].files
    assert pr_tree["eval_results.json"].content == b'{"mmstar": 0.51}\n' and not pr_tree["eval_results.json"].lfs
    assert "eval_results.json" not in hub.tree("alice/m", "main")
    assert any(r["path"].endswith("/commit/main") and r["query"].get("create_pr") == ["1"] for r in hub.requests)


def test_branch_is_created_and_receives_the_commit(baked, hub, env):
    hub.add_repo("alice/m", "alice")
    res = push_cli(baked, "alice/m", "--branch", "headbake-v1", "--endpoint", hub.url)
    assert res.exit_code == 0, res.output
    assert "tree/headbake-v1" in res.output
    repo = hub.repos["alice/m"]
    assert set(hub.tree("alice/m", "headbake-v1")) > {"README.md", "headbake.json", "config.json"}
    assert set(hub.tree("alice/m", "main")) == {".gitattributes"}
    assert hub.commits("alice/m", "headbake-v1")[1].oid == repo.branches["main"]
    res = push_cli(baked, "alice/m", "--branch", "headbake-v1", "--endpoint", hub.url)
    assert "Nothing to push" in res.output
    res = push_cli(baked, "alice/m", "--branch", "x", "--create-pr", "--endpoint", hub.url)
    assert res.exit_code == 2 and "exclude each other" in res.output


def test_multipart_lfs_upload(baked, hub, env):
    hub.multipart_threshold, hub.part_size = 64 * 1024, 32 * 1024
    res = push_folder(baked, "alice/big", endpoint=hub.url)
    assert not res.no_op
    assert any("/part/" in r["path"] for r in hub.requests)
    for rel in folder_files(baked):
        assert sha256(hub.file_bytes("alice/big", rel)) == sha256((baked / rel).read_bytes())


# ----------------------------------------------------------------------------- failures


def test_missing_token_fails_before_any_network_call(baked, hub, env):
    env.delenv("HF_TOKEN")
    res = push_cli(baked, "alice/m", "--endpoint", hub.url)
    assert res.exit_code == 3
    assert res.output.strip() == (
        "Error: no Hugging Face token: set HF_TOKEN or log in with `hf auth login` (the token needs write access)"
    )
    assert hub.requests == []


@pytest.mark.parametrize("status, expected", [
    (401, "rejected the token (401 Unauthorized)"),
    (403, "may not create repos under 'alice' (403 Forbidden"),
])
def test_auth_errors_on_create(baked, hub, env, status, expected):
    hub.fail("POST", r"^/api/repos/create$", status, times=5, message="nope")
    hub.fail("GET", r"^/api/models/", 404, times=5, message="Repository not found", error_code="RepoNotFound")
    res = push_cli(baked, "alice/m", "--endpoint", hub.url)
    assert res.exit_code == 3 and expected in res.output and res.output.count("\n") == 1
    assert TOKEN not in res.output and "alice/m" not in hub.repos


def test_wrong_token_and_foreign_namespace(baked, hub, env):
    env.setenv("HF_TOKEN", "hf_NotAValidToken000000000000")
    res = push_cli(baked, "alice/m", "--endpoint", hub.url)
    assert res.exit_code == 3 and "401" in res.output and "hf_NotAValidToken" not in res.output
    env.setenv("HF_TOKEN", TOKEN)
    res = push_cli(baked, "carol/m", "--endpoint", hub.url)
    assert res.exit_code == 3 and "may not create repos under 'carol'" in res.output


def test_repo_name_taken(baked, hub, env):
    hub.add_repo("bob/taken", "bob", private=False, files={"README.md": b"# bob's\n"})
    res = push_cli(baked, "bob/taken", "--endpoint", hub.url)
    assert res.exit_code == 3 and "the repo name bob/taken is taken" in res.output
    assert [c.summary for c in hub.commits("bob/taken")] == ["seed", "initial commit"]
    # 409 with a repo the token cannot see: also "taken"
    hub.add_repo("alice/ghost", "carol", private=True)
    res = push_cli(baked, "alice/ghost", "--endpoint", hub.url)
    assert res.exit_code == 3 and "is taken" in res.output


def test_write_forbidden_at_commit_time(baked, hub, env):
    hub.fail("POST", r"/commit/main$", 403, message="This repository is read-only")
    res = push_cli(baked, "alice/ro", "--endpoint", hub.url)
    assert res.exit_code == 3 and "may not write to alice/ro (403 Forbidden: This repository is read-only)" in res.output
    assert len(hub.commits("alice/ro")) == 1


def test_conflict_while_committing(baked, hub, env):
    hub.fail("POST", r"/commit/main$", 409, message="A commit has happened since")
    res = push_cli(baked, "alice/c", "--endpoint", hub.url)
    assert res.exit_code == 3 and "changed while pushing (409" in res.output


def test_server_down_is_a_network_error_and_the_folder_stays(baked, env):
    before = {p: sha256((baked / p).read_bytes()) for p in folder_files(baked)}
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    dead = f"http://127.0.0.1:{s.getsockname()[1]}"
    s.close()
    res = push_cli(baked, "alice/m", "--endpoint", dead)
    assert res.exit_code == 3
    assert f"cannot reach {dead} (ConnectError, 3 attempts)" in res.output and "local folder is intact" in res.output
    assert {p: sha256((baked / p).read_bytes()) for p in folder_files(baked)} == before


def test_dropped_connection_is_retried(baked, hub, env):
    hub.fail("POST", r"/commit/main$", drop=True, times=1)
    res = push_folder(baked, "alice/flaky", endpoint=hub.url)
    assert not res.no_op and len(hub.commits("alice/flaky")) == 2
    assert [r["status"] for r in hub.requests if r["path"].endswith("/commit/main")] == ["dropped", 200]
    hub.fail("POST", r"/commit/main$", drop=True, times=10)
    (baked / "generation_config.json").write_text("{}\n")
    with pytest.raises(HeadbakeError, match="lost the connection to .* 3 attempts"):
        push_folder(baked, "alice/flaky", endpoint=hub.url)


def test_server_errors_are_retried_then_reported(baked, hub, env):
    hub.fail("POST", r"^/api/repos/create$", 503, times=2)
    assert not push_folder(baked, "alice/five", endpoint=hub.url).no_op
    hub.fail("POST", r"^/api/repos/create$", 500, times=3)
    with pytest.raises(HeadbakeError, match="answered 500 during create"):
        push_folder(baked, "alice/six", endpoint=hub.url)


def test_invalid_card_metadata_is_rejected_by_the_hub(baked, hub, env):
    text = (baked / "README.md").read_text().replace("base_model_relation: finetune", "base_model_relation: baked")
    (baked / "README.md").write_text(text)
    with pytest.raises(HeadbakeError, match="rejected the model card metadata: .*base_model_relation"):
        push_folder(baked, "alice/m", endpoint=hub.url)
    assert len(hub.commits("alice/m")) == 1


def test_offline_mode_refuses_to_push(baked, hub, env):
    env.setenv("HF_HUB_OFFLINE", "1")
    with pytest.raises(HeadbakeError, match="HF_HUB_OFFLINE is set"):
        push_folder(baked, "alice/m", endpoint=hub.url)
    assert hub.requests == []


@pytest.mark.parametrize("repo_id", ["alice", "alice/", "a/b/c", "alice/bad name", "alice/x--y", "../x"])
def test_bad_repo_ids(baked, hub, env, repo_id):
    with pytest.raises(HeadbakeError, match="invalid repo id"):
        push_folder(baked, repo_id, endpoint=hub.url)
    assert hub.requests == []


# ----------------------------------------------------------------------------- what may be pushed


def test_publishable_checks(tiny_bf16, tmp_path):
    with pytest.raises(HeadbakeError, match="has no headbake.json"):
        check_publishable(tiny_bf16)
    with pytest.raises(HeadbakeError, match="no README.md"):
        check_publishable(tiny_bf16, allow_unbaked=True)

    ok = make_baked(tiny_bf16, tmp_path / "ok")
    assert check_publishable(ok) == []

    unverified = make_baked(tiny_bf16, tmp_path / "unverified", verification=None)
    assert any("has not been verified" in w for w in check_publishable(unverified))

    failed = make_baked(tiny_bf16, tmp_path / "failed", verification={"passed": False, "tensor": None, "model": None})
    with pytest.raises(HeadbakeError, match="verification of .* failed"):
        check_publishable(failed)
    assert any("verification failed" in w for w in check_publishable(failed, force=True))

    truncated = make_baked(tiny_bf16, tmp_path / "truncated")
    shard = next(truncated.glob("*.safetensors"))
    shard.write_bytes(shard.read_bytes()[:-10])
    with pytest.raises(HeadbakeError, match="recorded"):
        check_publishable(truncated)
    missing = make_baked(tiny_bf16, tmp_path / "missing")
    next(missing.glob("*.safetensors")).unlink()
    with pytest.raises(HeadbakeError, match="missing"):
        check_publishable(missing)


def test_temp_files_are_not_uploaded(baked):
    (baked / ".headbake.json.tmp-123").write_text("{}")
    (baked / ".README.md.tmp-9").write_text("x")
    (baked / "__pycache__").mkdir()
    (baked / "__pycache__" / "x.pyc").write_bytes(b"")
    (baked / ".cache" / "huggingface").mkdir(parents=True)
    (baked / ".cache" / "huggingface" / "x.lock").write_text("")
    files = folder_files(baked)
    assert "headbake.json" in files and "README.md" in files
    assert not [f for f in files if "tmp" in f or "pycache" in f or f.startswith(".cache")]


def test_hand_edited_card_is_not_rewritten(baked, hub, env):
    text = (baked / "README.md").read_text() + "\nMy own notes.\n"
    (baked / "README.md").write_text(text)
    res = push_cli(baked, "alice/m", "--endpoint", hub.url)
    assert res.exit_code == 0, res.output
    assert (baked / "README.md").read_text() == text
    assert hub.file_bytes("alice/m", "README.md").decode() == text


# ----------------------------------------------------------------------------- secrets and switches


def test_token_never_appears_in_output_or_files(baked, hub, env):
    outputs = []
    outputs.append(push_cli(baked, "alice/m", "--endpoint", hub.url).output)
    outputs.append(push_cli(baked, "alice/m", "--endpoint", hub.url).output)
    hub.fail("POST", r"^/api/repos/create$", 403, message=f"token {TOKEN} has no write scope")  # a leaky server
    outputs.append(push_cli(baked, "alice/n", "--endpoint", hub.url).output)
    assert "***" in outputs[-1]
    for out in outputs:
        assert TOKEN not in out and TOKEN[3:] not in out
    for p in baked.rglob("*"):
        if p.is_file():
            assert TOKEN.encode() not in p.read_bytes()
    assert scrub(f"x {TOKEN} y hf_abcdefghijklmnop", TOKEN) == "x *** y hf_***"


def test_xet_and_timeouts_are_scoped_to_the_push(baked, hub, env):
    from huggingface_hub import constants, get_session

    seen = []
    real = hubmod._push_once

    def spy(*a, **kw):
        seen.append((constants.HF_HUB_DISABLE_XET, get_session().timeout.read))
        return real(*a, **kw)

    env.setattr(hubmod, "_push_once", spy)
    push_folder(baked, "alice/m", endpoint=hub.url)
    assert seen == [(True, 30.0)]  # xet off for a non-Hub endpoint, bounded timeouts while pushing
    assert constants.HF_HUB_DISABLE_XET is False and get_session().timeout.read is None  # both restored
    assert xet_allowed("https://huggingface.co") and xet_allowed("https://hub-ci.huggingface.co")
    assert not xet_allowed(hub.url) and not xet_allowed("https://huggingface.co.evil.example")


def test_offline_at_import_is_honoured(baked, hub, env):
    """huggingface_hub refuses every request when imported with HF_HUB_OFFLINE set; push says so up front."""
    from huggingface_hub import constants

    env.setattr(constants, "HF_HUB_OFFLINE", True)
    with pytest.raises(HeadbakeError, match="HF_HUB_OFFLINE is set"):
        push_folder(baked, "alice/m", endpoint=hub.url)
    assert hub.requests == []


NO_TORCH_MAIN = """
import sys
from headbake.cli.main import main
sys.argv[0] = "headbake"
try:
    main()
finally:
    print(f"torch imported: {'torch' in sys.modules}", file=sys.stderr)
"""


def test_cli_in_a_subprocess_reads_endpoint_and_token_from_the_environment(baked, hub, tmp_path):
    env = {k: v for k, v in os.environ.items() if not k.startswith(("HF_", "HUGGING"))}
    env.update(HF_ENDPOINT=hub.url, HF_TOKEN=TOKEN, HF_HOME=str(tmp_path / "hf-home"), HF_HUB_OFFLINE="0",
               HF_HUB_DISABLE_TELEMETRY="1")
    cmd = [sys.executable, "-c", NO_TORCH_MAIN, "push", str(baked), "alice/sub", "--private"]
    proc = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=180)
    assert proc.returncode == 0, proc.stderr
    assert "torch imported: False" in proc.stderr  # a push never loads torch
    assert "Pushed" in proc.stdout and TOKEN not in proc.stdout + proc.stderr
    assert hub.repos["alice/sub"].private is True
    assert sha256(hub.file_bytes("alice/sub", "headbake.json")) == sha256((baked / "headbake.json").read_bytes())
    env["HF_TOKEN"] = ""
    proc = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=180)
    assert proc.returncode == 3 and proc.stderr.strip().startswith("Error: no Hugging Face token")
    assert proc.stderr.count("Error:") == 1


def test_a_record_naming_local_paths_is_not_published(baked, hub, env):
    rec = json.loads((baked / "headbake.json").read_text())
    rec["source"]["path"] = str(baked.parent / "my-secret-models" / "tiny")
    (baked / "headbake.json").write_text(json.dumps(rec))
    with pytest.raises(HeadbakeError, match="names local paths"):
        publish(baked, "alice/m", endpoint=hub.url)
    assert not [q for q in hub.requests if "/commit/" in q.path]


def test_a_card_naming_the_home_folder_is_not_published(baked, hub, env):
    card = baked / "README.md"
    card.write_text(card.read_text() + f"\nconverted from {Path.home()}/models/secret\n")
    with pytest.raises(HeadbakeError, match="names local paths"):
        publish(baked, "alice/m", endpoint=hub.url)
    assert not [q for q in hub.requests if "/commit/" in q.path]
