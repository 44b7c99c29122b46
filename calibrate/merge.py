"""Combine gains files from calibrations split over workers or machines.

Each worker calibrates its own slice of the data (``--data`` part files);
the ``stats`` blocks merge exactly (Chan's parallel update), and the heads
are selected again from the merged mean. The bootstrap stability needs the
per-sample values, which a gains file does not keep, so a merged document
reports none rather than a misleading number.
"""

from __future__ import annotations

import hashlib

from headbake.calibrate.presets import resolve
from headbake.calibrate.selection import Params, select_heads
from headbake.calibrate.stats import merge_stats
from headbake.errors import HeadbakeError

IDENTITY = ("format", "model_type", "num_layers", "num_heads", "head_dim")


def _merged_tokens(docs) -> dict | None:
    """Token statistics of the union of the parts (sample-weighted mean, overall min and max)."""
    out = {}
    for key in ("image_tokens", "prompt_tokens"):
        parts = [(d.get("tokens") or {}).get(key) or {} for d in docs]
        if not all(p.get("n") for p in parts):
            return None
        n = sum(p["n"] for p in parts)
        out[key] = {"mean": sum(p["mean"] * p["n"] for p in parts) / n, "min": min(p["min"] for p in parts),
                    "max": max(p["max"] for p in parts), "n": n}
    return out


def merge_documents(docs, preset: str | None = None, overrides: dict | None = None) -> dict:
    """One gains document from several calibrate outputs of the same model and query mode.

    The preset is the first document's unless ``preset``/``overrides`` are given.
    """
    docs = list(docs)
    if not docs:
        raise HeadbakeError("nothing to merge")
    first = docs[0]
    for i, d in enumerate(docs):
        if "stats" not in d:
            raise HeadbakeError(f"document {i} has no stats block (not written by calibrate?)")
        for key in IDENTITY:
            if d.get(key) != first.get(key):
                raise HeadbakeError(f"document {i} has {key}={d.get(key)!r}, document 0 has {first.get(key)!r}")
        if d.get("query") != first.get("query"):
            raise HeadbakeError(f"document {i} used query {d.get('query')}, document 0 used {first.get('query')}")
        pa, pb = (d.get("prompt") or {}).get("sha256"), (first.get("prompt") or {}).get("sha256")
        if pa != pb:
            raise HeadbakeError(f"document {i} was calibrated with another prompt than document 0 "
                                "(S_v depends on the words around the image)")
        a, b = d.get("source") or {}, first.get("source") or {}
        if (a.get("revision") or b.get("revision")) and (a.get("id"), a.get("revision")) != (b.get("id"), b.get("revision")):
            # Hub sources name their commit; local paths differ between workers, so those are
            # matched on the model identity above.
            raise HeadbakeError(f"document {i} was calibrated on another model ({a.get('id')}@{a.get('revision')} "
                                f"vs {b.get('id')}@{b.get('revision')})")
    prints = [(d.get("data") or {}).get("fingerprint") for d in docs]
    if len(set(prints)) != len(prints):
        raise HeadbakeError("two of the documents were calibrated on the same data; merging would count it twice")
    stats = merge_stats(d["stats"] for d in docs)
    if preset is None and not overrides:
        block = dict(first["preset"])
        params = Params(**{k: block[k] for k in ("l_perc", "l_reas", "tau_perc", "tau_reas", "g_perc", "g_reas")})
    else:
        params, block = resolve(preset or first["preset"]["name"], overrides,
                                model_id=(first.get("source") or {}).get("id"))
    selection = select_heads(stats.mean, params)
    fp = hashlib.sha256("".join(d["data"]["fingerprint"] for d in docs).encode()).hexdigest()
    return {
        **{k: first[k] for k in IDENTITY},
        "source": first.get("source", {}),
        "gains": selection.gains,
        "visual_ratio": stats.mean.tolist(),
        "visual_ratio_std": stats.std.tolist(),
        "samples": stats.count,
        "stats": stats.to_dict(),
        "selected": {"perceptual": selection.perceptual, "reasoning": selection.reasoning},
        "counts": selection.counts,
        "preset": block,
        "query": first.get("query"),
        "data": {
            "name": " + ".join(d["data"]["name"] for d in docs),
            "fingerprint": fp,
            "samples": sum(d["data"]["samples"] for d in docs),
            "parts": [d["data"] for d in docs],
        },
        "stability": {"bootstrap_jaccard_mean": None, "bootstrap_rounds": 0,
                      "note": "not recomputed for merged runs (per-sample values are not stored)"},
        "probe": first.get("probe"),
        "prompt": first.get("prompt"),
        "tokens": _merged_tokens(docs),
        "agreement": {"note": "not recomputed for merged runs (per-sample values are not stored)"},
        "warnings": ([block["notice"]] if block.get("notice") else []) + list(selection.warnings),
    }
