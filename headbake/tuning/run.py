"""One ``headbake tune`` run: check, load once, measure S_v once, search, choose, check on held-out rows, write.

Order matters for the user: everything that needs no model (options, dev and
held-out rows, their overlap, the calibration data, the storage file) is
checked before the model loads. The model is loaded once; S_v is measured
once per study (and read back from the study on a resume or on another
machine); every trial then only re-applies the selection rule to that S_v
and hooks the gains into the loaded model.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path

import headbake
from headbake.calibrate import data as data_mod
from headbake.calibrate.preset_file import FORMAT, PresetFile, preset_block, write_preset_file
from headbake.calibrate.presets import resolve
from headbake.calibrate.run import CalibrateOptions, calibrate, load_data, preflight
from headbake.calibrate.selection import Params, select_heads
from headbake.errors import HeadbakeError
from headbake.evaluate.arms import gains_digest
from headbake.evaluate.cache import model_fingerprint
from headbake.evaluate.runner import FORCED_TYPES, EvalSettings, check_settings
from headbake.gains import gains_document
from headbake.memory import plan_memory
from headbake.model.loading import load_model, load_processor
from headbake.progress import bar as progress_bar
from headbake.record import public_source
from headbake.tuning import front as F
from headbake.tuning import study as S
from headbake.tuning.data import DEFAULT_HOLDOUT_FRACTION, check_overlap, load_rowset, split_rows
from headbake.tuning.holdout import evaluate_holdout, summary
from headbake.tuning.objective import DevScorer
from headbake.tuning.space import SearchSpace, check_limits, rescaled_share
from headbake.tuning.study import SAMPLERS

TUNE_VERSION = 1  # bump when a trial's values would change for the same inputs (new studies then)
OBJECTIVES = ("forced", "generate")
SPACE_VERSION = "heads-per-class/1"  # how thresholds are searched (headbake.tuning.space)
# Calibrate with a rule that selects nothing: tune wants only the S_v statistics of the run.
_NEUTRAL = {"l_perc": 0, "tau_perc": 1.0, "g_perc": 1.0, "tau_reas": 0.0, "g_reas": 1.0}


@dataclass
class TuneOptions:
    model: str  # a local checkpoint directory (the CLI resolves aliases and Hub ids)
    out: str  # tuned.json
    dev: str | None = None
    recipe: str | None = None
    dataset: str | None = None
    split: str | None = None
    config: str | None = None
    limit: int | None = None
    holdout: str | None = None
    holdout_fraction: float | None = None  # None: 0.3 unless --holdout is given; 0: no held-out check
    trials: int = 100
    objective: str = "forced"
    sampler: str = "tpe"
    kl_budget: float | None = None
    max_share: float = 0.18
    max_gain: float = 1.5
    gain_step: float = 0.05
    storage: str | None = None  # default: beside out
    png: str | None = None  # default: beside out
    seed: int = 0
    # calibration (S_v)
    data: str | None = None
    samples: int | None = None
    query: str = "last"
    k: int | None = None
    prompt_template: str | None = None
    visual_token_ids: tuple = ()
    # evaluation
    batch_size: int = 8
    max_new_tokens: int = 2048
    answer_prefix: str = "Answer:"
    think_close: str | None = "auto"
    dtype: str = "auto"
    device: str | None = None
    device_map: str | None = None
    trust_remote_code: bool = False
    source: dict | None = None  # {"id", "revision"}; default: the local directory
    alias: str | None = None
    progress: bool = True

    @property
    def storage_path(self) -> Path:
        out = Path(self.out)
        return Path(self.storage) if self.storage else out.with_name(out.stem + ".optuna-journal.log")

    @property
    def png_path(self) -> Path:
        out = Path(self.out)
        return Path(self.png) if self.png else out.with_name(out.stem + "_front.png")

    @property
    def report_path(self) -> Path:
        out = Path(self.out)
        return out.with_name(out.stem + "_holdout.json")


def check_options(o: TuneOptions) -> None:
    """Every check that needs neither the model nor the data (the CLI runs it before a download)."""
    if isinstance(o.trials, bool) or not isinstance(o.trials, int) or o.trials < 1:
        raise HeadbakeError(f"--trials must be at least 1, got {o.trials!r}")
    if o.objective not in OBJECTIVES:
        raise HeadbakeError(f"--objective must be one of {', '.join(OBJECTIVES)}, got {o.objective!r}")
    if o.sampler not in SAMPLERS:
        raise HeadbakeError(f"--sampler must be one of {', '.join(SAMPLERS)}, got {o.sampler!r}")
    if o.kl_budget is not None and not (o.kl_budget >= 0 and o.kl_budget != float("inf")):
        raise HeadbakeError(f"--kl-budget must be a finite number >= 0, got {o.kl_budget}")
    if o.holdout and o.holdout_fraction:
        raise HeadbakeError("give either --holdout FILE or --holdout-fraction, not both")
    if o.holdout_fraction is not None and not 0 <= o.holdout_fraction < 1:
        raise HeadbakeError(f"--holdout-fraction must be in [0, 1), got {o.holdout_fraction}")
    if not (o.dev or o.recipe):
        raise HeadbakeError("no dev rows: give --dev FILE.jsonl or --recipe NAME")
    out = Path(o.out)
    if out.is_dir():
        raise HeadbakeError(f"--out is a directory: {out}")
    if o.storage_path.is_dir():
        raise HeadbakeError(f"--storage is a directory: {o.storage_path}")
    for name in ("batch_size", "max_new_tokens"):
        v = getattr(o, name)
        if isinstance(v, bool) or not isinstance(v, int) or v < 1:
            raise HeadbakeError(f"--{name.replace('_', '-')} must be a positive integer, got {v!r}")

    check_limits(o.max_share, o.max_gain, o.gain_step)


def _calibrate_options(o: TuneOptions, num_layers: int):

    return CalibrateOptions(
        model=o.model, preset="default", data=o.data, samples=o.samples, batch_size=o.batch_size, device=o.device,
        device_map=o.device_map, dtype=o.dtype, query=o.query, k=o.k, visual_token_ids=tuple(o.visual_token_ids),
        bootstrap_rounds=0, seed=o.seed, trust_remote_code=o.trust_remote_code, source=o.source,
        prompt_template=o.prompt_template, alias=o.alias, progress=o.progress,
        **_NEUTRAL, l_reas=num_layers - 1,
    )


def _rows(o: TuneOptions):

    dev = load_rowset(o.dev, o.recipe, o.dataset, o.split, o.config, o.limit)
    split = None
    if o.holdout:
        hold = load_rowset(o.holdout, what="--holdout")
    else:
        fraction = DEFAULT_HOLDOUT_FRACTION if o.holdout_fraction is None else o.holdout_fraction
        hold = None
        if fraction > 0:
            dev, hold = split_rows(dev, fraction, o.seed)
            split = {"fraction": fraction, "seed": o.seed}
    if hold is not None:
        check_overlap(dev, hold)
    return dev, hold, split


def _effective(sel, params):
    """The selection as baked: a class at gain 1.0 is switched off, so its heads are not listed as rescaled."""
    perc = sel.perceptual if params.g_perc != 1.0 else []
    reas = sel.reasoning if params.g_reas != 1.0 else []
    counts = dict(sel.counts, perceptual=len(perc), reasoning=len(reas), share=rescaled_share(sel.gains),
                  per_layer=[dict(pl, perceptual=pl["perceptual"] if perc else 0,
                                  reasoning=pl["reasoning"] if reas else 0) for pl in sel.counts["per_layer"]])
    return perc, reas, counts


def _default_preset(o: TuneOptions, info, sv):
    """The preset `headbake calibrate` would use for this model, and whether it applies to its layers."""
    params, block = resolve("default", model_id=(o.source or {}).get("id"), alias=o.alias)
    entry = {"name": block["name"], "params": params.as_dict(), "from_paper": block["from_paper"],
             "sources": block["sources"]}
    try:
        sel = select_heads(sv, params)  # validates the layer bounds against the model
    except HeadbakeError as e:
        return dict(entry, applicable=False, why=f"not applicable to this model ({e.args[0].split(';')[0]})"), None
    return dict(entry, applicable=True), sel


def _evaluated_gains(study) -> dict:
    """``{gains sha256: first trial number}`` over the study's evaluated trials (every worker's)."""
    from optuna.trial import TrialState

    seen: dict = {}
    for t in study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,)):
        seen.setdefault(t.user_attrs.get("gains_sha256"), t.number)
    return seen


def _load(o: TuneOptions, pf):

    plan = plan_memory(pf.model_dir, "calibrate", device=o.device, device_map=o.device_map, dtype=o.dtype,
                       batch_size=o.batch_size, eager=pf.method == "hooks", info=pf.info).check()
    model = load_model(pf.model_dir, pf.info, dtype=o.dtype, device=o.device, trust_remote_code=o.trust_remote_code,
                       progress=o.progress, **(plan.load_kwargs() or {"device_map": None}),
                       attn_implementation="eager" if pf.method == "hooks" else "sdpa")
    return model, load_processor(pf.model_dir, trust_remote_code=o.trust_remote_code)


def tune(o: TuneOptions, on_trial=None, model=None, processor=None) -> dict:
    """Run (or continue) the study, choose a setting, check it on held-out rows and write ``o.out``.

    Returns a summary dict (front, chosen trial, held-out statistics, paths, timings, the printed table).
    ``on_trial(frozen_trial)`` is called after each trial (tests interrupt with it); ``model``/``processor``
    may be passed in already loaded.
    """
    t_start = time.perf_counter()
    check_options(o)
    pf = preflight(_calibrate_options(o, 1), model_loaded=model is not None)  # model files, remote code, template
    info = pf.info
    co = _calibrate_options(o, info.num_layers)
    settings = EvalSettings(mode=o.objective, batch_size=o.batch_size, max_new_tokens=o.max_new_tokens,
                            answer_prefix=o.answer_prefix, think_close=o.think_close, dtype=o.dtype, device=o.device,
                            device_map=o.device_map, template=pf.template)
    check_settings(settings)
    dev, hold, split = _rows(o)

    if o.objective == "forced" and not any(r.type in FORCED_TYPES for r in dev.rows):
        raise HeadbakeError("--objective forced scores multiple_choice and yes_no rows, and the dev rows have none; "
                            "use --objective generate")
    cal_data = load_data(co)
    data_mod.check_image_sizes(cal_data, data_mod.min_image_side_of_model(pf.model_dir))
    identity = {
        "version": TUNE_VERSION,
        "model": model_fingerprint(pf.model_dir),
        "dev": dev.fingerprint,
        "calibration": {"data": data_mod.fingerprint(cal_data.samples), "query": o.query, "k": o.k,
                        "prompt": pf.template.as_dict(), "visual_token_ids": list(pf.ids), "dtype": o.dtype,
                        "method": pf.method},
        "eval": settings.cache_dict(),
        "space": {"max_share": o.max_share, "max_gain": o.max_gain, "gain_step": o.gain_step,
                  "parametrisation": SPACE_VERSION},
        "sampler": o.sampler,
        "seed": o.seed,
    }
    storage = S.open_storage(o.storage_path)
    study = S.open_study(storage, S.study_name(identity))

    timings = {}
    t0 = time.perf_counter()
    if model is None:
        model, processor = _load(o, pf)
    timings["load_seconds"] = round(time.perf_counter() - t0, 3)

    cal = study.user_attrs.get("calibration")
    if cal is None:
        t0 = time.perf_counter()
        doc = calibrate(co, model=model, processor=processor)
        cal = {k: doc.get(k) for k in ("visual_ratio", "visual_ratio_std", "samples", "query", "prompt", "tokens",
                                       "data", "probe")}
        study.set_user_attr("calibration", cal)
        study.set_user_attr("dev", dev.describe())
        timings["calibration_seconds"] = round(time.perf_counter() - t0, 3)
        timings["calibrated"] = True
    else:
        timings["calibrated"] = False  # S_v read back from the study
    sv = cal["visual_ratio"]
    space = SearchSpace(sv, o.max_share, o.max_gain, o.gain_step)

    t0 = time.perf_counter()
    scorer = DevScorer(model, processor, dev.rows, settings)
    timings["vanilla_seconds"] = round(time.perf_counter() - t0, 3)

    default, default_sel = _default_preset(o, info, sv)
    default_point = None
    if default_sel is not None:
        dparams = Params(**default["params"])
        res = scorer.evaluate(default_sel.gains)
        perc, reas, counts = _effective(default_sel, dparams)
        default_point = F.Point(-1, default["params"], res.accuracy, res.kl, res.correct, res.n, len(perc),
                                len(reas), counts["share"], gains_digest(default_sel.gains), "default")
        start = space.encode(dparams)
        if not study.trials and start is not None and space.select(dparams)[1] is None:
            study.enqueue_trial(start)  # a fair start: the untuned setting's heads and gains are trial 0

    optuna = S._optuna()

    def trial_fn(trial):
        params = space.suggest(trial)
        trial.set_user_attr("params", params.as_dict())
        sel, why = space.select(params)
        if why:
            trial.set_user_attr("infeasible", why)
            raise optuna.TrialPruned(why)
        digest = gains_digest(sel.gains)
        first = _evaluated_gains(study).get(digest)
        if first is not None:  # the same heads and gains as an evaluated trial: nothing new to learn
            trial.set_user_attr("repeat_of", first)
            raise optuna.TrialPruned(f"same gains as trial {first}")
        res = scorer.evaluate(sel.gains)
        perc, reas, counts = _effective(sel, params)
        for key, value in (("correct", res.correct), ("n", res.n), ("perceptual", len(perc)),
                           ("reasoning", len(reas)), ("share", counts["share"]),
                           ("gains_sha256", digest), ("seconds", round(res.seconds, 4)),
                           ("cached", res.cached)):
            trial.set_user_attr(key, value)
        return res.accuracy, res.kl

    already = len(S.evaluated(study))
    bar = progress_bar(max(o.trials - already, 0), "tune", unit="trial", enabled=o.progress)
    best = {"acc": -1.0}

    def after(frozen):
        if frozen.values:
            bar.update(1)
        if frozen.values and frozen.values[0] > best["acc"]:
            best["acc"] = frozen.values[0]
            bar.set_postfix_str(f"best dev acc {100 * best['acc']:.1f}%")
        if on_trial is not None:
            on_trial(frozen)

    t0 = time.perf_counter()
    try:
        ran, exhausted = S.run_trials(study, o.trials, o.sampler, o.seed, trial_fn, after)
    finally:
        bar.close()
    timings["search_seconds"] = round(time.perf_counter() - t0, 3)
    timings["trials_run"] = ran
    timings["model_evaluations"] = scorer.evaluations

    from optuna.trial import TrialState

    complete = study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,))
    pruned = study.get_trials(deepcopy=False, states=(TrialState.PRUNED,))
    points = F.dedupe([F.from_trial(t) for t in complete])
    front = F.pareto_front(points)
    chosen = F.choose(points, o.kl_budget)
    vanilla = F.Point(-1, {}, scorer.vanilla.accuracy, 0.0, scorer.vanilla.correct, scorer.vanilla.n, label="vanilla")
    if chosen not in front:  # a budget pick is on the front of the trials under the budget
        front = sorted(front + [chosen], key=lambda p: (-p.accuracy, p.kl))
    cparams = Params(**chosen.params)
    csel = select_heads(sv, cparams)
    perc, reas, counts = _effective(csel, cparams)

    held = None
    if hold is not None:
        t0 = time.perf_counter()
        arms = {"vanilla": None, "tuned": csel.gains}
        if default_sel is not None:
            arms["default"] = default_sel.gains
        report = evaluate_holdout(model, processor, hold.rows, settings, arms,
                                  versions={"headbake_version": headbake.__version__,
                                            "optuna_version": optuna.__version__}, seed=o.seed)
        from headbake.fsutil import write_json_atomic

        write_json_atomic(o.report_path, report)
        held = summary(report)
        timings["holdout_seconds"] = round(time.perf_counter() - t0, 3)

    dev_desc = dev.describe(scored=len(scorer.scored))
    tuning = {
        "tool": "headbake tune",
        "headbake_version": headbake.__version__,
        "optuna_version": optuna.__version__,
        "study": study.study_name,
        "objective": {
            "mode": o.objective,
            "accuracy": ("forced-answer proxy: the option with the most next-token probability after the prompt "
                         f"and {o.answer_prefix!r} (multiple-choice and yes/no rows)") if o.objective == "forced"
            else f"greedy generation (up to {o.max_new_tokens} new tokens) graded by headbake's scorers",
            "kl": "KL(original || tuned) of the next-token distribution at the end of each dev prompt, mean, nats",
        },
        "sampler": o.sampler, "seed": o.seed,
        "evaluated": len(complete), "pruned": len(pruned),
        "space": space.as_dict(),
        "choice": {"rule": F.rule_text(o.kl_budget), "kl_budget": o.kl_budget, "trial": chosen.number},
        "dev": dev_desc,
        "holdout": hold.describe(split=split) if hold is not None else None,
        "dev_result": {"tuned": chosen.as_dict(), "vanilla": vanilla.as_dict(),
                       "default": default_point.as_dict() if default_point else None},
        "default_preset": default,
        "holdout_result": held,
        "front": [p.as_dict() for p in front],
    }
    warnings = list(csel.warnings)
    if exhausted:
        warnings.append(f"stopped at {len(complete)} of {o.trials} trials: the last {S.PRUNED_LIMIT} draws were "
                        "infeasible or repeated evaluated settings, so the search space is (nearly) exhausted; "
                        "widen it with --max-share, --max-gain or --gain-step")
    if hold is None:
        warnings.append("no held-out rows (--holdout-fraction 0): the dev accuracy was selected on the rows it is "
                        "reported on, so it overstates the gain")
    if scorer.skipped:
        warnings.append(f"{scorer.skipped} dev rows are not multiple-choice or yes/no and are left out of the forced "
                        "objective (use --objective generate to count them)")
    pfile = PresetFile("tuned", cparams, {}, {}, {})
    _, block = preset_block(pfile)
    source = public_source(o.source or {"id": str(Path(o.model).resolve()), "revision": None})
    gains_doc = gains_document(
        csel.gains, info, source, visual_ratio=sv, visual_ratio_std=cal.get("visual_ratio_std"),
        samples=cal.get("samples"), selected={"perceptual": perc, "reasoning": reas}, counts=counts, preset=block,
        query=cal.get("query"), prompt=cal.get("prompt"), tokens=cal.get("tokens"), data=cal.get("data"),
        probe=cal.get("probe"), warnings=warnings,
    )
    doc = {
        "format": FORMAT, "name": "tuned", "params": cparams.as_dict(),
        "model": {**info.identity(), "source_id": source.get("id"), "revision": source.get("revision")},
        "gains": gains_doc, "tuning": tuning,
    }
    write_preset_file(o.out, doc)
    title = f"{source.get('id')}: {len(complete)} evaluated trials, dev {dev.name} ({len(scorer.scored)} rows)"
    F.plot_front(points, front, chosen, vanilla, {**default, "point": default_point}, o.png_path, title)
    table = F.format_front(front, chosen, vanilla, {**default, "point": default_point}, o.objective, dev.name)
    timings["total_seconds"] = round(time.perf_counter() - t_start, 3)
    return {
        "out": str(o.out), "png": str(o.png_path), "storage": str(o.storage_path),
        "holdout_report": str(o.report_path) if held else None,
        "study": study.study_name, "chosen": chosen.as_dict(), "params": cparams.as_dict(),
        "front": [p.as_dict() for p in front], "vanilla": vanilla.as_dict(),
        "default": {**default, "dev": default_point.as_dict() if default_point else None},
        "holdout": held, "dev": dev_desc, "evaluated": len(complete),
        "pruned": len(pruned), "timings": timings, "warnings": warnings, "table": table,
        "rule": F.rule_text(o.kl_budget), "counts": counts,
    }
