"""A tiny but complete Qwen2.5-VL, built offline from real transformers classes.

It backs the ``demo`` alias and every test: real config, random weights in
several safetensors shards, a byte-level BPE tokenizer trained on the spot,
the real image/video processors and a chat template, so the whole pipeline
(processor -> calibrate -> bake -> verify -> load with stock transformers)
runs with no network.
"""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

SPECIAL_TOKENS = [
    "<|endoftext|>", "<|im_start|>", "<|im_end|>", "<|object_ref_start|>", "<|object_ref_end|>",
    "<|box_start|>", "<|box_end|>", "<|quad_start|>", "<|quad_end|>", "<|vision_start|>",
    "<|vision_end|>", "<|vision_pad|>", "<|image_pad|>", "<|video_pad|>",
]

CHAT_TEMPLATE = (
    "{% for message in messages %}"
    "{% if loop.first and message['role'] != 'system' %}<|im_start|>system\nYou are a helpful assistant.<|im_end|>\n{% endif %}"
    "<|im_start|>{{ message['role'] }}\n"
    "{% if message['content'] is string %}{{ message['content'] }}"
    "{% else %}{% for content in message['content'] %}"
    "{% if content['type'] == 'image' or 'image' in content %}<|vision_start|><|image_pad|><|vision_end|>"
    "{% elif content['type'] == 'video' or 'video' in content %}<|vision_start|><|video_pad|><|vision_end|>"
    "{% elif 'text' in content %}{{ content['text'] }}{% endif %}"
    "{% endfor %}{% endif %}<|im_end|>\n"
    "{% endfor %}"
    "{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}"
)

CORPUS = [
    "How many red circles are in the picture? Count them step by step.",
    "The bar chart shows sales for each month; which month is the highest?",
    "In the triangle ABC, angle A is 40 degrees and angle B is 60 degrees. Find angle C.",
    "Describe the image. Is the square left of the circle? Answer yes or no.",
    "Think carefully: first look at the figure, then reason about the answer.",
    "The answer is 3. The answer is 80 degrees. There are 5 blue squares.",
    "What color is the largest shape? What is the sum of the two bars?",
]


def _tokenizer(extra_corpus=()):
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import PreTrainedTokenizerFast

    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=420, special_tokens=SPECIAL_TOKENS, initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    tok.train_from_iterator((CORPUS + list(extra_corpus)) * 4, trainer=trainer)
    return PreTrainedTokenizerFast(
        tokenizer_object=tok, eos_token="<|im_end|>", pad_token="<|endoftext|>", unk_token=None,
        model_max_length=32768, padding_side="left",
    )


def sweep_stale_partials(out: str | os.PathLike) -> list[Path]:
    """Remove ``.OUT.partial-<pid>`` build folders left by a demo build that was killed (its pid is gone)."""
    from headbake.fsutil import sweep_dead_pid_dirs

    out = Path(out)
    return sweep_dead_pid_dirs(out.parent, f".{out.name}.partial-")


def build_tiny_qwen25vl(
    out_dir: str | os.PathLike,
    dtype: str = "bfloat16",
    num_layers: int = 4,
    shards: int = 2,
    seed: int = 0,
    hidden_size: int = 64,
    num_heads: int = 4,
    num_kv_heads: int = 2,
    rope_theta: float = 10000.0,
    extra_corpus=(),
    edit=None,
) -> Path:
    """Write the tiny model to ``out_dir`` (atomically) and return it.

    ``extra_corpus`` adds sentences to the tokenizer's training text (so their
    words become whole tokens); ``edit(model, tokenizer)`` may set weights by
    hand before the model is cast to ``dtype`` and saved (tests plant circuits so).
    """
    import torch
    from transformers import (
        Qwen2_5_VLConfig, Qwen2_5_VLForConditionalGeneration, Qwen2_5_VLProcessor,
        Qwen2VLImageProcessor, Qwen2VLVideoProcessor,
    )

    from transformers.utils import logging as hf_logging

    hf_logging.disable_progress_bar()
    out = Path(out_dir)
    sweep_stale_partials(out)
    tmp = out.with_name(f".{out.name}.partial-{os.getpid()}")
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)

    tokenizer = _tokenizer(extra_corpus)
    ids = {t: tokenizer.convert_tokens_to_ids(t) for t in SPECIAL_TOKENS}
    head_dim = hidden_size // num_heads
    quarter = head_dim // 4
    mrope = [head_dim // 2 - 2 * quarter, quarter, quarter]
    config = Qwen2_5_VLConfig(
        text_config=dict(
            vocab_size=len(tokenizer), hidden_size=hidden_size, intermediate_size=2 * hidden_size,
            num_hidden_layers=num_layers, num_attention_heads=num_heads, num_key_value_heads=num_kv_heads,
            max_position_embeddings=4096, rms_norm_eps=1e-6, initializer_range=0.08,
            rope_parameters={"rope_type": "default", "rope_theta": float(rope_theta), "mrope_section": mrope},
            bos_token_id=ids["<|endoftext|>"], eos_token_id=ids["<|im_end|>"], pad_token_id=ids["<|endoftext|>"],
        ),
        vision_config=dict(
            depth=2, hidden_size=32, intermediate_size=64, num_heads=2, out_hidden_size=hidden_size,
            patch_size=14, spatial_merge_size=2, temporal_patch_size=2, window_size=56,
            fullatt_block_indexes=[1], initializer_range=0.08,
        ),
        image_token_id=ids["<|image_pad|>"], video_token_id=ids["<|video_pad|>"],
        vision_start_token_id=ids["<|vision_start|>"], vision_end_token_id=ids["<|vision_end|>"],
        tie_word_embeddings=False,
    )
    torch.manual_seed(seed)
    model = Qwen2_5_VLForConditionalGeneration(config).eval()
    model.generation_config.eos_token_id = ids["<|im_end|>"]
    model.generation_config.pad_token_id = ids["<|endoftext|>"]
    if edit is not None:
        edit(model, tokenizer)
    model.to(getattr(torch, dtype))
    total = sum(p.numel() * p.element_size() for p in model.state_dict().values())
    model.save_pretrained(tmp, max_shard_size=max(total // shards + 1, 1024))

    pixels = 14 * 14 * 4
    processor = Qwen2_5_VLProcessor(
        image_processor=Qwen2VLImageProcessor(min_pixels=pixels * 4, max_pixels=pixels * 16),
        video_processor=Qwen2VLVideoProcessor(min_pixels=pixels * 4, max_pixels=pixels * 16),
        tokenizer=tokenizer,
        chat_template=CHAT_TEMPLATE,
    )
    processor.save_pretrained(tmp)
    info = {"built_by": "headbake.demo.build_tiny_qwen25vl", "dtype": dtype, "num_layers": num_layers, "seed": seed}
    (tmp / "headbake_demo.json").write_text(json.dumps(info, indent=2) + "\n")
    if out.exists():
        shutil.rmtree(out)
    os.replace(tmp, out)
    return out
