"""Views of a gains file: a per-layer text table and a layers x heads heatmap of ``S_v``.

The heatmap is what a model card shows: mean ``S_v`` per head (rows are
decoder layers, 0 at the top), perceptual heads outlined in one colour,
reasoning heads in another, with the layer bounds drawn as lines.
matplotlib is imported lazily and drawn with the Agg canvas (no pyplot state),
so this works headless.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from headbake.errors import HeadbakeError
from headbake.fsutil import atomic_path


def _matrix(doc, key):
    m = doc.get(key)
    if not isinstance(m, list) or not m or not all(isinstance(r, list) and r for r in m):
        return None
    return m


def format_table(doc: dict) -> str:
    """Per-layer counts, S_v range and gains of a gains document."""
    gains = doc["gains"]
    sv = _matrix(doc, "visual_ratio")
    sel = doc.get("selected") or {}
    perc = {tuple(x) for x in sel.get("perceptual", [])}
    reas = {tuple(x) for x in sel.get("reasoning", [])}
    lines = []
    if sv is None:
        lines.append(f"{'layer':>5} {'gains != 1':>10}  heads (gain)")
        for l, row in enumerate(gains):
            edited = [f"{h}({g:g})" for h, g in enumerate(row) if g != 1.0]
            lines.append(f"{l:>5} {len(edited):>10}  {' '.join(edited)}")
        return "\n".join(lines)
    agreement = doc.get("agreement") if isinstance(doc.get("agreement"), dict) else {}
    qualify = _matrix(agreement, "qualify_fraction")
    lines.append(f"{'layer':>5} {'perc':>5} {'reas':>5} {'S_v min':>8} {'mean':>7} {'max':>7}  "
                 "selected heads (P=perceptual, R=reasoning"
                 + ("; % = share of inputs on which the head qualifies per input)" if qualify else ")"))

    def mark(cls, l, h):
        return f"{cls}{h}" + (f"({100 * qualify[l][h]:.0f}%)" if qualify else "")

    for l, row in enumerate(sv):
        p = [h for h in range(len(row)) if (l, h) in perc]
        r = [h for h in range(len(row)) if (l, h) in reas]
        marks = " ".join([mark("P", l, h) for h in p] + [mark("R", l, h) for h in r])
        lines.append(
            f"{l:>5} {len(p):>5} {len(r):>5} {min(row):>8.4f} {sum(row) / len(row):>7.4f} {max(row):>7.4f}  {marks}"
        )
    counts = doc.get("counts") or {}
    if counts:
        lines.append(
            f"total: {counts.get('perceptual', 0)} perceptual, {counts.get('reasoning', 0)} reasoning of "
            f"{counts.get('total_heads', 0)} heads ({100 * float(counts.get('share', 0)):.1f}% selected)"
        )
    preset = doc.get("preset")
    if preset:
        lines.append(
            "preset {name}: l_perc={l_perc} l_reas={l_reas} tau_perc={tau_perc} tau_reas={tau_reas} "
            "g_perc={g_perc} g_reas={g_reas}{paper}".format(
                **{**preset, "paper": _preset_origin(preset)})
        )
    if agreement.get("summary"):
        lines.append(f"per input: {agreement['summary']}")
    tokens = doc.get("tokens") if isinstance(doc.get("tokens"), dict) else {}
    img, prm = tokens.get("image_tokens") or {}, tokens.get("prompt_tokens") or {}
    if img.get("mean") is not None:
        lines.append(f"tokens per sample: image {img['mean']:.0f} mean ({img['min']}-{img['max']})"
                     + (f", whole prompt {prm['mean']:.0f} mean ({prm['min']}-{prm['max']})"
                        if prm.get("mean") is not None else ""))
    stab = doc.get("stability") or {}
    if stab.get("bootstrap_jaccard_mean") is not None:
        lines.append(
            f"stability: mean bootstrap Jaccard {stab['bootstrap_jaccard_mean']:.3f} over "
            f"{stab.get('bootstrap_rounds')} resamples"
            f" of {doc.get('samples', '?')} samples"
        )
    return "\n".join(lines)


def _preset_origin(preset: dict) -> str:
    if preset.get("from_paper"):
        return " (the paper's published setting)"
    sources = set((preset.get("sources") or {}).values())
    if sources == {"paper-supplement"}:
        return " (the paper's supplementary material as transcribed by a public reproduction; not checked against the PDF)"
    if "override" in sources:
        return " (with overrides)"
    return ""


def plot_heatmap(doc: dict, path) -> Path:
    """Write a PNG of ``S_v`` (layers x heads) with selected heads marked; returns the path.

    Written to a temporary name and renamed, so a failed plot leaves nothing.
    """
    sv = _matrix(doc, "visual_ratio")
    if sv is None:
        raise HeadbakeError("this gains file has no visual_ratio (S_v) matrix to plot; was it written by calibrate?")
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure
    from matplotlib.patches import Rectangle

    data = np.asarray(sv, dtype=float)
    layers, heads = data.shape
    sel = doc.get("selected") or {}
    width = min(max(6.0, 0.28 * heads + 2.5), 18.0)
    height = min(max(3.6, 0.24 * layers + 2.0), 16.0)
    fig = Figure(figsize=(width, height), dpi=110)
    FigureCanvasAgg(fig)  # Agg, without touching pyplot's global backend
    ax = fig.subplots()
    im = ax.imshow(data, aspect="auto", cmap="viridis", interpolation="nearest", vmin=0.0, vmax=max(float(data.max()), 1e-6))
    fig.colorbar(im, ax=ax, label="S_v")
    for key, color, label in (("perceptual", "#ff3b30", "perceptual"), ("reasoning", "#00e5ff", "reasoning")):
        first = True
        for l, h in sel.get(key, []):
            ax.add_patch(Rectangle((h - 0.5, l - 0.5), 1, 1, fill=False, edgecolor=color, linewidth=1.6,
                                   label=label if first else None))
            first = False
    preset = doc.get("preset") or {}
    if "l_perc" in preset and preset["l_perc"] < layers - 1:
        ax.axhline(preset["l_perc"] + 0.5, color="#ff3b30", linestyle="--", linewidth=0.8,
                   label=f"l_perc = {preset['l_perc']} (perceptual heads at or above this line)")
    if "l_reas" in preset and 0 < preset["l_reas"] < layers:
        ax.axhline(preset["l_reas"] - 0.5, color="#00e5ff", linestyle=":", linewidth=0.8,
                   label=f"l_reas = {preset['l_reas']} (reasoning heads below this line)")
    ax.set_xlabel("head")
    ax.set_ylabel("decoder layer (0-based)")
    step_h = max(1, heads // 16)
    step_l = max(1, layers // 16)
    ax.set_xticks(range(0, heads, step_h))
    ax.set_yticks(range(0, layers, step_l))
    counts = doc.get("counts") or {}
    model = (doc.get("source") or {}).get("id")
    model = Path(str(model)).name if model and str(model).startswith("/") else model  # never a local path
    title = f"{model}: attention share on image tokens (S_v)" if model else "attention share on image tokens (S_v)"
    if counts:
        title += (f"\n{counts.get('perceptual', 0)} perceptual, {counts.get('reasoning', 0)} reasoning"
                  f" ({100 * float(counts.get('share', 0)):.1f}%)")
    ax.set_title(title, fontsize=10)
    if ax.get_legend_handles_labels()[1]:
        ax.legend(loc="upper center", bbox_to_anchor=(0.5, -0.16), ncol=2, fontsize=7, frameon=False)
    fig.tight_layout()

    path = Path(path)
    with atomic_path(path) as tmp:
        fig.savefig(tmp, format="png")
    return path
