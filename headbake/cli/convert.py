"""``headbake convert``: the one command most users run."""

from __future__ import annotations

from pathlib import Path

import click

from headbake.cli.main import emit_json
from headbake.cli.options import (calibration_fields, calibration_options, json_option, out_option, quiet_option,
                                  revision_option)


@click.command("convert")
@click.argument("model")
@out_option("Output directory [default: ./NAME-headbake, NAME being the model's last path or id component].",
            required=False, dir_okay=True, file_okay=False)
@revision_option
@calibration_options
@click.option("--gains", "gains_file", type=click.Path(path_type=Path, exists=False),
              help="Skip calibration and bake these gains (a heads.json, a baked directory or its headbake.json).")
@click.option("--verify", "verify_mode", type=click.Choice(["full", "tensors", "none"]), default="full",
              show_default=True,
              help="full: exact tensors + hooked-vs-baked logits; tensors: exact tensor check only (no model load); "
                   "none: skip (the card says the bake is unverified).")
@click.option("--verify-samples", default=4, show_default=True, type=click.IntRange(min=1),
              help="Image+text inputs for the model-level check.")
@click.option("--eval-data", type=click.Path(path_type=Path, dir_okay=False),
              help="JSONL rows (as for `headbake eval --data`): after verify, evaluate the original against the bake "
                   "and put the results table in the card and model-index in its YAML.")
@click.option("--eval-mode", type=click.Choice(["forced", "generate"]), default="forced", show_default=True,
              help="With --eval-data: forced (first-token option scores, seconds) or generate (greedy answers).")
@click.option("--eval-max-new-tokens", type=click.IntRange(min=1), default=2048, show_default=True,
              help="With --eval-data --eval-mode generate: generation budget per answer.")
@click.option("--push-to-hub", "push_to_hub", metavar="REPO_ID", help="Upload the result to this Hub repo.")
@click.option("--private", is_flag=True, help="Create the Hub repo private.")
@click.option("--branch", help="Push to this branch (created if missing).")
@click.option("--create-pr", is_flag=True, help="Open a pull request instead of committing to main.")
@click.option("--endpoint", help="Hub endpoint [default: $HF_ENDPOINT or huggingface.co].")
@click.option("--overwrite", is_flag=True, help="Replace an existing, different output directory.")
@click.option("--dry-run", is_flag=True, help="Print what would happen (model, stages cached, memory) and do nothing.")
@quiet_option
@json_option
def convert_cmd(model, out, revision, gains_file, verify_mode, verify_samples, eval_data, eval_mode, eval_max_new_tokens,
                push_to_hub, private, branch, create_pr, endpoint, overwrite, dry_run, quiet, as_json, **kw):
    """Calibrate, bake, verify, card and (optionally) push MODEL in one go.

    MODEL is an alias (`headbake models`; `demo` is a tiny model built
    locally), a Hub id (namespace/name) or a local checkpoint directory.
    Re-running with the same inputs reuses every finished stage.

    \b
    Example:
      headbake convert Ocean-R1 --out Ocean-R1-headbake \\
          --push-to-hub you/Ocean-R1-headbake
    """
    from headbake.pipeline import ConvertSettings, convert, dry_run as plan

    if out is None:
        out = Path(f"{Path(model.rstrip('/')).name}-headbake")
    settings = ConvertSettings(
        model=model, out=out, revision=revision, calibration=calibration_fields(kw), gains_file=gains_file,
        verify=verify_mode, verify_samples=verify_samples, push_to_hub=push_to_hub, private=private, branch=branch,
        create_pr=create_pr, endpoint=endpoint, overwrite=overwrite, progress=not quiet, eval_data=eval_data,
        eval_mode=eval_mode, eval_max_new_tokens=eval_max_new_tokens,
    )
    if dry_run:
        doc = plan(settings)
        if as_json:
            emit_json(doc)
        else:
            for line in doc["lines"]:
                click.echo(line)
        return
    res = convert(settings)
    rec = res["record"]
    for w in res["warnings"]:
        click.echo(f"Warning: {w}", err=True)
    if as_json:
        emit_json({k: v for k, v in res.items() if k != "record"} | {"record": rec.to_dict()})
        return
    counts = rec.gains.get("counts") or {}
    ver = (rec.verification or {}).get("model") or {}
    click.echo(f"{'up to date' if res['reused'] else 'converted'}: {res['out']} ({res['seconds']:.1f} s)")
    if counts:
        click.echo(f"  heads: {counts.get('perceptual', 0)} perceptual, {counts.get('reasoning', 0)} reasoning "
                   f"of {counts.get('total_heads', '?')} ({100 * counts.get('share', 0):.1f}%)")
    if ver:
        click.echo(f"  verify: baked vs hooked max|dlogit| {ver['max_abs_logit']:.3g}, KL max {ver['kl_max']:.3g}, "
                   f"top-1 {ver['top1_agreement']:.1%}; effect vs original max|dlogit| "
                   f"{ver['effect']['max_abs_logit']:.3g}")
    elif rec.verification:
        click.echo("  verify: tensors only (exact)")
    else:
        click.echo("  verify: skipped (--verify none); the card says the bake is unverified")
    if rec.evaluation:
        from headbake.evaluate.report import headline

        click.echo(f"  eval ({rec.evaluation.get('mode')}, {rec.evaluation.get('rows')} rows): "
                   f"{headline(rec.evaluation)}")
    if "push" in res:
        p = res["push"]
        click.echo(f"  pushed: {p['pr_url'] or p['url']}" + (" (no changes)" if p["no_op"] else ""))


COMMANDS = [convert_cmd]
