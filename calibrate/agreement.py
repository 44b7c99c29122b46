"""How far a static bake is from the paper's per-input rule, measured on the calibration samples.

The paper's plug-in identifies heads from the attention of the input at hand;
a bake is one set chosen from the mean S_v over calibration samples. From the
per-sample S_v that calibration measures anyway, apply the rule to each
sample alone and compare: mean Jaccard of each per-input set with the static
set, the share of all per-input selections the static set covers, and per
head the fraction of inputs on which it qualifies. (Calibration measures S_v
without gains; the runtime per-input mode measures it with earlier layers
already rescaled, so these figures describe the rule, not that mode exactly.)

``compare_calibrations`` states what changing data, query or prompt did to
a selection: Jaccard and the heads only in one or the other.
"""

from __future__ import annotations

import numpy as np

from headbake.errors import HeadbakeError


def _labels(perc, reas) -> set:
    return {("p", int(l), int(h)) for l, h in perc} | {("r", int(l), int(h)) for l, h in reas}


def per_sample_masks(per_sample, params):
    """Boolean ``[n, layers, heads]`` perceptual and reasoning masks of the rule applied to each sample alone."""
    x = np.asarray(per_sample, np.float64)
    if x.ndim != 3:
        raise HeadbakeError(f"per-sample S_v must be [samples, layers, heads], got shape {x.shape}")
    layer = np.arange(x.shape[1])[None, :, None]
    perc = (layer <= params.l_perc) & (x >= params.tau_perc)
    reas = (layer >= params.l_reas) & (x <= params.tau_reas)
    return perc, reas


def per_input_agreement(per_sample, params, static_perc, static_reas) -> dict:
    """The ``agreement`` block of heads.json.

    ``static_perc``/``static_reas``: the static selection's ``[[layer, head], ...]``.
    Jaccard and coverage count a head with its class (a head selected as
    perceptual on one input and reasoning on another counts as two labels);
    with ``tau_reas < tau_perc`` a head holds at most one class per input.
    """
    perc, reas = per_sample_masks(per_sample, params)
    n, layers, heads = perc.shape
    static = _labels(static_perc, static_reas)
    jaccards, covered, selected = [], 0, 0
    for i in range(n):
        mine = _labels(np.argwhere(perc[i]), np.argwhere(reas[i]))
        union = mine | static
        jaccards.append(len(mine & static) / len(union) if union else 1.0)
        covered += len(mine & static)
        selected += len(mine)
    qualify = (perc | reas).mean(0) if n else np.zeros((layers, heads))
    static_heads = sorted({(l, h) for _, l, h in static})
    frac_static = [float(qualify[l, h]) for l, h in static_heads]
    half = sum(1 for f in frac_static if f >= 0.5)
    per_input_sizes = (perc | reas).reshape(n, -1).sum(1) if n else np.zeros(0)
    coverage = covered / selected if selected else None
    block = {
        "samples": int(n),
        "mean_jaccard": float(np.mean(jaccards)) if jaccards else None,
        "coverage": coverage,
        "per_input_selected_mean": float(per_input_sizes.mean()) if n else None,
        "static_selected": len(static_heads),
        "static_qualify_half": half,
        "qualify_fraction": qualify.tolist(),
        "note": "per-input sets from the per-sample S_v of calibration (measured without gains)",
    }
    block["summary"] = agreement_summary(block)
    return block


def agreement_summary(block: dict) -> str:
    """One plain sentence for ``headbake heads`` and the card."""
    z = block.get("static_selected", 0)
    y = block.get("static_qualify_half", 0)
    cov = block.get("coverage")
    if cov is None:
        first = "the per-input rule selects no head on any calibration sample"
    else:
        first = f"the static bake covers {100 * cov:.0f}% of the heads the per-input rule selects"
    if not z:
        return first[0].upper() + first[1:] + "; the static bake selects no head."
    heads = "head" if z == 1 else "heads"
    verb = "qualifies" if y == 1 else "qualify"
    return (f"{first[0].upper() + first[1:]} (mean Jaccard {block.get('mean_jaccard', 0):.2f} over "
            f"{block.get('samples')} inputs); {y} of its {z} {heads} {verb} on at least half of the inputs.")


def _selection_of(doc: dict, where: str) -> tuple[set, bool]:
    """(labels, has classes) of a gains document: calibrate's classes, else every head with gain != 1."""
    sel = doc.get("selected")
    if isinstance(sel, dict):
        return _labels(sel.get("perceptual") or [], sel.get("reasoning") or []), True
    gains = doc.get("gains")
    if not isinstance(gains, list):
        raise HeadbakeError(f"{where} has neither selected heads nor a gains matrix")
    return {("g", l, h) for l, row in enumerate(gains) for h, g in enumerate(row) if g != 1.0}, False


def compare_calibrations(a: dict, b: dict) -> dict:
    """Overlap of two gains documents' selections: Jaccard, heads only in A, only in B, in both.

    Heads carry their class (perceptual/reasoning) when both files name it;
    hand-written gains compare by which heads have a gain other than 1.
    """
    for key in ("num_layers", "num_heads"):
        if a.get(key) is not None and b.get(key) is not None and a[key] != b[key]:
            raise HeadbakeError(f"the two files are for different models ({key} {a[key]} vs {b[key]})")
    la, ca = _selection_of(a, "file A")
    lb, cb = _selection_of(b, "file B")
    if not (ca and cb):  # compare by head only
        la = {("g", l, h) for _, l, h in la}
        lb = {("g", l, h) for _, l, h in lb}
    union = la | lb
    names = {"p": "perceptual", "r": "reasoning", "g": "rescaled"}

    def rows(s):
        return [{"class": names[c], "layer": l, "head": h} for c, l, h in sorted(s, key=lambda t: (t[1], t[2], t[0]))]

    return {
        "jaccard": len(la & lb) / len(union) if union else 1.0,
        "a_selected": len(la), "b_selected": len(lb),
        "both": rows(la & lb), "only_a": rows(la - lb), "only_b": rows(lb - la),
    }


def format_comparison(result: dict, name_a: str = "A", name_b: str = "B") -> str:
    """The text of ``headbake heads --compare A B``."""
    def fmt(items):
        return " ".join(f"{r['class'][0].upper()}{r['layer']}.{r['head']}" for r in items) or "none"

    return "\n".join([
        f"{name_a}: {result['a_selected']} heads; {name_b}: {result['b_selected']} heads; "
        f"in both: {len(result['both'])}; Jaccard {result['jaccard']:.3f}",
        f"only in {name_a} ({len(result['only_a'])}): {fmt(result['only_a'])}",
        f"only in {name_b} ({len(result['only_b'])}): {fmt(result['only_b'])}",
        "(P=perceptual, R=reasoning, G=rescaled by hand-written gains; LAYER.HEAD, 0-based)",
    ])
