"""The command line as a whole: exit codes, --json, --help speed and imports, progress on pipes, env vars."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest
from click.testing import CliRunner

from headbake.cli import main
from headbake.cli.main import FLOW, error_line
from headbake.errors import CheckFailed, EnvironmentProblem, HeadbakeError
from headbake.progress import progress_enabled

NO_TORCH = """
import sys
from headbake.cli.main import main
sys.argv[0] = "headbake"
try:
    main()
finally:
    print(f"torch imported: {'torch' in sys.modules}", file=sys.stderr)
"""


def _py(*args, env=None, timeout=300):
    return subprocess.run([sys.executable, "-c", NO_TORCH, *map(str, args)], capture_output=True, text=True,
                          env=env, timeout=timeout, stdin=subprocess.DEVNULL)


def test_help_lists_commands_in_flow_order_without_torch():
    proc = _py("--help")
    assert proc.returncode == 0 and "torch imported: False" in proc.stderr
    listed = [ln.split()[0] for ln in proc.stdout.split("Commands:")[1].splitlines() if ln.strip()]
    assert listed == [c for c in FLOW if c in listed] and listed[0] == "convert"
    for cmd in listed:
        sub = _py(cmd, "--help")
        assert sub.returncode == 0 and "torch imported: False" in sub.stderr, cmd


def test_every_option_has_help():
    for name, cmd in main.commands.items():
        for p in cmd.params:
            if p.param_type_name == "option":
                assert p.help, f"{name} {p.opts} has no help"


def test_bake_never_imports_torch(tiny_bf16, tmp_path):
    gains = tmp_path / "g.json"
    rows = [[1.0, 1.25, 1.0, 1.0]] + [[1.0] * 4] * 3
    gains.write_text(json.dumps({"format": "headbake.gains/v1", "gains": rows}))
    proc = _py("bake", tiny_bf16, "--gains", gains, "-o", tmp_path / "o", "-q")
    assert proc.returncode == 0, proc.stderr
    assert "torch imported: False" in proc.stderr


@pytest.mark.parametrize("exc,code", [
    (HeadbakeError("bad input"), 2), (EnvironmentProblem("hub down"), 3), (CheckFailed("differs"), 1),
    (OSError(28, "No space left on device"), 3), (MemoryError(), 3), (RuntimeError("boom"), 1),
])
def test_one_exit_code_table(exc, code):
    line, got = error_line(exc)
    assert got == code and "\n" not in line


def test_usage_errors_exit_2_and_unexpected_errors_respect_headbake_debug(monkeypatch, tmp_path):
    r = CliRunner().invoke(main, ["bake"])
    assert r.exit_code == 2 and "Missing argument" in r.output

    def boom(*a, **k):
        raise RuntimeError("unexpected\nsecond line")

    import headbake.cli.bake as bake_cli

    monkeypatch.setattr(bake_cli, "load_gains", boom)
    r = CliRunner().invoke(main, ["bake", "x", "--gains", "g.json", "-o", str(tmp_path / "o")])
    assert r.exit_code == 1 and r.output.strip() == (
        "Error: unexpected (RuntimeError; set HEADBAKE_DEBUG=1 for a traceback)")
    monkeypatch.setenv("HEADBAKE_DEBUG", "1")
    r = CliRunner().invoke(main, ["bake", "x", "--gains", "g.json", "-o", str(tmp_path / "o")])
    assert isinstance(r.exception, RuntimeError)  # the traceback is the user's to see


def test_environment_variables_fill_options():
    r = CliRunner().invoke(main, ["models"], env={"HEADBAKE_MODELS_AS_JSON": "1"})
    assert r.exit_code == 0 and isinstance(json.loads(r.stdout), list)
    r = CliRunner().invoke(main, ["models"])
    with pytest.raises(ValueError):
        json.loads(r.stdout)


def test_progress_is_off_on_pipes_and_when_hf_says_so(monkeypatch):
    class Tty:
        def isatty(self):
            return True

    class Pipe:
        def isatty(self):
            return False

    monkeypatch.delenv("HF_HUB_DISABLE_PROGRESS_BARS", raising=False)
    monkeypatch.setattr(sys, "stderr", Tty())
    assert progress_enabled(True) and not progress_enabled(False)
    monkeypatch.setenv("HF_HUB_DISABLE_PROGRESS_BARS", "1")
    assert not progress_enabled(True)
    monkeypatch.delenv("HF_HUB_DISABLE_PROGRESS_BARS")
    monkeypatch.setattr(sys, "stderr", Pipe())
    assert not progress_enabled(True)


def test_models_and_presets_json_is_one_document():
    r = CliRunner().invoke(main, ["models", "--json"])
    assert r.exit_code == 0
    rows = json.loads(r.stdout)
    assert {row["alias"] for row in rows} >= {"Ocean-R1", "R1-Onevision", "Kimi-VL", "demo"}


def test_clone_falls_back_to_copy_file_range_then_plain_copy(tmp_path, monkeypatch):
    import errno

    import headbake.bake.clone as clone

    src = tmp_path / "src.bin"
    src.write_bytes(os.urandom(3 << 20))

    def no_reflink(*a):
        raise OSError(errno.EOPNOTSUPP, "no reflink here")

    monkeypatch.setattr(clone.fcntl, "ioctl", no_reflink)
    assert clone.clone_file(str(src), str(tmp_path / "a")) == "copy_file_range"
    assert (tmp_path / "a").read_bytes() == src.read_bytes()

    def cross_device(*a):
        raise OSError(errno.EXDEV, "cross-device")

    monkeypatch.setattr(clone.os, "copy_file_range", cross_device)
    assert clone.clone_file(str(src), str(tmp_path / "b")) == "copy"
    assert (tmp_path / "b").read_bytes() == src.read_bytes()

    def broken(*a):
        raise OSError(errno.EIO, "I/O error")

    monkeypatch.setattr(clone.os, "copy_file_range", broken)
    with pytest.raises(OSError):
        clone.clone_file(str(src), str(tmp_path / "c"))


def test_no_progress_frames_into_a_pipe(tiny_bf16, tmp_path):
    """Without -q, on a pipe: no bar from headbake, transformers (loading weights) or huggingface_hub."""
    env = {k: v for k, v in os.environ.items() if k != "HF_HUB_DISABLE_PROGRESS_BARS"}
    proc = _py("calibrate", tiny_bf16, "--preset", "demo", "--samples", "2", "-o", tmp_path / "h.json", env=env)
    assert proc.returncode == 0, proc.stderr
    assert "\r" not in proc.stderr and "Loading weights" not in proc.stderr
