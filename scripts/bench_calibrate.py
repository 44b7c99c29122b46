#!/usr/bin/env python
"""Benchmark the calibrate probe against a plain forward and eager ``output_attentions``.

One random mid-size Qwen2.5-VL (default: 8 decoder layers, hidden 1024, 16
heads over 4 KV heads) is fed real image+text inputs of ~320, ~1,100 and
~4,000 tokens. For each length it times, side by side and interleaved:

  plain  the normal sdpa forward pass (use_cache=False, logits_to_keep=1)
  probe  ``headbake.calibrate.probe.probe_batch`` (the same forward + S_v rows)
  eager  eager attention with ``output_attentions=True`` (+ reducing to S_v)

and the peak memory each adds over the memory in use just before the call
(CUDA: ``max_memory_allocated``; CPU: the process's peak RSS, reset through
``/proc/self/clear_refs``). On CPU the script re-executes itself with
``MALLOC_MMAP_THRESHOLD_`` fixed, so freed tensors go back to the OS and one
mode's freed memory cannot hide the next mode's peak. It also prints the
largest |probe - eager| S_v difference as a correctness check.

Targets (issue 3): probe <= 1.05x plain forward time, probe's extra memory
linear in sequence length (eager's grows with L^2).

    python scripts/bench_calibrate.py            # the issue's model and sizes (~6 min on 2 CPU cores)
    python scripts/bench_calibrate.py --quick    # smaller model, 2 lengths (< 1 min)
"""

from __future__ import annotations

import argparse
import gc
import json
import math
import os
import sys
import tempfile
import time

MMAP_ENV = "MALLOC_MMAP_THRESHOLD_"


def _rss_kb(field):
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith(field + ":"):
                return int(line.split()[1])
    return None


class PeakMemory:
    """Peak memory added during a block, in MiB (None when it cannot be measured)."""
    def __init__(self, device):
        self.device = device
        self.extra_mib = None

    def __enter__(self):
        import torch

        gc.collect()
        if self.device.startswith("cuda"):
            torch.cuda.synchronize()
            torch.cuda.reset_peak_memory_stats()
            self.base = torch.cuda.memory_allocated()
        else:
            try:
                with open("/proc/self/clear_refs", "w") as f:
                    f.write("5")  # reset VmHWM (peak RSS) to the current RSS
                self.base = _rss_kb("VmRSS")
            except OSError:
                self.base = None
        return self

    def __exit__(self, *exc):
        import torch

        if self.device.startswith("cuda"):
            torch.cuda.synchronize()
            self.extra_mib = (torch.cuda.max_memory_allocated() - self.base) / 2**20
        elif self.base is not None:
            self.extra_mib = (_rss_kb("VmHWM") - self.base) / 1024
        return False


def build(args):
    """Random Qwen2.5-VL and a processor allowing large images (tokenizer from the offline demo)."""
    import torch
    from transformers import AutoProcessor, Qwen2_5_VLConfig, Qwen2_5_VLForConditionalGeneration

    from headbake.demo import build_tiny_qwen25vl

    with tempfile.TemporaryDirectory() as tmp:
        demo = build_tiny_qwen25vl(os.path.join(tmp, "demo"), dtype="float32", num_layers=1)
        proc = AutoProcessor.from_pretrained(demo)
    proc.image_processor.size = {"shortest_edge": 28 * 28 * 4, "longest_edge": 28 * 28 * 8192}
    tok = proc.tokenizer
    ids = {t: tok.convert_tokens_to_ids(t)
           for t in ("<|image_pad|>", "<|video_pad|>", "<|vision_start|>", "<|vision_end|>")}
    head_dim = args.hidden // args.heads
    quarter = head_dim // 4
    config = Qwen2_5_VLConfig(
        text_config=dict(
            vocab_size=len(tok), hidden_size=args.hidden, intermediate_size=int(args.hidden * 2.75),
            num_hidden_layers=args.layers, num_attention_heads=args.heads, num_key_value_heads=args.kv_heads,
            max_position_embeddings=32768, rms_norm_eps=1e-6,
            bos_token_id=tok.pad_token_id, eos_token_id=tok.eos_token_id, pad_token_id=tok.pad_token_id,
            rope_parameters={"rope_type": "default", "rope_theta": 1e6,
                             "mrope_section": [head_dim // 2 - 2 * quarter, quarter, quarter]},
        ),
        # A small, window-only vision tower: the benchmark is about the language model's attention.
        vision_config=dict(depth=1, hidden_size=128, intermediate_size=256, num_heads=2, out_hidden_size=args.hidden,
                           patch_size=14, spatial_merge_size=2, temporal_patch_size=2, window_size=112,
                           fullatt_block_indexes=[]),
        image_token_id=ids["<|image_pad|>"], video_token_id=ids["<|video_pad|>"],
        vision_start_token_id=ids["<|vision_start|>"], vision_end_token_id=ids["<|vision_end|>"],
    )
    torch.manual_seed(0)
    dtype = getattr(torch, args.dtype)
    model = Qwen2_5_VLForConditionalGeneration(config).to(dtype=dtype, device=args.device).eval()
    model.set_attn_implementation("sdpa")
    return model, proc


def make_inputs(proc, target_tokens, device):
    """One sample whose prompt is ~target_tokens long: image side chosen in 28-px merge units."""
    from headbake.data.prompts import build_inputs
    from headbake.data.samples import Sample, synthetic_samples

    base = synthetic_samples(1, seed=0)[0]
    text = build_inputs(proc, [Sample(base.image.resize((56, 56)), base.question, base.kind)])
    text_tokens = text["input_ids"].shape[1] - 4
    side = max(2, round(math.sqrt(max(target_tokens - text_tokens, 4))))
    image = base.image.resize((side * 28, side * 28))
    return build_inputs(proc, [Sample(image, base.question, base.kind)], device=device)


def run_modes(model, inputs, device):
    """Callables for the three modes; each returns S_v [layers, heads] or None."""
    import torch

    from headbake.calibrate.probe import probe_batch
    from headbake.calibrate.probe import visual_positions
    from headbake.model.info import visual_token_ids

    length = inputs["input_ids"].shape[1]
    vis = visual_positions(inputs["input_ids"], visual_token_ids(model.config))
    positions = torch.full((1, 1), length - 1, dtype=torch.long)

    def sync():
        if device.startswith("cuda"):
            torch.cuda.synchronize()

    def plain():
        with torch.no_grad():
            model(**inputs, use_cache=False, logits_to_keep=1)
        sync()

    def probe():
        out = probe_batch(model, inputs, positions, visual_mask=vis, method="registry")[0]
        sync()
        return out

    def eager():
        model.set_attn_implementation("eager")
        try:
            with torch.no_grad():
                out = model(**inputs, use_cache=False, logits_to_keep=1, output_attentions=True)
            sv = torch.stack([(a[0, :, -1, :].float() * vis[0].float()).sum(-1) for a in out.attentions]).cpu()
            del out
        finally:
            model.set_attn_implementation("sdpa")
        sync()
        return sv

    return {"plain": plain, "probe": probe, "eager": eager}


def probe_math_ms(model, length, device, calls=20):
    """The probe's own work, isolated: S_v of one query row from q/k of this length, summed over layers (ms).

    End-to-end timings on a shared CPU move by several percent between runs;
    this is the part the probe adds to each attention call.
    """
    import torch

    from headbake.calibrate.probe import visual_share_from_qk

    tc = model.config.text_config
    hd = tc.hidden_size // tc.num_attention_heads
    dtype = next(model.parameters()).dtype
    q = torch.randn(1, tc.num_attention_heads, length, hd, device=device, dtype=dtype)
    k = torch.randn(1, tc.num_key_value_heads, length, hd, device=device, dtype=dtype)
    pos = torch.full((1, 1), length - 1, device=device)
    vis = torch.zeros(1, length, dtype=torch.bool, device=device)
    vis[0, : length // 2] = True
    for _ in range(3):
        visual_share_from_qk(q, k, None, hd ** -0.5, pos, vis)
    if str(device).startswith("cuda"):
        torch.cuda.synchronize()
    t0 = time.perf_counter()
    for _ in range(calls):
        visual_share_from_qk(q, k, None, hd ** -0.5, pos, vis)
    if str(device).startswith("cuda"):
        torch.cuda.synchronize()
    return (time.perf_counter() - t0) / calls * tc.num_hidden_layers * 1e3


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--quick", action="store_true", help="4 layers, hidden 512, 8/2 heads, ~320 and ~1,100 tokens")
    ap.add_argument("--sizes", default=None, help="comma-separated target token counts (default 320,1100,4000)")
    ap.add_argument("--layers", type=int, default=8)
    ap.add_argument("--hidden", type=int, default=1024)
    ap.add_argument("--heads", type=int, default=16)
    ap.add_argument("--kv-heads", type=int, default=4)
    ap.add_argument("--repeats", type=int, default=2,
                    help="minimum timed runs per mode and length (short inputs get more); the best is reported")
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--dtype", default="float32", choices=["float32", "bfloat16", "float16"])
    ap.add_argument("--threads", type=int, default=None, help="torch CPU threads (default: torch's)")
    ap.add_argument("--json", help="also write the results here")
    args = ap.parse_args(argv)
    if args.quick:
        args.layers, args.hidden, args.heads, args.kv_heads = 4, 512, 8, 2
        args.repeats = min(args.repeats, 2)
    sizes = [int(s) for s in (args.sizes or ("320,1100" if args.quick else "320,1100,4000")).split(",")]

    if not args.device.startswith("cuda") and sys.platform.startswith("linux") and MMAP_ENV not in os.environ:
        os.environ[MMAP_ENV] = "131072"
        os.execv(sys.executable, [sys.executable, os.path.abspath(__file__)] + sys.argv[1:])

    import torch

    if args.threads:
        torch.set_num_threads(args.threads)
    model, proc = build(args)
    dev = "cuda" if args.device.startswith("cuda") and torch.cuda.is_available() else "cpu"
    print(f"model: {args.layers} layers, hidden {args.hidden}, {args.heads} heads / {args.kv_heads} KV heads, "
          f"{args.dtype}, device {args.device} ({torch.get_num_threads()} threads), torch {torch.__version__}",
          file=sys.stderr)
    # Warm up every path once on the smallest input.
    warm = run_modes(model, make_inputs(proc, min(sizes), args.device), dev)
    for fn in warm.values():
        fn()

    rows = []
    for target in sizes:
        inputs = make_inputs(proc, target, args.device)
        length = inputs["input_ids"].shape[1]
        modes = run_modes(model, inputs, dev)
        times = {m: [] for m in modes}
        mem, sv = {}, {}
        rep, rounds = 0, args.repeats
        while rep < rounds:
            for name, fn in modes.items():
                if rep == 0:
                    with PeakMemory(dev) as pm:
                        t0 = time.perf_counter()
                        sv[name] = fn()
                        times[name].append(time.perf_counter() - t0)
                    mem[name] = pm.extra_mib
                else:
                    t0 = time.perf_counter()
                    fn()
                    times[name].append(time.perf_counter() - t0)
                print(f"  {length} tokens, {name}: {times[name][-1]:.3f} s", file=sys.stderr)
            if rep == 0:  # short runs are noisy: repeat them until ~8 s per mode (at most 10 rounds)
                rounds = max(args.repeats, min(10, int(8.0 / max(times["plain"][0], 1e-3))))
            rep += 1
        # Best of N: on a shared CPU, interference only ever adds time.
        med = {m: min(v) for m, v in times.items()}
        diff = float((sv["probe"].double() - sv["eager"].double()).abs().max())
        rows_ms = probe_math_ms(model, length, args.device)
        rows.append({"tokens": length, "probe_rows_ms": rows_ms, "time_s": med, "all_times_s": times,
                     "extra_mib": mem, "max_abs_diff": diff,
                     "probe_vs_plain": med["probe"] / med["plain"], "eager_vs_plain": med["eager"] / med["plain"]})
        del inputs, modes
        gc.collect()

    def fmt_mem(x):
        return "n/a" if x is None else f"{x:,.0f}"

    print()
    print(f"{'tokens':>7} | {'plain s':>8} {'probe s':>8} {'eager s':>8} | {'probe/plain':>11} {'eager/plain':>11} |"
          f" {'rows ms':>8} | {'plain +MiB':>10} {'probe +MiB':>10} {'eager +MiB':>10} | {'max|dS_v|':>9}")
    for r in rows:
        t, m = r["time_s"], r["extra_mib"]
        print(f"{r['tokens']:>7} | {t['plain']:>8.3f} {t['probe']:>8.3f} {t['eager']:>8.3f} |"
              f" {r['probe_vs_plain']:>10.3f}x {r['eager_vs_plain']:>10.3f}x | {r['probe_rows_ms']:>8.2f} |"
              f" {fmt_mem(m['plain']):>10} {fmt_mem(m['probe']):>10} {fmt_mem(m['eager']):>10} | {r['max_abs_diff']:>9.1e}")
    print(f"best of >= {args.repeats} interleaved runs (more for short inputs); rows ms = the probe's own S_v work")
    print("over all layers, timed alone; +MiB = peak memory added during the call; max|dS_v| = probe vs eager.")
    if args.json:
        with open(args.json, "w") as f:
            json.dump({"config": vars(args), "rows": rows}, f, indent=2)
    return rows


if __name__ == "__main__":
    main()
