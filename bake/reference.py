"""The noise-floor reference: a model's forward in a wider dtype without a second, wider copy of it.

Verification compares the baked model with the hooked one against the
distance between the hooked model in its stored dtype and in a wider one
(float32 for bf16/fp16 checkpoints, float64 for float32 ones). Casting the
whole model (``model.to(float32)``) needs twice the memory of a bf16 model,
33 GB for a 7B one: more than the stored model, which is what a user has.

``upcast_forward`` gets the same numbers within the stored model's memory:
the module tree is cut into *units*, the largest subtrees no bigger than the
biggest single module (each decoder layer, vision block, the embedding, the
final norm, the LM head; never a ``ModuleList``, which is iterated, not
called). A forward pre-hook gives a unit wide copies of its floating
tensors and a forward hook takes them away again, so one unit at a time is
wide while activations flow between units in the wide dtype.

A few tensors stay wide for the whole run (*residents*): the first floating
parameter of every ``PreTrainedModel`` in the tree, because glue code casts
float inputs to ``submodel.dtype`` outside any unit (Qwen2.5-VL casts
``pixel_values`` to ``self.visual.dtype``; without this the tiny model's
logits differ by 7e-3), unless it is an ``nn.Embedding`` (token ids in, so
nothing is cast to its dtype, and it is as big as the LM head); every
floating buffer (rotary frequencies); and the direct tensors of modules too
big to be a unit. Every number computed inside a unit is then what the
fully cast model computes, so the logits match it bit for bit on the same
device and kernels.

After a unit's forward its tensors get their original storage back (not a
cast-back copy), so the weights are byte-identical afterwards by
construction. Offloaded tensors (accelerate ``device_map`` with cpu/disk
offload) live on the meta device between forwards; casting them is free, and
accelerate loads them from its weights map straight into the wide dtype
(``set_module_tensor_to_device`` casts a loaded value to the dtype of the
tensor it replaces).
"""

from __future__ import annotations

from contextlib import contextmanager
from dataclasses import dataclass, field

import torch
from transformers import PreTrainedModel

from headbake.errors import HeadbakeError


def reference_dtype(stored):
    """The dtype whose rounding is far below the stored one's: float64 for float32, else float32."""
    return torch.float64 if stored == torch.float32 else torch.float32


def stored_dtype(model):
    """The dtype the model's floating parameters are in (the first one, as ``PreTrainedModel.dtype``)."""
    for p in model.parameters():
        if p.is_floating_point():
            return p.dtype
    raise HeadbakeError(f"{type(model).__name__} has no floating-point parameters")


def _own_tensors(module):
    """``(name, tensor, is_buffer)`` of the module's own floating parameters and buffers."""
    out = []
    for name, t in module.named_parameters(recurse=False):
        if t is not None and t.is_floating_point():
            out.append((name, t, False))
    for name, t in module.named_buffers(recurse=False):
        if t is not None and t.is_floating_point():
            out.append((name, t, True))
    return out


@dataclass
class UpcastPlan:
    """Which modules are upcast around their own forward, and which tensors stay wide for the whole run."""
    wide: object  # torch.dtype
    units: list = field(default_factory=list)  # [(qualified name, module)]
    residents: list = field(default_factory=list)  # [(module, tensor name)]
    unit_bytes: int = 0  # the largest unit, in the wide dtype
    resident_bytes: int = 0  # the residents' wide copies

    @property
    def extra_bytes(self) -> int:
        """Peak memory above the stored model: the residents' and the widest unit's wide copies."""
        return self.unit_bytes + self.resident_bytes


def plan_upcast(model, wide) -> UpcastPlan:
    """Cut the module tree into units no bigger than its biggest single module (see the module docstring)."""
    itemsize = torch.empty((), dtype=wide).element_size()
    modules = dict(model.named_modules(remove_duplicate=False))
    subtree = {}

    def size(module) -> int:
        key = id(module)
        if key not in subtree:
            seen, n = set(), 0
            for sub in module.modules():
                for _, t, _ in _own_tensors(sub):
                    if id(t) not in seen:
                        seen.add(id(t))
                        n += t.numel()
            subtree[key] = n * itemsize
        return subtree[key]

    budget = max((sum(t.numel() for _, t, _ in _own_tensors(m)) * itemsize for m in modules.values()), default=0)
    plan = UpcastPlan(wide=wide)
    resident_keys = set()

    def add_resident(module, name, t):
        if (id(module), name) not in resident_keys:
            resident_keys.add((id(module), name))
            plan.residents.append((module, name))
            plan.resident_bytes += t.numel() * itemsize if t.dtype != wide else 0

    def walk(prefix, module):
        # A container with no forward of its own (ModuleList, ModuleDict) is iterated, never called: split it.
        callable_ = type(module).forward is not torch.nn.Module.forward
        if callable_ and size(module) <= budget:
            plan.units.append((prefix, module))
            plan.unit_bytes = max(plan.unit_bytes, size(module))
            return
        for name, t, _ in _own_tensors(module):
            add_resident(module, name, t)
        for child_name, child in module.named_children():
            walk(f"{prefix}.{child_name}" if prefix else child_name, child)

    walk("", model)
    # Floating buffers (rotary frequencies...) are small and read outside forwards: wide for the run.
    for module in modules.values():
        for name, t, is_buffer in _own_tensors(module):
            if is_buffer:
                add_resident(module, name, t)
    # ``PreTrainedModel.dtype`` is the first floating parameter: glue code casts float inputs to it.

    for module in modules.values():
        if isinstance(module, PreTrainedModel):
            first = next(((n, p) for n, p in module.named_parameters() if p.is_floating_point()), None)
            if first is not None:
                owner_name, _, pname = first[0].rpartition(".")
                owner = module.get_submodule(owner_name) if owner_name else module
                if not isinstance(owner, torch.nn.Embedding):  # token ids in: nothing is cast to its dtype
                    add_resident(owner, pname, first[1])
    return plan


class _Casts:
    """Wide copies of tensors addressed by (module, name); ``restore`` puts the original storage back.

    The original is kept, not re-made by casting back: from_pretrained may
    leave the weights as views of the memory-mapped safetensors files, and a
    cast-back copy would add a second, anonymous copy of every weight to the
    process (measured: +575 MB on a 575 MB model). Keeping it also makes the
    weights byte-identical afterwards by construction: the same storage.
    Accelerate swaps an offloaded tensor for a new one during a forward, so
    the tensor restored is whatever the module holds then.
    """
    def __init__(self, wide):
        self.wide = wide
        self.saved = {}  # (id(module), name) -> (module, name, original data)

    def up(self, module, name):
        key = (id(module), name)
        t = getattr(module, name)
        if key in self.saved or t is None or t.dtype == self.wide:
            return
        self.saved[key] = (module, name, t.data)
        t.data = t.data.to(self.wide)

    def restore(self):
        for module, name, original in self.saved.values():
            getattr(module, name).data = original
        self.saved.clear()


@contextmanager
def upcast_forward(model, wide=None):
    """Within the block the model's forwards compute in ``wide`` (default: ``reference_dtype``), one unit at a time.

    Yields the ``UpcastPlan``. On exit every tensor holds its original storage
    again and the hooks are gone, even when the forward failed.
    """
    if wide is None:
        wide = reference_dtype(stored_dtype(model))
    plan = plan_upcast(model, wide)
    residents = _Casts(wide)
    handles, active = [], {}

    def make_hooks(module):
        casts = _Casts(wide)

        def pre(mod, args):
            depth = active.get(id(mod), 0)
            active[id(mod)] = depth + 1
            if depth == 0:
                for sub in mod.modules():
                    for name, _, _ in _own_tensors(sub):
                        if (id(sub), name) not in residents.saved:
                            casts.up(sub, name)

        def post(mod, args, output):
            if not active.get(id(mod)):  # an earlier pre-hook raised before ours ran
                return
            active[id(mod)] -= 1
            if active[id(mod)] == 0:
                casts.restore()

        return pre, post, casts

    unit_casts = []
    try:
        for module, name in plan.residents:
            residents.up(module, name)
        for _, module in plan.units:
            pre, post, casts = make_hooks(module)
            unit_casts.append(casts)
            handles.append(module.register_forward_pre_hook(pre))
            handles.append(module.register_forward_hook(post, always_call=True))
        yield plan
    finally:
        for h in handles:
            h.remove()
        for casts in unit_casts + [residents]:
            casts.restore()
