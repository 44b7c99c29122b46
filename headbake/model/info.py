"""What headbake needs to know about a model: from config.json, and from a loaded model.

The per-architecture facts live as data in ``architectures.json`` so adding
a model is a JSON edit; this module only interprets them. Both halves of the
tool (bake and calibrate) read model knowledge from here and nowhere else.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from functools import lru_cache
from importlib import resources
from pathlib import Path


from headbake.checkpoint import Checkpoint, read_json
from headbake.errors import HeadbakeError


DTYPES = ("auto", "float32", "bfloat16", "float16")  # what --dtype accepts (auto: the checkpoint's)


@lru_cache(maxsize=1)
def architectures() -> dict[str, dict]:
    text = resources.files("headbake.model").joinpath("architectures.json").read_text()
    return {k: v for k, v in json.loads(text).items() if not k.startswith("_")}


@dataclass(frozen=True)
class ModelInfo:
    model_type: str
    arch: dict
    num_layers: int
    num_heads: int
    head_dim: int  # width of one head's slice of the o_proj input
    hidden_size: int
    visual_token_ids: tuple[int, ...]
    config: dict

    @property
    def o_proj_width(self) -> int:
        return self.num_heads * self.head_dim

    def identity(self) -> dict:
        return {
            "model_type": self.model_type,
            "num_layers": self.num_layers,
            "num_heads": self.num_heads,
            "head_dim": self.head_dim,
        }


def _text_config(config: dict, arch: dict) -> dict:
    sub = arch.get("text_config")
    if sub and isinstance(config.get(sub), dict) and "num_attention_heads" in config[sub]:
        # Older Qwen2.5-VL configs keep the sizes at the root and a stub text_config.
        merged = dict(config)
        merged.update(config[sub])
        return merged
    return config


def _width(tc: dict, arch: dict) -> int:
    for rule in arch["width"]:
        if rule == "hidden_size/num_attention_heads":
            if tc.get("hidden_size") and tc.get("num_attention_heads"):
                return int(tc["hidden_size"]) // int(tc["num_attention_heads"])
        elif tc.get(rule):
            return int(tc[rule])
    raise HeadbakeError(f"config.json lacks the per-head width ({' or '.join(arch['width'])})")


def model_info(config: dict) -> ModelInfo:
    model_type = config.get("model_type")
    archs = architectures()
    if model_type not in archs:
        raise HeadbakeError(
            f"unsupported model_type {model_type!r}; supported: {', '.join(sorted(archs))}"
        )
    arch = archs[model_type]
    tc = _text_config(config, arch)
    try:
        layers = int(tc["num_hidden_layers"])
        heads = int(tc["num_attention_heads"])
    except (KeyError, TypeError, ValueError):
        raise HeadbakeError("config.json lacks num_hidden_layers / num_attention_heads") from None
    return ModelInfo(
        model_type=model_type,
        arch=arch,
        num_layers=layers,
        num_heads=heads,
        head_dim=_width(tc, arch),
        hidden_size=int(tc.get("hidden_size", 0)),
        visual_token_ids=visual_token_ids(config, arch.get("visual_token_ids", [])),
        config=config,
    )


def load_model_info(model_dir: str | Path) -> ModelInfo:
    path = Path(model_dir) / "config.json"
    if not path.is_file():
        raise HeadbakeError(f"config.json not found in {model_dir}")
    return model_info(read_json(path, "config.json"))


@dataclass(frozen=True)
class OProjTarget:
    layer: int
    weight: str
    bias: str | None


def o_proj_targets(info: ModelInfo, ckpt: Checkpoint) -> list[OProjTarget]:
    """Resolve and check every decoder o_proj before anything is written.

    The key style is picked by which template's layer-0 key the checkpoint
    holds, so both the legacy and the nested Qwen2.5-VL layouts work, and the
    vision tower (``visual.blocks...``) can never match.
    """
    tensors = ckpt.tensors
    template = next((t for t in info.arch["o_proj"] if t.format(layer=0) + ".weight" in tensors), None)
    if template is None:
        raise HeadbakeError(
            f"no decoder o_proj weight found; looked for {', '.join(t.format(layer=0) + '.weight' for t in info.arch['o_proj'])}"
        )
    out = []
    for layer in range(info.num_layers):
        base = template.format(layer=layer)
        w = tensors.get(base + ".weight")
        if w is None:
            raise HeadbakeError(f"checkpoint lacks {base}.weight (config says {info.num_layers} layers)")
        if len(w.shape) != 2 or w.shape[1] != info.o_proj_width:
            raise HeadbakeError(
                f"{base}.weight has shape {list(w.shape)}, but config implies in_features = "
                f"{info.num_heads} heads x {info.head_dim} = {info.o_proj_width}"
            )
        if w.dtype not in ("F32", "F16", "BF16"):
            raise HeadbakeError(f"{base}.weight is {w.dtype}; only F32, F16 and BF16 weights can be baked")
        bias = base + ".bias" if base + ".bias" in tensors else None
        out.append(OProjTarget(layer, base + ".weight", bias))
    extra = template.format(layer=info.num_layers) + ".weight"
    if extra in tensors:
        raise HeadbakeError(f"checkpoint holds {extra}, more decoder layers than config.json's {info.num_layers}")
    return out


def _get(config, name):
    return config.get(name) if isinstance(config, dict) else getattr(config, name, None)


def visual_token_ids(config, fields=None) -> tuple[int, ...]:
    """Image/video placeholder ids named by ``fields`` (default: the architecture's list).

    ``S_v`` sums attention over the positions that hold visual features; in every
    supported model the processor expands one placeholder id per feature, so those
    positions are where ``input_ids`` equals one of these ids. ``config`` may be a
    dict (config.json) or a transformers config; ids are found at the root or in
    the text sub-config.
    """
    if fields is None:
        fields = architectures().get(_get(config, "model_type"), {}).get("visual_token_ids", [])
    ids = []
    for name in fields:
        for src in (config, _get(config, "text_config")):
            if src is not None and isinstance(_get(src, name), int):
                ids.append(int(_get(src, name)))
                break
    return tuple(dict.fromkeys(ids))


def probe_path(model_type: str) -> str:
    """How calibrate reaches ``model_type``'s attention scores (``registry`` or ``hooks``)."""
    arch = architectures().get(model_type) or {}
    path = arch.get("probe")
    if path is None:
        probed = sorted(k for k, v in architectures().items() if v.get("probe"))
        raise HeadbakeError(
            f"model type {model_type!r} has no probe path: calibrate measures attention to image tokens and "
            f"supports {', '.join(probed)}"
        )
    return path


def _get_path(obj, path: str):
    for part in path.split("."):
        obj = getattr(obj, part, None)
        if obj is None:
            return None
    return obj


def decoder_layers(model, paths=None):
    """The language model's decoder layers of a loaded model (never the vision tower's blocks).

    ``paths`` (attribute paths) overrides the architecture's ``runtime_layers``, for bare modules.
    """
    if paths is None:
        model_type = getattr(getattr(model, "config", None), "model_type", None)
        arch = architectures().get(model_type)
        if arch is None:
            raise HeadbakeError(
                f"unsupported model_type {model_type!r}; supported: {', '.join(sorted(architectures()))}")
        paths = arch["runtime_layers"]
    for path in paths:
        layers = _get_path(model, path)
        if layers is not None and len(layers) and hasattr(layers[0], "self_attn"):
            return layers
    raise HeadbakeError(f"cannot find the decoder layers of {type(model).__name__} (tried {', '.join(paths)})")
