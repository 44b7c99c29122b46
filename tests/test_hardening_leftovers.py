"""Leftovers: stale demo builds are swept, one writer per output, and a full disk says what was kept."""

from __future__ import annotations

import errno
import json
import subprocess
import sys

import pytest

from headbake.errors import HeadbakeError


def _dead_pid() -> int:
    p = subprocess.Popen([sys.executable, "-c", "pass"])
    p.wait()
    return p.pid


def test_demo_build_sweeps_partials_of_dead_builds(tmp_path):
    from headbake.demo import build_tiny_qwen25vl

    out = tmp_path / "cache" / "demo"
    out.parent.mkdir()
    stale = out.parent / f".demo.partial-{_dead_pid()}"
    (stale / "sub").mkdir(parents=True)
    (stale / "sub" / "model.safetensors").write_bytes(b"half")
    build_tiny_qwen25vl(out, num_layers=1)
    assert not stale.exists()
    assert sorted(p.name for p in out.parent.iterdir()) == ["demo"]


def test_sweep_keeps_live_and_foreign_folders(tmp_path):
    import os

    from headbake.demo import sweep_stale_partials

    out = tmp_path / "demo"
    dead = tmp_path / f".demo.partial-{_dead_pid()}"
    live = tmp_path / f".demo.partial-{os.getpid()}"
    other = tmp_path / ".demo.partial-notapid"
    another_model = tmp_path / f".other.partial-{_dead_pid()}"
    for p in (dead, live, other, another_model):
        p.mkdir()
    assert sweep_stale_partials(out) == [dead]
    assert not dead.exists() and live.exists() and other.exists() and another_model.exists()


# ----------------------------------------------------------------------------- the writer lock

HOLDER = """
import sys, time
from headbake.locks import writer_lock
with writer_lock(sys.argv[1], sys.argv[2]):
    print("locked", flush=True)
    sys.stdin.readline()
"""


def test_second_writer_is_refused_while_the_first_holds_the_lock(tmp_path):
    from headbake.locks import writer_lock

    work, out = tmp_path / ".out.headbake-work", tmp_path / "out"
    holder = subprocess.Popen([sys.executable, "-c", HOLDER, str(work), str(out)], stdin=subprocess.PIPE,
                              stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline().strip() == "locked"
        with pytest.raises(HeadbakeError, match=f"^another headbake is writing {out}"):
            with writer_lock(work, out):
                pass
    finally:
        holder.stdin.write("\n")
        holder.stdin.flush()
        holder.wait()
    with writer_lock(work, out) as w:  # released when its holder exits
        assert w == work and work.is_dir()


def test_lock_in_one_process_twice_is_refused_and_released(tmp_path):
    from headbake.locks import writer_lock

    work = tmp_path / "w"
    with writer_lock(work, "OUT"):
        with pytest.raises(HeadbakeError, match="another headbake is writing OUT"):
            with writer_lock(work, "OUT"):
                pass
    with writer_lock(work, "OUT"):
        pass


def test_holder_may_remove_the_work_folder_inside_the_block(tmp_path):
    import shutil

    from headbake.locks import writer_lock

    work = tmp_path / "w"
    with writer_lock(work, "OUT"):
        shutil.rmtree(work)
    assert not work.exists()
    with writer_lock(work, "OUT"):
        assert (work / ".lock").exists()


def test_a_killed_holder_does_not_leave_a_stale_lock(tmp_path):
    from headbake.locks import writer_lock

    work = tmp_path / "w"
    holder = subprocess.Popen([sys.executable, "-c", HOLDER, str(work), "OUT"], stdin=subprocess.PIPE,
                              stdout=subprocess.PIPE, text=True)
    assert holder.stdout.readline().strip() == "locked"
    holder.kill()
    holder.wait()
    with writer_lock(work, "OUT"):
        pass


# ----------------------------------------------------------------------------- disk full


def test_disk_full_message_says_what_was_kept(tmp_path):
    from headbake.diskfull import disk_full_message, is_disk_full, kept_in_work

    exc = OSError(errno.ENOSPC, "No space left on device", str(tmp_path / "x.safetensors"))
    assert is_disk_full(exc) and not is_disk_full(OSError(errno.EACCES, "no"))
    assert disk_full_message(exc) == (f"no space left on device writing {tmp_path / 'x.safetensors'}; "
                                      "nothing was kept (the partial output was removed)")
    work = tmp_path / "work"
    work.mkdir()
    assert kept_in_work(work) is None
    (work / "heads.json").write_text("{}")
    assert kept_in_work(work) == f"the calibration (heads.json) is kept in {work}"
    (work / "baked").mkdir()
    (work / "baked" / "headbake.json").write_text(json.dumps({"verification": {"passed": True}}))
    kept = kept_in_work(work)
    assert kept == f"the calibration (heads.json) and the verified baked copy are kept in {work}"
    msg = disk_full_message(exc, kept)
    assert "nothing was kept" not in msg and "run the same command again to resume" in msg and "\n" not in msg


def test_preflight_refuses_remote_code_and_creates_nothing(tmp_path):
    """convert can run this before it makes its work folder (the lead wires it)."""
    from builders import build_kimi_layout
    from headbake.calibrate.run import CalibrateOptions, preflight

    src = build_kimi_layout(tmp_path / "kimi")
    before = sorted(p.relative_to(tmp_path) for p in tmp_path.rglob("*"))
    with pytest.raises(HeadbakeError, match="--trust-remote-code"):
        preflight(CalibrateOptions(model=str(src)))
    assert sorted(p.relative_to(tmp_path) for p in tmp_path.rglob("*")) == before
