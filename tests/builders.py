"""Checkpoint builders used only by tests (the demo Qwen2.5-VL lives in headbake.demo)."""

from __future__ import annotations

import json
from pathlib import Path


def build_kimi_layout(out: Path, dtype="bfloat16") -> Path:
    """A checkpoint with Kimi-VL's config and on-disk key layout (no model code: it is remote-code only)."""
    import torch
    from safetensors.torch import save_file

    out.mkdir(parents=True)
    layers, heads, v_dim, hidden = 3, 4, 8, 32
    config = {
        "model_type": "kimi_vl",
        "architectures": ["KimiVLForConditionalGeneration"],
        "media_placeholder_token_id": 163605,
        "text_config": {
            "model_type": "deepseek_v3", "hidden_size": hidden, "num_hidden_layers": layers,
            "num_attention_heads": heads, "num_key_value_heads": heads, "v_head_dim": v_dim,
            "qk_nope_head_dim": 8, "qk_rope_head_dim": 4, "kv_lora_rank": 16, "vocab_size": 64,
        },
        "vision_config": {"model_type": "moonvit", "hidden_size": 16, "num_attention_heads": 2, "num_hidden_layers": 1},
    }
    (out / "config.json").write_text(json.dumps(config, indent=2))
    (out / "tokenizer_config.json").write_text(json.dumps({"model_max_length": 128}))
    g = torch.Generator().manual_seed(0)
    dt = getattr(torch, dtype)

    def r(*shape):
        return torch.randn(*shape, generator=g).to(dt)

    shard1 = {"language_model.model.embed_tokens.weight": r(64, hidden),
              "vision_tower.encoder.blocks.0.wo.weight": r(16, 16),
              "multi_modal_projector.linear_1.weight": r(hidden, 16)}
    shard2 = {"language_model.lm_head.weight": r(64, hidden)}
    for l in range(layers):
        target = shard1 if l < 2 else shard2
        target[f"language_model.model.layers.{l}.self_attn.o_proj.weight"] = r(hidden, heads * v_dim)
        target[f"language_model.model.layers.{l}.self_attn.kv_b_proj.weight"] = r(heads * (8 + v_dim), 16)
        target[f"language_model.model.layers.{l}.input_layernorm.weight"] = r(hidden)
    names = {"model-00001-of-00002.safetensors": shard1, "model-00002-of-00002.safetensors": shard2}
    wmap = {}
    for fname, tensors in names.items():
        save_file(tensors, str(out / fname), metadata={"format": "pt", "origin": "headbake-test"})
        wmap.update({k: fname for k in tensors})
    index = {"metadata": {"total_size": sum(t.numel() * t.element_size() for s in names.values() for t in s.values())},
             "weight_map": dict(sorted(wmap.items()))}
    (out / "model.safetensors.index.json").write_text(json.dumps(index, indent=2))
    return out


def build_deepseek_v3(out: Path, dtype="float32") -> Path:
    """A tiny real DeepseekV3 (MLA: o_proj input is heads x v_head_dim, not the q/k head width)."""
    import torch
    from transformers import DeepseekV3Config, DeepseekV3ForCausalLM

    cfg = DeepseekV3Config(
        vocab_size=128, hidden_size=64, intermediate_size=128, moe_intermediate_size=32, num_hidden_layers=2,
        num_attention_heads=4, num_key_value_heads=4, n_routed_experts=4, num_experts_per_tok=2,
        n_shared_experts=1, first_k_dense_replace=1, kv_lora_rank=16, q_lora_rank=24, qk_rope_head_dim=8,
        qk_nope_head_dim=8, v_head_dim=12, n_group=1, topk_group=1, max_position_embeddings=256,
        initializer_range=0.1, tie_word_embeddings=False,
    )
    torch.manual_seed(0)
    model = DeepseekV3ForCausalLM(cfg).eval().to(getattr(torch, dtype))
    model.save_pretrained(out)
    return out


def write_gains(path: Path, info, cells: dict) -> Path:
    """A gains file with 1.0 everywhere except ``cells[(layer, head)] = gain``."""
    from headbake.fsutil import write_json_atomic
    from headbake.gains import gains_document

    g = [[1.0] * info.num_heads for _ in range(info.num_layers)]
    for (l, h), v in cells.items():
        g[l][h] = v
    write_json_atomic(path, gains_document(g, info))
    return path
