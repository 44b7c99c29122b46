"""Runtime Class-Conditioned Rescaling: the paper's method as a forward pre-hook.

This is the reference the bake is verified against. Each decoder layer's
``o_proj`` input is ``concat(head_0 .. head_{H-1})``; the hook multiplies head
h's slice by its gain (in at least float32, rounded once to the activation dtype, so a
gain of 1.16 is not first rounded to bfloat16's 1.15625).

Usage::

    from headbake.bake.hook import apply_gains
    with apply_gains(model, gains):      # gains: [num_layers][num_heads]
        logits = model(**inputs).logits
"""

from __future__ import annotations

from headbake.errors import HeadbakeError


def _get_path(obj, path: str):
    for part in path.split("."):
        obj = getattr(obj, part, None)
        if obj is None:
            return None
    return obj


def decoder_layers(model, runtime_paths=None):
    """The language model's decoder layers (never the vision tower's blocks)."""
    if runtime_paths is None:
        from headbake.modelinfo import architectures

        mt = getattr(model.config, "model_type", None)
        arch = architectures().get(mt)
        runtime_paths = arch["runtime_layers"] if arch else ["model.language_model.layers", "model.layers"]
    for path in runtime_paths:
        layers = _get_path(model, path)
        if layers is not None and len(layers) and hasattr(layers[0], "self_attn"):
            return layers
    raise HeadbakeError(f"cannot find the decoder layers of {type(model).__name__} (tried {', '.join(runtime_paths)})")


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


def apply_gains(model, gains, runtime_paths=None) -> GainsHandle:
    """Scale each head's slice of every decoder ``o_proj`` input by its gain."""
    import torch

    layers = decoder_layers(model, runtime_paths)
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
