"""Which query positions ``i*`` the probe reads.

* ``last`` (default): the last prompt token, i.e. the position whose output
  is the first answer token. This is a choice, not the paper's ``i*``: the
  paper defines S_v at one query position ``i*`` but does not say which.
* ``last_k``: the mean over the last k prompt tokens (the generation prompt
  ``<|im_start|>assistant\\n`` and what precedes it).
* ``generated_k``: greedy-generate k tokens, then probe one forward pass over
  prompt + generated tokens at the positions holding the first k generated
  tokens (each such row is the query that emits the next token). A sample
  that stops early (EOS) contributes only its tokens up to and including EOS.

The paper names single-position fragility as a limitation; the last two
modes average over several positions per sample. Each sample is one
observation for the statistics: its value is the mean over its positions.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from headbake.errors import HeadbakeError

MODES = ("last", "last_k", "generated_k")
MAX_K = 256


@dataclass(frozen=True)
class QuerySpec:
    mode: str = "last"
    k: int = 1

    def as_dict(self) -> dict:
        return {"mode": self.mode, "k": self.k}


def query_spec(mode: str, k: int | None) -> QuerySpec:
    m = (mode or "last").replace("-", "_")
    if m not in MODES:
        raise HeadbakeError(f"unknown query mode {mode!r}; choose last, last-k or generated-k")
    if m == "last":
        if k not in (None, 1):
            raise HeadbakeError("--k applies to --query last-k or generated-k only")
        return QuerySpec("last", 1)
    if k is None:
        raise HeadbakeError(f"--query {mode} needs --k N")
    if isinstance(k, bool) or not isinstance(k, int) or not 1 <= k <= MAX_K:
        raise HeadbakeError(f"--k must be an integer in 1..{MAX_K}, got {k}")
    return QuerySpec(m, k)


def prompt_positions(inputs, spec: QuerySpec):
    """``(positions [B, k], weights [B, k])`` of the last k prompt tokens (left padding: same indices for all)."""
    ids = inputs["input_ids"]
    bsz, length = ids.shape
    k = spec.k if spec.mode == "last_k" else 1
    if k > length:
        raise HeadbakeError(f"--k {k} is longer than the prompt ({length} tokens)")
    pos = torch.arange(length - k, length, device=ids.device).expand(bsz, k).contiguous()
    return pos, torch.ones(bsz, k, dtype=torch.float32)


def _eos_ids(model) -> set:
    gc = getattr(model, "generation_config", None)
    eos = getattr(gc, "eos_token_id", None)
    if eos is None:
        eos = getattr(model.config, "eos_token_id", None)
    if eos is None:
        return set()
    return {int(e) for e in (eos if isinstance(eos, (list, tuple)) else [eos])}


def generated_inputs(model, inputs, k: int, visual_ids=()):
    """Greedy-generate ``k`` tokens; return ``(inputs over prompt+generated, positions, weights)``.

    ``visual_ids`` (image/video placeholders) are banned from generation: one
    generated placeholder would break the image-feature count of the probe pass.
    """
    ids = inputs["input_ids"]
    bsz, plen = ids.shape
    kwargs = {key: v for key, v in inputs.items()}
    gc = getattr(model, "generation_config", None)
    pad = getattr(gc, "pad_token_id", None)
    with torch.no_grad():
        seqs = model.generate(
            **kwargs, max_new_tokens=k, min_new_tokens=1, do_sample=False, num_beams=1,
            temperature=None, top_p=None, top_k=None, pad_token_id=pad,
            bad_words_ids=[[int(i)] for i in visual_ids] or None,
        )
    new = seqs[:, plen:]
    n = new.shape[1]
    if n == 0:
        raise HeadbakeError("generation produced no tokens")
    eos = _eos_ids(model)
    if eos:
        is_eos = torch.isin(new, torch.tensor(sorted(eos), device=new.device))
        before = torch.cumsum(is_eos.long(), 1) - is_eos.long()  # EOS seen strictly before t
        valid = before == 0
    else:
        valid = torch.ones_like(new, dtype=torch.bool)
    out = dict(inputs)
    out["input_ids"] = seqs
    mask = inputs.get("attention_mask")
    if mask is None:
        mask = torch.ones(bsz, plen, dtype=torch.long, device=ids.device)
    out["attention_mask"] = torch.cat([mask, valid.to(mask.dtype)], 1)
    # Per-token side inputs (e.g. Qwen's mm_token_type_ids): generated tokens are plain text (0).
    for key, v in inputs.items():
        if key in ("input_ids", "attention_mask") or not isinstance(v, torch.Tensor):
            continue
        if v.dim() == 2 and tuple(v.shape) == (bsz, plen) and not v.is_floating_point():
            out[key] = torch.cat([v, torch.zeros(bsz, n, dtype=v.dtype, device=v.device)], 1)
    positions = (plen + torch.arange(n, device=ids.device)).expand(bsz, n).contiguous()
    return out, positions, valid.float().cpu()
