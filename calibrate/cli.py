"""CLI commands of the calibrate half: ``calibrate``, ``heads`` and ``presets``.

Only click is imported here; torch, transformers and matplotlib load inside
the commands so ``headbake --help`` stays instant.
"""

from __future__ import annotations

import click


@click.command("calibrate")
@click.argument("model", metavar="MODEL")
@click.option("--out", "-o", required=True, type=click.Path(dir_okay=False), help="Gains file to write (heads.json).")
@click.option("--preset", default="default", show_default=True, help="Selection preset (see `headbake presets`).")
@click.option("--l-perc", type=int, help="Override: last decoder layer (0-based) for perceptual heads.")
@click.option("--l-reas", type=int, help="Override: first decoder layer (0-based) for reasoning heads.")
@click.option("--tau-perc", type=float, help="Override: perceptual heads need S_v >= tau_perc.")
@click.option("--tau-reas", type=float, help="Override: reasoning heads need S_v <= tau_reas.")
@click.option("--g-perc", type=float, help="Override: gain of perceptual heads.")
@click.option("--g-reas", type=float, help="Override: gain of reasoning heads.")
@click.option("--data", type=click.Path(), help='JSONL file of {"image": path | [paths], "question": str}.')
@click.option("--dataset", help="Hugging Face dataset name or local path (needs the 'datasets' extra).")
@click.option("--split", default="train", show_default=True, help="Dataset split.")
@click.option("--image-column", default="image", show_default=True)
@click.option("--question-column", default="question", show_default=True)
@click.option("--samples", type=int, help="Number of samples (embedded set: default 64; files: all).")
@click.option("--batch-size", type=int, default=4, show_default=True)
@click.option("--device", help="auto, cpu, cuda, cuda:1, ... (default auto: cuda if available).")
@click.option("--device-map", type=click.Choice(["auto"]), help="Spread the model over devices with accelerate.")
@click.option("--dtype", default="auto", show_default=True, help="auto (the checkpoint's), float32, bfloat16, float16.")
@click.option("--query", "query", default="last", show_default=True,
              type=click.Choice(["last", "last-k", "generated-k"]),
              help="Query position i*: the last prompt token, the mean over the last k prompt tokens, "
                   "or the mean over the first k greedily generated tokens.")
@click.option("--k", "k", type=int, help="Positions to average for last-k / generated-k.")
@click.option("--visual-token-id", "visual_token_ids", type=int, multiple=True,
              help="Override the image/video placeholder token ids (repeatable).")
@click.option("--bootstrap", "bootstrap_rounds", type=int, default=200, show_default=True,
              help="Bootstrap resamples for the selection-stability estimate (0: skip).")
@click.option("--seed", type=int, default=0, show_default=True, help="Bootstrap seed.")
@click.option("--trust-remote-code", is_flag=True, help="Allow the checkpoint's own Python code (Kimi-VL needs it).")
@click.option("--png", type=click.Path(dir_okay=False), help="Also write the S_v heatmap here.")
@click.option("--quiet", "-q", is_flag=True, help="No progress bar.")
def calibrate_cmd(model, out, preset, l_perc, l_reas, tau_perc, tau_reas, g_perc, g_reas, data, dataset, split,
                  image_column, question_column, samples, batch_size, device, device_map, dtype, query, k,
                  visual_token_ids, bootstrap_rounds, seed, trust_remote_code, png, quiet):
    """Measure each head's attention share on image tokens (S_v) and select heads into a gains file.

    MODEL is a local checkpoint directory (safetensors, with its processor).
    """
    from headbake.calibrate.run import CalibrateOptions, calibrate

    opts = CalibrateOptions(
        model=model, out=out, preset=preset,
        overrides={"l_perc": l_perc, "l_reas": l_reas, "tau_perc": tau_perc, "tau_reas": tau_reas,
                   "g_perc": g_perc, "g_reas": g_reas},
        data=data, dataset=dataset, split=split, image_column=image_column, question_column=question_column,
        samples=samples, batch_size=batch_size, device=device, device_map=device_map, dtype=dtype,
        query=query, k=k, trust_remote_code=trust_remote_code, visual_token_ids=tuple(visual_token_ids),
        bootstrap_rounds=bootstrap_rounds, seed=seed, progress=not quiet,
    )
    if png:
        from pathlib import Path

        from headbake.errors import HeadbakeError

        if Path(png).is_dir():
            raise HeadbakeError(f"--png is a directory: {png}")
    doc = calibrate(opts)
    counts = doc["counts"]
    for w in doc["warnings"]:
        click.echo(f"Warning: {w}", err=True)
    stab = doc["stability"].get("bootstrap_jaccard_mean")
    click.echo(
        f"{counts['perceptual']} perceptual + {counts['reasoning']} reasoning heads of {counts['total_heads']} "
        f"({100 * counts['share']:.1f}%) from {doc['samples']} samples"
        + (f"; bootstrap Jaccard {stab:.3f}" if stab is not None else "")
        + f"; wrote {out}"
    )
    if png:
        from headbake.calibrate.heatmap import plot_heatmap

        plot_heatmap(doc, png)
        click.echo(f"wrote {png}")


@click.command("heads")
@click.argument("gains_file", metavar="HEADS_JSON", type=click.Path(dir_okay=False))
@click.option("--png", type=click.Path(dir_okay=False),
              help="Heatmap path (default: HEADS_JSON with a _heatmap.png suffix).")
@click.option("--no-png", is_flag=True, help="Only print the table.")
def heads_cmd(gains_file, png, no_png):
    """Print the per-layer head table of a gains file and write its S_v heatmap."""
    from pathlib import Path

    from headbake.calibrate.heatmap import format_table, plot_heatmap
    from headbake.gains import load_gains

    doc = load_gains(gains_file)
    click.echo(format_table(doc))
    if no_png:
        return
    if not doc.get("visual_ratio"):
        click.echo("no S_v (visual_ratio) in this file: no heatmap written", err=True)
        return
    path = Path(png) if png else Path(gains_file).with_name(Path(gains_file).stem + "_heatmap.png")
    plot_heatmap(doc, path)
    click.echo(f"wrote {path}")


@click.command("presets")
def presets_cmd():
    """List the selection presets and which values come from the paper."""
    from headbake.calibrate.presets import describe

    click.echo(describe())


COMMANDS = [calibrate_cmd, heads_cmd, presets_cmd]
