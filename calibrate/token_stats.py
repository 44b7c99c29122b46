"""How many image tokens (and prompt tokens) calibration saw, and whether that is the paper's regime.

S_v is a raw sum of attention over image tokens, so its scale depends on
how many there are: the paper's thresholds were set on benchmark images that
give a 7B Qwen2.5-VL several hundred to over a thousand image tokens. A
calibration that saw far fewer selects heads on a different scale, so it
says so.
"""

from __future__ import annotations

from transformers import Qwen2VLImageProcessor

MIN_MEAN_IMAGE_TOKENS = 256

# Qwen2.5-VL-7B-Instruct's image processor settings (its preprocessor_config.json).
QWEN25VL_7B_IMAGE_PROCESSOR = {
    "min_pixels": 3136, "max_pixels": 12845056, "patch_size": 14, "merge_size": 2, "temporal_patch_size": 2,
}


def summarize(counts) -> dict:
    """``{"mean", "min", "max", "n"}`` of a list of per-sample counts."""
    counts = [int(c) for c in counts]
    if not counts:
        return {"mean": None, "min": None, "max": None, "n": 0}
    return {"mean": sum(counts) / len(counts), "min": min(counts), "max": max(counts), "n": len(counts)}


def token_counts(inputs, visual_mask) -> tuple[list[int], list[int]]:
    """Per sample of a processor batch: (image tokens, prompt tokens without padding)."""
    images = visual_mask.sum(1).tolist()
    mask = inputs.get("attention_mask")
    if mask is None:
        lengths = [int(inputs["input_ids"].shape[1])] * len(images)
    else:
        lengths = mask.sum(1).tolist()
    return [int(x) for x in images], [int(x) for x in lengths]


def image_token_warning(mean: float | None, is_demo: bool) -> str | None:
    """A warning when a real model saw a mean below ``MIN_MEAN_IMAGE_TOKENS`` image tokens per sample."""
    if is_demo or mean is None or mean >= MIN_MEAN_IMAGE_TOKENS:
        return None
    return (
        f"the calibration images gave {mean:.0f} image tokens per sample on average (fewer than "
        f"{MIN_MEAN_IMAGE_TOKENS}); the paper's thresholds were set on benchmark images of several hundred to over "
        "a thousand tokens and S_v grows with that count, so use larger images (long side 448-1024 px) or raise "
        "the processor's min_pixels"
    )


def qwen25vl_7b_image_processor():
    """A real ``Qwen2VLImageProcessor`` configured like Qwen2.5-VL-7B's, built offline."""
    return Qwen2VLImageProcessor(**QWEN25VL_7B_IMAGE_PROCESSOR)


def processor_image_tokens(image_processor, images) -> list[int]:
    """Image tokens per image as the processor expands them: grid t*h*w / merge_size**2."""
    merge = int(getattr(image_processor, "merge_size", 2))
    out = []
    for img in images:
        grid = image_processor(images=[img], return_tensors="np")["image_grid_thw"][0]
        out.append(int(grid[0]) * int(grid[1]) * int(grid[2]) // (merge * merge))
    return out
