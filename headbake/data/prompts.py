"""Turn (image, question) samples into model inputs the way the model is used.

One builder for calibration, verification and evaluation: the model's own
chat template (through its processor, so image placeholders and the
generation prompt land exactly where the model expects them, and the last
prompt token is the one that emits the first answer token), and the
model's own way of asking -- for the reasoning models, their think/answer
instruction. That wording is per-alias data in ``aliases.json``
(``prompt``); ``--prompt-template FILE`` replaces it. S_v is a share of the
query position's attention, so the words around the image change it: calibrate
with the prompt the model is used with.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from pathlib import Path

from headbake.errors import HeadbakeError
from headbake.model.aliases import aliases

SLOT = "{question}"
MAX_TEMPLATE_BYTES = 64 * 1024


@dataclass(frozen=True)
class PromptTemplate:
    """A user text with one ``{question}`` slot, an optional system message, and where it came from."""
    user: str = SLOT
    system: str | None = None
    source: str = "the question alone"

    def __post_init__(self):
        _check_user(self.user, self.source)
        if self.system is not None and (not isinstance(self.system, str) or not self.system.strip()):
            raise HeadbakeError(f"{self.source}: \"system\" must be a non-empty string when given")

    def render(self, question: str) -> str:
        # Plain replacement, not str.format: templates may hold other braces (JSON, LaTeX).
        return self.user.replace(SLOT, question)

    def messages(self, question: str, num_images: int = 1) -> list[dict]:
        content = [{"type": "image"} for _ in range(num_images)] + [{"type": "text", "text": self.render(question)}]
        msgs = [{"role": "system", "content": self.system}] if self.system else []
        return msgs + [{"role": "user", "content": content}]

    def as_dict(self) -> dict:
        """The record's ``prompt`` block (no local path: the source names a file by its name only)."""
        text = json.dumps({"system": self.system, "user": self.user}, sort_keys=True)
        return {"system": self.system, "user": self.user, "source": self.source,
                "sha256": hashlib.sha256(text.encode()).hexdigest()}


def _check_user(user, where: str) -> None:
    if not isinstance(user, str) or not user.strip():
        raise HeadbakeError(f"{where}: the prompt template is empty; it needs a {SLOT} slot")
    n = user.count(SLOT)
    if n != 1:
        raise HeadbakeError(
            f"{where}: the prompt template must contain {SLOT} exactly once (found {n}); "
            "it is where each calibration question goes"
        )


BARE = PromptTemplate()


def load_prompt_template(path) -> PromptTemplate:
    """Read ``--prompt-template FILE``: a text file (the user message) or JSON ``{"user": ..., "system": ...}``.

    The user text must hold ``{question}`` exactly once; the image is placed
    before it by the model's chat template.
    """
    p = Path(path)
    try:
        raw = p.read_bytes()
    except FileNotFoundError:
        raise HeadbakeError(f"prompt template not found: {p}") from None
    except IsADirectoryError:
        raise HeadbakeError(f"prompt template is a directory: {p}") from None
    if len(raw) > MAX_TEMPLATE_BYTES:
        raise HeadbakeError(f"prompt template {p} is {len(raw)} bytes; a prompt template is at most "
                            f"{MAX_TEMPLATE_BYTES} bytes")
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as e:
        raise HeadbakeError(f"prompt template is not UTF-8 text: {p} ({e})") from None
    where = f"prompt template {p.name}"
    if p.suffix.lower() == ".json":
        try:
            obj = json.loads(text)
        except ValueError as e:
            raise HeadbakeError(f"{where}: not valid JSON ({e})") from None
        if not isinstance(obj, dict) or "user" not in obj:
            raise HeadbakeError(f"{where}: expected a JSON object with \"user\" (and optionally \"system\")")
        unknown = sorted(set(obj) - {"user", "system"})
        if unknown:
            raise HeadbakeError(f"{where}: unknown field(s) {', '.join(unknown)}; use \"user\" and \"system\"")
        if not isinstance(obj["user"], str):
            raise HeadbakeError(f"{where}: \"user\" must be a string")
        return PromptTemplate(obj["user"], obj.get("system"), f"file {p.name}")
    return PromptTemplate(text.rstrip("\r\n"), None, f"file {p.name}")


def prompt_for(alias: str | None) -> PromptTemplate:
    """The alias's own prompt (``aliases.json``), or the bare question for a model headbake does not know."""
    if not alias:
        return BARE

    spec = (aliases().get(alias) or {}).get("prompt")
    if not spec:
        return BARE
    return PromptTemplate(spec["user"], spec.get("system"), spec.get("source") or f"{alias}'s prompt in aliases.json")


def chat_text(processor, question: str, num_images: int = 1, template: PromptTemplate | None = None) -> str:
    messages = (template or BARE).messages(question, num_images)
    return processor.apply_chat_template(messages, tokenize=False, add_generation_prompt=True)


def build_inputs(processor, samples, device=None, template: PromptTemplate | None = None):
    """Left-padded batch for ``samples`` (objects with ``.image`` and ``.question``).

    ``.image`` may be one PIL image or a list of them; ``template`` is the
    model's prompt (``prompt_for(alias)`` or a loaded file; default: the bare question).
    """
    texts, images = [], []
    for s in samples:
        imgs = s.image if isinstance(s.image, (list, tuple)) else [s.image]
        texts.append(chat_text(processor, s.question, len(imgs), template))
        images.extend(imgs)
    tok = getattr(processor, "tokenizer", None)
    if tok is not None:
        tok.padding_side = "left"
    batch = processor(text=texts, images=images or None, padding=True, return_tensors="pt")
    batch.pop("token_type_ids", None)
    return batch.to(device) if device is not None else batch
