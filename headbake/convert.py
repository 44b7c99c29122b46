"""``headbake convert``: resolve -> calibrate -> bake -> verify -> card -> (push), resumable.

Intermediate results live in a hidden work directory beside OUT
(``.OUT.headbake-work``), each stage keyed by a hash of its inputs, so a
re-run after a failure or Ctrl-C picks up at the first stage whose inputs
changed. OUT appears (by rename) only once the checkpoint is baked, verified
and carries its card; a verification failure stops before OUT and before any
push. A finished OUT whose record matches the same inputs is reused as is.
"""

from __future__ import annotations

import hashlib
import json
import shlex
import shutil
import sys
import time
from pathlib import Path

from headbake.errors import HeadbakeError

STAGES = ("resolve", "calibrate", "bake", "verify", "card", "push")


def _digest(obj) -> str:
    return hashlib.sha256(json.dumps(obj, sort_keys=True, default=str).encode()).hexdigest()[:16]


def _source_identity(path: Path, revision: str | None) -> dict:
    """What calibration and bake depend on: every non-weight file's sha256 (they are small: config, chat
    template, tokenizer, processor), plus the weights' names, sizes and mtimes (the Hub commit, when known,
    pins them too)."""
    from headbake.checkpoint import open_checkpoint
    from headbake.hashing import sha256_file

    ckpt = open_checkpoint(path)
    return {
        "revision": revision,
        "files": {rel: sha256_file(path / rel) for rel in ckpt.other_files()},
        "weights": sorted((n, s.size, s.path.stat().st_mtime_ns) for n, s in ckpt.shards.items()),
    }


def _data_fingerprint(src: Path, cal: dict) -> str:
    """The calibration data's own fingerprint (image bytes + questions), so edited images count as new data."""
    from headbake.calibrate.run import CalibrateOptions, load_data
    from headbake.samples import fingerprint

    fields = {k: cal[k] for k in ("data", "dataset", "split", "image_column", "question_column", "samples") if k in cal}
    return fingerprint(load_data(CalibrateOptions(model=str(src), **fields)).samples)


def _stamps(folder: Path) -> dict:
    """Size and mtime of every file convert wrote, to notice an output edited or damaged since."""
    from headbake.provenance import ADDED_FILES

    return {p.name: [p.stat().st_size, p.stat().st_mtime_ns] for p in sorted(folder.iterdir())
            if p.is_file() and p.name not in ADDED_FILES}


def _read(path: Path):
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError):
        return None


class _Stages:
    """One progress display over the stages; the stages' own bars nest under it."""

    def __init__(self, names, enabled: bool):
        from tqdm.auto import tqdm

        self.bar = tqdm(total=len(names), desc="convert", unit="stage", file=sys.stderr, disable=not enabled,
                        dynamic_ncols=True, bar_format="{desc}: {n_fmt}/{total_fmt} stages |{bar}| {elapsed} {postfix}")
        self.enabled = enabled
        self.t0 = time.perf_counter()
        self.times: dict[str, float] = {}
        self._name = None

    def start(self, name: str, note: str = ""):
        self._name, self._t = name, time.perf_counter()
        self.bar.set_postfix_str(f"{name}{' (' + note + ')' if note else ''}")

    def done(self, reused: bool = False):
        self.times[self._name] = round(time.perf_counter() - self._t, 2)
        if reused:
            self.times[self._name + "_reused"] = True
        self.bar.update()

    def close(self):
        self.bar.close()


def convert(
    model: str,
    out: Path,
    *,
    calibration: dict | None = None,
    revision: str | None = None,
    verify_samples: int = 4,
    push_to_hub: str | None = None,
    private: bool = False,
    branch: str | None = None,
    create_pr: bool = False,
    endpoint: str | None = None,
    overwrite: bool = False,
    command: str | None = None,
    progress: bool = True,
) -> dict:
    """Run the whole pipeline; returns a summary dict (paths, figures, timings, push result).

    ``calibration`` holds ``CalibrateOptions`` fields (preset, overrides, data, samples, device, ...);
    its device placement and ``trust_remote_code`` apply to verification too.
    """
    from headbake.bake.output_dir import check_target
    from headbake.provenance import RECORD

    from headbake.calibrate.run import CalibrateOptions, check_options

    out = Path(out)
    cal = dict(calibration or {})
    # Everything that can fail without the model fails before a download or an hour of calibration.
    check_options(CalibrateOptions(model=model, **cal))
    if not (out / RECORD).is_file():
        check_target(out, overwrite)  # an OUT holding a headbake record may still be reusable
    if push_to_hub:
        from headbake.hub import check_push_target, resolve_token

        check_push_target(push_to_hub, branch, create_pr)
        resolve_token(None)
    names = [s for s in STAGES if s != "push" or push_to_hub]
    stages = _Stages(names, progress)
    try:
        stages.start("resolve")
        from headbake.hub import resolve_model

        trust_remote_code = bool(cal.get("trust_remote_code"))
        resolved = resolve_model(model, revision=revision, endpoint=endpoint, progress=progress,
                                 trust_remote_code=trust_remote_code or None)
        src = resolved.path
        source = resolved.source()
        stages.done()

        key_cal = _digest({
            # not the path or license: they vary by machine and by network state
            "source": {"id": source["id"], "revision": source["revision"]},
            "identity": _source_identity(src, resolved.revision),
            "calibration": {k: v for k, v in cal.items() if k not in ("batch_size", "device", "device_map")},
            "data": _data_fingerprint(src, cal),
        })
        rec = _read(out / RECORD) if (out / RECORD).is_file() else None
        if (rec and rec.get("convert_key") == key_cal and (rec.get("verification") or {}).get("passed")
                and rec.get("convert_stamps") == _stamps(out)):
            for s in ("calibrate", "bake", "verify", "card"):
                stages.start(s, "reused")
                stages.done(reused=True)
            result = {"out": str(out), "reused": True, "record": rec}
        else:
            check_target(out, overwrite, protected=[src])
            work = out.parent / f".{out.name}.headbake-work"
            work.mkdir(parents=True, exist_ok=True)
            result = _build(src, source, resolved, out, work, key_cal, stages, calibration=cal,
                            verify_samples=verify_samples, overwrite=overwrite, command=command, progress=progress,
                            push_to_hub=push_to_hub)
        if push_to_hub:
            stages.start("push", push_to_hub)
            from headbake.hub import publish

            res, warnings, _ = publish(out, push_to_hub, private=private, branch=branch, create_pr=create_pr,
                                       endpoint=endpoint)
            result["push"] = {"url": res.url, "commit": res.commit_oid, "pr_url": res.pr_url, "no_op": res.no_op,
                              "warnings": warnings}
            stages.done()
    finally:
        stages.close()
    result["timings"] = stages.times
    result["seconds"] = round(time.perf_counter() - stages.t0, 2)
    return result


def _build(src, source, resolved, out, work, key_cal, stages, *, calibration, verify_samples, overwrite, command,
           progress, push_to_hub) -> dict:
    from headbake.bake.bake import bake_checkpoint
    from headbake.bake.output_dir import atomic_directory
    from headbake.bake.verify import run_verify
    from headbake.calibrate.heatmap import plot_heatmap
    from headbake.calibrate.run import CalibrateOptions, calibrate
    from headbake.gains import write_json_atomic
    from headbake.model_cards.render import render_card
    from headbake.provenance import RECORD

    # calibrate
    heads = work / "heads.json"
    doc = _read(heads)
    if doc and doc.get("convert_key") == key_cal:
        stages.start("calibrate", "reused")
        stages.done(reused=True)
    else:
        stages.start("calibrate")
        doc = calibrate(CalibrateOptions(model=str(src), source=source, progress=progress, **calibration))
        doc["convert_key"] = key_cal
        write_json_atomic(heads, doc)
        stages.done()

    # bake
    baked = work / "baked"
    key_bake = _digest([key_cal, doc["gains"]])
    rec = _read(baked / RECORD)
    if rec and rec.get("bake_key") == key_bake:
        stages.start("bake", "reused")
        stages.done(reused=True)
    else:
        stages.start("bake")
        shutil.rmtree(baked, ignore_errors=True)
        gains_doc = {k: v for k, v in doc.items() if k != "convert_key"}
        bake_checkpoint(src, gains_doc, baked, source=source, progress=progress)
        rec = _read(baked / RECORD)
        rec["bake_key"] = key_bake
        write_json_atomic(baked / RECORD, rec)
        stages.done()

    # verify
    if (rec.get("verification") or {}).get("passed"):
        stages.start("verify", "reused")
        stages.done(reused=True)
        report = rec["verification"]
    else:
        stages.start("verify")
        report = run_verify(src, baked, samples=verify_samples, device=calibration.get("device") or "auto",
                            device_map=calibration.get("device_map"),
                            trust_remote_code=bool(calibration.get("trust_remote_code")), progress=progress,
                            record=True)
        if not report["passed"]:
            raise HeadbakeError(
                f"verification failed ({'; '.join(s.strip() for s in report['summary'][:2])}); "
                f"nothing was published, the baked copy is kept in {baked} for inspection"
            )
        stages.done()

    # card (+ heatmap), then OUT appears in one rename
    stages.start("card")
    rec = _read(baked / RECORD)
    rec["command"] = command
    rec["convert_key"] = key_cal
    write_json_atomic(baked / RECORD, rec)
    if doc.get("visual_ratio"):
        plot_heatmap(doc, baked / "headbake_heatmap.png")
    render_card(baked, rec, command, license=resolved.license, repo_id=push_to_hub, out_name=out.name)
    rec["convert_stamps"] = _stamps(baked)
    write_json_atomic(baked / RECORD, rec)
    with atomic_directory(out, overwrite=overwrite) as tmp:
        tmp.rmdir()
        baked.rename(tmp)
    shutil.rmtree(work, ignore_errors=True)
    stages.done()
    return {"out": str(out), "reused": False, "record": rec, "verification": report}


def reproduce_command(argv: list[str]) -> str:
    return "headbake " + " ".join(shlex.quote(a) for a in argv)
