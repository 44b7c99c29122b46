"""A memory plan before any load: what calibrate / verify / convert need, and what the device has.

A model that does not fit is killed by the kernel's OOM killer with no
message, minutes into a run. So before loading anything, the commands add up
what they will hold (weights from the safetensors headers, the largest
activations for the tokens and batch at hand, the verify reference's one wide
module, the runtime) and compare it with the memory of the chosen device:
available RAM (psutil, capped by a cgroup v2 limit) on CPU, free memory per
GPU on CUDA (``accelerate.utils.get_max_memory``). If it does not fit,
``--device-map auto`` gets a plan for accelerate (``max_memory`` per device,
leaving room for activations on the device that runs them, the rest of the
weights read from disk); without it the command stops with one line saying
what is needed, what is there, and what to pass.

``HEADBAKE_MEMORY_LIMIT`` (one size, or ``cpu=8GiB,0=20GiB``) replaces the
detected memory, for tests and for users who want a tighter bound.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path

from accelerate.utils import convert_file_size_to_int, get_max_memory

from headbake.checkpoint import open_checkpoint
from headbake.devices import resolve_device
from headbake.errors import HeadbakeError
from headbake.model.info import load_model_info

ENV_LIMIT = "HEADBAKE_MEMORY_LIMIT"
DEFAULT_TOKENS = 1024  # per calibration sample: a benchmark image gives a 7B Qwen2.5-VL several hundred image tokens
VERIFY_TOKENS = 256  # per verify input: its built-in 224x168 images are at most 64 image tokens plus the prompt
RUNTIME = {"cpu": 1 << 30, "cuda": 1 << 29}  # python + torch + transformers on CPU; CUDA workspaces on a GPU
MARGIN = 1.05  # allocator slack on the estimated parts (the weights' size is exact)
STEPS = ("calibrate", "verify", "convert")
VERIFY_LEVELS = ("full", "tensors", "none")
_FLOAT_BYTES = {"F64": 8, "F32": 4, "F16": 2, "BF16": 2}
_DTYPE_BYTES = {"float32": 4, "float16": 2, "bfloat16": 2, "float64": 8}


def fmt_bytes(n: float) -> str:
    """Bytes as decimal GB/MB, as disk and model sizes are usually quoted."""
    return f"{n / 1e9:.1f} GB" if n >= 1e9 else f"{n / 1e6:.0f} MB"


def _gib(n: int) -> str:
    """A size accelerate parses, rounded down to what is safe to promise."""
    return f"{max(n, 0) // (1 << 30)}GiB" if n >= (1 << 30) else f"{max(n, 0) // (1 << 20)}MiB"


def _device_key(key: str):
    """``cpu`` / ``disk`` / ``mps`` stay strings; ``0`` or ``cuda:0`` -> 0 (accelerate's GPU keys)."""
    k = key.strip().lower()
    if k in ("cpu", "disk", "mps"):
        return k
    if k.startswith("cuda:"):
        k = k[5:]
    if k.isdigit():
        return int(k)
    raise HeadbakeError(f"--max-memory: unknown device {key!r} (use cpu, disk, or a GPU index such as 0 or cuda:0)")


def parse_size(text) -> int:
    """``8GiB`` / ``8GB`` / ``512MiB`` / plain bytes -> bytes, in accelerate's units (it reads them the same way)."""
    if isinstance(text, int) and not isinstance(text, bool):
        value = text
    else:
        s = str(text).strip()
        try:
            value = int(s) if s.isdigit() else convert_file_size_to_int(s)
        except ValueError:
            value = -1
    if value <= 0:
        raise HeadbakeError(f"--max-memory: cannot read size {text!r} (use e.g. 8GiB, 500MiB, 20GB or bytes)")
    return value


def parse_max_memory(text) -> dict:
    """``--max-memory`` -> ``{device: bytes}``: ``cpu=8GiB,0=20GiB``; one size alone is keyed ``"*"``
    (every accelerator, or the CPU when there is none; see ``MemoryPlan``)."""
    if text is None:
        return {}
    if isinstance(text, dict):
        return {(_device_key(str(k)) if k != "*" else "*"): parse_size(v) for k, v in text.items()}
    s = str(text).strip()
    if not s:
        raise HeadbakeError("--max-memory is empty (use e.g. 8GiB or cpu=8GiB,0=20GiB)")
    if "=" not in s:
        return {"*": parse_size(s)}
    out = {}
    for part in s.split(","):
        key, eq, value = part.partition("=")
        if not eq or not key.strip():
            raise HeadbakeError(f"--max-memory: {part!r} is not DEVICE=SIZE (e.g. cpu=8GiB,0=20GiB)")
        dev = _device_key(key)
        if dev in out:
            raise HeadbakeError(f"--max-memory names {key.strip()} twice")
        out[dev] = parse_size(value)
    return out


def _cgroup_available() -> int | None:
    """What a cgroup v2 memory limit still allows (reclaimable file cache counted as free), if there is one."""
    root = Path("/sys/fs/cgroup")
    try:
        limit = (root / "memory.max").read_text().strip()
        if limit == "max":
            return None
        current = int((root / "memory.current").read_text())
        inactive = 0
        for line in (root / "memory.stat").read_text().splitlines():
            if line.startswith("inactive_file "):
                inactive = int(line.split()[1])
        return max(int(limit) - current + inactive, 0)
    except (OSError, ValueError):
        return None


def detect_available() -> dict:
    """Free memory now: ``{"cpu": bytes, 0: bytes, ...}`` (GPUs by index)."""
    try:
        found = dict(get_max_memory())
    except Exception:  # a broken GPU driver must not stop a CPU plan
        import psutil

        found = {"cpu": psutil.virtual_memory().available}
    cg = _cgroup_available()
    if cg is not None and "cpu" in found:
        found["cpu"] = min(found["cpu"], cg)
    return found


def _available(override) -> tuple[dict, str]:
    """Free memory per device, and where the figure came from: ``override`` (tests), else
    ``$HEADBAKE_MEMORY_LIMIT``, else detection. An override replaces the detected figure of each device it
    names; one size alone stands for every GPU (the CPU when there is none)."""
    limit, source = override, "given"
    if limit is None:
        limit, source = os.environ.get(ENV_LIMIT) or None, f"set by {ENV_LIMIT}"
    if limit is None:
        return detect_available(), "detected"
    lim = parse_max_memory(limit)
    if "*" not in lim and "cpu" in lim and not any(isinstance(k, int) for k in lim):
        return lim, source  # a CPU-only figure needs no look at the GPUs
    found = detect_available()
    if "*" in lim:
        size = lim.pop("*")
        for k in ([k for k in found if isinstance(k, int)] or ["cpu"]):
            lim.setdefault(k, size)
    found.update(lim)
    return found, source


@dataclass
class CheckpointSize:
    """Weights as the headers declare them: no tensor is read."""
    params: int
    bytes: int  # in the dtype the model will be loaded in
    largest: int  # elements of the largest tensor (a whole module is upcast or onloaded at once)
    dtype: str  # the stored floating dtype (most bytes)


def checkpoint_size(model_dir, dtype: str = "auto") -> CheckpointSize:
    """Sizes from the safetensors headers; ``dtype`` other than auto re-prices the floating tensors."""
    ck = open_checkpoint(model_dir)
    params = nbytes = largest = 0
    by_dtype: dict = {}
    for t in ck.tensors.values():
        n = 1
        for d in t.shape:
            n *= d
        params += n
        largest = max(largest, n)
        if t.dtype in _FLOAT_BYTES:
            by_dtype[t.dtype] = by_dtype.get(t.dtype, 0) + t.nbytes
            nbytes += n * _DTYPE_BYTES[dtype] if dtype != "auto" else t.nbytes
        else:
            nbytes += t.nbytes
    names = {"F64": "float64", "F32": "float32", "F16": "float16", "BF16": "bfloat16"}
    stored = names[max(by_dtype, key=by_dtype.get)] if by_dtype else "float32"
    return CheckpointSize(params, nbytes, largest, stored if dtype == "auto" else dtype)


def _sizes(config: dict, arch: dict) -> dict:
    sub = config.get(arch.get("text_config") or "") or {}
    tc = {**config, **sub} if isinstance(sub, dict) else config
    vc = config.get("vision_config") or {}
    heads = int(tc.get("num_attention_heads") or 1)
    hidden = int(tc.get("hidden_size") or 0)
    return {
        "hidden": hidden, "inter": int(tc.get("intermediate_size") or 4 * hidden), "heads": heads,
        "kv": int(tc.get("num_key_value_heads") or heads), "head_dim": int(tc.get("head_dim") or hidden // heads),
        "layers": int(tc.get("num_hidden_layers") or 0), "vocab": int(tc.get("vocab_size") or 0),
        "v_hidden": int(vc.get("hidden_size") or vc.get("embed_dim") or 0),
        "v_inter": int(vc.get("intermediate_size") or 0),
        "v_heads": int(vc.get("num_heads") or vc.get("num_attention_heads") or 1),
    }


def activation_bytes(config: dict, arch: dict, *, tokens: int, batch: int, itemsize: int, eager: bool = False,
                     positions: int = 1, new_tokens: int = 0, kv_itemsize: int | None = None) -> int:
    """The largest transient one forward holds, as an estimate (the sum of what one layer holds at its peak).

    Text layer: residual, norm, q/k/v/out (~6 x hidden) and the MLP (3 x
    intermediate) per token; attention scores ``heads x L x L`` in float32
    only for eager attention (sdpa kernels tile them). Vision block: the same
    over up to 4 patches per merged image token. Plus the kept logits and,
    for greedy decoding, the KV cache.
    """
    s = _sizes(config, arch)
    rows = batch * tokens
    text = rows * (6 * s["hidden"] + 3 * s["inter"]) * itemsize
    vision = 4 * rows * (6 * s["v_hidden"] + 3 * s["v_inter"]) * itemsize
    scores = batch * max(s["heads"], s["v_heads"]) * tokens * tokens * 4 * 2 if eager else 0
    logits = batch * positions * s["vocab"] * 8  # float32 logits and their float64 comparison copy
    kv = 0
    if new_tokens:
        kv = s["layers"] * 2 * batch * s["kv"] * s["head_dim"] * (tokens + new_tokens) * (kv_itemsize or itemsize)
    return max(text, vision) + scores + logits + kv


@dataclass
class MemoryPlan:
    """What one command will hold and where; ``check()`` refuses or plans offloading before anything loads."""
    step: str
    device: str  # "cpu", "cuda:0" ... or "auto" with --device-map auto
    dtype: str
    params: int
    weights: int
    activations: int
    reference: int  # the verify reference's wide module (and wide residents), 0 without a model-level verify
    runtime: int
    models_at_once: int
    available: dict  # {device: bytes}
    available_source: str
    tokens: int
    batch: int
    device_map: str | None = None
    max_memory: dict | None = None  # planned, for from_pretrained (with device_map auto)
    offload_folder: str | None = None
    disk: int = 0  # weights read from disk at every forward
    notes: list = field(default_factory=list)

    @property
    def needed(self) -> int:
        """Peak bytes on the device that runs the model, all weights resident."""
        return self.weights * self.models_at_once + self.reserve

    @property
    def reserve(self) -> int:
        """What the running device needs beside the weights it holds."""
        return int((self.activations + self.reference + self.runtime) * MARGIN)

    def _where(self) -> str:
        return self.device if self.device != "auto" else "the devices"

    def fits(self) -> bool:
        if self.device_map:
            return self.disk == 0
        return self.needed <= self.available.get(_avail_key(self.device), 0)

    def summary(self) -> list[str]:
        """Lines for ``--dry-run`` (and the log of a real run)."""
        avail = ", ".join(f"{_label(k)} {fmt_bytes(v)}" for k, v in self.available.items()) or "none found"
        lines = [
            f"memory plan for {self.step} on {self._where()}:",
            f"  weights: {fmt_bytes(self.weights)} ({_count(self.params)} parameters, {self.dtype}; "
            f"{self.models_at_once} model in memory at a time)",
            f"  activations: {fmt_bytes(self.activations)} ({self.tokens} tokens x batch {self.batch})",
        ]
        if self.reference:
            lines.append(f"  noise-floor reference: +{fmt_bytes(self.reference)} (one module upcast at a time)")
        lines.append(f"  runtime: {fmt_bytes(self.runtime)}")
        lines.append(f"  needed: {fmt_bytes(self.needed)}; available ({self.available_source}): {avail}")
        if self.device_map:
            mm = ", ".join(f"{_label(k)}={_gib(v)}" for k, v in (self.max_memory or {}).items())
            lines.append(f"  device_map auto, max_memory {mm}")
            if self.disk:
                where = self.offload_folder or "the checkpoint's own safetensors files"
                lines.append(f"  offload: {fmt_bytes(self.disk)} of weights read from disk at every forward "
                             f"({where}); slow")
        else:
            lines.append(f"  {'fits' if self.fits() else 'DOES NOT FIT'}")
        lines += [f"  note: {n}" for n in self.notes]
        return lines

    def check(self) -> "MemoryPlan":
        """Raise ``HeadbakeError`` (one line: needed, available, the flag to pass) when this cannot run."""
        if self.device_map:
            main = _main_device(self.available)
            if self.reserve > self.available.get(main, 0):
                raise HeadbakeError(
                    f"{self.step} needs {fmt_bytes(self.reserve)} on {_label(main)} for activations and runtime "
                    f"even with every weight offloaded; {fmt_bytes(self.available.get(main, 0))} is available: "
                    "use fewer --samples / a smaller --batch-size, or free memory"
                )
            return self
        key = _avail_key(self.device)
        have = self.available.get(key, 0)
        if self.reserve > have:
            raise HeadbakeError(
                f"{self.step} needs about {fmt_bytes(self.needed)} on {self.device}, {fmt_bytes(self.reserve)} of it "
                f"for activations and runtime alone; {fmt_bytes(have)} is available: free memory, or use fewer "
                "--samples / a smaller --batch-size"
            )
        if self.needed > have:
            hint = self.hint()
            raise HeadbakeError(
                f"{self.step} needs about {fmt_bytes(self.needed)} on {self.device} ({fmt_bytes(self.weights)} weights"
                f"{' + ' + fmt_bytes(self.reference) + ' reference' if self.reference else ''}), "
                f"{fmt_bytes(have)} is available: pass {hint} to offload the rest"
            )
        return self

    def hint(self) -> str:
        """The flags that make this run fit: ``--device-map auto --max-memory ...`` with today's free memory."""
        parts = [f"{_label(k)}={_gib(v)}" for k, v in self.available.items() if k != "disk"]
        return f"--device-map auto --max-memory {','.join(parts)}"

    def load_kwargs(self) -> dict:
        """``from_pretrained`` keyword arguments that carry the plan out (empty without ``--device-map``)."""
        if not self.device_map:
            return {}
        out = {"device_map": self.device_map, "max_memory": dict(self.max_memory or {})}
        if self.offload_folder:
            out["offload_folder"] = str(self.offload_folder)
        return out


def _count(n: int) -> str:
    return f"{n / 1e9:.2f} B" if n >= 1e9 else f"{n / 1e6:.1f} M"


def _label(key) -> str:
    return f"cuda:{key}" if isinstance(key, int) else str(key)


def _avail_key(device: str):
    if device.startswith("cuda"):
        return int(device.partition(":")[2] or 0)
    return device


def _main_device(available: dict):
    """Where accelerate runs offloaded modules: the first accelerator, else the CPU."""
    accels = sorted(k for k in available if isinstance(k, int))
    return accels[0] if accels else "cpu"


def plan_memory(model_dir, step: str, *, device: str | None = None, device_map: str | None = None,
                max_memory=None, offload_folder=None, dtype: str = "auto", tokens: int | None = None,
                batch_size: int = 1, samples: int = 4, positions: int = 16, new_tokens: int = 8,
                eager: bool = False, verify: str = "full", available=None, info=None) -> MemoryPlan:
    """Estimate ``step`` for ``model_dir`` (headers and config only) against the device's memory.

    ``step``: calibrate (``batch_size`` prompts of ``tokens``), verify (the
    stored model, then its reference one wide module at a time, then the
    baked model: one model at a time, ``samples`` prompts in one batch), or
    convert (calibrate, bake, verify in turn: the larger of the two).
    ``tokens``: per prompt (default: ``DEFAULT_TOKENS`` for calibration,
    ``VERIFY_TOKENS`` for verify's built-in inputs). ``max_memory``: the
    user's ``--max-memory`` (text or dict), what headbake may use per device.
    ``available``: replaces detection (tests); ``$HEADBAKE_MEMORY_LIMIT`` too.
    """
    if step not in STEPS:
        raise HeadbakeError(f"unknown step {step!r} for a memory plan ({', '.join(STEPS)})")
    if verify not in VERIFY_LEVELS:
        raise HeadbakeError(f"--verify must be one of {', '.join(VERIFY_LEVELS)}, got {verify!r}")
    if device_map not in (None, "auto"):
        raise HeadbakeError(f"--device-map supports only 'auto', got {device_map!r}")
    if (max_memory or offload_folder) and not device_map:
        raise HeadbakeError("--max-memory and --offload-folder need --device-map auto")

    info = info or load_model_info(model_dir)
    size = checkpoint_size(model_dir, dtype)
    item = _DTYPE_BYTES[size.dtype]
    wide = 8 if size.dtype == "float32" else 4
    ver_tokens = tokens or VERIFY_TOKENS
    tokens = tokens or DEFAULT_TOKENS
    avail, source = _available(available)
    user_limits = parse_max_memory(max_memory)

    cal_act = activation_bytes(info.config, info.arch, tokens=tokens, batch=batch_size, itemsize=item, eager=eager)
    # verify runs every sample in one batch, in the stored dtype and (the reference) in the wide one
    ver_act = activation_bytes(info.config, info.arch, tokens=ver_tokens, batch=samples, itemsize=wide,
                               positions=positions, new_tokens=new_tokens, kv_itemsize=item)
    # one unit upcast at a time: at most the largest tensor's module, wide (see headbake.bake.reference)
    reference = size.largest * wide
    if step == "calibrate" or (step == "convert" and verify != "full"):
        acts, ref, batch = cal_act, 0, batch_size
    elif step == "verify":
        acts, ref, batch, tokens = ver_act, reference, samples, ver_tokens
    else:
        acts, ref, batch = max(cal_act, ver_act), reference, max(batch_size, samples)
    if step == "verify" and verify != "full":
        acts, ref = 0, 0
    target = "auto" if device_map else resolve_device(device)
    runtime = RUNTIME["cuda" if target.startswith("cuda") else "cpu"]
    plan = MemoryPlan(step=step, device=target, dtype=size.dtype, params=size.params, weights=size.bytes,
                      activations=acts, reference=ref, runtime=runtime, models_at_once=1, available=avail,
                      available_source=source, tokens=tokens, batch=batch, device_map=device_map,
                      offload_folder=str(offload_folder) if offload_folder else None)
    if step == "verify" and verify != "full":
        plan.weights, plan.notes = 0, ["tensor-level verification streams the files: no model is loaded"]
        return plan
    if device_map:
        _plan_offload(plan, user_limits, size.largest * item)
    return plan


def _plan_offload(plan: MemoryPlan, user_limits: dict, onload: int) -> None:
    """accelerate ``max_memory``: each device's budget (the user's cap, never above what is free) for weights,
    less the reserve for activations, the reference and one onloaded module on the device that runs them."""
    budgets = dict(plan.available)
    accels = [k for k in budgets if isinstance(k, int)]
    if "*" in user_limits:
        size = user_limits.pop("*")
        for k in (accels or ["cpu"]):
            user_limits.setdefault(k, size)
    for k, v in user_limits.items():
        if k == "disk":
            continue
        budgets[k] = min(v, budgets[k]) if k in budgets else v
    plan.available = {k: v for k, v in budgets.items() if k != "disk"}
    if user_limits:
        plan.available_source += ", capped by --max-memory"
    main = _main_device(plan.available)
    reserve = {k: 0 for k in plan.available}
    reserve[main] += plan.reserve + onload
    if main != "cpu" and "cpu" in reserve:
        reserve["cpu"] += RUNTIME["cpu"]  # the host process itself
    plan.max_memory = {k: max(v - reserve[k], 0) for k, v in plan.available.items()}
    room = sum(plan.max_memory.values())
    plan.disk = max(plan.weights - room, 0)
    if plan.disk:
        plan.notes.append(
            f"{fmt_bytes(plan.weights)} of weights, {fmt_bytes(room)} of room beside the reserve: "
            f"{fmt_bytes(plan.disk)} offloaded to disk"
        )
