"""The attention probe: ``S_v`` per decoder layer and head, without L x L weights.

Registry path (Qwen2/2.5-VL and every model whose attention goes through
``transformers.AttentionInterface``): one attention function, registered
under ``PROBE_NAME``, runs the normal sdpa kernel for the layer output and
additionally takes the query rows at the probed positions only, multiplies
them with the (GQA-expanded) keys it was handed (post-RoPE, exactly what sdpa
sees), applies the same mask, softmaxes in float32 and sums over the visual
key positions. Extra memory is ``batch x heads x probed rows x L``: linear in
L. The mask function ``sdpa_mask`` is registered under the same name, because
transformers hands a custom attention function no padding mask otherwise and
left-padded batches come out silently wrong. Vision-tower calls (no
``layer_idx``, non-causal) pass straight through to sdpa.

Hooks path (Kimi-VL's remote code, which calls its attention classes
directly): forward hooks on each decoder ``self_attn`` ask the eager module
for its weights, reduce them to the probed rows at once and drop them, so at
most one layer's ``heads x L x L`` exists at a time.
"""

from __future__ import annotations

import contextvars
import inspect

import torch
from transformers.integrations.sdpa_attention import sdpa_attention_forward

from headbake.errors import HeadbakeError
from headbake.model.info import architectures, decoder_layers
from headbake.model.info import visual_token_ids

PROBE_NAME = "headbake_probe"
_ACTIVE: contextvars.ContextVar = contextvars.ContextVar("headbake_probe_state", default=None)
_REGISTERED = False


class _ProbeState:
    """What one forward pass should measure, and what it measured."""
    def __init__(self, positions, vis):
        self.positions = positions  # [B, P] long, indices into the query length
        self.vis = vis  # [B, L] bool, visual key positions
        self._on = {}
        self.rows = {}  # layer index -> [B, H, P] float32 S_v

    def on(self, device):
        got = self._on.get(device)
        if got is None:
            got = self._on[device] = (self.positions.to(device), self.vis.to(device))
        return got


def visual_share_from_qk(query, key, attention_mask, scaling, positions, vis):
    """``S_v`` ``[B, Hq, P]`` from post-RoPE ``query [B,Hq,Lq,D]`` and ``key [B,Hkv,Lk,D]``.

    ``attention_mask`` is what the attention function received: ``None``
    (plain causal, aligned bottom-right as sdpa's ``is_causal`` skip implies),
    a boolean mask (True = attend) or an additive float mask, ``[B|1, 1|H, Lq, Lk]``.
    """
    bsz, hq, lq, dim = query.shape
    hkv, lk = key.shape[1], key.shape[2]
    if hq % hkv:
        raise HeadbakeError(f"{hq} query heads are not a multiple of {hkv} key/value heads")
    if vis.shape[-1] != lk:
        raise HeadbakeError(f"visual mask covers {vis.shape[-1]} positions but attention sees {lk} keys")
    npos = positions.shape[1]
    if scaling is None:
        scaling = dim ** -0.5
    rows = query.gather(2, positions[:, None, :, None].expand(bsz, hq, npos, dim)).float()
    # GQA: query head h uses KV head h // groups; group the rows per KV head instead of repeating K.
    rows = rows.reshape(bsz, hkv, (hq // hkv) * npos, dim)
    scores = torch.matmul(rows, key.float().transpose(-1, -2)).mul_(scaling)
    scores = scores.view(bsz, hq, npos, lk)
    if attention_mask is None:
        keys = torch.arange(lk, device=key.device)
        allowed = keys[None, None, :] <= (positions + (lk - lq))[:, :, None]
        scores = scores.masked_fill(~allowed[:, None], float("-inf"))
    else:
        m = attention_mask[..., :lk]
        m = m.expand(bsz, m.shape[1], m.shape[2], lk)
        if m.shape[2] == 1:  # one mask row shared by every query (decoding)
            m_rows = m.expand(bsz, m.shape[1], npos, lk)
        else:
            m_rows = m.gather(2, positions[:, None, :, None].expand(bsz, m.shape[1], npos, lk))
        if m_rows.dtype == torch.bool:
            scores = scores.masked_fill(~m_rows, float("-inf"))
        else:
            scores = scores + m_rows.float()
    probs = torch.softmax(scores, dim=-1, dtype=torch.float32)
    return torch.matmul(probs, vis[:, None, :, None].to(torch.float32)).squeeze(-1)


def visual_share_from_weights(weights, positions, vis):
    """``S_v`` ``[B, H, P]`` from full eager weights ``[B, H, Lq, Lk]`` (hooks path)."""
    bsz, heads, _, lk = weights.shape
    if vis.shape[-1] != lk:
        raise HeadbakeError(f"visual mask covers {vis.shape[-1]} positions but attention sees {lk} keys")
    npos = positions.shape[1]
    rows = weights.gather(2, positions[:, None, :, None].expand(bsz, heads, npos, lk)).float()
    return torch.matmul(rows, vis[:, None, :, None].to(torch.float32)).squeeze(-1)


def _probe_attention(module, query, key, value, attention_mask, dropout=0.0, scaling=None, is_causal=None, **kwargs):
    """sdpa for the output; S_v of the probed rows on the side (decoder layers only)."""
    out = sdpa_attention_forward(
        module, query, key, value, attention_mask, dropout=dropout, scaling=scaling, is_causal=is_causal, **kwargs
    )
    state = _ACTIVE.get()
    layer_idx = getattr(module, "layer_idx", None)
    causal = is_causal if is_causal is not None else getattr(module, "is_causal", True)
    # Skip the vision tower (no layer index, non-causal) and passes the state does not measure
    # (the per-input mode's decode steps).
    if state is None or layer_idx is None or not causal or not getattr(state, "measuring", True):
        return out

    with torch.no_grad():
        positions, vis = state.on(query.device)
        state.rows[int(layer_idx)] = visual_share_from_qk(query, key, attention_mask, scaling, positions, vis)
    return out


def register_probe() -> str:
    """Register the probe's attention and mask functions with transformers (idempotent)."""
    global _REGISTERED
    if not _REGISTERED:
        from transformers import AttentionInterface
        from transformers.masking_utils import AttentionMaskInterface, sdpa_mask

        AttentionInterface.register(PROBE_NAME, _probe_attention)
        AttentionMaskInterface.register(PROBE_NAME, sdpa_mask)
        _REGISTERED = True
    return PROBE_NAME


def _configs(model):
    """Every config object reachable from the model (root, sub-configs, sub-models)."""
    seen, out = set(), []
    stack = [m.config for m in model.modules() if hasattr(m, "config") and hasattr(m.config, "to_dict")]
    while stack:
        cfg = stack.pop()
        if id(cfg) in seen:
            continue
        seen.add(id(cfg))
        out.append(cfg)
        for key in getattr(cfg, "sub_configs", {}) or {}:
            sub = getattr(cfg, key, None)
            if sub is not None and hasattr(sub, "to_dict"):
                stack.append(sub)
    return out


class _AttnSwitch:
    """Temporarily set a model's attention implementation; restore every config exactly."""
    def __init__(self, model, name):
        self.model, self.name = model, name

    def __enter__(self):
        self.saved = [(c, getattr(c, "_attn_implementation_internal", None)) for c in _configs(self.model)]
        self.model.set_attn_implementation(self.name)
        return self

    def __exit__(self, *exc):
        for cfg, value in self.saved:
            cfg._attn_implementation_internal = value
        return False


def _forward(model, inputs):
    kwargs = dict(inputs)
    params = inspect.signature(model.forward).parameters
    kwargs["use_cache"] = False
    # S_v needs no logits: keep one position so the LM head costs nothing at long L.
    if "logits_to_keep" in params:
        kwargs["logits_to_keep"] = 1
    elif "num_logits_to_keep" in params:
        kwargs["num_logits_to_keep"] = 1
    with torch.no_grad():
        model(**kwargs)


def _run_registry(model, inputs, positions, vis, strict=True):
    """Rows from the registered function; ``{}`` when the model cannot switch to it and not ``strict``."""
    register_probe()
    state = _ProbeState(positions, vis)
    switch = _AttnSwitch(model, PROBE_NAME)
    try:
        switch.__enter__()
    except (ValueError, NotImplementedError, AttributeError, TypeError) as e:
        switch.__exit__(None, None, None)
        if strict:
            raise HeadbakeError(f"cannot switch {type(model).__name__} to the probe's attention: {e}") from None
        return {}
    token = _ACTIVE.set(state)
    try:
        _forward(model, inputs)
    finally:
        _ACTIVE.reset(token)
        switch.__exit__(None, None, None)
    return state.rows


def _run_hooks(model, inputs, positions, vis, layers):
    """Eager weights, reduced inside a hook per layer and never kept."""
    rows, handles = {}, []

    def pre(module, args, kwargs):
        kwargs = dict(kwargs)
        kwargs["output_attentions"] = True
        return args, kwargs

    def make_post(idx):
        def post(module, args, kwargs, output):
            weights = output[1] if isinstance(output, tuple) and len(output) > 1 else None
            if not isinstance(weights, torch.Tensor) or weights.dim() != 4:
                raise HeadbakeError(
                    f"decoder layer {idx}'s attention returned no weights; load the model with "
                    "attn_implementation='eager' for the hooks probe"
                )
            p, v = positions.to(weights.device), vis.to(weights.device)
            rows[idx] = visual_share_from_weights(weights, p, v)
            return (output[0], None) + tuple(output[2:])

        return post

    needs_eager = getattr(model.config, "_attn_implementation", "eager") not in (None, "eager")
    switch = _AttnSwitch(model, "eager") if needs_eager and model._can_set_attn_implementation() else None
    try:
        for idx, layer in enumerate(layers):
            handles.append(layer.self_attn.register_forward_pre_hook(pre, with_kwargs=True))
            handles.append(layer.self_attn.register_forward_hook(make_post(idx), with_kwargs=True))
        if switch is not None:
            with switch:
                _forward(model, inputs)
        else:
            _forward(model, inputs)
    finally:
        for h in handles:
            h.remove()
    return rows


def _default_method(model) -> str:
    """Known remote-code models go straight to hooks; everything else tries the registry first."""
    arch = architectures().get(getattr(model.config, "model_type", None)) or {}
    return "hooks" if arch.get("probe") == "hooks" else "auto"


def probe_batch(model, inputs, positions, weights=None, visual_mask=None, method="auto"):
    """Per-sample ``S_v`` ``[B, num_layers, num_heads]`` (float32, CPU) for one batch.

    ``positions`` ``[B, P]``: absolute query indices per sample; ``weights``
    ``[B, P]``: which of them count (e.g. generated tokens after an EOS do
    not); each sample's value is the mean over its counted positions.
    ``method``: "registry", "hooks" or "auto" (hooks for model types known to
    bypass the registry, else the registry with a hooks fallback when the model
    cannot switch to it or no decoder layer's attention reached it).
    """
    layers = decoder_layers(model)
    num_layers = len(layers)
    input_ids = inputs.get("input_ids")
    if input_ids is None:
        raise HeadbakeError("inputs must include input_ids")
    bsz, length = input_ids.shape
    if visual_mask is None:
        visual_mask = visual_positions(input_ids, visual_token_ids(model.config))
    elif not isinstance(visual_mask, torch.Tensor):
        visual_mask = visual_positions(input_ids, tuple(visual_mask))
    vis = visual_mask.to(torch.bool)
    if tuple(vis.shape) != (bsz, length):
        raise HeadbakeError(f"visual_mask has shape {tuple(vis.shape)}, inputs have {(bsz, length)}")
    missing = [i for i in range(bsz) if not bool(vis[i].any())]
    if missing:
        raise HeadbakeError(f"sample {missing[0]} of the batch has no image tokens in its prompt")
    positions = torch.as_tensor(positions, dtype=torch.long, device=input_ids.device)
    if positions.dim() != 2 or positions.shape[0] != bsz:
        raise HeadbakeError(f"positions must be [batch, P], got {tuple(positions.shape)}")
    if bool(((positions < 0) | (positions >= length)).any()):
        raise HeadbakeError(f"query positions must lie in 0..{length - 1}")
    weights = torch.ones(positions.shape, dtype=torch.float32) if weights is None else weights.float().cpu()
    attn = inputs.get("attention_mask")
    if attn is not None:
        real = attn.to(torch.bool).gather(1, positions).cpu()
        bad = (~real) & (weights > 0)
        if bool(bad.any()):
            b = int(bad.any(1).nonzero()[0])
            raise HeadbakeError(f"a probed query position of sample {b} is padding (prompt shorter than the probed span)")
    if bool((weights.sum(1) <= 0).any()):
        raise HeadbakeError("a sample has no counted query position")

    if method == "auto":
        method = _default_method(model)
    if method not in ("auto", "registry", "hooks"):
        raise HeadbakeError(f"unknown probe method {method!r}")
    rows = {}
    if method in ("auto", "registry"):
        rows = _run_registry(model, inputs, positions, vis, strict=method == "registry")
        if not rows and method == "auto":  # the attention bypassed the registry: fall back to hooks
            method = "hooks"
    if method == "hooks":
        rows = _run_hooks(model, inputs, positions, vis, layers)
    if sorted(rows) != list(range(num_layers)):
        raise HeadbakeError(
            f"the probe saw {len(rows)} of {num_layers} decoder layers ({method} path); this model's attention "
            "cannot be probed this way"
        )
    per_layer = torch.stack([rows[i].float().cpu() for i in range(num_layers)], dim=1)  # [B, layers, H, P]
    w = weights[:, None, None, :]
    out = (per_layer * w).sum(-1) / w.sum(-1)
    if not bool(torch.isfinite(out).all()):
        raise HeadbakeError("the probe produced non-finite attention shares (a probed row attends to nothing?)")
    return out


def resolve_positions(query_positions, length: int):
    """Turn relative (negative) and absolute query indices into absolute ones."""
    out = []
    for p in query_positions:
        if isinstance(p, bool) or not isinstance(p, int):
            raise HeadbakeError(f"query positions must be integers, got {p!r}")
        q = p + length if p < 0 else p
        if not 0 <= q < length:
            raise HeadbakeError(f"query position {p} is outside a sequence of {length} tokens")
        out.append(q)
    if not out:
        raise HeadbakeError("no query positions given")
    return out


def visual_attention_ratio(model, inputs, visual_mask=None, query_positions=(-1,), *, method="auto"):
    """``S_v`` ``[num_layers, num_heads]`` float32, averaged over samples and query positions.

    ``inputs``: the model's forward kwargs (a processor batch, left-padded
    batches included). ``visual_mask``: ``[B, L]`` bool, or token ids, or
    ``None`` for the model's image/video placeholder ids. ``query_positions``:
    indices into the (padded) sequence, negative from the end; ``-1`` is the
    last prompt token, the one that emits the first answer token.
    """
    length = inputs["input_ids"].shape[1]
    bsz = inputs["input_ids"].shape[0]
    pos = resolve_positions(tuple(query_positions), length)
    positions = torch.tensor([pos] * bsz, dtype=torch.long)
    per_sample = probe_batch(model, inputs, positions, visual_mask=visual_mask, method=method)
    return per_sample.mean(0)


def visual_positions(input_ids, ids):
    """Boolean ``[batch, seq]`` mask of the positions holding any of ``ids``."""
    if not ids:
        raise HeadbakeError("no visual token ids known for this model; pass them explicitly (--visual-token-id)")
    ref = torch.tensor(list(ids), device=input_ids.device, dtype=input_ids.dtype)
    return torch.isin(input_ids, ref)
