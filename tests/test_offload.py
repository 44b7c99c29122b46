"""A model bigger than the memory allowed: offloaded by accelerate, it calibrates and verifies to the same figures."""

from __future__ import annotations

import json

import pytest
import torch
from click.testing import CliRunner

from builders import write_gains
from headbake.calibrate.probe import visual_attention_ratio
from headbake.devices import input_device
from headbake.memory import plan_memory
from headbake.model.info import load_model_info

CELLS = {(0, 1): 1.16, (1, 0): 1.3, (3, 2): 1.16}


@pytest.fixture
def device_maps(monkeypatch):
    """The ``hf_device_map`` of every model loaded through the auto class during the test."""
    import transformers

    cls, seen = transformers.AutoModelForImageTextToText, []
    original = cls.from_pretrained

    def spy(*args, **kwargs):
        model = original(*args, **kwargs)
        seen.append(getattr(model, "hf_device_map", None))
        return model

    monkeypatch.setattr(cls, "from_pretrained", spy)
    return seen


def load(path, **kwargs):
    import transformers

    return transformers.AutoModelForImageTextToText.from_pretrained(
        str(path), dtype="auto", attn_implementation="sdpa", **kwargs).eval()


@pytest.fixture(scope="module")
def offload_kwargs(tiny_bf16, tmp_path_factory):
    """The memory plan for a budget that holds the runtime and half the weights: the rest goes to disk."""
    need = plan_memory(tiny_bf16, "verify", device="cpu", tokens=128, available={"cpu": 8 << 30})
    allowed = need.reserve + need.weights // 2
    assert allowed < need.needed
    plan = plan_memory(tiny_bf16, "verify", device_map="auto", max_memory=f"cpu={allowed}", tokens=128,
                       available={"cpu": 8 << 30}, offload_folder=tmp_path_factory.mktemp("offload"))
    kwargs = plan.check().load_kwargs()
    assert 0 < kwargs["max_memory"]["cpu"] < plan.weights and plan.disk > 0
    return kwargs


def test_probe_gives_the_same_s_v_offloaded(tiny_bf16, offload_kwargs):
    from transformers import AutoProcessor

    from headbake.data.prompts import build_inputs
    from headbake.data.samples import synthetic_samples

    plain, offloaded = load(tiny_bf16), load(tiny_bf16, **offload_kwargs)
    assert {"cpu", "disk"} <= set(offloaded.hf_device_map.values())
    processor = AutoProcessor.from_pretrained(str(tiny_bf16))
    inputs = dict(build_inputs(processor, synthetic_samples(3, seed=7), device=input_device(offloaded)))
    for method in ("registry", "hooks"):
        a = visual_attention_ratio(plain, inputs, query_positions=(-1, -2), method=method)
        b = visual_attention_ratio(offloaded, inputs, query_positions=(-1, -2), method=method)
        assert torch.equal(a, b), method
        assert float(a.max()) > 0
    with torch.no_grad():
        la = plain(**inputs, logits_to_keep=8).logits
        lb = offloaded(**inputs, logits_to_keep=8).logits
    assert torch.equal(la, lb)


def _half_the_weights(tiny_bf16, step, **kw) -> str:
    """A --max-memory that holds the step's reserve (runtime, activations) and half the weights."""
    need = plan_memory(tiny_bf16, step, device="cpu", **kw)
    return f"cpu={need.reserve + need.weights // 2}"


# These pin a tiny model to CPU + disk with a CPU --max-memory; on a machine with a GPU, accelerate puts it on
# the GPU instead (measured on an H200), so the disk path they test is not taken there.
_CPU_ONLY = pytest.mark.skipif(torch.cuda.is_available(), reason="CPU+disk offload path; a GPU would hold the model")


@_CPU_ONLY
def test_calibrate_offloaded_equals_unconstrained(tiny_bf16, offload_kwargs, device_maps):
    from headbake.calibrate.run import CalibrateOptions, calibrate

    common = dict(model=str(tiny_bf16), samples=4, batch_size=2, bootstrap_rounds=5, progress=False,
                  l_perc=3, l_reas=1, tau_perc=0.05, tau_reas=0.04)
    a = calibrate(CalibrateOptions(**common))
    b = calibrate(CalibrateOptions(**common, device_map="auto", offload_folder=offload_kwargs["offload_folder"],
                                   max_memory=_half_the_weights(tiny_bf16, "calibrate", batch_size=2)))
    assert device_maps[0] is None and "disk" in device_maps[1].values()
    assert a["visual_ratio"] == b["visual_ratio"]
    assert a["gains"] == b["gains"]


@_CPU_ONLY
def test_verify_offloaded_gives_the_same_figures(tiny_bf16, offload_kwargs, tmp_path, device_maps):
    from headbake.bake.verify import run_verify
    from headbake.cli import main

    gains = write_gains(tmp_path / "g.json", load_model_info(tiny_bf16), CELLS)
    r = CliRunner().invoke(main, ["bake", str(tiny_bf16), "--gains", str(gains), "--out", str(tmp_path / "o"), "-q"])
    assert r.exit_code == 0, r.output
    a = run_verify(tiny_bf16, tmp_path / "o", samples=2, new_tokens=4, device="cpu", progress=False)
    b = run_verify(tiny_bf16, tmp_path / "o", samples=2, new_tokens=4, device_map="auto", progress=False,
                   max_memory=_half_the_weights(tiny_bf16, "verify", samples=2, new_tokens=4),
                   offload_folder=offload_kwargs["offload_folder"])
    assert device_maps[:2] == [None, None] and all("disk" in m.values() for m in device_maps[2:])
    assert len(device_maps) == 4  # source and baked, once each per run: no reload for the reference
    ma, mb = a["model"], b["model"]
    assert a["passed"] and b["passed"] and mb["device"] == "device_map=auto"
    for key in ("max_abs_logit", "kl_max", "kl_mean", "top1_agreement", "greedy_match"):
        assert ma[key] == mb[key], key
    assert ma["noise_floor"] == mb["noise_floor"] and ma["effect"] == mb["effect"]
    assert ma["noise_floor"]["max_abs_logit"] > 0 and ma["effect"]["max_abs_logit"] > 0
    json.dumps(b)  # the report stays serialisable
