"""Model knowledge from config.json alone."""

import json

import pytest

from headbake.checkpoint import open_checkpoint
from headbake.errors import HeadbakeError
from headbake.model.info import architectures, load_model_info, model_info, o_proj_targets


def test_qwen25vl_nested_and_legacy_configs():
    nested = {"model_type": "qwen2_5_vl", "image_token_id": 151655, "video_token_id": 151656,
              "text_config": {"hidden_size": 3584, "num_attention_heads": 28, "num_hidden_layers": 28}}
    legacy = {"model_type": "qwen2_5_vl", "hidden_size": 3584, "num_attention_heads": 28, "num_hidden_layers": 28,
              "image_token_id": 151655, "video_token_id": 151656, "vision_config": {"num_heads": 16}}
    for cfg in (nested, legacy):
        info = model_info(cfg)
        assert (info.num_layers, info.num_heads, info.head_dim) == (28, 28, 128)
        assert info.visual_token_ids == (151655, 151656)


def test_kimi_and_deepseek_use_v_head_dim():
    kimi = {"model_type": "kimi_vl", "media_placeholder_token_id": 163605,
            "text_config": {"hidden_size": 2048, "num_attention_heads": 16, "num_hidden_layers": 27,
                            "v_head_dim": 128, "qk_nope_head_dim": 128, "qk_rope_head_dim": 64}}
    info = model_info(kimi)
    assert (info.num_layers, info.num_heads, info.head_dim) == (27, 16, 128)
    assert info.visual_token_ids == (163605,)
    ds = model_info({"model_type": "deepseek_v3", "hidden_size": 64, "num_attention_heads": 4,
                     "num_hidden_layers": 2, "v_head_dim": 12, "qk_nope_head_dim": 8, "qk_rope_head_dim": 8})
    assert ds.head_dim == 12


def test_unknown_model_type_names_it_and_lists_supported():
    with pytest.raises(HeadbakeError) as e:
        model_info({"model_type": "gpt2"})
    msg = str(e.value)
    assert "'gpt2'" in msg and "qwen2_5_vl" in msg and "kimi_vl" in msg


def test_every_architecture_entry_is_complete():
    for name, arch in architectures().items():
        assert arch["o_proj"] and arch["runtime_layers"] and arch["width"], name
        assert all("{layer}" in t for t in arch["o_proj"]), name


def test_o_proj_targets_on_real_checkpoint_and_shape_check(tiny_bf16, tmp_path):
    info = load_model_info(tiny_bf16)
    targets = o_proj_targets(info, open_checkpoint(tiny_bf16))
    assert [t.layer for t in targets] == list(range(info.num_layers))
    assert all(t.weight.startswith("model.layers.") and "visual" not in t.weight for t in targets)
    cfg = json.loads((tiny_bf16 / "config.json").read_text())
    cfg["text_config"]["num_attention_heads"] = 8  # 8 x 8 != 64 columns... head_dim now 8, width 64: use 5
    cfg["text_config"]["num_attention_heads"] = 5
    with pytest.raises(HeadbakeError, match="in_features"):
        o_proj_targets(model_info(cfg), open_checkpoint(tiny_bf16))
