#!/usr/bin/env python3
"""Benchmark: `headbake bake` vs `cp -r` on a Qwen2.5-VL-7B-Instruct-shaped checkpoint.

Writes once (cached) a checkpoint with Qwen2.5-VL-7B-Instruct's tensor names,
shapes, bf16 dtype and 5 shards (~16.6 GB of random values), then times
`cp -r` and `headbake bake` of it alternately, prints the median ratio,
bake's peak RSS and the new disk each used.

Targets: bake <= 1.15x cp, peak RSS <= 1.0 GB; on a reflink filesystem
(XFS/Btrfs) bake <= 6 s and <= 1 GB of new disk. For XFS on a loop image:
    apt-get install -y xfsprogs && truncate -s 60G /var/tmp/xfs.img && \
    mkfs.xfs -m reflink=1 /var/tmp/xfs.img && mkdir -p /mnt/xfs && mount -o loop /var/tmp/xfs.img /mnt/xfs
    python scripts/bench_bake.py --dir /mnt/xfs/bench

Use --layers N for a smaller model of the same shape (RSS should not grow with N).
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import struct
import subprocess
import sys
import time
from pathlib import Path

HIDDEN, HEADS, KV, HEAD_DIM, INTER, VOCAB = 3584, 28, 4, 128, 18944, 152064
V_HIDDEN, V_INTER, V_DEPTH, V_OUT = 1280, 3420, 32, 3584


def qwen25vl_7b_tensors(layers: int = 28, vocab: int = VOCAB, vision_depth: int = V_DEPTH) -> dict[str, list[int]]:
    """On-disk names and shapes of Qwen2.5-VL-7B-Instruct (legacy key style); smaller vocab/depth for quick runs."""
    t: dict[str, list[int]] = {"model.embed_tokens.weight": [vocab, HIDDEN], "model.norm.weight": [HIDDEN],
                               "lm_head.weight": [vocab, HIDDEN]}
    kv = KV * HEAD_DIM
    for i in range(layers):
        p = f"model.layers.{i}."
        t.update({
            p + "input_layernorm.weight": [HIDDEN], p + "post_attention_layernorm.weight": [HIDDEN],
            p + "mlp.gate_proj.weight": [INTER, HIDDEN], p + "mlp.up_proj.weight": [INTER, HIDDEN],
            p + "mlp.down_proj.weight": [HIDDEN, INTER],
            p + "self_attn.q_proj.weight": [HIDDEN, HIDDEN], p + "self_attn.q_proj.bias": [HIDDEN],
            p + "self_attn.k_proj.weight": [kv, HIDDEN], p + "self_attn.k_proj.bias": [kv],
            p + "self_attn.v_proj.weight": [kv, HIDDEN], p + "self_attn.v_proj.bias": [kv],
            p + "self_attn.o_proj.weight": [HIDDEN, HEADS * HEAD_DIM],
        })
    t["visual.patch_embed.proj.weight"] = [V_HIDDEN, 3, 2, 14, 14]
    for i in range(vision_depth):
        p = f"visual.blocks.{i}."
        t.update({
            p + "norm1.weight": [V_HIDDEN], p + "norm2.weight": [V_HIDDEN],
            p + "attn.qkv.weight": [3 * V_HIDDEN, V_HIDDEN], p + "attn.qkv.bias": [3 * V_HIDDEN],
            p + "attn.proj.weight": [V_HIDDEN, V_HIDDEN], p + "attn.proj.bias": [V_HIDDEN],
            p + "mlp.gate_proj.weight": [V_INTER, V_HIDDEN], p + "mlp.gate_proj.bias": [V_INTER],
            p + "mlp.up_proj.weight": [V_INTER, V_HIDDEN], p + "mlp.up_proj.bias": [V_INTER],
            p + "mlp.down_proj.weight": [V_HIDDEN, V_INTER], p + "mlp.down_proj.bias": [V_HIDDEN],
        })
    t.update({"visual.merger.ln_q.weight": [V_HIDDEN], "visual.merger.mlp.0.weight": [4 * V_HIDDEN, 4 * V_HIDDEN],
              "visual.merger.mlp.0.bias": [4 * V_HIDDEN], "visual.merger.mlp.2.weight": [V_OUT, 4 * V_HIDDEN],
              "visual.merger.mlp.2.bias": [V_OUT]})
    return t


def write_checkpoint(root: Path, layers: int, shards: int = 5, vocab: int = VOCAB, vision_depth: int = V_DEPTH) -> None:
    """Stream random bf16 values into `shards` safetensors files (never the whole model in memory)."""
    import torch

    tensors = qwen25vl_7b_tensors(layers, vocab, vision_depth)
    sizes = {k: 2 * eval("*".join(map(str, v))) for k, v in tensors.items()}
    total = sum(sizes.values())
    target = total / shards
    groups, cur, acc = [], [], 0
    for name in tensors:  # module order, filled greedily like save_pretrained
        if cur and acc + sizes[name] > target * 1.02 and len(groups) < shards - 1:
            groups.append(cur)
            cur, acc = [], 0
        cur.append(name)
        acc += sizes[name]
    groups.append(cur)
    tmp = root.with_name(root.name + ".partial")
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    block = torch.randn(32 << 20, generator=torch.Generator().manual_seed(0)).to(torch.bfloat16)
    block = block.view(torch.uint8).numpy().tobytes()  # 64 MiB of valid bf16 values
    wmap = {}
    for i, names in enumerate(groups):
        fname = f"model-{i + 1:05d}-of-{len(groups):05d}.safetensors"
        header, off = {"__metadata__": {"format": "pt"}}, 0
        for n in names:
            header[n] = {"dtype": "BF16", "shape": tensors[n], "data_offsets": [off, off + sizes[n]]}
            off += sizes[n]
            wmap[n] = fname
        hb = json.dumps(header, separators=(",", ":")).encode()
        hb += b" " * (-len(hb) % 8)
        with open(tmp / fname, "wb") as f:
            f.write(struct.pack("<Q", len(hb)) + hb)
            left = off
            while left:
                n = min(left, len(block))
                f.write(block[:n])
                left -= n
        print(f"  wrote {fname} ({off / 1e9:.2f} GB)", file=sys.stderr)
    (tmp / "model.safetensors.index.json").write_text(json.dumps({"metadata": {"total_size": total},
                                                                  "weight_map": wmap}, indent=2))
    config = {
        "architectures": ["Qwen2_5_VLForConditionalGeneration"], "model_type": "qwen2_5_vl", "torch_dtype": "bfloat16",
        "hidden_size": HIDDEN, "intermediate_size": INTER, "num_attention_heads": HEADS, "num_hidden_layers": layers,
        "num_key_value_heads": KV, "vocab_size": vocab, "image_token_id": 151655, "video_token_id": 151656,
        "vision_config": {"depth": vision_depth, "hidden_size": V_HIDDEN, "intermediate_size": V_INTER, "num_heads": 16,
                          "out_hidden_size": V_OUT},
    }
    (tmp / "config.json").write_text(json.dumps(config, indent=2))
    for name, text in {"generation_config.json": '{"do_sample": false}', "tokenizer_config.json": "{}",
                       "chat_template.json": '{"chat_template": ""}', "preprocessor_config.json": "{}"}.items():
        (tmp / name).write_text(text)
    shutil.rmtree(root, ignore_errors=True)
    os.replace(tmp, root)


def gains_file(path: Path, layers: int) -> Path:
    """~6.4% of heads at the paper's gains, spread over the layers."""
    g = [[1.0] * HEADS for _ in range(layers)]
    for l in range(layers):
        for h in range(HEADS):
            if (l * 7 + h * 3) % 16 == 0:
                g[l][h] = 1.16 if l <= 7 else 1.30
    path.write_text(json.dumps({"format": "headbake.gains/v1", "num_layers": layers, "num_heads": HEADS,
                                "head_dim": HEAD_DIM, "gains": g}))
    return path


def used_bytes(path: Path) -> int:
    """Blocks in use, once the filesystem has settled (XFS frees removed extents in the background)."""
    last = None
    for _ in range(50):
        os.sync()
        st = os.statvfs(path)
        now = (st.f_blocks - st.f_bfree) * st.f_frsize
        if now == last:
            return now
        last = now
        time.sleep(0.1)
    return last


def timed(cmd: list[str], where: Path) -> tuple[float, int, int]:
    """Wall seconds until the data is on disk, peak RSS (bytes) of that child alone, and new disk used."""
    before = used_bytes(where)
    t0 = time.perf_counter()
    p = subprocess.Popen(cmd, stdout=subprocess.DEVNULL)
    _, status, ru = os.wait4(p.pid, 0)
    if os.waitstatus_to_exitcode(status) != 0:
        sys.exit(f"command failed: {' '.join(cmd)}")
    os.sync()  # count the writeback too, or one command's dirty pages slow down the next
    dt = time.perf_counter() - t0
    return dt, ru.ru_maxrss * 1024, used_bytes(where) - before


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--dir", type=Path, default=Path(os.environ.get("HEADBAKE_BENCH_DIR", "/var/tmp/headbake-bench")))
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--layers", type=int, default=28, help="decoder layers (28 = the real 7B)")
    args = ap.parse_args()
    src = args.dir / f"qwen25vl7b-shaped-L{args.layers}"
    if not (src / "model.safetensors.index.json").exists():
        print(f"writing the benchmark checkpoint to {src} (once) ...", file=sys.stderr)
        write_checkpoint(src, args.layers)
    size = sum(p.stat().st_size for p in src.iterdir())
    gains = gains_file(args.dir / "bench-gains.json", args.layers)
    headbake = [sys.executable, "-m", "headbake.cli"]
    cp_t, bake_t, rss, cp_disk, bake_disk = [], [], [], [], []
    for r in range(args.rounds):
        for which in ("cp", "bake"):
            out = args.dir / f"out-{which}"
            shutil.rmtree(out, ignore_errors=True)
            os.sync()
            if which == "cp":
                dt, _, disk = timed(["cp", "-r", str(src), str(out)], args.dir)
                cp_t.append(dt)
                cp_disk.append(disk)
            else:
                dt, peak, disk = timed(headbake + ["bake", str(src), "--gains", str(gains), "--out", str(out), "-q"],
                                       args.dir)
                bake_t.append(dt)
                rss.append(peak)
                bake_disk.append(disk)
            shutil.rmtree(out, ignore_errors=True)
        print(f"round {r + 1}: cp {cp_t[-1]:.2f} s, bake {bake_t[-1]:.2f} s, bake peak RSS {rss[-1] / 2**30:.2f} GiB",
              file=sys.stderr)
    fs = subprocess.run(["stat", "-f", "-c", "%T", str(args.dir)], capture_output=True, text=True).stdout.strip()
    ratio = statistics.median(b / c for b, c in zip(bake_t, cp_t))
    print(f"checkpoint: {size / 1e9:.2f} GB, {args.layers} layers, 5 shards, bf16; filesystem: {fs}")
    print(f"cp -r  median {statistics.median(cp_t):.2f} s, new disk {statistics.median(cp_disk) / 1e9:.2f} GB")
    print(f"bake   median {statistics.median(bake_t):.2f} s, new disk {statistics.median(bake_disk) / 1e9:.2f} GB, "
          f"peak RSS {max(rss) / 2**30:.2f} GiB")
    print(f"bake / cp (median of per-round ratios): {ratio:.2f}x   [target <= 1.15x; RSS <= 1.0 GiB]")
    if fs in ("xfs", "btrfs"):
        print(f"reflink filesystem: cp clones too, so the targets are absolute: bake {statistics.median(bake_t):.2f} s "
              f"[<= 6 s], new disk {statistics.median(bake_disk) / 1e9:.2f} GB [<= 1 GB]")


if __name__ == "__main__":
    main()
