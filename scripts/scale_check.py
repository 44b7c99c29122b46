#!/usr/bin/env python3
"""Scale check: calibrate, bake, verify and convert on a Qwen2.5-VL-7B-Instruct-shaped checkpoint.

Builds once (cached in --dir) a checkpoint with Qwen2.5-VL-7B-Instruct's
tensor names, shapes, bf16 dtype and 5 shards (~16.6 GB of random values,
written by scripts/bench_bake.py), with the demo model's tokenizer, processor
and chat template and the matching token ids in config.json, so stock
transformers loads it and the whole pipeline runs on it. Then runs each
step in its own process and prints wall time, peak RSS (VmHWM of that
process) and peak GPU memory (torch's allocator peak in that process, where
CUDA was used) beside the bf16 weights' size, with the memory plan's
estimate (headbake.memory) for comparison.

Target (issue 8): every step completes; verify peaks at <= 1.25 x the
weights in RSS on CPU, and in GPU memory on a GPU.

Needs ~17 GB of disk and, at full size, ~21 GB of RAM: not part of the test
suite. For a quick correctness run use e.g. --layers 2 --vocab 4096
--vision-depth 2 (~1 GB); the figures that count come from the defaults.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from bench_bake import (  # noqa: E402  (the 7B-shaped checkpoint writer lives there)
    HEADS, HIDDEN, INTER, KV, V_DEPTH, V_HIDDEN, V_INTER, VOCAB, gains_file, write_checkpoint,
)

MARKER = "scale_check.json"
# Files the demo model's processor is made of (transformers 5 layout).
PROCESSOR_FILES = ("chat_template.jinja", "generation_config.json", "processor_config.json", "tokenizer.json",
                   "tokenizer_config.json")
STUBS = ("chat_template.json", "preprocessor_config.json", "tokenizer_config.json", "generation_config.json")

# Run the CLI in a child that reports, when it exits, its own peak RSS (VmHWM: this program's, not the
# forking parent's, which ru_maxrss would inherit) and torch's CUDA allocator peaks.
WRAPPER = r"""
import atexit, json, os, sys
def _report():
    peak = {"gpu": {}}
    torch = sys.modules.get("torch")
    if torch is not None and torch.cuda.is_available() and torch.cuda.is_initialized():
        for i in range(torch.cuda.device_count()):
            peak["gpu"][str(i)] = [torch.cuda.max_memory_allocated(i), torch.cuda.max_memory_reserved(i)]
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith("VmHWM:"):
                peak["rss"] = int(line.split()[1]) * 1024
    with open(os.environ["HEADBAKE_SCALE_PEAK"], "w") as f:
        json.dump(peak, f)
atexit.register(_report)
sys.argv[0] = "headbake"
from headbake.cli import main
main()
"""


def real_config(demo_config: dict, layers: int, vocab: int, vision_depth: int) -> dict:
    """Qwen2.5-VL-7B-Instruct's sizes in the demo's (transformers 5) config, keeping the demo's token ids."""
    cfg = json.loads(json.dumps(demo_config))
    tc = cfg["text_config"]
    tc.update(hidden_size=HIDDEN, intermediate_size=INTER, num_hidden_layers=layers, num_attention_heads=HEADS,
              num_key_value_heads=KV, vocab_size=vocab, max_position_embeddings=128000, max_window_layers=layers,
              layer_types=["full_attention"] * layers, rms_norm_eps=1e-6,
              rope_parameters={"rope_type": "default", "rope_theta": 1000000.0, "mrope_section": [16, 24, 24]})
    vc = cfg["vision_config"]
    vc.update(depth=vision_depth, hidden_size=V_HIDDEN, intermediate_size=V_INTER, num_heads=16,
              out_hidden_size=HIDDEN, window_size=112, tokens_per_second=2,
              fullatt_block_indexes=[i for i in (7, 15, 23, 31) if i < vision_depth] or [vision_depth - 1])
    cfg["dtype"] = "bfloat16"
    cfg["tie_word_embeddings"] = False
    return cfg


def build(root: Path, layers: int, vocab: int, vision_depth: int) -> None:
    """The weights (bench_bake's writer, cached) plus the demo's processor and a config transformers can load."""
    from headbake.demo import build_tiny_qwen25vl

    if not (root / "model.safetensors.index.json").exists():
        print(f"writing the checkpoint to {root} (once) ...", file=sys.stderr)
        write_checkpoint(root, layers, vocab=vocab, vision_depth=vision_depth)
    with tempfile.TemporaryDirectory() as tmp:
        demo = build_tiny_qwen25vl(Path(tmp) / "demo", dtype="bfloat16", num_layers=1, shards=1)
        for name in STUBS:
            (root / name).unlink(missing_ok=True)
        for name in PROCESSOR_FILES:
            if (demo / name).exists():
                shutil.copy2(demo / name, root / name)
        cfg = real_config(json.loads((demo / "config.json").read_text()), layers, vocab, vision_depth)
    (root / "config.json").write_text(json.dumps(cfg, indent=2) + "\n")
    (root / MARKER).write_text(json.dumps({"layers": layers, "vocab": vocab, "vision_depth": vision_depth}) + "\n")


def run_step(name: str, args: list[str], log: Path) -> dict:
    """One CLI command in its own process: wall seconds, its peak RSS, CUDA allocator peaks (reserved)."""
    fd, peak_file = tempfile.mkstemp(suffix=".json")
    os.close(fd)
    env = dict(os.environ, HEADBAKE_SCALE_PEAK=peak_file)
    t0 = time.perf_counter()
    with open(log, "ab") as out:
        out.write(f"\n$ headbake {' '.join(args)}\n".encode())
        out.flush()
        p = subprocess.Popen([sys.executable, "-c", WRAPPER, *args], stdout=out, stderr=subprocess.STDOUT, env=env)
        _, status, ru = os.wait4(p.pid, 0)
    wall = time.perf_counter() - t0
    try:
        peak = json.loads(Path(peak_file).read_text() or "{}")
    except (OSError, ValueError):
        peak = {}
    Path(peak_file).unlink(missing_ok=True)
    peak_gpu = max((v[1] for v in peak.get("gpu", {}).values()), default=None)  # reserved: what the GPU had to hold
    # killed (OOM) before reporting: wait4's figure, an upper bound that includes the parent's RSS at fork
    rss = peak.get("rss", ru.ru_maxrss * 1024)
    return {"step": name, "exit": os.waitstatus_to_exitcode(status), "wall_s": wall, "rss": rss, "gpu": peak_gpu}


def planned(src: Path, step: str, device: str, samples: int) -> int | None:
    """The memory plan's estimate for the step (None when headbake has no planner)."""
    try:
        from headbake.memory import plan_memory
    except ImportError:
        return None
    try:
        kwargs = dict(device=device, samples=samples, available={"cpu": 1 << 50, 0: 1 << 50})
        if step == "calibrate":
            kwargs["batch_size"] = min(4, samples)
        return plan_memory(src, step, **kwargs).needed
    except Exception as e:  # the check is a measurement, not a test of the planner
        print(f"(no plan for {step}: {e})", file=sys.stderr)
        return None


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--dir", type=Path, default=Path(os.environ.get("HEADBAKE_SCALE_DIR", "/var/tmp/headbake-scale")))
    ap.add_argument("--layers", type=int, default=28, help="decoder layers (28 = the real 7B)")
    ap.add_argument("--vocab", type=int, default=VOCAB, help=f"vocabulary ({VOCAB} = the real 7B)")
    ap.add_argument("--vision-depth", type=int, default=V_DEPTH, help=f"vision blocks ({V_DEPTH} = the real 7B)")
    ap.add_argument("--samples", type=int, default=2, help="calibration samples")
    ap.add_argument("--verify-samples", type=int, default=2, help="inputs for the model-level verification")
    ap.add_argument("--device", default="auto", help="cpu, cuda, cuda:1 or auto")
    ap.add_argument("--steps", default="calibrate,bake,verify,convert", help="comma-separated subset, in order")
    args = ap.parse_args()

    import torch

    device = "cuda" if args.device == "auto" and torch.cuda.is_available() else args.device
    device = "cpu" if device == "auto" else device
    tag = f"L{args.layers}" + (f"-V{args.vocab}" if args.vocab != VOCAB else "") + (
        f"-D{args.vision_depth}" if args.vision_depth != V_DEPTH else "")
    src = args.dir / f"qwen25vl7b-shaped-{tag}"
    args.dir.mkdir(parents=True, exist_ok=True)
    if not (src / MARKER).exists():
        build(src, args.layers, args.vocab, args.vision_depth)
    weights = sum(p.stat().st_size for p in src.glob("*.safetensors"))
    work = args.dir / f"run-{tag}"
    shutil.rmtree(work, ignore_errors=True)
    work.mkdir()
    log = work / "log.txt"
    gains, baked, converted = work / "heads.json", work / "baked", work / "converted"
    commands = {
        "calibrate": ["calibrate", str(src), "--samples", str(args.samples), "-o", str(gains), "--device", device,
                      "-q"],
        "bake": ["bake", str(src), "--gains", str(gains), "--out", str(baked), "-q"],
        "verify": ["verify", str(src), str(baked), "--samples", str(args.verify_samples), "--device", device,
                   "--report", str(work / "verify.json"), "-q"],
        "convert": ["convert", str(src), "--samples", str(args.samples), "--verify-samples", str(args.verify_samples),
                    "--device", device, "--out", str(converted), "-q"],
    }
    if args.layers <= 7:  # the default preset's layer bounds (l_perc 7, l_reas 3) must lie inside the model
        bounds = ["--l-perc", str(args.layers - 1), "--l-reas", str(min(3, args.layers - 1))]
        commands["calibrate"][2:2] = bounds
        commands["convert"][2:2] = bounds
    steps = [s.strip() for s in args.steps.split(",") if s.strip()]
    unknown = [s for s in steps if s not in commands]
    if unknown:
        sys.exit(f"unknown step(s): {', '.join(unknown)}")
    if "bake" in steps and "calibrate" not in steps and not gains.exists():
        gains_file(gains, args.layers)  # bench_bake's spread of heads when calibrate is skipped
    results = []
    for step in steps:
        res = run_step(step, commands[step], log)
        res["plan"] = planned(src, step, device, args.verify_samples if step == "verify" else args.samples) \
            if step != "bake" else None
        results.append(res)
        print(f"{step}: exit {res['exit']}, {res['wall_s']:.1f} s, peak RSS {res['rss'] / 1e9:.2f} GB", file=sys.stderr)
        if res["exit"] != 0:
            print(f"{step} failed: see {log}", file=sys.stderr)
            break

    gb = lambda n: "-" if n is None else f"{n / 1e9:.2f}"  # noqa: E731
    print(f"checkpoint: Qwen2.5-VL-7B-Instruct-shaped, {args.layers} layers, vocab {args.vocab}, "
          f"{args.vision_depth} vision blocks, bf16, {len(list(src.glob('*.safetensors')))} shards, "
          f"{weights / 1e9:.2f} GB of weights; device {device}"
          + (f" ({torch.cuda.get_device_name(0)})" if device.startswith("cuda") else ""))
    print(f"{'step':<10} {'exit':>4} {'wall s':>8} {'peak RSS GB':>12} {'RSS/weights':>12} {'peak GPU GB':>12} "
          f"{'GPU/weights':>12} {'plan GB':>8}")
    for r in results:
        gpu_ratio = "-" if r["gpu"] is None else f"{r['gpu'] / weights:.2f}"
        print(f"{r['step']:<10} {r['exit']:>4} {r['wall_s']:>8.1f} {gb(r['rss']):>12} {r['rss'] / weights:>12.2f} "
              f"{gb(r['gpu']):>12} {gpu_ratio:>12} {gb(r['plan']):>8}")
    print(f"target: verify peak <= 1.25 x weights ({1.25 * weights / 1e9:.2f} GB); log: {log}")
    sys.exit(0 if all(r["exit"] == 0 for r in results) and len(results) == len(steps) else 1)


if __name__ == "__main__":
    main()
