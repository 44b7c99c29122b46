"""``models``, ``card`` and ``push``: name, describe and publish."""

from __future__ import annotations

from pathlib import Path

import click

from headbake.cli.main import emit_json
from headbake.cli.options import json_option
from headbake.errors import HeadbakeError
from headbake.record import RECORD, has_record, read_record, write_record


@click.command("models")
@json_option
def models_cmd(as_json: bool):
    """List the model aliases, their Hub repos and architectures.

    Any Hub id (namespace/name) or local checkpoint directory works as MODEL
    too; aliases are matched case-insensitively.
    """
    from headbake.hub import alias_table

    rows = alias_table()
    if as_json:
        emit_json(rows)
        return
    head = ["ALIAS", "REPO", "ARCHITECTURE", "CACHED", "NOTE"]
    table = [[r["alias"], r["repo"], f"{r['family']} ({r['model_type']})", "yes" if r["cached"] else "no", r["note"]]
             for r in rows]
    widths = [max(len(str(x)) for x in col) for col in zip(head, *table)]
    for line in [head, *table]:
        click.echo("  ".join(str(x).ljust(w) for x, w in zip(line, widths)).rstrip())


@click.command("card")
@click.argument("directory", type=click.Path(file_okay=False, path_type=Path))
@click.option("--repo-id", help="Hub id to show in the usage snippet (default: the folder name).")
@click.option("--command", "reproduce", help="The command to show under 'Reproduce' (default: from headbake.json).")
@click.option("--license", "license_", help="License of the base model (default: from headbake.json, if known).")
@click.option("--eval", "eval_report", type=click.Path(path_type=Path, dir_okay=False),
              help="A `headbake eval` report whose baked arm is DIRECTORY: its results table goes into the card, "
                   "model-index results into its YAML, and its summary (no rows, no paths) into headbake.json.")
def card_cmd(directory: Path, repo_id: str | None, reproduce: str | None, license_: str | None,
             eval_report: Path | None):
    """Render DIRECTORY/README.md (the model card) from DIRECTORY/headbake.json."""
    from headbake.model_cards.render import render_card

    if not directory.is_dir():
        raise HeadbakeError(f"directory not found: {directory}")
    if not has_record(directory):
        raise HeadbakeError(f"{directory} has no {RECORD}; a card is rendered from a baked directory")
    rec = read_record(directory)
    if eval_report is not None:
        from headbake.evaluate.report import attach_to_record

        attach_to_record(rec, eval_report, directory)
        write_record(directory, rec)
    render_card(directory, rec, command=reproduce, repo_id=repo_id, license=license_)
    click.echo(f"Wrote {directory / 'README.md'}")
    if eval_report is not None:
        from headbake.evaluate.report import headline

        click.echo(f"  evaluation: {headline(rec.evaluation)}")


@click.command("push")
@click.argument("directory", type=click.Path(file_okay=False, path_type=Path))
@click.argument("repo_id")
@click.option("--private", is_flag=True, help="Create the repo private (an existing public repo is refused).")
@click.option("--branch", metavar="NAME", help="Commit to this branch (created from main if missing).")
@click.option("--create-pr", is_flag=True, help="Open a pull request against main instead of committing to it.")
@click.option("--endpoint", metavar="URL", envvar="HF_ENDPOINT", show_envvar=True,
              help="Hub endpoint (default: https://huggingface.co).")
@click.option("--message", "-m", metavar="TEXT", help="Commit message (default: names the source model).")
@click.option("--allow-unbaked", is_flag=True, help="Push a folder that has no headbake.json.")
@click.option("--force", is_flag=True, help="Push even though headbake.json records a failed verification.")
def push_cmd(directory: Path, repo_id: str, private: bool, branch: str | None, create_pr: bool,
             endpoint: str | None, message: str | None, allow_unbaked: bool, force: bool):
    """Upload a baked DIRECTORY to the Hub repo REPO_ID in one commit.

    \b
    The repo is created if needed. Weights, headbake.json and the README.md card
    go up together, so the repo never shows one without the others; pushing the
    same content again changes nothing. The token comes from HF_TOKEN or your
    stored login (`hf auth login`) and is never printed.
    """
    from headbake.hub import publish

    res, warnings, card_updated = publish(directory, repo_id, private=private, branch=branch, create_pr=create_pr,
                                          endpoint=endpoint, commit_message=message, allow_unbaked=allow_unbaked,
                                          force=force)
    for w in warnings:
        click.echo(f"Warning: {w}", err=True)
    if card_updated:
        click.echo(f"Updated README.md: its usage snippet now names {repo_id}", err=True)
    where = f"{repo_id}@{branch}" if branch else repo_id
    short = (res.commit_oid or "")[:10]
    if res.no_op:
        click.echo(f"Nothing to push: {where} already holds these {res.files_total} files (commit {short}).")
    elif res.pr_url:
        click.echo(f"Opened pull request {res.pr_url} ({_files(res)}, commit {short}).")
    else:
        click.echo(f"Pushed {_files(res)} to {res.url} (commit {short}).")


def _files(res) -> str:
    if res.files_uploaded is None:
        return f"{res.files_total} files"
    return f"{res.files_uploaded} of {res.files_total} files changed"


COMMANDS: list[click.Command] = [models_cmd, card_cmd, push_cmd]
