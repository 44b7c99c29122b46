#!/usr/bin/env python
"""Benchmark ``headbake eval``'s runner on the demo model: rows per second per arm, and what a bake costs.

One run, printed side by side:

* rows/s of each arm (vanilla, baked, hooked, per-input) in ``generate`` mode (greedy, ``--max-new-tokens``; the random demo
  model never stops early, so every row decodes the full budget) and in
  ``forced`` mode (one forward pass per row), through ``run_arms`` with the
  model already loaded (load time excluded);
* the forward time of one batch, interleaved across arms, median of
  ``--repeats``: a baked checkpoint is the original architecture with other
  numbers in ``o_proj``, so baked / vanilla should be 1.00x; hooked and
  per-input show what the runtime alternatives add (the paper reports ~9% for
  its per-input plug-in).

On CPU the clock is the process's CPU time with ``--threads`` (default 1)
torch threads: on a shared machine wall time measures the neighbours (we saw
the same forward take 0.16 to 5 s of wall time under a load of 6 on 2 cores,
and 30-31 ms of CPU time every time). On CUDA it is wall time after a sync.
Each mode gets an untimed warm-up run first.

    python scripts/bench_eval.py            # 32 rows, 32 new tokens (~1 min on 2 CPU cores)
    python scripts/bench_eval.py --json     # machine-readable
    python scripts/bench_eval.py --device cuda --threads 0
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
import time
from pathlib import Path

from headbake.evaluate.rows import EvalRow, prompt_text

LETTERS = "ABCD"


def bench_rows(n: int) -> list:
    from headbake.data.samples import synthetic_samples

    rows = []
    for i, s in enumerate(synthetic_samples(n, seed=1)):
        if i % 2:
            rows.append(EvalRow(f"r{i}", [s.image], s.question, "A", ["2", "3", "4", "5"], "multiple_choice"))
        else:
            rows.append(EvalRow(f"r{i}", [s.image], f"{s.question} Is the answer more than 3?", "yes", None, "yes_no"))
    return rows


def demo_gains(demo: Path) -> tuple[list, dict]:
    """The demo preset's selection, calibrated on 16 embedded samples (what ``headbake convert demo`` bakes)."""
    from headbake.calibrate.run import CalibrateOptions, calibrate

    doc = calibrate(CalibrateOptions(model=str(demo), preset="demo", samples=16, bootstrap_rounds=0, progress=False))
    return doc["gains"], doc.get("preset", {})


def per_input_factory(preset: str = "demo"):
    """The paper's per-input plug-in as an arm, with the preset the bake was selected by."""
    from headbake.calibrate.per_input import apply_per_input
    from headbake.calibrate.presets import resolve

    params, _ = resolve(preset, {})
    return (lambda model: apply_per_input(model, params)), {"preset": preset, "query": "last"}


def _clock(device: str):
    import torch

    if device.startswith("cuda"):
        def wall():
            torch.cuda.synchronize()
            return time.perf_counter()

        return wall
    return time.process_time


def time_forwards(arms, inputs, repeats: int, device: str) -> dict:
    """Median seconds of one forward of ``inputs`` per arm, interleaved so drifts hit every arm alike."""
    import torch

    from headbake.evaluate.runner import EvalSettings, load_model

    loaded = {}
    for arm in arms:  # a tiny model: holding a few at once is fine here (an evaluation never does)
        loaded[arm.name] = load_model(arm.model_dir, EvalSettings(device=device), progress=False)[0]
    times = {a.name: [] for a in arms}
    kwargs = dict(inputs.to(device), use_cache=False, logits_to_keep=1)
    clock = _clock(device)
    with torch.no_grad():
        for _ in range(repeats + 2):
            for arm in arms:
                model = loaded[arm.name]
                ctx = arm.context(model) if arm.context else None
                if ctx is not None:
                    ctx.__enter__()
                try:
                    t0 = clock()
                    model(**kwargs)
                    times[arm.name].append(clock() - t0)
                finally:
                    if ctx is not None:
                        ctx.__exit__(None, None, None)
    return {k: statistics.median(v[2:]) for k, v in times.items()}


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--rows", type=int, default=32)
    ap.add_argument("--max-new-tokens", type=int, default=32)
    ap.add_argument("--batch-size", type=int, default=8)
    ap.add_argument("--repeats", type=int, default=30)
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--threads", type=int, default=1, help="torch CPU threads (0: leave torch's default)")
    ap.add_argument("--json", action="store_true")
    args = ap.parse_args(argv)

    import torch

    if args.threads:
        torch.set_num_threads(args.threads)
    clock = "seconds" if args.device.startswith("cuda") else "cpu_seconds"

    from headbake.bake.writer import bake_checkpoint
    from headbake.evaluate import arms as A
    from headbake.evaluate.runner import EvalSettings, _processor_batch, load_model, rows_per_second, run_arms
    from headbake.gains import gains_document
    from headbake.model.info import load_model_info
    from headbake.hub import ensure_demo

    torch.manual_seed(0)
    demo = ensure_demo(progress=False)
    gains, preset = demo_gains(demo)
    selected = sum(g != 1.0 for row in gains for g in row)
    rows = bench_rows(args.rows)
    qt = prompt_text
    out = {"model": "demo (tiny Qwen2.5-VL, 8 layers x 4 heads, bfloat16)", "device": args.device,
           "clock": "wall" if clock == "seconds" else "process CPU time",
           "threads": torch.get_num_threads(), "rows": len(rows), "batch_size": args.batch_size,
           "max_new_tokens": args.max_new_tokens, "heads_changed": selected, "modes": {}}
    with tempfile.TemporaryDirectory() as tmp:
        baked_dir = Path(tmp) / "demo-baked"
        bake_checkpoint(demo, gains_document(gains, load_model_info(demo)), baked_dir, progress=False)
        arms = [A.vanilla(demo), A.baked(baked_dir), A.hooked(demo, gains), A.per_input(demo, *per_input_factory())]
        for mode in ("generate", "forced"):
            settings = EvalSettings(mode=mode, max_new_tokens=args.max_new_tokens, batch_size=args.batch_size,
                                    device=args.device)
            run_arms(arms, rows[:args.batch_size], settings, question_text=qt, progress=False)  # warm-up
            run = run_arms(arms, rows, settings, question_text=qt, progress=False)
            agree = sum(h.output == b.output for h, b in zip(run.results["hooked"], run.results["baked"]))
            out["modes"][mode] = {
                "rows_per_s": {a.name: rows_per_second(run, a.name, clock) for a in arms},
                "hooked_baked_agreement": f"{agree}/{len(rows)}",
            }
        _, processor = load_model(demo, EvalSettings(), progress=False)
        inputs = _processor_batch(processor, rows[:args.batch_size], EvalSettings(), qt)
        fwd = time_forwards(arms, inputs, args.repeats, args.device)
        out["forward_ms"] = {k: 1000 * v for k, v in fwd.items()}
        out["forward_vs_vanilla"] = {k: v / fwd["vanilla"] for k, v in fwd.items()}
        out["per_input_vs_baked"] = fwd["per-input"] / fwd["baked"]

    if args.json:
        print(json.dumps(out, indent=2))
        return 0
    names = [a.name for a in arms]
    print(f"{out['model']} on {out['device']} ({out['clock']}, {out['threads']} torch threads); {out['rows']} rows, "
          f"batch {out['batch_size']}; {selected} heads changed by the bake")
    print(f"{'':28}" + "".join(f"{n:>12}" for n in names))
    for mode, m in out["modes"].items():
        label = f"{mode} rows/s" + (f" ({args.max_new_tokens} tok)" if mode == "generate" else "")
        print(f"{label:28}" + "".join(f"{m['rows_per_s'][n]:>12.2f}" for n in names)
              + f"   hooked=baked {m['hooked_baked_agreement']}")
    print(f"{'forward ms / batch (median)':28}" + "".join(f"{out['forward_ms'][n]:>12.2f}" for n in names))
    print(f"{'forward vs vanilla':28}" + "".join(f"{out['forward_vs_vanilla'][n]:>11.2f}x" for n in names))
    print(f"per-input overhead against the baked checkpoint: {out['per_input_vs_baked']:.2f}x forward time")
    return 0


if __name__ == "__main__":
    sys.exit(main())
