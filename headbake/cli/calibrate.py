"""``calibrate``, ``heads``, ``merge`` and ``presets``: find the heads."""

from __future__ import annotations

from pathlib import Path

import click

from headbake.checkpoint import read_json
from headbake.cli.main import emit_json
from headbake.cli.options import (
    calibration_fields,
    calibration_options,
    json_option,
    out_option,
    quiet_option,
    revision_option,
)
from headbake.fsutil import ensure_writable, write_json_atomic
from headbake.gains import load_gains


@click.command("calibrate")
@click.argument("model", metavar="MODEL")
@out_option("Gains file to write (heads.json).")
@revision_option
@calibration_options
@click.option("--png", type=click.Path(dir_okay=False), help="Also write the S_v heatmap here.")
@quiet_option
@json_option
def calibrate_cmd(model, out, revision, png, quiet, as_json, **kw):
    """Measure each head's attention share on image tokens (S_v) and select heads into a gains file.

    MODEL is a checkpoint directory (safetensors, with its processor), an alias
    (`headbake models`) or a Hub id.
    """
    from headbake.calibrate.run import CalibrateOptions, calibrate, check_options
    from headbake.hub import resolve_model

    ensure_writable(out, "--out")
    if png:
        ensure_writable(png, "--png")
    fields = calibration_fields(kw)
    check_options(CalibrateOptions(model=model, out=out, **fields))  # before a Hub download, not after
    resolved = resolve_model(model, revision=revision, progress=not quiet,
                             trust_remote_code=fields["trust_remote_code"] or None)
    opts = CalibrateOptions(model=str(resolved.path), out=out, progress=not quiet, source=resolved.source(),
                            **fields)
    doc = calibrate(opts)
    counts = doc["counts"]
    for w in doc["warnings"]:
        click.echo(f"Warning: {w}", err=True)
    if as_json:
        emit_json({k: doc.get(k) for k in ("counts", "selected", "samples", "preset", "stability", "warnings")}
                  | {"out": str(out)})
        if png:
            from headbake.calibrate.heatmap import plot_heatmap

            plot_heatmap(doc, png)
        return
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
@click.option("--compare", "other", metavar="HEADS_JSON_B", type=click.Path(),
              help="Compare with a second calibration: Jaccard overlap, heads only in one or the other.")
@json_option
def heads_cmd(gains_file, png, no_png, other, as_json):
    """Print the per-layer head table of a gains file and write its S_v heatmap.

    HEADS_JSON may also be a baked directory or its headbake.json. With
    --compare B, print how the two selections overlap instead (what changing
    the data, query or prompt did).
    """
    from headbake.calibrate.agreement import compare_calibrations, format_comparison
    from headbake.calibrate.heatmap import format_table, plot_heatmap

    doc = load_gains(gains_file)
    if other is not None:
        result = compare_calibrations(doc, load_gains(other))
        if as_json:
            emit_json(result)
        else:
            click.echo(format_comparison(result, Path(gains_file).name, Path(other).name))
        return
    if as_json:
        emit_json({k: doc.get(k) for k in ("num_layers", "num_heads", "selected", "counts", "preset", "samples",
                                            "stability", "warnings", "gains")})
        no_png = True
    else:
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
@out_option("Merged gains file to write.")
@click.option("--preset", help="Re-select with this preset (default: the first file's).")
def merge_cmd(parts, out, preset):
    """Combine calibrations of the same model run on separate workers or machines, exactly.

    The per-head statistics merge as if one run had seen every sample; heads
    are then selected again from the merged S_v.
    """
    from headbake.calibrate.merge import merge_documents

    docs = [read_json(Path(p), "gains file", strict=True, allow_nan=True) for p in parts]
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
