"""``headbake convert``: resolve -> calibrate -> bake -> verify -> card -> (push), resumable.

Intermediate results live in a hidden work folder beside OUT
(``.OUT.headbake-work``) with a ``state.json`` of each stage's input key, so a
re-run after a failure or Ctrl-C picks up at the first stage whose inputs
changed. OUT appears (by rename) only once the checkpoint is baked, verified
and carries its card; a verification failure stops before OUT and before any
push. The keys never enter the published record; the work folder keeps them
(and nothing else) after success, so a re-run with the same inputs reports
"up to date".
"""

from __future__ import annotations

import hashlib
import json
import shutil
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

from headbake.bake.output_dir import atomic_directory, check_target
from headbake.bake.verify import run_verify
from headbake.bake.writer import bake_checkpoint
from headbake.calibrate.heatmap import plot_heatmap
from headbake.calibrate.run import CalibrateOptions, calibrate, check_options, load_data, preflight
from headbake.checkpoint import open_checkpoint, read_json
from headbake.data.samples import fingerprint
from headbake.errors import CheckFailed, EnvironmentProblem, HeadbakeError
from headbake.evaluate.evaluation import EvalRequest, check_request, evaluate, load_rows
from headbake.evaluate.report import evaluation_summary
from headbake.fsutil import write_json_atomic
from headbake.gains import load_gains
from headbake.hashing import sha256_file
from headbake.hub import aliases, demo_dir, find_alias, resolve_model
from headbake.memory import plan_memory
from headbake.model.info import load_model_info
from headbake.model.loading import check_remote_code
from headbake.model_cards.render import render_card
from headbake.progress import bar as progress_bar
from headbake.record import ADDED_FILES, has_record, read_record, reproduce_command, write_record

STAGES = ("resolve", "calibrate", "bake", "verify", "eval", "card", "push")
VERIFY_MODES = ("full", "tensors", "none")
EVAL_MODES = ("forced", "generate")
# Settings that only decide the evaluation: they have their own stage key, so adding them reuses the bake.
EVAL_SETTINGS = ("eval_data", "eval_mode", "eval_max_new_tokens")


@dataclass
class ConvertSettings:
    """Everything convert was asked to do (``calibration`` holds ``CalibrateOptions`` fields)."""
    model: str
    out: Path
    revision: str | None = None
    calibration: dict = field(default_factory=dict)
    gains_file: Path | None = None  # skip calibration and bake these gains
    verify: str = "full"
    verify_samples: int = 4
    push_to_hub: str | None = None
    private: bool = False
    branch: str | None = None
    create_pr: bool = False
    endpoint: str | None = None
    overwrite: bool = False
    progress: bool = True
    eval_data: Path | None = None  # JSONL rows: evaluate vanilla vs baked after verify (card + record)
    eval_mode: str = "forced"  # forced (fast proxy) or generate
    eval_max_new_tokens: int = 2048

    def public(self) -> dict:
        """The settings that shape the published bake (for the record and the reproduce command)."""
        cal = self.calibration
        out = {"verify": self.verify}
        if self.gains_file:
            out["gains_from_file"] = True
            return out
        out.update({k: cal.get(k) for k in ("preset", "query", "k", "samples", "dtype")})
        if cal.get("visual_token_ids"):
            out["visual_token_ids"] = list(cal["visual_token_ids"])
        if cal.get("prompt_template"):  # named by its fingerprint, never its path
            out["prompt_template"] = _file_digest(cal["prompt_template"])
        out["overrides"] = {k: cal.get(k) for k in ("l_perc", "l_reas", "tau_perc", "tau_reas", "g_perc", "g_reas")
                            if cal.get(k) is not None}
        if cal.get("preset_file"):  # the tuned values, spelled out: the reproduce command needs no file
            from headbake.calibrate.preset_file import load_preset_file

            out["overrides"] = {**load_preset_file(cal["preset_file"]).params.as_dict(), **out["overrides"]}
        return out


def _digest(obj) -> str:
    return hashlib.sha256(json.dumps(obj, sort_keys=True, default=str).encode()).hexdigest()[:16]


def work_dir(out: Path) -> Path:
    return out.parent / f".{out.name}.headbake-work"


def _source_identity(path: Path, revision: str | None) -> dict:
    """What calibration and bake depend on: every non-weight file's sha256 (they are small: config, chat
    template, tokenizer, processor), plus the weights' names, sizes and mtimes (the Hub commit, when known,
    pins them too)."""
    ckpt = open_checkpoint(path)
    return {
        "revision": revision,
        "files": {rel: sha256_file(path / rel) for rel in ckpt.other_files()},
        "weights": sorted((n, s.size, s.path.stat().st_mtime_ns) for n, s in ckpt.shards.items()),
    }


def _stamps(folder: Path) -> dict:
    """Size and mtime of every checkpoint file, to notice an output edited or damaged since convert wrote it
    (headbake's own files are left out: `card` and `push` may re-render the card for a repo id)."""
    return {p.name: [p.stat().st_size, p.stat().st_mtime_ns] for p in sorted(folder.iterdir())
            if p.is_file() and p.name not in ADDED_FILES}


class Stages:
    """One progress display over the stages, and the reuse-or-run rule with keys kept in the work folder."""
    def __init__(self, names, progress: bool, state_path: Path | None = None):
        self.names = list(names)
        self.bar = progress_bar(len(self.names), "convert", unit="stage", enabled=progress,
                                bar_format="{desc}: {n_fmt}/{total_fmt} stages |{bar}| {elapsed} {postfix}")
        self.t0 = time.perf_counter()
        self.times: dict[str, float] = {}
        self.reused: list[str] = []
        self.state_path = state_path
        self.state = self._load()

    def _load(self) -> dict:
        if self.state_path is None or not self.state_path.is_file():
            return {}
        try:
            doc = json.loads(self.state_path.read_text())
        except (OSError, ValueError):
            return {}
        return doc if isinstance(doc, dict) else {}

    def save(self) -> None:

        if self.state_path is not None:
            write_json_atomic(self.state_path, self.state)

    def run(self, name: str, key: str | None, fn, *, valid=lambda: True, note: str = ""):
        """Run stage ``name`` unless its last run had the same ``key`` and its output is still ``valid()``."""
        t = time.perf_counter()
        if key is not None and self.state.get(name) == key and valid():
            self.bar.set_postfix_str(f"{name} (reused)")
            self.reused.append(name)
            result = None
        else:
            self.bar.set_postfix_str(f"{name}{' (' + note + ')' if note else ''}")
            self.state.pop(name, None)
            result = fn()
            if key is not None:
                self.state[name] = key
                self.save()
        self.times[name] = round(time.perf_counter() - t, 2)
        self.bar.update()
        return result

    def close(self):
        self.bar.close()


def check(settings: ConvertSettings) -> None:
    """Everything that can fail without the model, before a download or an hour of calibration."""
    if settings.verify not in VERIFY_MODES:
        raise HeadbakeError(f"--verify must be one of {', '.join(VERIFY_MODES)}, got {settings.verify!r}")
    if settings.eval_data is not None:
        _eval_request(settings, settings.model, None, None)  # every eval row is checked before any work
    elif settings.eval_mode != "forced" or settings.eval_max_new_tokens != 2048:
        raise HeadbakeError("--eval-mode and --eval-max-new-tokens apply only with --eval-data")
    check_options(CalibrateOptions(model=settings.model, **settings.calibration))
    if settings.gains_file is not None:
        placement = {"device", "device_map", "max_memory", "offload_folder", "trust_remote_code", "dtype", "batch_size"}
        defaults = CalibrateOptions(model=settings.model)
        ignored = sorted(k for k, v in settings.calibration.items()
                         if k not in placement and v != getattr(defaults, k) and not (k == "visual_token_ids" and not v))
        if ignored:
            flags = ", ".join("--" + k.replace("_", "-") for k in ignored)
            raise HeadbakeError(f"--gains skips calibration, so {flags} would be ignored; drop them or drop --gains")
    if settings.gains_file is not None:
        from headbake.gains import load_gains

        load_gains(settings.gains_file)
    if not has_record(settings.out):
        check_target(settings.out, settings.overwrite)  # an OUT holding a headbake record may still be reusable
    if settings.push_to_hub:
        from headbake.hub import check_push_target, resolve_token

        check_push_target(settings.push_to_hub, settings.branch, settings.create_pr)
        resolve_token(None)


def convert(settings: ConvertSettings) -> dict:
    """Run the whole pipeline; returns a summary dict (paths, figures, timings, push result, warnings)."""
    check(settings)
    out, cal = Path(settings.out), dict(settings.calibration)
    names = _stage_names(settings)
    work = work_dir(out)
    stages = Stages(names, settings.progress, work / "state.json" if work.is_dir() else None)
    result: dict = {"out": str(out), "warnings": []}
    try:
        resolved = stages.run("resolve", None, lambda: resolve_model(
            settings.model, revision=settings.revision, endpoint=settings.endpoint, progress=settings.progress,
            trust_remote_code=bool(cal.get("trust_remote_code")) or None))
        src, source = resolved.path, resolved.source()
        _memory_plan(src, settings).check()  # the whole run's memory, before an hour of calibration
        key_in = _digest({
            # not the path or license: they vary by machine and by network state
            "source": {"id": source["id"], "revision": source["revision"]},
            "identity": _source_identity(src, resolved.revision),
            "settings": {k: v for k, v in asdict(settings).items()
                         if k not in ("out", "progress", "push_to_hub", "private", "branch", "create_pr",
                                      "endpoint", "overwrite", "calibration", *EVAL_SETTINGS)},
            # where the model runs does not change what it computes
            "calibration": {k: v for k, v in cal.items()
                            if k not in ("batch_size", "device", "device_map", "max_memory", "offload_folder")},
            "data": _data_fingerprint(src, cal) if settings.gains_file is None
            else _digest(load_gains(settings.gains_file)["gains"]),  # a file, a baked dir or its headbake.json
            "preset_file": _file_digest(cal["preset_file"]) if cal.get("preset_file") else None,
        })
        key_eval = _eval_key(settings)
        key_out = key_in if key_eval is None else _digest([key_in, key_eval])
        finished = stages.state.get("out") == key_out and out.is_dir() and stages.state.get("stamps") == _stamps(out)
        if finished:
            for s in names[1:]:
                if s != "push":  # nothing runs and no stage key changes: the whole output is reused
                    stages.reused.append(s)
                    stages.bar.update()
            result["reused"] = True
        else:
            from headbake.bake.output_dir import check_target
            from headbake.diskfull import disk_full_message, is_disk_full, kept_in_work
            from headbake.locks import writer_lock

            check_target(out, settings.overwrite, protected=[src])
            _preflight(settings, src, source)  # refusals before any work create nothing
            with writer_lock(work, out):
                stages.state_path = work / "state.json"
                stages.state = stages._load()  # another run may have finished stages while we waited
                stages.state.pop("out", None)
                try:
                    _build(settings, resolved, key_in, key_eval, work, stages, result)
                except OSError as e:
                    if is_disk_full(e):
                        raise EnvironmentProblem(disk_full_message(e, kept_in_work(work))) from None
                    raise
                stages.state.update({"out": key_out, "stamps": _stamps(out)})
                stages.save()
            result["reused"] = False
        from headbake.record import read_record

        result["record"] = read_record(out)
        if settings.push_to_hub:
            from headbake.hub import publish

            def push():
                res, warnings, _ = publish(out, settings.push_to_hub, private=settings.private,
                                           branch=settings.branch, create_pr=settings.create_pr,
                                           endpoint=settings.endpoint)
                result["warnings"] += warnings
                return {"url": res.url, "commit": res.commit_oid, "pr_url": res.pr_url, "no_op": res.no_op}

            result["push"] = stages.run("push", None, push, note=settings.push_to_hub)
    finally:
        stages.close()
    result["timings"] = stages.times
    result["reused_stages"] = stages.reused
    result["seconds"] = round(time.perf_counter() - stages.t0, 2)
    return result


def _preflight(settings: ConvertSettings, src: Path, source: dict) -> None:
    """The checks that need the model's files but not the model (remote code, preset, headers, images)."""
    if settings.gains_file is None:
        o = CalibrateOptions(model=str(src), source=source, **settings.calibration)
        pf = preflight(o)
        from headbake.calibrate import data as data_mod

        data_mod.check_image_sizes(load_data(o), data_mod.min_image_side_of_model(pf.model_dir))
    elif settings.verify == "full":
        check_remote_code(load_model_info(src), bool(settings.calibration.get("trust_remote_code")))


def _file_digest(path) -> str:

    return sha256_file(Path(path))


def _data_fingerprint(src: Path, cal: dict) -> str:
    """The calibration data's own fingerprint (image bytes + questions), so edited images count as new data."""
    keys = ("data", "dataset", "split", "image_column", "question_column", "samples")
    return fingerprint(load_data(CalibrateOptions(model=str(src), **{k: cal[k] for k in keys if k in cal})).samples)


def _stage_names(settings: ConvertSettings) -> list:
    return [s for s in STAGES if (s != "push" or settings.push_to_hub) and (s != "eval" or settings.eval_data)]


def _eval_request(settings: ConvertSettings, model, baked, work):
    """The `headbake eval` request convert runs: vanilla vs baked on --eval-data, on calibration's device and prompt."""
    cal = settings.calibration
    req = EvalRequest(
        model=str(model), baked=baked, arms=("vanilla", "baked"), data=settings.eval_data, mode=settings.eval_mode,
        max_new_tokens=settings.eval_max_new_tokens, batch_size=cal.get("batch_size") or 4,
        device=cal.get("device"), device_map=cal.get("device_map"), dtype=cal.get("dtype") or "auto",
        prompt_template=cal.get("prompt_template"), trust_remote_code=bool(cal.get("trust_remote_code")),
        cache=work / "eval-cache.jsonl" if work is not None else None, progress=settings.progress,
    )
    if settings.eval_mode not in EVAL_MODES:
        raise HeadbakeError(f"--eval-mode must be one of {', '.join(EVAL_MODES)}, got {settings.eval_mode!r}")
    if baked is None:  # the checks before any work: settings and every row (no --baked yet)
        check_request(EvalRequest(**{**req.__dict__, "arms": ("vanilla",)}))
        load_rows(req)
    return req


def _eval_key(settings: ConvertSettings) -> str | None:
    """What the eval stage depends on besides the bake: the rows' content and the evaluation settings."""
    if settings.eval_data is None:
        return None

    _, data = load_rows(EvalRequest(model="", data=settings.eval_data))
    return _digest([data["fingerprint"], settings.eval_mode, settings.eval_max_new_tokens])


def _build(settings: ConvertSettings, resolved, key_in: str, key_eval: str | None, work: Path, stages: Stages,
           result: dict) -> None:

    src, source, cal = resolved.path, resolved.source(), settings.calibration
    heads, baked, out = work / "heads.json", work / "baked", Path(settings.out)

    def calibrate_stage():
        if settings.gains_file is not None:
            doc = load_gains(settings.gains_file)
        else:
            doc = calibrate(CalibrateOptions(model=str(src), source=source, progress=settings.progress, **cal))
        write_json_atomic(heads, doc)

    stages.run("calibrate", key_in, calibrate_stage, valid=heads.is_file,
               note="from --gains" if settings.gains_file else "")
    doc = read_json(heads, "heads.json")
    result["warnings"] += [w for w in doc.get("warnings") or []]

    def bake_stage():
        shutil.rmtree(baked, ignore_errors=True)
        bake_checkpoint(src, doc, baked, source=source, progress=settings.progress)

    key_bake = _digest([key_in, doc["gains"]])
    stages.run("bake", key_bake, bake_stage, valid=lambda: has_record(baked))

    def verify_stage():
        if settings.verify == "none":
            return
        report = run_verify(src, baked, samples=settings.verify_samples, device=cal.get("device") or "auto",
                            device_map=cal.get("device_map"), trust_remote_code=bool(cal.get("trust_remote_code")),
                            progress=settings.progress, record=True, tensors_only=settings.verify == "tensors",
                            max_memory=cal.get("max_memory"), offload_folder=cal.get("offload_folder"))
        if not report["passed"]:
            raise CheckFailed(
                f"verification failed ({'; '.join(s.strip() for s in report['summary'][:2])}); "
                f"nothing was published, the baked copy is kept in {baked} for inspection"
            )

    key_verify = _digest([key_bake, settings.verify, settings.verify_samples])
    stages.run("verify", key_verify, verify_stage,
               valid=lambda: settings.verify == "none" or read_record(baked).verified)

    def eval_stage():

        req = _eval_request(settings, src, baked, work)
        req.source, req.alias = source, resolved.alias
        summary = evaluation_summary(evaluate(req))
        rec = read_record(baked)
        rec.evaluation = summary
        write_record(baked, rec)

    if settings.eval_data is not None:
        stages.run("eval", _digest([key_verify, key_eval]), eval_stage,
                   valid=lambda: read_record(baked).evaluation is not None, note=settings.eval_mode)

    def card_stage():
        rec = read_record(baked)
        if settings.eval_data is None:
            rec.evaluation = None  # a summary left by an earlier run with --eval-data is not this run's
        rec.settings = settings.public()
        if settings.gains_file is None:
            if cal.get("data"):
                rec.settings["data"] = {"kind": "jsonl", "fingerprint": (doc.get("data") or {}).get("fingerprint")}
            elif cal.get("dataset"):
                rec.settings["data"] = {"kind": "dataset", "name": Path(cal["dataset"]).name
                                        if Path(cal["dataset"]).exists() else cal["dataset"],
                                        "split": cal.get("split", "train"),
                                        "image_column": cal.get("image_column", "image"),
                                        "question_column": cal.get("question_column", "question")}
        if cal.get("preset_file") and settings.gains_file is None:
            from headbake.calibrate.preset_file import load_preset_file

            rec.tuning = load_preset_file(cal["preset_file"]).tuning or None  # how the values were chosen
        rec.reproduce = reproduce_command(rec.source, rec.settings, out.name)
        write_record(baked, rec)
        if doc.get("visual_ratio"):
            plot_heatmap(doc, baked / "headbake_heatmap.png")
        render_card(baked, rec, license=resolved.license, repo_id=settings.push_to_hub, out_name=out.name)
        with atomic_directory(out, overwrite=settings.overwrite) as tmp:
            tmp.rmdir()
            baked.rename(tmp)
        for leftover in (heads, work / "eval-cache.jsonl"):
            leftover.unlink(missing_ok=True)

    stages.run("card", None, card_stage)


def dry_run(settings: ConvertSettings) -> dict:
    """What convert would do, without downloading, loading or writing anything."""
    check(settings)
    out = Path(settings.out)
    doc: dict = {"model": settings.model, "out": str(out), "verify": settings.verify,
                 "push_to_hub": settings.push_to_hub}
    lines = [f"model: {settings.model}"]
    alias = find_alias(settings.model)
    path = None
    if alias and aliases()[alias].get("builtin"):
        path = demo_dir() if (demo_dir() / "config.json").is_file() else None
        doc["source"] = {"id": alias, "revision": None, "cached": path is not None}
        lines.append(f"  built-in {alias!r}: " + ("already built" if path else "would be built locally (offline)"))
    else:
        try:
            resolved = resolve_model(settings.model, revision=settings.revision, endpoint=settings.endpoint,
                                     offline=True, progress=False, trust_remote_code=False)
            path = resolved.path
            doc["source"] = {"id": resolved.source_id, "revision": resolved.revision, "cached": True}
            lines.append(f"  resolved: {resolved.source_id}@{resolved.revision or 'local'} (on disk, nothing to download)")
        except HeadbakeError as e:
            doc["source"] = {"id": settings.model, "revision": settings.revision, "cached": False}
            size = _remote_size(settings.model, settings.revision, settings.endpoint)
            doc["download_bytes"] = size
            from headbake.memory import fmt_bytes

            lines.append(f"  not on disk ({e}); would download "
                         + (fmt_bytes(size) if size else "its files (size unknown: the Hub is unreachable)"))
    if path is not None:
        ckpt = open_checkpoint(path)
        weights = sum(s.size for s in ckpt.shards.values())
        doc["weights_bytes"] = weights
        from headbake.memory import fmt_bytes

        lines.append(f"  weights: {fmt_bytes(weights)} in {len(ckpt.shards)} safetensors file(s)")
        plan = _memory_plan(path, settings)
        doc["memory"] = {"needed_bytes": plan.needed, "fits": plan.fits(), "lines": plan.summary()}
        lines += [f"  {ln}" for ln in plan.summary()]
    state = Stages([], False, work_dir(out) / "state.json").state
    cached = [s for s in ("calibrate", "bake", "verify") if s in state]
    doc["stages_cached"] = cached
    doc["stages"] = _stage_names(settings)
    if settings.gains_file:
        lines.append(f"calibrate: skipped, gains from {settings.gains_file}")
    lines.append("stages: " + ", ".join(f"{s}{' (cached)' if s in cached else ''}" for s in doc["stages"]))
    if settings.verify != "full":
        lines.append(f"verify: {settings.verify}")
    lines.append(f"output: {out}" + (" (exists; reused if up to date)" if out.exists() else ""))
    lines.append("nothing was done (--dry-run)")
    doc["lines"] = lines
    return doc


def _remote_size(model: str, revision: str | None, endpoint: str | None) -> int | None:
    """Bytes convert would download (safetensors + small files), from the Hub's file listing when reachable."""
    alias = find_alias(model)
    repo = aliases()[alias]["repo"] if alias else model
    try:
        from huggingface_hub import HfApi

        info = HfApi(endpoint=endpoint).model_info(repo, revision=revision, files_metadata=True, timeout=10)
    except Exception:  # noqa: BLE001 - offline, unknown repo: the dry run still reports the rest
        return None
    return sum((s.size or 0) for s in info.siblings or [] if not s.rfilename.endswith((".bin", ".pt", ".pth")))


def _memory_plan(path: Path, settings: ConvertSettings):
    """What calibrate and verify will need on the chosen device (``headbake.memory``)."""
    cal = settings.calibration
    step = "verify" if settings.gains_file is not None else "convert"
    return plan_memory(path, step, device=cal.get("device"), device_map=cal.get("device_map"),
                       max_memory=cal.get("max_memory"), offload_folder=cal.get("offload_folder"),
                       dtype=cal.get("dtype") or "auto", batch_size=cal.get("batch_size") or 4,
                       samples=settings.verify_samples, verify=settings.verify)
