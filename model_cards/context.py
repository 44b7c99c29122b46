"""The model card's fields, computed from a baked checkpoint's record (``headbake.json``).

Everything the card states comes from the record; each optional part of it
(calibration statistics, preset, verification, evaluation, heatmap) may be
missing, so hand-written gains and unverified bakes still get a card that
reads well. ``render.py`` turns these fields into text with ``card.md.j2``.
"""

from __future__ import annotations

import math
import re
from pathlib import Path

from huggingface_hub import ModelCardData
from huggingface_hub.repocard_data import model_index_to_eval_results

from headbake.evaluate.report import card_markdown, model_index_results
from headbake.hub.ids import looks_like_repo_id
from headbake.model.info import architectures
from headbake.record import public_source, reproduce_command

PAPER_ARXIV = "2510.10285"
PAPER_URL = f"https://arxiv.org/abs/{PAPER_ARXIV}"
BIBTEX = """@inproceedings{lu2026reallocating,
  title         = {Reallocating Attention Across Layers to Reduce Multimodal Hallucination},
  author        = {Lu, Haolang and Chu, Bolun and Fu, WeiYe and Nan, Guoshun and Liu, Junning and
                   Pan, Minghui and Li, Qiankun and Yu, Yi and Wang, Hua and Wang, Kun},
  booktitle     = {Proceedings of the IEEE/CVF Conference on Computer Vision and Pattern Recognition (CVPR)},
  year          = {2026},
  eprint        = {2510.10285},
  archivePrefix = {arXiv},
  url           = {https://arxiv.org/abs/2510.10285}
}"""

# The Hub's model tree knows four relations: adapter, merge, quantized, finetune. A bake is a
# full-weight checkpoint of one parent with changed weights at the same precision: not an
# adapter (no separate delta), not a merge (one parent), not a quantization (dtype unchanged);
# "finetune" is the relation for "same architecture, edited weights".
BASE_MODEL_RELATION = "finetune"
TAGS = ["headbake", "attention-head-rescaling", "hallucination", "training-free", "multimodal"]
YAML_ORDER = ["base_model", "base_model_relation", "library_name", "pipeline_tag", "license", "tags"]
CARD_FILE = "README.md"
RECORD_FILE = "headbake.json"
MARKER = re.compile(r"<!-- headbake-card repo_id=(\S*) -->")

_HYPERPARAMETERS = [
    ("l_perc", "last layer (0-based) that may hold perceptual heads"),
    ("tau_perc", "minimum S_v of a perceptual head"),
    ("g_perc", "gain applied to perceptual heads"),
    ("l_reas", "first layer that may hold reasoning heads"),
    ("tau_reas", "maximum S_v of a reasoning head"),
    ("g_reas", "gain applied to reasoning heads"),
]


def _num(x, digits: int = 3) -> str:
    """Compact, human-readable number: 0.0123 -> 0.0123, 4.1e-07 -> 4.1e-07, 1.3 -> 1.3."""
    if x is None:
        return "—"
    if isinstance(x, bool):
        return "yes" if x else "no"
    if not isinstance(x, (int, float)):
        return str(x)
    if isinstance(x, float) and math.isnan(x):
        return "n/a"
    if isinstance(x, int) or float(x).is_integer() and abs(x) < 1e6:
        return str(int(x))
    return f"{x:.{digits}g}"


def _pct(x) -> str:
    return "—" if x is None else f"{100 * x:.1f}%"


def _arch(model_type: str | None) -> dict:
    return architectures().get(model_type or "", {})


def _layer_span(layers: list[int]) -> str:
    if not layers:
        return "no layer"
    lo, hi = min(layers), max(layers)
    return f"layer {lo}" if lo == hi else f"layers {lo}–{hi}"


def _classes(gdoc: dict, matrix: list[list[float]]):
    """Per-class head sets from calibrate's ``selected``; None for hand-written gains."""
    sel = gdoc.get("selected")
    if not isinstance(sel, dict):
        return None
    out = {}
    for cls in ("perceptual", "reasoning"):
        pairs = sel.get(cls) or []
        out[cls] = {(int(l), int(h)) for l, h in pairs if isinstance(l, int) and isinstance(h, int)}
    return out


def _layer_rows(gdoc: dict, matrix, classes, num_layers: int):
    sv = gdoc.get("visual_ratio")
    has_sv = isinstance(sv, list) and len(sv) == num_layers and all(isinstance(r, list) and r for r in sv)
    rows = []
    if classes is not None:
        per_layer = {}
        counts = gdoc.get("counts") or {}
        for item in counts.get("per_layer") or []:
            if isinstance(item, dict) and isinstance(item.get("layer"), int):
                per_layer[item["layer"]] = item
        for layer in range(num_layers):
            item = per_layer.get(layer)
            p = item.get("perceptual") if item else sum(1 for l, _ in classes["perceptual"] if l == layer)
            r = item.get("reasoning") if item else sum(1 for l, _ in classes["reasoning"] if l == layer)
            row = {"layer": layer, "perceptual": p or "·", "reasoning": r or "·", "_p": p or 0, "_r": r or 0}
            if has_sv:
                row["sv"] = f"{sum(sv[layer]) / len(sv[layer]):.3f}"
            rows.append(row)
        totals = {"perceptual": sum(r["_p"] for r in rows), "reasoning": sum(r["_r"] for r in rows)}
        return rows, totals, has_sv
    for layer, row in enumerate(matrix):
        changed = [g for g in row if g != 1.0]
        gains = sorted(set(changed))
        rows.append({
            "layer": layer, "count": len(changed) or "·",
            "gains": ", ".join(f"×{_num(g)}" for g in gains) if gains else "", "_n": len(changed),
        })
    if not any(r["_n"] for r in rows):
        return [], {}, False
    return rows, {"count": sum(r["_n"] for r in rows)}, False


def _verification(ver) -> tuple[dict | None, dict | None, str]:
    """(tensor view, model view, one-line summary) from the record's ``verification``."""
    if not isinstance(ver, dict):
        return None, None, "not verified"
    tensor = ver.get("tensor") if isinstance(ver.get("tensor"), dict) else None
    model = ver.get("model") if isinstance(ver.get("model"), dict) else None
    tview = None
    if tensor is not None:
        parts = []
        if tensor.get("edited_tensors") is not None:
            parts.append(
                f"{_num(tensor.get('edited_bit_exact'))} of {_num(tensor.get('edited_tensors'))} edited `o_proj` "
                "weights equal the fold bit for bit"
            )
        if tensor.get("tensors") is not None:
            parts.append(f"all {_num(tensor.get('tensors'))} tensors have the base model's names, shapes and dtypes")
        if tensor.get("files_compared") is not None:
            parts.append(f"{_num(tensor.get('files_compared'))} files compared, every other byte identical")
        text = "; ".join(parts) + "." if parts else ""
        problems = tensor.get("problems") or []
        if problems:
            text += " Problems: " + "; ".join(str(p) for p in problems[:5]) + "."
        tview = {"status": "passed" if tensor.get("passed") else "FAILED", "text": text}
    mview = None
    if model is not None:
        floor = model.get("noise_floor") or {}
        effect = model.get("effect") or {}
        rows = [
            {"name": "max \\|Δ logit\\|", "baked": _num(model.get("max_abs_logit")),
             "floor": _num(floor.get("max_abs_logit")), "effect": _num(effect.get("max_abs_logit"))},
            {"name": "KL divergence, mean", "baked": _num(model.get("kl_mean")),
             "floor": _num(floor.get("kl_mean")), "effect": _num(effect.get("kl_mean"))},
            {"name": "KL divergence, max", "baked": _num(model.get("kl_max")),
             "floor": _num(floor.get("kl_max")), "effect": _num(effect.get("kl_max"))},
            {"name": "top-1 token agreement", "baked": _pct(model.get("top1_agreement")),
             "floor": _pct(floor.get("top1_agreement")) if "top1_agreement" in floor else "—",
             "effect": _pct(effect.get("top1_agreement")) if "top1_agreement" in effect else "—"},
        ]
        if model.get("greedy_match") is not None:
            rows.append({"name": f"greedy decode, {_num(model.get('greedy_tokens'))} tokens identical",
                         "baked": _pct(model.get("greedy_match")), "floor": "—", "effect": "—"})
        n = model.get("samples")
        inputs = model.get("inputs") or "sample"
        mview = {
            "status": "passed" if model.get("passed") else "FAILED",
            "inputs": f"{n} {inputs} prompts" if n else f"{inputs} prompts",
            "dtype": model.get("dtype") or "stored dtype",
            "device": model.get("device"),
            "ref_dtype": floor.get("reference_dtype"),
            "rows": rows,
            "rule": model.get("rule"),
        }
    passed = ver.get("passed")
    if model is not None:
        summary = (
            f"{'passed' if passed else 'FAILED'}: matches the hooked base model to {_num(model.get('max_abs_logit'))} "
            f"in logits ({model.get('dtype') or '?'}); the edit itself moves logits by up to "
            f"{_num((model.get('effect') or {}).get('max_abs_logit'))}"
        )
    elif tensor is not None:
        summary = f"{'passed' if passed else 'FAILED'} (tensor level only)"
    else:
        summary = "passed" if passed else "FAILED"
    return tview, mview, summary


def _reproduce(prov: dict, command: str | None, out_name: str) -> str:
    """The command shown under "Reproduce": given, recorded, or rebuilt from the record (never local paths)."""
    if command:
        return command
    if prov.get("reproduce"):
        return str(prov["reproduce"])
    gdoc = prov.get("gains") or {}
    preset = gdoc.get("preset") if isinstance(gdoc.get("preset"), dict) else None
    settings = {"preset": preset.get("name", "default")} if preset else {"gains_from_file": True}
    return reproduce_command(prov.get("source") or {}, settings, out_name)


def _base_short(source_id: str) -> str:
    if not source_id:
        return "model"
    if looks_like_repo_id(source_id):
        return source_id.split("/")[-1]
    return Path(source_id).name or source_id


def _eval_results(prov: dict, model_name: str):
    """``model-index`` results of this checkpoint (the ``baked`` arm of the recorded evaluation), or None."""
    ev = prov.get("evaluation")
    if not isinstance(ev, dict) or "baked" not in (ev.get("arms") or []):
        return None

    results = model_index_results(ev, "baked")
    return model_index_to_eval_results([{"name": model_name, "results": results}])[1] if results else None


def card_data(prov: dict, license: str | None = None, model_name: str | None = None):
    """The YAML metadata as a ``ModelCardData`` (with ``model-index`` when an evaluation is recorded)."""
    src = public_source(prov.get("source"))
    source_id = src.get("id") or ""
    model = prov.get("model") or {}
    gdoc = prov.get("gains") or {}
    model_type = model.get("model_type") or gdoc.get("model_type")
    arch = _arch(model_type)
    is_hub = looks_like_repo_id(source_id)
    lic = license or src.get("license")
    tags = list(TAGS)
    if model_type:
        tags.append(model_type)
    eval_results = _eval_results(prov, model_name or "baked-model")
    return ModelCardData(
        model_name=(model_name or "baked-model") if eval_results else None,
        eval_results=eval_results,
        base_model=source_id if is_hub else None,
        base_model_relation=BASE_MODEL_RELATION if is_hub else None,
        library_name="transformers",
        pipeline_tag="image-text-to-text" if arch.get("multimodal", True) else "text-generation",
        license=lic or None,
        tags=tags,
    )


def card_context(
    provenance: dict,
    command: str | None = None,
    heatmap: str | None = None,
    *,
    repo_id: str | None = None,
    out_name: str = "baked-model",
    license: str | None = None,
) -> dict:
    """The card's fields, from the record alone: what the template shows, already worded and formatted."""
    prov = provenance or {}
    src = public_source(prov.get("source"))
    source_id = str(src.get("id") or "")
    revision = src.get("revision")
    is_hub = looks_like_repo_id(source_id)
    gdoc = prov.get("gains") if isinstance(prov.get("gains"), dict) else {}
    model = dict(prov.get("model") or {})
    for key in ("model_type", "num_layers", "num_heads", "head_dim"):
        model.setdefault(key, gdoc.get(key))
    matrix = gdoc.get("gains") if isinstance(gdoc.get("gains"), list) else []
    num_layers = model.get("num_layers") or len(matrix)
    num_heads = model.get("num_heads") or (len(matrix[0]) if matrix else 0)
    total = (num_layers or 0) * (num_heads or 0)
    arch = _arch(model.get("model_type"))
    family = arch.get("family") or model.get("model_type") or "unknown architecture"

    rescaled = [(l, h, g) for l, row in enumerate(matrix) for h, g in enumerate(row) if g != 1.0]
    n = len(rescaled)
    share = f"{100 * n / total:.1f}%" if total else "?"
    classes = _classes(gdoc, matrix)
    preset = gdoc.get("preset") if isinstance(gdoc.get("preset"), dict) else None

    if source_id == "demo":
        base_link = "the built-in `demo` model (a tiny Qwen2.5-VL with random weights)"
    elif is_hub:
        base_link = f"[{source_id}](https://huggingface.co/{source_id})"
    else:
        base_link = f"`{source_id or 'an unnamed local checkpoint'}`"
    base_bold = base_link if not is_hub else f"**{base_link}**"

    if n == 0:
        what = (
            f"This is {base_bold} passed through headbake with every gain equal to 1.0, so its weights are "
            "identical to the base model."
        )
        rescaled_summary = "none"
    elif classes is not None:
        np_, nr = len(classes["perceptual"]), len(classes["reasoning"])
        gp = _num((preset or {}).get("g_perc")) if preset else None
        gr = _num((preset or {}).get("g_reas")) if preset else None
        perc_layers = sorted({l for l, _ in classes["perceptual"]})
        reas_layers = sorted({l for l, _ in classes["reasoning"]})
        parts = []
        if np_:
            parts.append(f"{np_} *perceptual* {'head' if np_ == 1 else 'heads'} in {_layer_span(perc_layers)}"
                         + (f" by ×{gp}" if gp else ""))
        if nr:
            parts.append(f"{nr} *reasoning* {'head' if nr == 1 else 'heads'} in {_layer_span(reas_layers)}"
                         + (f" by ×{gr}" if gr else ""))
        what = (
            f"This is {base_bold} with {n} of its {total} attention heads ({share}) amplified — "
            f"{' and '.join(parts)} — by scaling {'its' if n == 1 else 'their'} columns of the attention output projection "
            "(`o_proj`), so it runs on stock `transformers` with no extra code and no extra compute."
        )
        rescaled_summary = f"{n} of {total} ({share}): {np_} perceptual, {nr} reasoning"
    else:
        gains = sorted({g for _, _, g in rescaled})
        span = f"×{_num(gains[0])}" if len(gains) == 1 else f"×{_num(gains[0])} to ×{_num(gains[-1])}"
        what = (
            f"This is {base_bold} with {n} of its {total} attention heads ({share}) rescaled by hand-chosen gains "
            f"({span}), folded into the columns of each layer's attention output projection (`o_proj`), so it runs "
            "on stock `transformers` with no extra code and no extra compute."
        )
        rescaled_summary = f"{n} of {total} ({share}), hand-written gains {span}"

    edited = prov.get("edited") if isinstance(prov.get("edited"), list) else []
    if edited:
        shards = sorted({e.get("file") for e in edited if e.get("file")})
        edited_summary = (
            f"{len(edited)} `o_proj` weight {'tensor' if len(edited) == 1 else 'tensors'} in "
            f"{len(shards)} shard {'file' if len(shards) == 1 else 'files'}; everything else byte-identical"
        )
    elif n:
        layers = sorted({l for l, _, _ in rescaled})
        edited_summary = f"the `o_proj` weights of {len(layers)} layers; everything else byte-identical"
    else:
        edited_summary = "none"

    preset_rows = []
    if preset:
        from_paper = preset.get("values_from_paper")
        overrides = preset.get("overrides") or []
        overridden = set(overrides) if isinstance(overrides, list) else set(overrides or {})
        sources = preset.get("sources") if isinstance(preset.get("sources"), dict) else {}

        def origin(key: str) -> str:
            if key == "query":
                return "headbake's choice (the paper does not say which position i* it used)"
            if key in overridden:
                return "set for this run"
            if key in sources:
                return _SOURCE_WORDS.get(sources[key], str(sources[key]))
            if isinstance(from_paper, list):
                return "paper" if key in from_paper else "headbake default"
            return "paper" if preset.get("from_paper") else "preset"

        for key, meaning in _HYPERPARAMETERS:
            if key in preset:
                preset_rows.append({"name": key, "value": _num(preset[key]), "meaning": meaning,
                                    "origin": origin(key)})
        q = gdoc.get("query") if isinstance(gdoc.get("query"), dict) else None
        if q:
            preset_rows.append({"name": "query", "value": _query_text(q),
                                "meaning": "position(s) i* whose attention defines S_v", "origin": origin("query")})
        known = {k for k, _ in _HYPERPARAMETERS} | {"name", "from_paper", "values_from_paper", "overrides",
                                                    "description", "requested", "sources", "source_notes",
                                                    "notice", "preset_file"}
        for key, value in preset.items():
            if key not in known and not isinstance(value, (list, dict)):
                preset_rows.append({"name": key, "value": _num(value), "meaning": "", "origin": origin(key)})
    gain_values = ", ".join(f"×{_num(g)}" for g in sorted({g for _, _, g in rescaled})) or "none (all 1.0)"

    layer_rows, totals, has_sv = _layer_rows(gdoc, matrix, classes, num_layers or len(matrix))

    data = gdoc.get("data") if isinstance(gdoc.get("data"), dict) else None
    stab = gdoc.get("stability") if isinstance(gdoc.get("stability"), dict) else None
    stability = None
    if stab and stab.get("bootstrap_jaccard_mean") is not None:
        stability = (
            f"the selected heads overlap by {_pct(stab['bootstrap_jaccard_mean'])} on average (Jaccard) across "
            f"{_num(stab.get('bootstrap_rounds'))} bootstrap resamples of the calibration set"
        )
    q = gdoc.get("query") if isinstance(gdoc.get("query"), dict) else None
    warnings = [str(w) for w in (gdoc.get("warnings") or []) if w]
    agreement = gdoc.get("agreement") if isinstance(gdoc.get("agreement"), dict) else None
    tokens = _token_text(gdoc.get("tokens"))
    prompt = gdoc.get("prompt") if isinstance(gdoc.get("prompt"), dict) else None

    ver = prov.get("verification")
    tview, mview, verified_summary = _verification(ver)

    versions = []
    for key, label in (("headbake_version", "headbake"), ("transformers_version", "transformers"),
                       ("torch_version", "torch")):
        if prov.get(key):
            versions.append(f"{label} {prov[key]}")
    heatmap_md = heatmap if heatmap else None

    model_id = repo_id or out_name
    cd = card_data(prov, license=license, model_name=model_id)

    ev = prov.get("evaluation") if isinstance(prov.get("evaluation"), dict) else None
    ctx = dict(
        card_data=cd.to_yaml(original_order=YAML_ORDER),
        repo_marker=repo_id or "",
        title=f"{_base_short(source_id)} · attention heads rebalanced (headbake)",
        what=what, paper_url=PAPER_URL,
        base_link=base_link, revision=revision if isinstance(revision, str) else None, is_hub=is_hub,
        family=family, num_layers=num_layers, num_heads=num_heads, head_dim=model.get("head_dim") or "?",
        rescaled_summary=rescaled_summary, edited_summary=edited_summary, verified_summary=verified_summary,
        auto_class=arch.get("auto_class") or "AutoModelForImageTextToText",
        remote_code=bool(arch.get("remote_code")), model_id=model_id,
        preset=preset, preset_rows=preset_rows, gain_values=gain_values, preset_origin=_preset_origin(preset),
        agreement=agreement.get("summary") if agreement else None, tokens=tokens,
        prompt_source=prompt.get("source") if prompt else None,
        layer_rows=layer_rows, totals=totals, has_classes=classes is not None, has_sv=has_sv,
        heatmap=heatmap_md,
        data=data, samples=gdoc.get("samples"), query=_query_text(q) if q else None, stability=stability,
        warnings=warnings,
        verification=isinstance(ver, dict), tensor=tview, vmodel=mview,
        verify_source=source_id or "BASE_MODEL", out_name=out_name,
        evaluation=card_markdown(ev).rstrip("\n"), has_evaluation=ev is not None,
        reproduce=_reproduce(prov, command, out_name),
        versions=", ".join(versions), created=str(prov["created"])[:10] if prov.get("created") else None,
        bibtex=BIBTEX,
        tuning=tuning_view(prov.get("tuning")),
    )
    return ctx


_SOURCE_WORDS = {
    "paper-main": "paper (main text)",
    "paper-supplement": "paper's supplementary material, as transcribed by a public reproduction (not checked "
                        "against the PDF)",
    "headbake": "headbake (demo model)",
    "override": "set for this run",
    "tuned": "tuned by `headbake tune` (see below)",
}


def _preset_origin(preset: dict | None) -> str:
    """The words after the preset's name: the paper's published setting only where it is."""
    if not preset:
        return ""
    sources = set((preset.get("sources") or {}).values())
    changed = bool(preset.get("overrides"))
    if preset.get("from_paper"):
        text = "the paper's published setting"
    elif sources - {"override"} == {"paper-supplement"}:
        text = ("the paper's per-model setting from its supplementary material, as transcribed by a public "
                "reproduction; not checked against the PDF")
    elif "headbake" in sources:
        text = "headbake's setting for its tiny random demo model, not the paper's"
    elif "tuned" in sources:
        text = "chosen for this model by `headbake tune` (see How the settings were chosen)"
    else:
        text = ""
    if changed:
        text = (text + ", " if text else "") + "with values set for this run"
    requested, name = preset.get("requested"), preset.get("name")
    if requested and requested != name:
        text = (text + "; " if text else "") + f"what `--preset {requested}` resolves to for this model"
    return f" ({text})" if text else ""


def _token_text(tokens) -> str | None:
    if not isinstance(tokens, dict):
        return None
    img, prm = tokens.get("image_tokens") or {}, tokens.get("prompt_tokens") or {}
    if img.get("mean") is None:
        return None
    text = f"{img['mean']:.0f} image tokens per sample on average (min {img['min']}, max {img['max']})"
    if prm.get("mean") is not None:
        text += f"; whole prompts {prm['mean']:.0f} tokens on average (min {prm['min']}, max {prm['max']})"
    return text


def _query_text(q: dict) -> str:
    mode = q.get("mode")
    k = q.get("k")
    if mode == "last":
        return "the last prompt token"
    if mode == "last_k":
        return f"the last {k} prompt tokens (averaged)"
    if mode == "generated_k":
        return f"the first {k} generated tokens (averaged)"
    return f"{mode}" + (f" (k={k})" if k else "")


def tuning_view(tuning) -> dict | None:
    """The card's tuning section from the record's ``tuning`` block (``headbake tune``): what was searched, on
    which data (named and fingerprinted, never a path), and the held-out result with its paired statistics."""
    if not isinstance(tuning, dict):
        return None
    dev = tuning.get("dev") if isinstance(tuning.get("dev"), dict) else {}
    hold = tuning.get("holdout") if isinstance(tuning.get("holdout"), dict) else None
    res = tuning.get("holdout_result") if isinstance(tuning.get("holdout_result"), dict) else None
    objective = tuning.get("objective") if isinstance(tuning.get("objective"), dict) else {}
    default = tuning.get("default_preset") if isinstance(tuning.get("default_preset"), dict) else {}
    labels = {"vanilla": "original (base model)", "tuned": "tuned (this checkpoint)",
              "default": f"default preset `{default.get('name', '?')}`"}
    rows = []
    if res:
        for arm, a in (res.get("arms") or {}).items():
            c = (res.get("comparisons") or {}).get(arm)
            ci = a.get("ci95")
            row = {"name": labels.get(arm, arm), "correct": f"{a.get('correct')}/{a.get('n')}",
                   "accuracy": _pct(a.get("accuracy")) + (f" ({100 * ci[0]:.1f}–{100 * ci[1]:.1f})" if ci else ""),
                   "diff": "—", "fixed": "—", "p": "—", "verdict": "baseline"}
            if c:
                lo, hi = c["ci95"]
                row.update(diff=f"{100 * c['difference']:+.1f} ({100 * lo:+.1f} to {100 * hi:+.1f})",
                           fixed=f"{c['fixed']} / {c['broken']}", p=f"{c['mcnemar_p']:.3g}", verdict=c["outcome"])
            rows.append(row)
    vs = res.get("tuned_vs_default") if res else None
    dev_result = tuning.get("dev_result") if isinstance(tuning.get("dev_result"), dict) else {}
    tuned_dev, van_dev = dev_result.get("tuned") or {}, dev_result.get("vanilla") or {}
    return {
        "evaluated": tuning.get("evaluated"), "pruned": tuning.get("pruned", 0), "sampler": tuning.get("sampler"),
        "seed": tuning.get("seed"), "accuracy": objective.get("accuracy"), "kl": objective.get("kl"),
        "rule": (tuning.get("choice") or {}).get("rule"),
        "dev": dev, "holdout": hold, "rows": rows, "vs_default": vs.get("verdict") if isinstance(vs, dict) else None,
        "method": "; ".join(f"{k.replace('_', ' ')}: {v}" for k, v in (res.get("method") or {}).items())
        if res else None,
        "default_note": None if default.get("applicable", True) else
        f"The default preset `{default.get('name')}` was not compared: {default.get('why')}.",
        "dev_line": (f"on the dev rows: {tuned_dev.get('correct')}/{tuned_dev.get('n')} tuned against "
                     f"{van_dev.get('correct')}/{van_dev.get('n')} for the original, KL {_num(tuned_dev.get('kl'))} "
                     "nats") if tuned_dev else None,
    }
