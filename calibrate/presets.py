"""Named selection presets, each value marked with where it comes from.

Only the Ocean-R1 values are published in the paper (arXiv 2510.10285:
``l_perc=7, l_reas=3, g_reas=1.30, tau_reas=0.01, g_perc=1.16,
tau_perc=0.22``). The paper also tunes Kimi-VL and R1-Onevision but does
not list their settings, and warns that settings transfer poorly between
architectures; those presets are therefore starting points for a sweep, and
``headbake presets`` says so. Every value can be overridden on the command
line, which turns ``from_paper`` off for the result.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from headbake.calibrate.selection import PARAM_NAMES, Params
from headbake.errors import HeadbakeError

PAPER_OCEAN_R1 = {"l_perc": 7, "l_reas": 3, "tau_perc": 0.22, "tau_reas": 0.01, "g_perc": 1.16, "g_reas": 1.30}


@dataclass(frozen=True)
class Preset:
    name: str
    values: dict
    from_paper: frozenset  # names of the values published in the paper for this model
    model: str
    note: str

    @property
    def fully_from_paper(self) -> bool:
        return set(self.from_paper) == set(PARAM_NAMES)


PRESETS = {
    p.name: p
    for p in (
        Preset(
            "default", dict(PAPER_OCEAN_R1), frozenset(PARAM_NAMES), "Ocean-R1 7B (Qwen2.5-VL-7B, 28 layers x 28 heads)",
            "the paper's published defaults (Ocean-R1)",
        ),
        Preset(
            "ocean-r1", dict(PAPER_OCEAN_R1), frozenset(PARAM_NAMES), "Ocean-R1 7B-Instruct (Qwen2.5-VL-7B)",
            "the paper's published values for this model",
        ),
        Preset(
            "r1-onevision", dict(PAPER_OCEAN_R1), frozenset(), "R1-Onevision 7B (Qwen2.5-VL-7B, 28 layers x 28 heads)",
            "starting point: Ocean-R1's values on the same Qwen2.5-VL-7B backbone; the paper tuned this model but "
            "does not publish its settings",
        ),
        Preset(
            "kimi-vl", dict(PAPER_OCEAN_R1), frozenset(), "Kimi-VL A3B-Thinking (27 layers x 16 heads, MLA)",
            "starting point: Ocean-R1's values; the paper tuned this model but does not publish its settings, and "
            "its MLA attention may spread S_v differently",
        ),
        Preset(
            "demo", {"l_perc": 1, "l_reas": 2, "tau_perc": 0.175, "tau_reas": 0.115, "g_perc": 1.16, "g_reas": 1.30},
            frozenset({"g_perc", "g_reas"}), "headbake's tiny random Qwen2.5-VL models (4 x 4 in the tests, 8 x 4 for the demo alias)",
            "for the offline demo and tests only: random weights, so thresholds sit inside its S_v range; gains "
            "are the paper's",
        ),
    )
}


def get_preset(name: str) -> Preset:
    try:
        return PRESETS[name]
    except KeyError:
        raise HeadbakeError(f"unknown preset {name!r}; choose one of: {', '.join(PRESETS)}") from None


def resolve(name: str, overrides: dict | None = None) -> tuple[Params, dict]:
    """Preset values with ``overrides`` (None entries ignored) -> (Params, the gains file's ``preset`` block)."""
    preset = get_preset(name)
    values = dict(preset.values)
    changed = []
    for key, value in (overrides or {}).items():
        if value is None:
            continue
        if key not in PARAM_NAMES:
            raise HeadbakeError(f"unknown preset value {key!r}")
        if isinstance(value, float) and not math.isfinite(value):
            raise HeadbakeError(f"{key} must be finite, got {value}")
        if value != values[key]:
            changed.append(key)
        values[key] = value
    params = Params(**values)
    block = {
        "name": name,
        **params.as_dict(),
        "from_paper": preset.fully_from_paper and not changed,
        "values_from_paper": sorted(k for k in preset.from_paper if k not in changed),
        "overrides": changed,
    }
    return params, block


def describe() -> str:
    """The text of ``headbake presets``."""
    lines = [
        "Presets (values marked * are published in the paper, arXiv 2510.10285; others are starting points):",
        "",
    ]
    header = f"  {'name':<14}" + "".join(f"{k:>11}" for k in PARAM_NAMES)
    lines.append(header)
    for p in PRESETS.values():
        cells = "".join(f"{str(p.values[k]) + ('*' if k in p.from_paper else ' '):>11}" for k in PARAM_NAMES)
        lines.append(f"  {p.name:<14}{cells}")
    lines.append("")
    for p in PRESETS.values():
        lines.append(f"  {p.name}: {p.model} -- {p.note}")
    lines += [
        "",
        "Layers are 0-based decoder layers of the language model in checkpoint order (l_perc=7: layers 0..7).",
        "Perceptual: l <= l_perc and S_v >= tau_perc (gain g_perc); reasoning: l >= l_reas and S_v <= tau_reas",
        "(gain g_reas); all other heads keep 1.0. Override any value with --l-perc --l-reas --tau-perc --tau-reas",
        "--g-perc --g-reas. The paper found ~6.4% of heads selected best and ~18% degrading.",
    ]
    return "\n".join(lines)
