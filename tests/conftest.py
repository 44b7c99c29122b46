"""Shared fixtures: tiny real-transformers checkpoints built once per test session."""

from __future__ import annotations

import os

import pytest

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("HF_HUB_DISABLE_TELEMETRY", "1")
os.environ.setdefault("TRANSFORMERS_VERBOSITY", "error")


@pytest.fixture(scope="session")
def tiny_bf16(tmp_path_factory):
    """A 4-layer Qwen2.5-VL in bfloat16, 3 safetensors shards, with processor."""
    from headbake.demo import build_tiny_qwen25vl

    return build_tiny_qwen25vl(tmp_path_factory.mktemp("models") / "tiny-bf16", dtype="bfloat16")


@pytest.fixture(scope="session")
def tiny_fp32(tmp_path_factory):
    """The same architecture in float32."""
    from headbake.demo import build_tiny_qwen25vl

    return build_tiny_qwen25vl(tmp_path_factory.mktemp("models") / "tiny-fp32", dtype="float32", seed=1)


@pytest.fixture(scope="session")
def planted(tmp_path_factory):
    """The tiny Qwen2.5-VL with a planted answer circuit and its 24-row eval set (see tests/planted.py)."""
    from planted import build_planted

    return build_planted(tmp_path_factory.mktemp("planted"))
