"""``headbake convert``: the one command most users run."""

from __future__ import annotations

import sys
from pathlib import Path

import click

from headbake.calibrate.cli import calibration_fields, calibration_options


@click.command("convert")
@click.argument("model")
@click.option("--out", type=click.Path(path_type=Path, file_okay=False),
              help="Output directory [default: ./NAME-headbake].")
@click.option("--revision", help="Hub branch, tag or commit to convert.")
@calibration_options
@click.option("--verify-samples", default=4, show_default=True, help="Image+text inputs for the model-level check.")
@click.option("--push-to-hub", "push_to_hub", metavar="REPO_ID", help="Upload the result to this Hub repo.")
@click.option("--private", is_flag=True, help="Create the Hub repo private.")
@click.option("--branch", help="Push to this branch (created if missing).")
@click.option("--create-pr", is_flag=True, help="Open a pull request instead of committing to main.")
@click.option("--endpoint", help="Hub endpoint [default: $HF_ENDPOINT or huggingface.co].")
@click.option("--overwrite", is_flag=True, help="Replace an existing, different output directory.")
@click.option("--quiet", "-q", is_flag=True, help="No progress display.")
def convert_cmd(model, out, revision, verify_samples, push_to_hub, private, branch, create_pr, endpoint, overwrite,
                quiet, **kw):
    """Calibrate, bake, verify, card and (optionally) push MODEL in one go.

    MODEL is an alias (`headbake models`; `demo` is a tiny model built
    locally), a Hub id (namespace/name) or a local checkpoint directory.
    Re-running with the same inputs reuses every finished stage.

    \b
    Example:
      headbake convert Ocean-R1 --preset default --out Ocean-R1-headbake \\
          --push-to-hub you/Ocean-R1-headbake
    """
    from headbake.convert import convert, reproduce_command

    if out is None:
        out = Path(f"{Path(model.rstrip('/')).name}-headbake")
    calibration = calibration_fields(kw)
    argv = sys.argv[1:] if sys.argv and sys.argv[0].endswith("headbake") else ["convert", model]
    res = convert(
        model, out, calibration=calibration, revision=revision, verify_samples=verify_samples,
        push_to_hub=push_to_hub, private=private, branch=branch, create_pr=create_pr, endpoint=endpoint,
        overwrite=overwrite, command=reproduce_command([a for a in argv if a not in ("-q", "--quiet")]),
        progress=not quiet,
    )
    rec = res["record"]
    g = rec.get("gains", {})
    counts = g.get("counts") or {}
    ver = (rec.get("verification") or {}).get("model") or {}
    click.echo(f"{'up to date' if res['reused'] else 'converted'}: {res['out']} ({res['seconds']:.1f} s)")
    if counts:
        click.echo(f"  heads: {counts.get('perceptual', 0)} perceptual, {counts.get('reasoning', 0)} reasoning "
                   f"of {counts.get('total_heads', '?')} ({100 * counts.get('share', 0):.1f}%)")
    if ver:
        click.echo(f"  verify: baked vs hooked max|dlogit| {ver['max_abs_logit']:.3g}, KL max {ver['kl_max']:.3g}, "
                   f"top-1 {ver['top1_agreement']:.1%}; effect vs original max|dlogit| "
                   f"{ver['effect']['max_abs_logit']:.3g}")
    for w in g.get("warnings") or []:
        click.echo(f"  warning: {w}")
    if "push" in res:
        p = res["push"]
        click.echo(f"  pushed: {p['pr_url'] or p['url']}" + (" (no changes)" if p["no_op"] else ""))


COMMANDS = [convert_cmd]
