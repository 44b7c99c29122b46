"""The memory plan: sizes from headers alone, the refusal with its hint, and offloading plans."""

from __future__ import annotations

import json
import struct
import sys
from pathlib import Path

import pytest

from headbake.errors import HeadbakeError
from headbake.memory import ENV_LIMIT, checkpoint_size, parse_max_memory, parse_size, plan_memory

GiB = 1 << 30


@pytest.fixture(scope="module")
def sparse_7b(tmp_path_factory):
    """Qwen2.5-VL-7B-Instruct's tensor names and shapes with no data (a sparse file): headers are all a plan reads."""
    sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "scripts"))
    from bench_bake import qwen25vl_7b_tensors

    root = tmp_path_factory.mktemp("sparse") / "qwen25vl-7b-shaped"
    root.mkdir()
    header, off = {}, 0
    for name, shape in qwen25vl_7b_tensors(28).items():
        n = 2
        for d in shape:
            n *= d
        header[name] = {"dtype": "BF16", "shape": shape, "data_offsets": [off, off + n]}
        off += n
    hb = json.dumps(header).encode()
    hb += b" " * (-len(hb) % 8)
    with open(root / "model.safetensors", "wb") as f:
        f.write(struct.pack("<Q", len(hb)) + hb)
        f.truncate(8 + len(hb) + off)
    config = {
        "architectures": ["Qwen2_5_VLForConditionalGeneration"], "model_type": "qwen2_5_vl", "torch_dtype": "bfloat16",
        "hidden_size": 3584, "intermediate_size": 18944, "num_attention_heads": 28, "num_hidden_layers": 28,
        "num_key_value_heads": 4, "vocab_size": 152064, "image_token_id": 151655, "video_token_id": 151656,
        "vision_config": {"depth": 32, "hidden_size": 1280, "intermediate_size": 3420, "num_heads": 16},
    }
    (root / "config.json").write_text(json.dumps(config))
    return root


def test_sizes_come_from_the_headers(sparse_7b):
    size = checkpoint_size(sparse_7b)
    assert size.dtype == "bfloat16"
    assert 8.2e9 < size.params < 8.4e9 and size.bytes == 2 * size.params
    assert size.largest == 152064 * 3584  # embedding / LM head
    assert checkpoint_size(sparse_7b, "float32").bytes == 2 * size.bytes


def test_verify_of_a_7b_plans_one_wide_module_not_a_wide_copy(sparse_7b):
    plan = plan_memory(sparse_7b, "verify", device="cpu", tokens=160, available={"cpu": 64 * GiB})
    assert plan.reference == 152064 * 3584 * 4  # the LM head in float32, not 33 GB
    assert plan.weights < plan.needed < 1.35 * plan.weights
    assert plan.check() is plan  # fits in the 64 GiB the test says the machine has


def test_refusal_names_needed_available_and_the_flag(sparse_7b, monkeypatch):
    monkeypatch.setenv(ENV_LIMIT, "12GiB")
    plan = plan_memory(sparse_7b, "verify", device="cpu", tokens=160)
    assert not plan.fits()
    with pytest.raises(HeadbakeError) as e:
        plan.check()
    msg = str(e.value)
    assert "\n" not in msg
    assert msg.startswith("verify needs about 2") and "12.9 GB is available" in msg
    assert "--device-map auto --max-memory cpu=12GiB" in msg
    assert any("DOES NOT FIT" in line for line in plan.summary())


def test_refusal_on_the_tiny_model_with_a_tiny_limit(tiny_bf16, monkeypatch):
    monkeypatch.setenv(ENV_LIMIT, "cpu=300MiB")
    with pytest.raises(HeadbakeError, match=r"calibrate needs about 1\.\d GB on cpu, .* for activations and runtime "
                                            r"alone; 315 MB is available: free memory"):
        plan_memory(tiny_bf16, "calibrate", device="cpu").check()
    monkeypatch.delenv(ENV_LIMIT)
    assert plan_memory(tiny_bf16, "calibrate", device="cpu").check().fits()


def test_device_map_auto_plans_disk_offload_instead_of_refusing(sparse_7b):
    plan = plan_memory(sparse_7b, "verify", device_map="auto", max_memory="cpu=12GiB", tokens=160,
                       available={"cpu": 64 * GiB})
    plan.check()  # no refusal: the rest goes to disk
    kwargs = plan.load_kwargs()
    assert kwargs["device_map"] == "auto" and set(kwargs["max_memory"]) == {"cpu"}
    room = kwargs["max_memory"]["cpu"]
    assert room < 12 * GiB - plan.reference  # activations, the reference and the runtime stay free
    assert plan.disk == plan.weights - room > 0
    text = "\n".join(plan.summary())
    assert "offload" in text and "max_memory cpu=" in text


def test_device_map_auto_that_cannot_hold_even_the_activations_refuses(tiny_bf16):
    plan = plan_memory(tiny_bf16, "verify", device_map="auto", max_memory="cpu=200MiB")
    with pytest.raises(HeadbakeError, match="even with every weight offloaded"):
        plan.check()


def test_tensor_level_verify_needs_no_model(sparse_7b):
    plan = plan_memory(sparse_7b, "verify", device="cpu", verify="tensors", available={"cpu": 2 * GiB})
    assert plan.weights == 0 and plan.check().fits()


def test_convert_without_model_verify_is_priced_as_calibrate(sparse_7b):
    full = plan_memory(sparse_7b, "convert", device="cpu", available={"cpu": 64 * GiB})
    cheap = plan_memory(sparse_7b, "convert", device="cpu", verify="none", available={"cpu": 64 * GiB})
    assert cheap.reference == 0 < full.reference and cheap.needed < full.needed


def test_parse_max_memory():
    assert parse_max_memory("cpu=8GiB,0=20GiB") == {"cpu": 8 * GiB, 0: 20 * GiB}
    assert parse_max_memory("cuda:1=512MiB, disk=1GB") == {1: 512 << 20, "disk": 10**9}
    assert parse_max_memory("8GiB") == {"*": 8 * GiB}
    assert parse_max_memory({"cpu": "1GiB", 0: 5}) == {"cpu": GiB, 0: 5}
    assert parse_size("1048576") == 1 << 20


@pytest.mark.parametrize("text, match", [
    ("cpu=8XB", "cannot read size"), ("gpu=1GiB", "unknown device 'gpu'"), ("cpu=1GiB,cpu=2GiB", "names cpu twice"),
    ("=3", "is not DEVICE=SIZE"), ("", "is empty"), ("cpu=0", "cannot read size"),
])
def test_parse_max_memory_errors(text, match):
    with pytest.raises(HeadbakeError, match=match):
        parse_max_memory(text)


def test_max_memory_needs_device_map(tiny_bf16):
    with pytest.raises(HeadbakeError, match="need --device-map auto"):
        plan_memory(tiny_bf16, "calibrate", max_memory="cpu=1GiB")
