"""``headbake eval``: paired A/B evidence that a bake changes answers, and by how much."""

from __future__ import annotations

from pathlib import Path

import click

from headbake.cli.main import emit_json
from headbake.cli.options import device_options, json_option, out_option, quiet_option, revision_option
from headbake.errors import INTERRUPTED, HeadbakeError

ARM_HELP = ("Comma-separated arms. vanilla: MODEL as is; baked: --baked loaded by plain "
            "transformers; hooked: MODEL with the static gains through the runtime hook (must agree with baked); "
            "per-input: the paper's per-input plug-in with the model's preset.")
RECIPE_NAMES = ("mathvista-testmini", "mathvision-testmini", "hallusionbench", "mmstar", "seed-bench-image", "pope")
ANSWER_TYPES = ("multiple_choice", "yes_no", "number", "free")
OVERRIDES = (("l_perc", int, "last decoder layer (0-based) for perceptual heads"),
             ("l_reas", int, "first decoder layer (0-based) for reasoning heads"),
             ("tau_perc", float, "perceptual heads need S_v >= tau_perc"),
             ("tau_reas", float, "reasoning heads need S_v <= tau_reas"),
             ("g_perc", float, "gain of perceptual heads"),
             ("g_reas", float, "gain of reasoning heads"))
COLUMNS = ("image_column", "question_column", "answer_column", "choices_column", "type_column", "id_column",
           "answer_type", "benchmark")


def _override_options(fn):
    for name, typ, text in reversed(OVERRIDES):
        fn = click.option("--" + name.replace("_", "-"), name, type=typ, help=f"Per-input arm override: {text}.")(fn)
    return fn


def _column_options(fn):
    specs = [
        ("--image-column", "Column holding the image(s) [default: image]."),
        ("--question-column", "Column holding the question [default: question]."),
        ("--answer-column", "Column holding the gold answer [default: answer]."),
        ("--choices-column", "Column holding a list of options (multiple choice)."),
        ("--type-column", "Column naming each row's answer type (or give --answer-type)."),
        ("--id-column", "Column holding row ids [default: the row index]."),
    ]
    fn = click.option("--benchmark", metavar="NAME",
                      help="Benchmark name for the rows of a mapped --dataset (per-benchmark statistics, card).")(fn)
    fn = click.option("--answer-type", type=click.Choice(ANSWER_TYPES),
                      help="One answer type for every row of a mapped --dataset (or give --type-column).")(fn)
    for flag, text in reversed(specs):
        fn = click.option(flag, metavar="COL", help=f"--dataset without --recipe: {text}")(fn)
    return fn


@click.command("eval")
@click.argument("model")
@out_option("Report to write (report.json: every row of every arm, statistics, settings, versions).")
@click.option("--baked", type=click.Path(path_type=Path, file_okay=False),
              help="Baked directory (from `headbake bake` or `convert`): the baked arm, and the hooked arm's gains "
                   "unless --gains is given.")
@click.option("--gains", "gains_file", type=click.Path(path_type=Path),
              help="Gains for the hooked arm (heads.json, a baked directory or its headbake.json).")
@click.option("--arms", default="vanilla,baked", show_default=True, metavar="LIST", help=ARM_HELP)
@click.option("--data", type=click.Path(path_type=Path, dir_okay=False),
              help='JSONL rows {"id", "image": path | [paths], "question", "answer", "type", "choices"?, '
                   '"benchmark"?}; images relative to the file.')
@click.option("--recipe", type=click.Choice(RECIPE_NAMES),
              help="A benchmark recipe (column mapping and answer types); its Hub dataset unless --dataset names "
                   "another id or a folder saved with `datasets`.")
@click.option("--dataset", metavar="NAME_OR_DIR",
              help="Hugging Face dataset id or a local folder saved with save_to_disk (needs the 'datasets' extra).")
@click.option("--split", help="Dataset split [default: the recipe's, else test].")
@click.option("--config", "config_name", metavar="NAME", help="Dataset configuration [default: the recipe's].")
@_column_options
@click.option("--limit", type=click.IntRange(min=1), help="Evaluate only the first N rows (all are checked).")
@click.option("--mode", type=click.Choice(["generate", "forced", "both"]), default="generate", show_default=True,
              help="generate: greedy answers, graded by the scorer; forced: multiple-choice and yes/no rows scored "
                   "by the options' first-token probabilities after 'Answer:' (seconds, not minutes); both: the two, "
                   "with their agreement. forced also reports its agreement with cached generate results.")
@click.option("--max-new-tokens", type=click.IntRange(min=1), default=2048, show_default=True,
              help="Generation budget per answer (reasoning models write thousands of tokens).")
@click.option("--batch-size", type=click.IntRange(min=1), default=8, show_default=True,
              help="Rows per batch (left-padded; the same batches for every arm).")
@device_options
@click.option("--dtype", type=click.Choice(["auto", "float32", "bfloat16", "float16"]), default="auto",
              show_default=True, help="Load dtype (auto: the checkpoint's).")
@click.option("--engine", type=click.Choice(["transformers", "vllm"]), default="transformers", show_default=True,
              help="vllm: generate the vanilla and baked arms with vLLM (needs vLLM installed and a CUDA GPU; the "
                   "hooked and per-input arms need transformers).")
@click.option("--prompt-template", type=click.Path(path_type=Path, dir_okay=False),
              help="User message with one {question} slot (.txt) or JSON {\"user\", \"system\"} [default: the "
                   "model's own prompt, as in calibration].")
@click.option("--preset", default="default", show_default=True,
              help="Per-input arm: selection preset (see `headbake presets`; default: the model's own).")
@_override_options
@click.option("--query", type=click.Choice(["last", "last-k"]), default="last", show_default=True,
              help="Per-input arm: prompt position(s) whose S_v selects the heads.")
@click.option("--k", "k", type=click.IntRange(min=1), help="Per-input arm: positions to average for --query last-k.")
@click.option("--cache", type=click.Path(path_type=Path, dir_okay=False),
              help="Per-row results, appended as rows finish; a rerun continues from it [default: beside --out, "
                   "REPORT.cache.jsonl].")
@click.option("--seed", type=click.IntRange(min=0), default=0, show_default=True, help="Paired-bootstrap seed.")
@click.option("--resamples", type=click.IntRange(min=100), default=10_000, show_default=True,
              help="Paired-bootstrap resamples.")
@revision_option
@click.option("--trust-remote-code", is_flag=True, help="Allow the checkpoint's own Python code (Kimi-VL needs it).")
@quiet_option
@json_option
@click.pass_context
def eval_cmd(ctx, model, out, baked, gains_file, arms, data, recipe, dataset, split, config_name, limit, mode,
             max_new_tokens, batch_size, device, device_map, dtype, engine, prompt_template, preset, query, k, cache,
             seed, resamples, revision, trust_remote_code, quiet, as_json, **kw):
    """Evaluate MODEL and its bake on the same rows: accuracy per arm and paired tests against vanilla.

    MODEL is an alias (`headbake models`), a Hub id or a checkpoint directory.
    Every check (flags, arms, every data row, settings, vLLM) runs before any
    model is loaded. Each arm answers identical prompts (the model's own
    template), greedily; answers are graded deterministically, and each arm is
    compared with vanilla on the same rows (paired bootstrap interval, exact
    McNemar test), saying plainly when a difference is within noise. Finished
    rows are cached, so an interrupted run continues where it stopped.

    \b
    Examples:
      headbake eval Ocean-R1 --baked Ocean-R1-headbake --recipe mmstar -o mmstar.json
      headbake eval demo --baked demo-headbake --data rows.jsonl --mode forced \\
          --arms vanilla,baked,hooked,per-input -o report.json
    """
    from headbake.evaluate.evaluation import EvalRequest, default_cache, prepare, run
    from headbake.evaluate.recipes import ColumnMap
    from headbake.evaluate.report import evaluation_summary, render_table

    overrides = {name: kw.pop(name) for name, _, _ in OVERRIDES}
    cols = {name: kw.pop(name) for name in COLUMNS}
    columns = None
    if any(v is not None for v in cols.values()):
        if not dataset or recipe:
            given = next("--" + n.replace("_", "-") for n, v in cols.items() if v is not None)
            raise HeadbakeError(f"{given} applies to --dataset without --recipe (a recipe states its own columns)")
        columns = ColumnMap(image=cols["image_column"] or "image", question=cols["question_column"] or "question",
                            answer=cols["answer_column"] or "answer", choices=cols["choices_column"],
                            type=cols["type_column"], answer_type=cols["answer_type"], id=cols["id_column"],
                            benchmark=cols["benchmark"])
    elif dataset and not recipe:
        raise HeadbakeError("--dataset without --recipe needs --answer-type (or --type-column) and, where the "
                            "columns are not image/question/answer, the column options")
    req = EvalRequest(
        model=model, out=out, baked=baked, gains=gains_file, arms=arms, data=data, recipe=recipe, dataset=dataset,
        split=split, config=config_name, columns=columns, limit=limit, mode=mode, max_new_tokens=max_new_tokens,
        batch_size=batch_size, device=device, device_map=device_map, dtype=dtype, engine=engine,
        prompt_template=prompt_template, preset=preset, overrides={k_: v for k_, v in overrides.items()
                                                                   if v is not None},
        query=query, k=k, cache=cache, seed=seed, resamples=resamples, revision=revision,
        trust_remote_code=trust_remote_code, progress=not quiet,
    )
    plan = prepare(req)
    for w in plan.warnings:
        click.echo(f"Warning: {w}", err=True)
    cache_path = cache or default_cache(out)
    try:
        report = run(plan)
    except KeyboardInterrupt:
        kept = len(plan.cache)
        click.echo(f"Interrupted: {kept} finished row results are kept in {cache_path}; run the same command "
                   "again to continue from them.", err=True)
        ctx.exit(INTERRUPTED)
    if as_json:
        emit_json({"out": str(out), "cache": str(cache_path), **evaluation_summary(report)})
        return
    click.echo(render_table(report), nl=False)
    click.echo(f"wrote {out} (row cache: {cache_path})")


COMMANDS = [eval_cmd]
