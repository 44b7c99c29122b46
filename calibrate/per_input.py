"""The paper's plug-in as it describes it: select heads per input, from that input's own attention.

A bake is one static set of heads; the paper's method "adaptively
rebalances" by measuring S_v on the input at hand. ``apply_per_input`` does
that at run time, as a reference arm for evaluation:

* on each new input (a forward pass without a filled cache: a plain forward,
  or the prefill of ``generate``) the probe of ``calibrate/probe.py``
  measures S_v at the query position(s) of that input, layer by layer;
* S_v of layer l is known once layer l's attention has run, which is before
  its ``o_proj`` in the same pass, so a forward pre-hook on each ``o_proj``
  applies the rule to this input's S_v and scales the qualifying heads'
  slices in the same pass (per sample of a batch);
* decode steps (a filled cache) keep the selection made on the prompt.

S_v of a deeper layer is therefore measured with shallower layers already
rescaled, as in a single-pass plug-in. Heads are scaled like the static hook
(``headbake.runtime.apply_gains``): the product is formed in at least
float32 and rounded once to the activation dtype, so a batch whose every
input selects the same set gives the static hook's output. Samples without
image tokens keep every gain at 1.0 (the rule is defined on image+text input).

Only models whose attention goes through transformers' attention registry
are supported: remote code that computes attention inside its own module
(Kimi-VL) exposes the weights only after its ``o_proj`` has run.
"""

from __future__ import annotations

import torch

from headbake.calibrate.probe import _ACTIVE, PROBE_NAME, _AttnSwitch, _default_method, register_probe
from headbake.calibrate.queries import query_spec
from headbake.calibrate.selection import validate_params
from headbake.errors import HeadbakeError
from headbake.model.info import decoder_layers
from headbake.model.info import visual_token_ids as config_ids


class _State:
    """What the current input measures (probe side) and selected (hook side)."""
    def __init__(self):
        self.measuring = False
        self.positions = None  # [B, P]
        self.vis = None  # [B, L] bool
        self.has_image = None  # [B] bool
        self.rows = {}  # layer -> [B, H, P] S_v, filled by the probe's attention function
        self.gains = {}  # layer -> [B, H] float64 gains of the current input
        self.perc, self.reas = {}, {}  # layer -> [B, H] bool: which heads qualified, per class
        self._on = {}

    def on(self, device):  # the probe's interface (calibrate/probe.py)
        got = self._on.get(device)
        if got is None:
            got = self._on[device] = (self.positions.to(device), self.vis.to(device))
        return got

    def start(self, positions, vis):
        self.positions, self.vis = positions, vis
        self.has_image = vis.any(1).cpu()
        self.rows, self.gains, self.perc, self.reas, self._on = {}, {}, {}, {}, {}
        self.measuring = True


class PerInputHandle:
    """Removable per-input rescaling; also a context manager. ``gains`` holds the last input's selection."""
    def __init__(self, model, params, num_layers):
        self.model, self.params, self.num_layers = model, params, num_layers
        self.state = _State()
        self._handles, self._switch, self._token = [], None, None

    @property
    def gains(self):
        """``[batch, layers, heads]`` float64 gains chosen for the last new input (None before any)."""
        if not self.state.gains or len(self.state.gains) != self.num_layers:
            return None
        return torch.stack([self.state.gains[l] for l in range(self.num_layers)], 1)

    def selected(self) -> list[dict]:
        """Per sample of the last new input: ``{"perceptual": [[l, h]...], "reasoning": [...]}``."""
        if self.gains is None:
            return []
        st = self.state
        out = []
        for b in range(st.gains[0].shape[0]):
            out.append({
                "perceptual": [[l, int(h)] for l in range(self.num_layers) for h in st.perc[l][b].nonzero().flatten()],
                "reasoning": [[l, int(h)] for l in range(self.num_layers) for h in st.reas[l][b].nonzero().flatten()],
            })
        return out

    def remove(self) -> None:
        for h in self._handles:
            h.remove()
        self._handles = []
        if self._switch is not None:
            self._switch.__exit__(None, None, None)
            self._switch = None
        if self._token is not None:
            from headbake.calibrate.probe import _ACTIVE

            _ACTIVE.reset(self._token)
            self._token = None

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.remove()
        return False


def _new_input(kwargs) -> bool:
    cache = kwargs.get("cache", kwargs.get("past_key_values"))
    if cache is None:
        return True
    get_len = getattr(cache, "get_seq_length", None)
    return get_len is None or int(get_len()) == 0


def apply_per_input(model, params, query: str = "last", k: int | None = None, visual_token_ids=None) -> PerInputHandle:
    """Amplify, on every forward pass, the heads that qualify for that input under ``params``.

    ``params``: ``headbake.calibrate.selection.Params`` (e.g. from
    ``presets.resolve``). ``query``: ``last`` or ``last-k`` (with ``k``): the
    positions whose S_v decides, as in calibration. ``visual_token_ids``:
    image/video placeholder ids (default: the model config's). Batches are
    selected per sample; pad on the left, as for generation. Usage::

        with apply_per_input(model, params) as handle:
            out = model.generate(**inputs, max_new_tokens=64)
        handle.selected()  # what each sample of the last input selected
    """
    spec = query_spec(query, k)
    if spec.mode == "generated_k":
        raise HeadbakeError("per-input mode measures S_v on the prompt: use --query last or last-k")
    layers = decoder_layers(model)
    validate_params(params, len(layers))
    if _default_method(model) == "hooks":
        raise HeadbakeError(
            f"per-input mode needs attention that goes through transformers' attention registry; "
            f"{getattr(model.config, 'model_type', type(model).__name__)}'s own attention code computes its weights "
            "only inside the module, after o_proj has run"
        )
    ids = tuple(int(i) for i in (visual_token_ids or config_ids(model.config)))
    if not ids:
        raise HeadbakeError("no image token id known for this model; pass visual_token_ids")
    ref_ids = torch.tensor(ids)

    handle = PerInputHandle(model, params, len(layers))
    state = handle.state
    register_probe()
    handle._switch = _AttnSwitch(model, PROBE_NAME)
    try:
        handle._switch.__enter__()
    except (ValueError, NotImplementedError, AttributeError, TypeError) as e:
        handle._switch.__exit__(None, None, None)
        handle._switch = None
        raise HeadbakeError(f"cannot switch {type(model).__name__} to the probe's attention: {e}") from None
    handle._token = _ACTIVE.set(state)

    def on_forward(module, args, kwargs):
        if not _new_input(kwargs):
            state.measuring = False
            return None
        ids_ = kwargs.get("input_ids", args[0] if args else None)
        if ids_ is None:
            raise HeadbakeError("per-input mode needs input_ids on a new input (it finds the image tokens by id)")
        bsz, length = ids_.shape
        kk = spec.k if spec.mode == "last_k" else 1
        if kk > length:
            raise HeadbakeError(f"--k {kk} is longer than the prompt ({length} tokens)")
        positions = torch.arange(length - kk, length, device=ids_.device).expand(bsz, kk).contiguous()
        mask = kwargs.get("attention_mask")
        if mask is not None and mask.dim() == 2 and not bool(mask.to(torch.bool).gather(1, positions).all()):
            raise HeadbakeError("a probed query position is padding: per-input mode needs left-padded batches")
        vis = torch.isin(ids_, ref_ids.to(ids_.device))
        state.start(positions, vis)
        return None

    def make_hook(layer_idx):
        def pre_hook(module, args):
            x = args[0]
            if state.measuring:
                rows = state.rows.pop(layer_idx, None)
                if rows is None:
                    raise HeadbakeError(
                        f"decoder layer {layer_idx}'s attention did not go through the probe; per-input mode cannot "
                        "measure this model"
                    )
                sv = rows.double().mean(-1).cpu()  # [B, H]
                perc = (layer_idx <= params.l_perc) & (sv >= params.tau_perc)
                reas = (layer_idx >= params.l_reas) & (sv <= params.tau_reas) & ~perc
                img = state.has_image[:, None]
                perc, reas = perc & img, reas & img
                g = torch.ones_like(sv)
                g[perc] = float(params.g_perc)
                g[reas] = float(params.g_reas)
                state.gains[layer_idx], state.perc[layer_idx], state.reas[layer_idx] = g, perc, reas
            g = state.gains.get(layer_idx)
            if g is None:
                raise HeadbakeError("per-input mode saw a decode step before any prompt: call it on the prompt first")
            if g.shape[0] != x.shape[0]:
                raise HeadbakeError(
                    f"the batch changed from {g.shape[0]} to {x.shape[0]} rows between the prompt and a decode step "
                    "(beam search is not supported)"
                )
            if bool((g == 1.0).all()):
                return None
            width = x.shape[-1]
            if width % g.shape[1]:
                raise HeadbakeError(f"o_proj in_features {width} is not a multiple of {g.shape[1]} heads")
            dt = torch.promote_types(x.dtype, torch.float32)
            scale = g.repeat_interleave(width // g.shape[1], dim=1).to(x.device, dt)  # [B, H*d]
            shape = (x.shape[0],) + (1,) * (x.dim() - 2) + (width,)
            return ((x.to(dt) * scale.view(shape)).to(x.dtype),) + tuple(args[1:])

        return pre_hook

    try:
        handle._handles.append(model.register_forward_pre_hook(on_forward, with_kwargs=True))
        for idx, layer in enumerate(layers):
            handle._handles.append(layer.self_attn.o_proj.register_forward_pre_hook(make_hook(idx)))
    except BaseException:
        handle.remove()
        raise
    return handle
