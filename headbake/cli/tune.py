"""``headbake tune``: choose the selection values on dev rows, check them on held-out rows."""

from __future__ import annotations

from pathlib import Path

import click

from headbake.cli.main import emit_json
from headbake.cli.options import device_options, json_option, out_option, quiet_option, revision_option
from headbake.errors import INTERRUPTED


@click.command("tune")
@click.argument("model", metavar="MODEL")
@out_option("Preset file to write (tuned.json), for `calibrate`/`convert`/`bake --preset-file`.")
@click.option("--dev", type=click.Path(dir_okay=False), help="Dev rows: JSONL in `headbake eval`'s format.")
@click.option("--recipe", help="Dev rows from a benchmark recipe instead (mathvista-testmini, pope, ...).")
@click.option("--dataset", help="With --recipe: another Hub id or a local copy saved with `datasets`.")
@click.option("--split", help="With --recipe: the split [default: the recipe's].")
@click.option("--config", "config_name", help="With --recipe: the dataset config [default: the recipe's].")
@click.option("--limit", type=click.IntRange(min=1), help="Use only the first N dev rows.")
@click.option("--holdout", type=click.Path(dir_okay=False),
              help="Held-out rows (JSONL) for the final check; must share no row with the dev rows.")
@click.option("--holdout-fraction", type=click.FloatRange(0, 1, max_open=True),
              help="Hold this share of the dev rows out instead (seeded; 0: no held-out check) [default: 0.3].")
@click.option("--trials", default=100, show_default=True, type=click.IntRange(min=1),
              help="Evaluated trials the study should hold: a total, so a rerun continues up to it (draws that "
                   "are infeasible or repeat an evaluated setting cost nothing and do not count).")
@click.option("--objective", type=click.Choice(["forced", "generate"]), default="forced", show_default=True,
              help="Dev accuracy by the forced-answer proxy (one forward pass per row) or by greedy generation.")
@click.option("--sampler", type=click.Choice(["tpe", "nsga2"]), default="tpe", show_default=True,
              help="Optuna's multi-objective sampler.")
@click.option("--kl-budget", type=click.FloatRange(min=0), metavar="NATS",
              help="Choose the most accurate trial with KL from the original at most this [default: the most "
                   "accurate trial of the Pareto front; ties to the lower KL].")
@click.option("--max-share", default=0.18, show_default=True, type=click.FloatRange(0, 1, min_open=True),
              help="Most heads a setting may rescale, as a share of all heads (the paper saw ~18% degrade).")
@click.option("--max-gain", default=1.5, show_default=True, type=click.FloatRange(min=1.0, min_open=True),
              help="Largest gain searched (gains run from 1.0, which switches a class off).")
@click.option("--gain-step", default=0.05, show_default=True, type=click.FloatRange(min=0, min_open=True),
              help="Grid step of the searched gains.")
@click.option("--storage", type=click.Path(dir_okay=False),
              help="Optuna journal file; the same file resumes the study or shares it between machines "
                   "[default: OUT's name + .optuna-journal.log, beside OUT].")
@click.option("--png", type=click.Path(dir_okay=False),
              help="Pareto-front plot [default: OUT's name + _front.png, beside OUT].")
@click.option("--seed", default=0, show_default=True, type=int, help="Seeds the sampler and the held-out split.")
@click.option("--data", type=click.Path(dir_okay=False),
              help='Calibration JSONL ({"image", "question"}) for S_v [default: the embedded set].')
@click.option("--samples", type=click.IntRange(min=1), help="Calibration samples (embedded set: default 64).")
@click.option("--query", type=click.Choice(["last", "last-k", "generated-k"]), default="last", show_default=True,
              help="Query position i* for S_v (as in `headbake calibrate`).")
@click.option("--k", type=click.IntRange(min=1), help="Positions to average for last-k / generated-k.")
@click.option("--prompt-template", type=click.Path(dir_okay=False),
              help="User message with one {question} slot (.txt) or JSON {\"user\", \"system\"}, for calibration "
                   "and the dev prompts [default: the model's own].")
@click.option("--visual-token-id", "visual_token_ids", type=int, multiple=True,
              help="Override the image/video placeholder token ids (repeatable).")
@click.option("--batch-size", default=8, show_default=True, type=click.IntRange(min=1),
              help="Rows (and calibration samples) per forward pass.")
@click.option("--max-new-tokens", default=2048, show_default=True, type=click.IntRange(min=1),
              help="With --objective generate: most tokens generated per row.")
@click.option("--answer-prefix", default="Answer:", show_default=True,
              help="Forced proxy: text appended after the prompt (and a closed reasoning block).")
@click.option("--dtype", type=click.Choice(["auto", "float32", "bfloat16", "float16"]), default="auto",
              show_default=True, help="The checkpoint's dtype (auto), or another.")
@device_options
@click.option("--trust-remote-code", is_flag=True, help="Allow the checkpoint's own Python code (Kimi-VL needs it).")
@revision_option
@quiet_option
@json_option
@click.pass_context
def tune_cmd(ctx, model, out, dev, recipe, dataset, split, config_name, limit, holdout, holdout_fraction, trials,
             objective, sampler, kl_budget, max_share, max_gain, gain_step, storage, png, seed, data, samples, query,
             k, prompt_template, visual_token_ids, batch_size, max_new_tokens, answer_prefix, dtype, device,
             device_map, trust_remote_code, revision, quiet, as_json):
    """Search the selection values (layer bounds, thresholds, gains) on dev rows, with a held-out check.

    S_v is measured once; every trial re-applies the paper's rule to it and
    hooks the gains into the one loaded model, scoring dev accuracy against
    the KL divergence from the original model (Optuna, multi-objective,
    seeded). The study lives in a journal file, so an interrupted run
    continues where it stopped and several machines can share it.

    Writes OUT (a preset file: `headbake convert MODEL --preset-file OUT`,
    `calibrate --preset-file`, `bake --preset-file`), the Pareto-front plot,
    and the held-out report: the chosen setting against the original model
    and the default preset on rows the search never saw.

    MODEL is a checkpoint directory, an alias (`headbake models`) or a Hub id.
    """
    from headbake.fsutil import ensure_writable
    from headbake.hub import resolve_model
    from headbake.tuning.run import TuneOptions, check_options, tune

    opts = dict(out=str(out), dev=dev, recipe=recipe, dataset=dataset, split=split, config=config_name, limit=limit,
                holdout=holdout, holdout_fraction=holdout_fraction, trials=trials, objective=objective,
                sampler=sampler, kl_budget=kl_budget, max_share=max_share, max_gain=max_gain, gain_step=gain_step,
                storage=storage, png=png, seed=seed, data=data, samples=samples, query=query, k=k,
                prompt_template=prompt_template,
                visual_token_ids=tuple(visual_token_ids), batch_size=batch_size, max_new_tokens=max_new_tokens,
                answer_prefix=answer_prefix, dtype=dtype, device=device, device_map=device_map,
                trust_remote_code=trust_remote_code, progress=not quiet)
    check_options(TuneOptions(model=model, **opts))  # before a Hub download, not after
    ensure_writable(out, "--out")
    resolved = resolve_model(model, revision=revision, progress=not quiet, trust_remote_code=trust_remote_code or None)
    o = TuneOptions(model=str(resolved.path), source=resolved.source(), **opts)
    try:
        res = tune(o)
    except KeyboardInterrupt:
        click.echo(f"Interrupted; the finished trials are kept in {o.storage_path}: run the same command again "
                   "to continue.", err=True)
        ctx.exit(INTERRUPTED)
    for w in res["warnings"]:
        click.echo(f"Warning: {w}", err=True)
    if as_json:
        emit_json({k: v for k, v in res.items() if k != "table"})
        return
    from headbake.tuning.holdout import format_summary

    t = res["timings"]
    click.echo(f"{res['evaluated']} trials evaluated in the study ({t['trials_run']} drawn by this run; "
               f"{res['pruned']} draws in all were infeasible or repeated an evaluated setting: pruned, not counted); "
               "S_v " + ("measured once" if t["calibrated"] else "read back from the study"))
    click.echo(res["table"])
    c = res["chosen"]
    click.echo(f"chosen: trial {c['trial']} ({res['rule']}): dev {c['correct']}/{c['n']}, KL {c['kl']:.3g}")
    if res["holdout"]:
        for line in format_summary(res["holdout"]):
            click.echo(line)
    else:
        click.echo("no held-out check (--holdout-fraction 0)")
    wrote = [res["out"], res["png"]] + ([res["holdout_report"]] if res["holdout_report"] else [])
    click.echo(f"wrote {', '.join(wrote)}; study in {res['storage']}")
    name = Path(res["out"]).name
    click.echo(f"next: headbake convert {model} --preset-file {name}   (or: headbake bake {model} --preset-file "
               f"{name} -o OUT)")


COMMANDS = [tune_cmd]
