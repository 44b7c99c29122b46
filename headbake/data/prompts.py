"""Turn (image, question) samples into model inputs with the model's own processor.

Using the processor's chat template (not a hand-built string) puts the image
placeholders and the generation prompt exactly where the model expects them,
so the last prompt token is the position that emits the first answer token.
"""

from __future__ import annotations


def chat_text(processor, question: str, num_images: int = 1) -> str:
    content = [{"type": "image"} for _ in range(num_images)] + [{"type": "text", "text": question}]
    messages = [{"role": "user", "content": content}]
    return processor.apply_chat_template(messages, tokenize=False, add_generation_prompt=True)


def build_inputs(processor, samples, device=None):
    """Left-padded batch for ``samples`` (objects with ``.image`` and ``.question``).

    ``.image`` may be one PIL image or a list of them.
    """
    texts, images = [], []
    for s in samples:
        imgs = s.image if isinstance(s.image, (list, tuple)) else [s.image]
        texts.append(chat_text(processor, s.question, len(imgs)))
        images.extend(imgs)
    tok = getattr(processor, "tokenizer", None)
    if tok is not None:
        tok.padding_side = "left"
    batch = processor(text=texts, images=images or None, padding=True, return_tensors="pt")
    batch.pop("token_type_ids", None)
    return batch.to(device) if device is not None else batch
