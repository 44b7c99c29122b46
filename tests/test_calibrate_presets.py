"""Per-model presets: the values, where each comes from, and what `--preset default` resolves to."""

from __future__ import annotations

import pytest

from headbake.calibrate.presets import (
    PRESETS, SOURCES, default_preset_for, describe, identify_model, preset_names, resolve,
)
from headbake.errors import HeadbakeError

TABLE = {  # the paper's per-model settings (supplementary material, as transcribed by a public reproduction)
    "ocean-r1": (7, 0.22, 1.16, 3, 0.01, 1.30),
    "r1-onevision": (7, 0.30, 1.20, 3, 0.01, 1.30),
    "kimi-vl": (10, 0.27, 1.20, 5, 0.01, 1.40),
}


@pytest.mark.parametrize("name", sorted(TABLE))
def test_paper_presets_hold_the_table(name):
    v = PRESETS[name].values
    assert (v["l_perc"], v["tau_perc"], v["g_perc"], v["l_reas"], v["tau_reas"], v["g_reas"]) == TABLE[name]


@pytest.mark.parametrize("alias, repo, preset", [
    ("Ocean-R1", "minglingfeng/Ocean_R1_7B_Instruct", "ocean-r1"),
    ("R1-Onevision", "Fancy-MLLM/R1-Onevision-7B", "r1-onevision"),
    ("Kimi-VL", "moonshotai/Kimi-VL-A3B-Thinking", "kimi-vl"),
    ("Kimi-VL-2506", "moonshotai/Kimi-VL-A3B-Thinking-2506", "kimi-vl"),
    ("demo", None, "demo"),
])
def test_default_resolves_to_the_models_own_preset(alias, repo, preset):
    for kw in ({"alias": alias}, {"model_id": alias.lower()}, {"model_id": repo} if repo else {"alias": alias}):
        params, block = resolve("default", **kw)
        assert block["name"] == preset and block["requested"] == "default" and "notice" not in block
        assert params.as_dict() == PRESETS[preset].values
    assert identify_model(repo or alias) == alias


def test_any_other_model_gets_ocean_r1_with_a_notice():
    params, block = resolve("default", model_id="someone/Other-VL-7B")
    assert block["name"] == "ocean-r1" and params.as_dict() == PRESETS["ocean-r1"].values
    assert "someone/Other-VL-7B" in block["notice"] and "transfer poorly" in block["notice"]
    _, block = resolve("default", model_id="/home/me/models/secret-run")
    assert "transfer poorly" in block["notice"] and "/home/me" not in block["notice"]  # no local path published
    assert default_preset_for(None) == ("ocean-r1", block["notice"])
    # an explicit preset is taken as asked, with no notice
    _, block = resolve("kimi-vl", model_id="someone/Other-VL-7B")
    assert block["name"] == "kimi-vl" and "notice" not in block


def test_every_value_names_its_source():
    _, block = resolve("ocean-r1")
    assert set(block["sources"].values()) == {"paper-main"} and block["from_paper"] is True
    _, block = resolve("r1-onevision")
    assert set(block["sources"].values()) == {"paper-supplement"} and block["from_paper"] is False
    assert block["source_notes"]["paper-supplement"] == (
        "the paper's supplementary material as transcribed by a public reproduction; not checked against the PDF")
    assert sorted(block["values_from_paper"]) == sorted(block["sources"])
    _, block = resolve("demo")
    assert block["sources"]["tau_perc"] == "headbake" and block["sources"]["g_perc"] == "paper-main"
    _, block = resolve("default", {"tau_perc": 0.3}, alias="Ocean-R1")
    assert block["sources"]["tau_perc"] == "override" and block["from_paper"] is False
    assert block["overrides"] == ["tau_perc"] and "tau_perc" not in block["values_from_paper"]
    assert set(SOURCES) >= {s for p in PRESETS.values() for s in p.sources.values()}


def test_aliases_name_existing_presets_and_presets_command_says_where_values_come_from():
    from headbake.model.aliases import aliases

    for alias, spec in aliases().items():
        assert spec.get("preset") in PRESETS, alias
    assert preset_names()[0] == "default"
    with pytest.raises(HeadbakeError, match="choose one of: default, ocean-r1"):
        resolve("nope")
    text = describe()
    assert "0.22*" in text and "0.3+" in text and "0.27+" in text and "1.4+" in text
    assert "not checked against the PDF" in text and "transfer poorly" in text
    assert "Kimi-VL, Kimi-VL-2506 -> kimi-vl" in text and "demo -> demo" in text


def test_readme_demo_selects_in_the_papers_band_without_a_warning(tmp_path):
    """`headbake convert demo --preset default` with the embedded set: 3-18% of heads, no warning."""
    from headbake.calibrate.run import CalibrateOptions, calibrate
    from headbake.calibrate.selection import PAPER_DEGRADED_SHARE
    from headbake.demo import build_tiny_qwen25vl
    from headbake.hub.download import DEMO_LAYERS

    path = build_tiny_qwen25vl(tmp_path / "demo", num_layers=DEMO_LAYERS)  # what ensure_demo builds
    doc = calibrate(CalibrateOptions(model=str(path), preset="default", progress=False,
                                     source={"id": "demo", "revision": None}))
    assert doc["preset"]["name"] == "demo" and doc["samples"] == 64
    assert 0.03 <= doc["counts"]["share"] < PAPER_DEGRADED_SHARE, doc["counts"]
    assert doc["warnings"] == []
    assert doc["prompt"]["user"] == "{question}" and doc["tokens"]["image_tokens"]["n"] == 64
    assert doc["agreement"]["static_selected"] == doc["counts"]["perceptual"] + doc["counts"]["reasoning"]
