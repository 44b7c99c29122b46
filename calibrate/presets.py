"""Named selection presets, each value marked with where it comes from, and what ``default`` means.

The paper (arXiv 2510.10285) states Ocean-R1's defaults in its main text
(``l_perc=7, l_reas=3, g_reas=1.30, tau_reas=0.01, g_perc=1.16,
tau_perc=0.22``). Its supplementary material lists per-model settings for
R1-Onevision and Kimi-VL-A3B-Thinking; we have them only as transcribed by a
public reproduction and have not checked them against the PDF, and every
place that shows them says so. ``demo`` is headbake's own, for its tiny
random demo model.

``default`` is not a preset of its own: it resolves to the model's preset
(the ``preset`` field of the alias in ``aliases.json``). A model without one
gets Ocean-R1's values plus a notice, because the paper found settings
transfer poorly between architectures. Every value can be overridden on the
command line, which the record marks.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from headbake.calibrate.selection import PARAM_NAMES, Params
from headbake.errors import HeadbakeError
from headbake.hub.ids import looks_like_repo_id
from headbake.model.aliases import aliases, identify_model  # noqa: F401 (re-exported)

PAPER_OCEAN_R1 = {"l_perc": 7, "l_reas": 3, "tau_perc": 0.22, "tau_reas": 0.01, "g_perc": 1.16, "g_reas": 1.30}

# Where a value comes from; the record and the card carry these words.
PAPER_MAIN = "paper-main"
PAPER_SUPPLEMENT = "paper-supplement"
HEADBAKE = "headbake"
SOURCES = {
    PAPER_MAIN: "the paper's main text (its default hyperparameters, tuned on Ocean-R1)",
    PAPER_SUPPLEMENT: "the paper's supplementary material as transcribed by a public reproduction; "
                      "not checked against the PDF",
    HEADBAKE: "headbake's choice for its tiny random demo model (not from the paper)",
}
TRANSFER_NOTICE = (
    "{model} has no preset of its own: using Ocean-R1's values from the paper; the paper found that settings "
    "transfer poorly between architectures, so treat the selection as a starting point and check the share of "
    "heads and the per-input agreement"
)


@dataclass(frozen=True)
class Preset:
    name: str
    values: dict
    sources: dict  # value name -> one of SOURCES' keys
    model: str
    note: str

    @property
    def published(self) -> bool:
        """All values are the paper's published setting (its main text)."""
        return all(self.sources[k] == PAPER_MAIN for k in PARAM_NAMES)

    @property
    def from_paper(self) -> frozenset:
        """Names of the values that come from the paper (main text or supplement)."""
        return frozenset(k for k in PARAM_NAMES if self.sources[k] in (PAPER_MAIN, PAPER_SUPPLEMENT))


def _all(source: str) -> dict:
    return {k: source for k in PARAM_NAMES}


PRESETS = {
    p.name: p
    for p in (
        Preset(
            "ocean-r1", dict(PAPER_OCEAN_R1), _all(PAPER_MAIN), "Ocean-R1 7B-Instruct (Qwen2.5-VL-7B, 28 x 28 heads)",
            "the paper's published setting (main text; the supplementary material lists the same values)",
        ),
        Preset(
            "r1-onevision",
            {"l_perc": 7, "l_reas": 3, "tau_perc": 0.30, "tau_reas": 0.01, "g_perc": 1.20, "g_reas": 1.30},
            _all(PAPER_SUPPLEMENT), "R1-Onevision 7B (Qwen2.5-VL-7B, 28 x 28 heads)",
            SOURCES[PAPER_SUPPLEMENT],
        ),
        Preset(
            "kimi-vl",
            {"l_perc": 10, "l_reas": 5, "tau_perc": 0.27, "tau_reas": 0.01, "g_perc": 1.20, "g_reas": 1.40},
            _all(PAPER_SUPPLEMENT), "Kimi-VL A3B-Thinking (27 layers x 16 heads, MLA)",
            SOURCES[PAPER_SUPPLEMENT] + "; the paper tuned Kimi-VL-A3B-Thinking, Kimi-VL-2506 uses the same values",
        ),
        Preset(
            "demo", {"l_perc": 1, "l_reas": 3, "tau_perc": 0.10, "tau_reas": 0.08, "g_perc": 1.16, "g_reas": 1.30},
            {**_all(HEADBAKE), "g_perc": PAPER_MAIN, "g_reas": PAPER_MAIN},
            "headbake's tiny random Qwen2.5-VL (8 layers x 4 heads for the demo alias)",
            "for the offline demo and tests only: random weights, so the thresholds sit inside its S_v range "
            "(on the embedded set it selects 4 of 32 heads); the layer bounds mirror the paper's shallow/deep split "
            "and the gains are Ocean-R1's from the paper",
        ),
    )
}
DEFAULT = "default"
FALLBACK = "ocean-r1"


def preset_names() -> list[str]:
    """What ``--preset`` accepts."""
    return [DEFAULT, *PRESETS]


def get_preset(name: str) -> Preset:
    try:
        return PRESETS[name]
    except KeyError:
        raise HeadbakeError(f"unknown preset {name!r}; choose one of: {', '.join(preset_names())}") from None


def default_preset_for(model_id: str | None = None, alias: str | None = None) -> tuple[str, str | None]:
    """``(preset name, notice or None)`` that ``--preset default`` means for this model."""
    known = identify_model(model_id, alias)
    name = aliases()[known].get("preset") if known else None
    if name:
        get_preset(name)  # aliases.json names only presets that exist (a test holds it)
        return name, None
    # A Hub id may be named; a local path never is (the notice is published in the card).
    who = known or (str(model_id) if looks_like_repo_id(model_id) else "this model")
    return FALLBACK, TRANSFER_NOTICE.format(model=who)


def apply_overrides(values: dict, overrides: dict | None) -> tuple[dict, list]:
    """``values`` with the given overrides (None entries ignored), and the keys they changed."""
    values, changed = dict(values), []
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
    return values, changed


def resolve(name: str, overrides: dict | None = None, *, model_id: str | None = None,
            alias: str | None = None) -> tuple[Params, dict]:
    """Preset values with ``overrides`` (None entries ignored) -> (Params, the gains file's ``preset`` block).

    ``default`` resolves by ``model_id``/``alias`` (see ``default_preset_for``);
    the block names the resolved preset, what was asked for, the source of every
    value, and any notice.
    """
    notice = None
    if name == DEFAULT:
        resolved, notice = default_preset_for(model_id, alias)
    else:
        resolved = name
    preset = get_preset(resolved)
    values, changed = apply_overrides(preset.values, overrides)
    params = Params(**values)
    sources = {k: ("override" if k in changed else preset.sources[k]) for k in PARAM_NAMES}
    block = {
        "name": resolved,
        "requested": name,
        **params.as_dict(),
        "from_paper": preset.published and not changed,  # the paper's published setting, unchanged
        "values_from_paper": sorted(k for k in preset.from_paper if k not in changed),
        "sources": sources,
        "source_notes": {s: SOURCES[s] for s in sorted(set(sources.values())) if s in SOURCES},
        "overrides": changed,
    }
    if notice:
        block["notice"] = notice
    return params, block


def describe() -> str:
    """The text of ``headbake presets``."""
    marks = {PAPER_MAIN: "*", PAPER_SUPPLEMENT: "+", HEADBAKE: " "}
    lines = [
        "Presets (* the paper's main text, arXiv 2510.10285; + the paper's supplementary material as transcribed",
        "by a public reproduction, not checked against the PDF; unmarked: headbake's own):",
        "",
    ]
    lines.append(f"  {'name':<14}" + "".join(f"{k:>11}" for k in PARAM_NAMES))
    for p in PRESETS.values():
        cells = "".join(f"{str(p.values[k]) + marks[p.sources[k]]:>11}" for k in PARAM_NAMES)
        lines.append(f"  {p.name:<14}{cells}")
    lines.append("")
    for p in PRESETS.values():
        lines.append(f"  {p.name}: {p.model} -- {p.note}")
    by_preset = {}
    for a, spec in aliases().items():
        if spec.get("preset"):
            by_preset.setdefault(spec["preset"], []).append(a)
    mapping = "; ".join(f"{', '.join(v)} -> {k}" for k, v in by_preset.items())
    lines += [
        "",
        "--preset default picks the model's own preset:",
        f"  {mapping}.",
        "Any other model gets ocean-r1's values with a notice: the paper found that settings transfer poorly",
        "between architectures.",
        "",
        "Layers are 0-based decoder layers of the language model in checkpoint order (l_perc=7: layers 0..7).",
        "Perceptual: l <= l_perc and S_v >= tau_perc (gain g_perc); reasoning: l >= l_reas and S_v <= tau_reas",
        "(gain g_reas); all other heads keep 1.0. Override any value with --l-perc --l-reas --tau-perc --tau-reas",
        "--g-perc --g-reas. The paper found ~6.4% of heads selected best and ~18% degrading.",
    ]
    return "\n".join(lines)
