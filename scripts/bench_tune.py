#!/usr/bin/env python
"""Benchmark ``headbake tune`` on the demo model: seconds per trial, and what measuring S_v once saves.

One run, side by side, on one loaded model and the same trials:

* **S_v once** (what ``tune`` does): the study's trials as ``tune`` runs them
  with the forced-answer proxy; each evaluated trial re-applies the selection
  rule to the stored S_v and hooks its gains into the loaded model. Reported
  per evaluated trial (its share of the whole search loop, sampler included)
  and per model pass.
* **re-calibrated per trial**: the same evaluated settings again, each one
  preceded by the calibration ``tune`` avoids (``calibrate`` on the loaded
  model, on the same calibration samples), then the same dev scoring; the
  per-trial figure is the first column plus the measured calibration.

The difference per trial, times the trials, is the time saved. On CPU the
clock is the process's CPU time with ``--threads`` torch threads (default 1;
wall time on a shared machine measures the neighbours, see
scripts/bench_eval.py); on CUDA it is wall time after a sync.

    python scripts/bench_tune.py                 # 24 dev rows, 30 trials, 64 calibration samples (~1 min, 2 cores)
    python scripts/bench_tune.py --json
    python scripts/bench_tune.py --device cuda --threads 0
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from bench_eval import _clock  # noqa: E402  (the same clock as the eval benchmark: CPU time, or synced CUDA wall)


def write_dev_rows(folder: Path, n: int) -> Path:
    """``n`` JSONL rows over synthetic images (half multiple choice, half yes/no), with their PNGs."""
    from headbake.data.samples import synthetic_samples

    folder.mkdir(parents=True, exist_ok=True)
    lines = []
    for i, s in enumerate(synthetic_samples(n, seed=1)):
        name = f"img{i}.png"
        s.image.save(folder / name)
        if i % 2:
            row = {"id": f"r{i}", "image": name, "question": s.question, "type": "multiple_choice",
                   "choices": ["2", "3", "4", "5"], "answer": "A"}
        else:
            row = {"id": f"r{i}", "image": name, "question": f"{s.question} Is the answer more than 3?",
                   "type": "yes_no", "answer": "yes"}
        lines.append(json.dumps(row))
    path = folder / "dev.jsonl"
    path.write_text("\n".join(lines) + "\n")
    return path


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--rows", type=int, default=24, help="dev rows")
    ap.add_argument("--trials", type=int, default=30, help="evaluated trials")
    ap.add_argument("--samples", type=int, default=64, help="calibration samples (the embedded set)")
    ap.add_argument("--batch-size", type=int, default=8)
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--threads", type=int, default=1, help="torch CPU threads (0: leave torch's default)")
    ap.add_argument("--json", action="store_true")
    args = ap.parse_args(argv)

    import torch

    if args.threads:
        torch.set_num_threads(args.threads)
    from headbake.calibrate.run import calibrate
    from headbake.calibrate.selection import Params, select_heads
    from headbake.evaluate.runner import EvalSettings, load_model
    from headbake.hub import ensure_demo
    from headbake.model.info import load_model_info
    from headbake.tuning import run as R
    from headbake.tuning.data import load_rowset
    from headbake.tuning.objective import DevScorer

    clock = _clock(args.device)
    demo = ensure_demo(progress=False)
    model, processor = load_model(demo, EvalSettings(device=args.device), progress=False)
    out = {"model": "demo (tiny Qwen2.5-VL, 8 layers x 4 heads, bfloat16)", "device": args.device,
           "clock": "wall" if args.device.startswith("cuda") else "process CPU time",
           "threads": torch.get_num_threads(), "dev_rows": args.rows, "calibration_samples": args.samples,
           "objective": "forced"}
    with tempfile.TemporaryDirectory() as tmp:
        dev = write_dev_rows(Path(tmp) / "dev", args.rows)
        o = R.TuneOptions(model=str(demo), out=str(Path(tmp) / "tuned.json"), dev=str(dev), holdout_fraction=0,
                          trials=args.trials, samples=args.samples, batch_size=args.batch_size, device=args.device,
                          source={"id": "demo", "revision": None}, alias="demo", progress=False)
        marks = []
        t0 = clock()
        res = R.tune(o, on_trial=lambda t: marks.append((clock(), bool(t.values))), model=model,
                     processor=processor)
        total = clock() - t0
        t = res["timings"]
        loop = marks[-1][0] - marks[0][0] if len(marks) > 1 else float("nan")
        n_eval = res["evaluated"]
        # the same settings again, each after a fresh calibration on the loaded model
        from optuna.trial import TrialState

        from headbake.tuning import study as S

        study = S.open_study(S.open_storage(o.storage_path), res["study"])
        settings = study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,))
        cal_opts = R._calibrate_options(o, load_model_info(demo).num_layers)  # what tune calibrates with
        scorer = DevScorer(model, processor, load_rowset(str(dev)).rows,
                           EvalSettings(mode="forced", batch_size=args.batch_size, device=args.device))
        cal_times, eval_times = [], []
        for trial in settings:
            c0 = clock()
            doc = calibrate(cal_opts, model=model, processor=processor)
            c1 = clock()
            sel = select_heads(doc["visual_ratio"], Params(**trial.user_attrs["params"]))
            scorer.evaluate(sel.gains)
            c2 = clock()
            cal_times.append(c1 - c0)
            eval_times.append(c2 - c1)
    per_trial_once = loop / max(n_eval - 1, 1) if n_eval > 1 else float("nan")
    # the same loop (sampler, selection, dev pass) plus the calibration each trial would have needed
    per_trial_recal = per_trial_once + statistics.mean(cal_times)
    out.update({
        "trials_evaluated": n_eval, "draws_pruned": res["pruned"],
        "tune_total_s": total, "tune_wall_breakdown_s": {k: t[k] for k in t if k.endswith("_seconds")},
        "s_per_trial_sv_once": per_trial_once,
        "s_per_model_pass": statistics.mean(eval_times),
        "s_per_calibration": statistics.mean(cal_times),
        "s_per_trial_recalibrated": per_trial_recal,
        "speedup": per_trial_recal / per_trial_once if per_trial_once == per_trial_once else None,
        "saved_s_for_these_trials": (per_trial_recal - per_trial_once) * n_eval,
        "chosen": res["chosen"], "default": res["default"].get("dev"),
    })
    if args.json:
        print(json.dumps(out, indent=2, default=str))
        return 0
    print(f"{out['model']} on {out['device']} ({out['clock']}, {out['threads']} torch threads); {args.rows} dev rows "
          f"(forced proxy), {args.samples} calibration samples, batch {args.batch_size}")
    print(f"tune: {n_eval} trials evaluated ({res['pruned']} draws pruned), {total:.1f} s in all; wall breakdown: "
          + ", ".join(f"{k.replace('_seconds', '')} {v:.2f} s" for k, v in out["tune_wall_breakdown_s"].items()))
    print(f"{'':34}{'S_v once':>12}{'re-calibrated':>16}")
    print(f"{'seconds per evaluated trial':34}{per_trial_once:>12.3f}{per_trial_recal:>16.3f}")
    print(f"{'  of which calibration':34}{0.0:>12.3f}{out['s_per_calibration']:>16.3f}")
    print(f"{'  of which the dev pass':34}{out['s_per_model_pass']:>12.3f}{out['s_per_model_pass']:>16.3f}"
          "   (the rest: sampler, selection, storage)")
    print(f"measuring S_v once: {out['speedup']:.1f}x faster per trial; saves {out['saved_s_for_these_trials']:.1f} s "
          f"over these {n_eval} trials ({out['s_per_calibration']:.2f} s per trial)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
