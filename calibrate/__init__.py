"""Calibrate: measure each head's visual attention share S_v and select heads.

Modules: ``probe`` (S_v from the attention call, registry or hooks path),
``queries`` (which query positions), ``stats`` (mergeable
per-head statistics, bootstrap stability), ``selection`` (the paper's
rules), ``presets``, ``data`` (calibration samples), ``heatmap`` (table and
PNG), ``run`` (one calibration), ``cli``.

Importing this package loads neither torch nor transformers.
"""

from __future__ import annotations


def visual_attention_ratio(model, inputs, visual_mask=None, query_positions=(-1,), *, method="auto"):
    """``S_v`` ``[num_layers, num_heads]`` float32, averaged over samples and query positions.

    See ``headbake.calibrate.probe.visual_attention_ratio``.
    """
    from headbake.calibrate.probe import visual_attention_ratio as _impl

    return _impl(model, inputs, visual_mask=visual_mask, query_positions=query_positions, method=method)


__all__ = ["visual_attention_ratio"]
