"""Runtime Class-Conditioned Rescaling: the paper's method as a forward pre-hook.

This is the reference the bake is verified against, and what evaluation and tuning
apply to the unbaked model (so it lives in the shared package, not in bake/). Each decoder layer's
``o_proj`` input is ``concat(head_0 .. head_{H-1})``; the hook multiplies head
h's slice by its gain (in at least float32, rounded once to the activation dtype, so a
gain of 1.16 is not first rounded to bfloat16's 1.15625).

Usage::

    from headbake.runtime import apply_gains
    with apply_gains(model, gains):      # gains: [num_layers][num_heads]
        logits = model(**inputs).logits
"""

from __future__ import annotations

import torch

from headbake.errors import HeadbakeError
from headbake.model.info import decoder_layers


class GainsHandle:
    """Removable set of pre-hooks; also a context manager."""
    def __init__(self, handles):
        self._handles = handles

    def remove(self) -> None:
        for h in self._handles:
            h.remove()
        self._handles = []

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.remove()
        return False


def apply_gains(model, gains, paths=None) -> GainsHandle:
    """Scale each head's slice of every decoder ``o_proj`` input by its gain."""
    layers = decoder_layers(model, paths)
    if len(gains) != len(layers):
        raise HeadbakeError(f"gains cover {len(gains)} layers, the model has {len(layers)}")
    handles = []
    for layer, row in zip(layers, gains):
        o_proj = layer.self_attn.o_proj
        width = o_proj.in_features
        if width % len(row):
            raise HeadbakeError(f"o_proj in_features {width} is not a multiple of {len(row)} heads")
        if all(g == 1.0 for g in row):
            continue
        scale = torch.tensor(row, dtype=torch.float64).repeat_interleave(width // len(row))
        cache = {}

        def pre_hook(module, args, _scale=scale, _cache=cache):
            x = args[0]
            key = (x.device, x.dtype)
            s = _cache.get(key)
            if s is None:
                s = _cache[key] = _scale.to(x.device, torch.promote_types(x.dtype, torch.float32))
            return ((x.to(s.dtype) * s).to(x.dtype),) + tuple(args[1:])

        handles.append(o_proj.register_forward_pre_hook(pre_hook))
    return GainsHandle(handles)
