"""CLI commands of the calibrate half: ``calibrate``, ``heads`` and ``presets``.

Only click is imported here; torch, transformers and matplotlib load inside
the commands so ``headbake --help`` stays instant.
"""

from __future__ import annotations

import click


_CALIBRATION_OPTIONS = [
    click.option("--preset", default="default", show_default=True, help="Selection preset (see `headbake presets`)."),
    click.option("--l-perc", type=int, help="Override: last decoder layer (0-based) for perceptual heads."),
    click.option("--l-reas", type=int, help="Override: first decoder layer (0-based) for reasoning heads."),
    click.option("--tau-perc", type=float, help="Override: perceptual heads need S_v >= tau_perc."),
    click.option("--tau-reas", type=float, help="Override: reasoning heads need S_v <= tau_reas."),
    click.option("--g-perc", type=float, help="Override: gain of perceptual heads."),
    click.option("--g-reas", type=float, help="Override: gain of reasoning heads."),
    click.option("--data", type=click.Path(), help='JSONL file of {"image": path | [paths], "question": str}.'),
    click.option("--dataset", help="Hugging Face dataset name or local path (needs the 'datasets' extra)."),
    click.option("--split", default="train", show_default=True, help="Dataset split."),
    click.option("--image-column", default="image", show_default=True),
    click.option("--question-column", default="question", show_default=True),
    click.option("--samples", type=int, help="Number of samples (embedded set: default 64; files: all)."),
    click.option("--batch-size", type=int, default=4, show_default=True),
    click.option("--device", help="auto, cpu, cuda, cuda:1, ... (default auto: cuda if available)."),
    click.option("--device-map", type=click.Choice(["auto"]), help="Spread the model over devices with accelerate."),
    click.option("--dtype", default="auto", show_default=True,
                 help="auto (the checkpoint's), float32, bfloat16, float16."),
    click.option("--query", "query", default="last", show_default=True,
                 type=click.Choice(["last", "last-k", "generated-k"]),
                 help="Query position i*: the last prompt token, the mean over the last k prompt tokens, "
                      "or the mean over the first k greedily generated tokens."),
    click.option("--k", "k", type=int, help="Positions to average for last-k / generated-k."),
    click.option("--visual-token-id", "visual_token_ids", type=int, multiple=True,
                 help="Override the image/video placeholder token ids (repeatable)."),
    click.option("--bootstrap", "bootstrap_rounds", type=int, default=200, show_default=True,
                 help="Bootstrap resamples for the selection-stability estimate (0: skip)."),
    click.option("--seed", type=int, default=0, show_default=True, help="Bootstrap seed."),
    click.option("--trust-remote-code", is_flag=True, help="Allow the checkpoint's own Python code (Kimi-VL needs it)."),
]
_OVERRIDES = ("l_perc", "l_reas", "tau_perc", "tau_reas", "g_perc", "g_reas")


def calibration_options(f):
    """The calibration flags, shared by `calibrate` and `convert` so both accept the same spelling."""
    for option in reversed(_CALIBRATION_OPTIONS):
        f = option(f)
    return f


def calibration_fields(kw: dict) -> dict:
    """Pop the calibration flags out of a command's kwargs as ``CalibrateOptions`` fields."""
    fields = {name: kw.pop(name) for name in (
        "preset", "data", "dataset", "split", "image_column", "question_column", "samples", "batch_size", "device",
        "device_map", "dtype", "query", "k", "bootstrap_rounds", "seed", "trust_remote_code")}
    fields["overrides"] = {name: kw.pop(name) for name in _OVERRIDES}
    fields["visual_token_ids"] = tuple(kw.pop("visual_token_ids"))
    return fields


@click.command("calibrate")
@click.argument("model", metavar="MODEL")
@click.option("--out", "-o", required=True, type=click.Path(dir_okay=False), help="Gains file to write (heads.json).")
@calibration_options
@click.option("--png", type=click.Path(dir_okay=False), help="Also write the S_v heatmap here.")
@click.option("--quiet", "-q", is_flag=True, help="No progress bar.")
def calibrate_cmd(model, out, png, quiet, **kw):
    """Measure each head's attention share on image tokens (S_v) and select heads into a gains file.

    MODEL is a checkpoint directory (safetensors, with its processor), an alias
    (`headbake models`) or a Hub id.
    """
    from headbake.calibrate.run import CalibrateOptions, calibrate
    from headbake.hub import resolve_model

    from headbake.fsutil import ensure_writable

    ensure_writable(out, "--out")
    if png:
        ensure_writable(png, "--png")
    from headbake.calibrate.run import check_options

    fields = calibration_fields(kw)
    check_options(CalibrateOptions(model=model, out=out, **fields))  # before a Hub download, not after
    resolved = resolve_model(model, progress=not quiet, trust_remote_code=fields["trust_remote_code"] or None)
    opts = CalibrateOptions(model=str(resolved.path), out=out, progress=not quiet, source=resolved.source(),
                            **fields)
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
@click.argument("gains_file", metavar="HEADS_JSON", type=click.Path())
@click.option("--png", type=click.Path(dir_okay=False),
              help="Heatmap path (default: HEADS_JSON with a _heatmap.png suffix; in a baked directory, "
                   "its headbake_heatmap.png).")
@click.option("--no-png", is_flag=True, help="Only print the table.")
def heads_cmd(gains_file, png, no_png):
    """Print the per-layer head table of a gains file and write its S_v heatmap.

    HEADS_JSON may also be a baked directory or its headbake.json.
    """
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
    src = Path(gains_file)
    if png:
        path = Path(png)
    elif src.is_dir() or src.name == "headbake.json":
        path = (src if src.is_dir() else src.parent) / "headbake_heatmap.png"
    else:
        path = src.with_name(src.stem + "_heatmap.png")
    plot_heatmap(doc, path)
    click.echo(f"wrote {path}")


@click.command("merge")
@click.argument("parts", metavar="HEADS_JSON...", nargs=-1, required=True, type=click.Path(dir_okay=False))
@click.option("--out", "-o", required=True, type=click.Path(dir_okay=False), help="Merged gains file to write.")
@click.option("--preset", help="Re-select with this preset (default: the first file's).")
def merge_cmd(parts, out, preset):
    """Combine calibrations of the same model run on separate workers or machines, exactly.

    The per-head statistics merge as if one run had seen every sample; heads
    are then selected again from the merged S_v.
    """
    import json
    from pathlib import Path

    from headbake.calibrate.merge import merge_documents
    from headbake.errors import HeadbakeError
    from headbake.gains import write_json_atomic

    docs = []
    for p in parts:
        try:
            docs.append(json.loads(Path(p).read_text()))
        except FileNotFoundError:
            raise HeadbakeError(f"gains file not found: {p}") from None
        except (ValueError, UnicodeDecodeError) as e:
            raise HeadbakeError(f"{p} is not valid JSON ({e})") from None
    doc = merge_documents(docs, preset=preset)
    write_json_atomic(out, doc)
    counts = doc["counts"]
    click.echo(f"merged {len(docs)} runs, {doc['samples']} samples: {counts['perceptual']} perceptual + "
               f"{counts['reasoning']} reasoning heads of {counts['total_heads']}; wrote {out}")


@click.command("presets")
def presets_cmd():
    """List the selection presets and which values come from the paper."""
    from headbake.calibrate.presets import describe

    click.echo(describe())


COMMANDS = [calibrate_cmd, heads_cmd, merge_cmd, presets_cmd]
