"""Calibrate: measure each head's visual attention share S_v and select heads.

Modules: ``probe`` (S_v from the attention call, registry or hooks path),
``queries`` (which query positions), ``stats`` (mergeable
per-head statistics, bootstrap stability), ``selection`` (the paper's
rules), ``presets`` (per-model values with their sources; what ``default``
means), ``data`` (calibration samples), ``token_stats`` (image/prompt token
counts, the paper's regime), ``agreement`` (static set vs the per-input rule;
comparing two calibrations), ``per_input`` (the per-input runtime mode),
``heatmap`` (table and PNG), ``run`` (one calibration), ``cli``.

Importing this package loads neither torch nor transformers.
"""

from __future__ import annotations


def visual_attention_ratio(model, inputs, visual_mask=None, query_positions=(-1,), *, method="auto"):
    """``S_v`` ``[num_layers, num_heads]`` float32, averaged over samples and query positions.

    See ``headbake.calibrate.probe.visual_attention_ratio``.
    """
    from headbake.calibrate.probe import visual_attention_ratio as _impl

    return _impl(model, inputs, visual_mask=visual_mask, query_positions=query_positions, method=method)


def apply_per_input(model, params, query="last", k=None, visual_token_ids=None):
    """Rescale, per input, the heads that qualify on that input's own S_v (a context manager).

    See ``headbake.calibrate.per_input.apply_per_input``.
    """
    from headbake.calibrate.per_input import apply_per_input as _impl

    return _impl(model, params, query=query, k=k, visual_token_ids=visual_token_ids)


__all__ = ["apply_per_input", "visual_attention_ratio"]
