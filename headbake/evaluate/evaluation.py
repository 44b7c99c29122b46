"""One evaluation end to end: every check first, then the arms, then the report.

``headbake eval`` and ``convert --eval-data`` both run through here, so a
card's figures and a standalone report are computed the same way. The order
protects the user's time: flags, arms, data rows (a bad one is named by its
line), generation settings and vLLM are checked before MODEL is resolved
(which may download it); the checks that need the model's files (gains and a
baked copy against its shape, the per-input preset against its layers,
remote code, pickle-only weights) run before any weights are loaded. Rows
stream into a resumable cache; the report is written atomically at the end
and names no local path (data by file name and fingerprint, checkpoints by
name and content digest).
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field, replace
from importlib import metadata
from pathlib import Path
from types import SimpleNamespace

from headbake.calibrate.per_input import apply_per_input
from headbake.calibrate.presets import DEFAULT, get_preset, resolve
from headbake.calibrate.queries import query_spec
from headbake.calibrate.selection import PARAM_NAMES, validate_params
from headbake.checkpoint import open_checkpoint
from headbake.data.prompts import load_prompt_template, prompt_for
from headbake.errors import HeadbakeError
from headbake.evaluate import arms as A
from headbake.evaluate.arms import ARM_NAMES
from headbake.evaluate.cache import ResultCache
from headbake.evaluate.recipes import RECIPES, ColumnMap, load_mapped_rows, load_recipe_rows
from headbake.evaluate.report import attach_cross_mode, build_report
from headbake.evaluate.rows import read_rows, rows_fingerprint
from headbake.evaluate.runner import EvalSettings, check_settings, run_arms
from headbake.evaluate.scoring import score_row
from headbake.evaluate.stats import DEFAULT_RESAMPLES
from headbake.model.info import load_model_info, probe_path
from headbake.model.loading import check_remote_code
from headbake.progress import progress_enabled
from headbake.record import now, public_source, versions

MODES = ("generate", "forced", "both")
DEFAULT_ARMS = ("vanilla", "baked")
PLAIN_ARMS = ("vanilla", "baked")  # nothing but the checkpoint decides their outputs


@dataclass
class EvalRequest:
    """Everything ``headbake eval`` was asked (the CLI fills it from its flags)."""
    model: str
    out: Path | None = None  # report.json; None: not written (convert keeps only the summary)
    baked: Path | None = None
    gains: Path | None = None  # hooked arm; default: the gains recorded in --baked
    arms: tuple = DEFAULT_ARMS
    data: Path | None = None
    recipe: str | None = None
    dataset: str | None = None
    split: str | None = None  # default: the recipe's split, else "test"
    config: str | None = None
    columns: ColumnMap | None = None  # --dataset without --recipe
    limit: int | None = None
    mode: str = "generate"
    max_new_tokens: int = 2048
    batch_size: int = 8
    device: str | None = None
    device_map: str | None = None
    dtype: str = "auto"
    engine: str = "transformers"
    prompt_template: Path | None = None  # default: the model's own prompt (as in calibration)
    preset: str = "default"  # per-input arm
    overrides: dict = field(default_factory=dict)  # per-input arm: l_perc, tau_perc, ...
    query: str = "last"  # per-input arm
    k: int | None = None
    cache: Path | None = None  # default: beside --out (REPORT.cache.jsonl); in memory without --out
    seed: int = 0
    resamples: int = DEFAULT_RESAMPLES
    revision: str | None = None
    trust_remote_code: bool = False
    source: dict | None = None  # set by convert: MODEL is then a resolved local path with this source block
    alias: str | None = None
    progress: bool = True


@dataclass
class Plan:
    """What the checks found: rows, arms, settings and where results go."""
    request: EvalRequest
    rows: list
    data: dict  # public description of the data source
    model_dir: Path
    model: dict  # public: id, revision, alias
    arms: list
    settings: object  # EvalSettings of the first mode
    modes: list  # modes to run, primary first
    cache: ResultCache
    cache_path: Path | None
    template: object
    per_input: dict | None = None
    arm_details: dict = field(default_factory=dict)
    warnings: list = field(default_factory=list)


# ----------------------------------------------------------------------------- checks that need no model
def parse_arms(value) -> tuple:
    """``"vanilla,baked"`` (or a sequence) -> a tuple of known, distinct arm names."""
    names = [n.strip() for n in (value.split(",") if isinstance(value, str) else value) if n and n.strip()]
    if not names:
        raise HeadbakeError(f"--arms is empty; choose from {', '.join(ARM_NAMES)}")
    unknown = [n for n in names if n not in ARM_NAMES]
    if unknown:
        raise HeadbakeError(f"unknown arm {unknown[0]!r}; choose from {', '.join(ARM_NAMES)}")
    dup = sorted({n for n in names if names.count(n) > 1})
    if dup:
        raise HeadbakeError(f"--arms names {dup[0]!r} twice")
    return tuple(names)


def default_cache(out) -> Path:
    """``report.json`` -> ``report.cache.jsonl`` beside it."""
    out = Path(out)
    return out.with_name(out.stem + ".cache.jsonl")


def _eval_settings(req: EvalRequest, mode: str, template=None):

    return EvalSettings(mode=mode, max_new_tokens=req.max_new_tokens, batch_size=req.batch_size, dtype=req.dtype,
                        device=req.device, device_map=req.device_map, engine=req.engine, template=template,
                        trust_remote_code=req.trust_remote_code)


def _modes(mode: str) -> list:
    return ["generate", "forced"] if mode == "both" else [mode]


def check_request(req: EvalRequest) -> tuple:
    """Every check that needs neither the model nor its files; returns the parsed arms."""
    if req.mode not in MODES:
        raise HeadbakeError(f"--mode must be one of {', '.join(MODES)}, got {req.mode!r}")
    if req.engine == "vllm" and req.mode != "generate":
        raise HeadbakeError("--engine vllm runs --mode generate only; forced scoring uses --engine transformers")
    arms = parse_arms(req.arms)
    if "baked" in arms and req.baked is None:
        raise HeadbakeError("the baked arm needs --baked DIR (a directory written by `headbake bake` or `convert`)")
    if "hooked" in arms and req.gains is None and req.baked is None:
        raise HeadbakeError("the hooked arm needs --gains FILE, or --baked DIR whose headbake.json holds the gains")
    if req.out is not None:
        from headbake.fsutil import ensure_writable

        ensure_writable(req.out, "--out")
    if req.limit is not None and (isinstance(req.limit, bool) or req.limit < 1):
        raise HeadbakeError(f"--limit must be at least 1 (got {req.limit})")
    if isinstance(req.seed, bool) or not isinstance(req.seed, int) or req.seed < 0:
        raise HeadbakeError(f"--seed must be a non-negative integer, got {req.seed!r}")
    if isinstance(req.resamples, bool) or not isinstance(req.resamples, int) or req.resamples < 100:
        raise HeadbakeError(f"--resamples must be an integer of at least 100, got {req.resamples!r}")
    stand_ins = [SimpleNamespace(name=a, plain=a in PLAIN_ARMS) for a in arms]
    for mode in _modes(req.mode):
        check_settings(_eval_settings(req, mode), stand_ins)
    if "per-input" in arms:
        _check_per_input_flags(req)
    if req.prompt_template is not None:
        from headbake.data.prompts import load_prompt_template

        load_prompt_template(req.prompt_template)
    if req.baked is not None:
        A.baked(req.baked)  # a model directory
    if req.gains is not None:
        from headbake.gains import load_gains

        load_gains(req.gains)
    cache = req.cache if req.cache is not None else (default_cache(req.out) if req.out is not None else None)
    if cache is not None and Path(cache).is_dir():
        raise HeadbakeError(f"--cache is a directory: {cache}")
    return arms


def _check_per_input_flags(req: EvalRequest) -> None:

    spec = query_spec(req.query, req.k)
    if spec.mode == "generated_k":
        raise HeadbakeError("the per-input arm measures S_v on the prompt: use --query last or last-k")
    if req.preset != DEFAULT:
        get_preset(req.preset)
    unknown = sorted(set(req.overrides or {}) - set(PARAM_NAMES))
    if unknown:
        raise HeadbakeError(f"unknown preset value {unknown[0]!r}")


def load_rows(req: EvalRequest) -> tuple[list, dict]:
    """The rows (every one checked, bad ones named by line or row) and a public description of their source."""
    given = [n for n, v in (("--data", req.data), ("--recipe", req.recipe), ("--dataset", req.dataset)) if v]
    if not given:
        raise HeadbakeError("no evaluation data: give --data FILE.jsonl, --recipe NAME or --dataset NAME "
                            "with column options")
    if req.data and len(given) > 1:
        raise HeadbakeError(f"give either --data or {' / '.join(g for g in given if g != '--data')}, not both")
    if req.recipe and req.columns is not None:
        raise HeadbakeError("column options apply to --dataset without --recipe (a recipe states its columns)")
    if req.data:
        if req.split or req.config:
            raise HeadbakeError("--split and --config apply to --dataset and --recipe, not to a --data file")
        rows = read_rows(req.data, req.limit)
        desc = {"source": "jsonl", "name": Path(req.data).name}
    elif req.recipe:
        if req.recipe not in RECIPES:
            raise HeadbakeError(f"unknown recipe {req.recipe!r} (known: {', '.join(RECIPES)})")
        rc = RECIPES[req.recipe]
        rows = load_recipe_rows(req.recipe, req.dataset, req.split, req.config, req.limit)
        desc = {"source": "recipe", "recipe": rc.name, "name": _dataset_name(req.dataset or rc.dataset),
                "split": req.split or rc.split, "config": req.config if req.config is not None else rc.config}
    else:
        columns = req.columns if req.columns is not None else ColumnMap()
        split = req.split or "test"
        rows = load_mapped_rows(req.dataset, split, columns, req.config, req.limit)
        desc = {"source": "dataset", "name": _dataset_name(req.dataset), "split": split, "config": req.config,
                "columns": {k: v for k, v in vars(columns).items() if v is not None}}

    desc.update(rows=len(rows), limit=req.limit, fingerprint=rows_fingerprint(rows))
    return rows, desc


def _dataset_name(name: str) -> str:
    """A Hub dataset id as is; a local folder by its last component only (it is published)."""
    p = Path(os.path.expanduser(name))
    return p.name if p.exists() or os.path.isabs(name) else name


# ----------------------------------------------------------------------------- checks on the model's files
def prepare(req: EvalRequest) -> Plan:
    """Check everything, resolve MODEL, build the arms; nothing is loaded yet."""
    arm_names = check_request(req)
    rows, data = load_rows(req)

    if req.source is not None:
        model_dir, source, alias = Path(req.model), dict(req.source), req.alias
    else:
        from headbake.hub import resolve_model

        resolved = resolve_model(req.model, revision=req.revision, progress=req.progress,
                                 trust_remote_code=req.trust_remote_code or None)
        model_dir, source, alias = resolved.path, resolved.source(), resolved.alias
    if alias is None:
        from headbake.calibrate.presets import identify_model

        alias = identify_model(source.get("id"))
    pub = public_source(source)
    model = {"id": pub.get("id"), "revision": pub.get("revision"), "alias": alias}

    info = load_model_info(model_dir)
    check_remote_code(info, req.trust_remote_code)
    warnings: list = []
    details = {}
    arms = []
    baked_dir = Path(req.baked) if req.baked is not None else None
    if baked_dir is not None:
        other = load_model_info(baked_dir)
        if other.identity() != info.identity():
            raise HeadbakeError(f"--baked {baked_dir.name} is not a bake of this model: it has "
                                f"{_shape(other.identity())}, the model has {_shape(info.identity())}")
    for name in arm_names:
        if name == "vanilla":
            arm = A.vanilla(model_dir)
            details[name] = {"checkpoint": model["id"]}
        elif name == "baked":
            arm = A.baked(baked_dir)
            details[name] = {"checkpoint": baked_dir.resolve().name}
        elif name == "hooked":
            gains = req.gains if req.gains is not None else baked_dir
            arm = A.hooked(model_dir, gains)
            details[name] = {"checkpoint": model["id"], "gains": Path(gains).name, **arm.identity}
        else:
            arm, per = _per_input_arm(req, model_dir, info, source, alias)
            warnings += per.pop("warnings")
            details[name] = {"checkpoint": model["id"], **per}
        arms.append(arm)
    if "per-input" in arm_names and probe_path(info.model_type) == "hooks":
        raise HeadbakeError(f"the per-input arm needs attention that goes through transformers' attention registry; "
                            f"{info.model_type} computes it inside its own module")
    for d in {str(Path(a.model_dir).resolve()): a.model_dir for a in arms}.values():
        open_checkpoint(d)  # pickle-only, truncated or malformed weights are refused before loading

    template = _template(req, alias)
    modes = _modes(req.mode)
    settings = _eval_settings(req, modes[0], template)
    cache_path = req.cache if req.cache is not None else (default_cache(req.out) if req.out is not None else None)
    plan = Plan(req, rows, data, model_dir, model, arms, settings, modes, ResultCache(cache_path),
                Path(cache_path) if cache_path is not None else None, template, arm_details=details,
                warnings=warnings)
    if "per-input" in details:
        plan.per_input = {k: details["per-input"][k] for k in ("preset", "query")}
    return plan


def _shape(identity: dict) -> str:
    return (f"{identity['model_type']}, {identity['num_layers']} layers x {identity['num_heads']} heads x "
            f"{identity['head_dim']}")


def _template(req: EvalRequest, alias):

    return load_prompt_template(req.prompt_template) if req.prompt_template is not None else prompt_for(alias)


def _per_input_arm(req: EvalRequest, model_dir: Path, info, source: dict, alias):
    """The paper's per-input plug-in with the model's resolved preset (and any overrides)."""
    params, block = resolve(req.preset, req.overrides, model_id=source.get("id"), alias=alias)
    if set(PARAM_NAMES) <= set(req.overrides or {}):
        block.pop("notice", None)  # every value was given: the fallback preset's caveat does not apply
    warnings = ([block["notice"]] if block.get("notice") else []) + validate_params(params, info.num_layers)
    spec = query_spec(req.query, req.k)
    query = spec.as_dict()
    k = spec.k if spec.mode == "last_k" else None
    identity = {"preset": params.as_dict(), "query": query}

    def factory(model):
        return apply_per_input(model, params, query=req.query, k=k)

    arm = A.per_input(model_dir, factory, identity)
    shown = {key: block[key] for key in ("name", "requested", "overrides", "notice") if key in block}
    return arm, {"preset": {**shown, **params.as_dict()}, "query": query, "warnings": warnings}


# ----------------------------------------------------------------------------- running
def run(plan: Plan) -> dict:
    """Run every arm in every mode, grade, and assemble (and write, with ``--out``) the report."""
    req = plan.request
    bars = progress_enabled(req.progress)  # a terminal only: no redrawn frames in pipes and logs
    runs = {}
    for mode in plan.modes:
        settings = replace(plan.settings, mode=mode)
        runs[mode] = run_arms(plan.arms, plan.rows, settings, cache=plan.cache, progress=bars)
    primary = plan.modes[0]
    other = "forced" if primary == "generate" else "generate"
    if other in runs:
        cross, cross_ran = runs[other], True
    else:  # what an earlier run in the other mode left in the cache (same rows, arms and settings)
        settings = replace(plan.settings, mode=other, engine="transformers")
        cross = run_arms(plan.arms, plan.rows, settings, cache=plan.cache, progress=False, cached_only=True)
        cross_ran = False

    graded = runs[primary].graded(plan.rows, score_row)
    pairs = [("hooked", "baked"), ("per-input", "baked"), ("per-input", "hooked")]
    report = build_report(plan.rows, graded, settings=_settings_doc(runs[primary], plan), versions=_versions(plan),
                          agreement_pairs=pairs, n_resamples=req.resamples, seed=req.seed)
    attach_cross_mode(report, plan.rows, other, cross.graded(plan.rows, score_row), primary,
                      settings=_settings_doc(cross, plan), with_statistics=cross_ran, n_resamples=req.resamples,
                      seed=req.seed)
    report.update({
        "mode": primary if req.mode != "both" else "both",
        "data": plan.data,
        "model": plan.model,
        "arm_details": {name: {**d, "model_sha256": runs[primary].arms[name]["model"]}
                        for name, d in plan.arm_details.items()},
        "per_input": plan.per_input,
        "warnings": list(plan.warnings),
        "runtime": _runtime(runs, plan),
    })
    if req.out is not None:
        from headbake.fsutil import write_json_atomic

        write_json_atomic(req.out, report)
    return report


def evaluate(req: EvalRequest) -> dict:
    """``prepare`` then ``run``: the whole of ``headbake eval``."""
    return run(prepare(req))


def _settings_doc(run, plan: Plan) -> dict:
    doc = {k: v for k, v in run.settings.items() if k not in ("device", "device_map")}
    tpl = plan.template
    doc["prompt"] = tpl.as_dict() if hasattr(tpl, "as_dict") else None
    doc["question_layout"] = "question, lettered options, answer-format instruction (headbake.evaluate.rows)"
    doc["greedy"] = True
    return doc


def _versions(plan: Plan) -> dict:

    out = versions()
    extra = ["datasets"] if plan.request.dataset or plan.request.recipe else []
    if plan.request.engine == "vllm":
        extra.append("vllm")
    for pkg in extra:
        try:
            out[f"{pkg}_version"] = metadata.version(pkg)
        except metadata.PackageNotFoundError:
            out[f"{pkg}_version"] = None
    return out


def _runtime(runs: dict, plan: Plan) -> dict:
    """What varies between runs of the same evaluation (kept apart so reports compare equal otherwise)."""
    per = {}
    for mode, run in runs.items():
        for name, m in run.arms.items():
            answered = sum(1 for r in run.results[name] if r is not None and not r.skipped)
            per.setdefault(name, {})[mode] = {"computed": m["computed"], "from_cache": answered - m["computed"],
                                              "seconds": round(m["seconds"], 3)}
    return {"created": now(), "device": plan.request.device, "device_map": plan.request.device_map,
            "cache": plan.cache_path.name if plan.cache_path is not None else None, "arms": per}
