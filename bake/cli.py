"""CLI commands of the bake half: ``bake`` and ``verify``."""

from __future__ import annotations

import json
from pathlib import Path

import click

_dir = click.Path(path_type=Path, file_okay=False)


@click.command()
@click.argument("src")
@click.option("--gains", "gains_file", required=True, type=click.Path(path_type=Path),
              help="headbake.gains/v1 file (from `headbake calibrate` or written by hand).")
@click.option("--out", required=True, type=_dir, help="Output directory (created; must not exist unless --overwrite).")
@click.option("--overwrite", is_flag=True, help="Replace an existing non-empty output directory.")
@click.option("--force", is_flag=True, help="Bake a source that is itself a headbake output (gains compound).")
@click.option("--checksums", is_flag=True,
              help="Also record sha256 of every weight shard (reads all bytes twice; `verify` records them anyway).")
@click.option("--quiet", "-q", is_flag=True, help="No progress bar.")
def bake(src, gains_file, out, overwrite, force, checksums, quiet):
    """Fold per-head gains into the o_proj columns of checkpoint SRC, writing OUT.

    SRC is a checkpoint directory, an alias (`headbake models`) or a Hub id.

    Streams shard by shard: OUT has SRC's exact files and shard layout, every
    tensor byte-identical except the edited o_proj weights, plus headbake.json.
    SRC is never modified and OUT appears only when complete.
    """
    from headbake.bake.bake import bake_checkpoint
    from headbake.bake.output_dir import check_target
    from headbake.gains import load_gains
    from headbake.hub import resolve_model

    load_gains(gains_file)  # a bad gains file or --out fails before any download
    check_target(out, overwrite)
    resolved = resolve_model(src, progress=not quiet)
    res = bake_checkpoint(resolved.path, gains_file, out, overwrite=overwrite, force=force, checksums=checksums,
                          progress=not quiet, source=resolved.source())
    how = ", ".join(f"{n} by {m}" for m, n in sorted(res.copy_methods.items()))
    click.echo(f"baked {res.edited_heads} heads in {res.edited_tensors} o_proj tensors -> {res.out} "
               f"({res.seconds:.1f} s; files copied: {how})")


@click.command()
@click.argument("src")
@click.argument("baked", type=click.Path(path_type=Path))
@click.option("--gains", "gains_file", type=click.Path(path_type=Path),
              help="Gains to check against (default: the ones recorded in BAKED/headbake.json).")
@click.option("--tensors-only", is_flag=True, help="Skip the model-level check (no model is loaded).")
@click.option("--samples", default=4, show_default=True, type=click.IntRange(min=1),
              help="Image+text inputs for the model-level check.")
@click.option("--new-tokens", default=8, show_default=True, type=click.IntRange(min=1),
              help="Greedy tokens compared per input.")
@click.option("--device", default="auto", show_default=True, help="cpu, cuda, cuda:1, ... or auto.")
@click.option("--device-map", default=None, help="Passed to from_pretrained (e.g. auto) for models larger than one device.")
@click.option("--trust-remote-code", is_flag=True, help="Allow the checkpoint's own Python code (needed for Kimi-VL).")
@click.option("--report", type=click.Path(path_type=Path, dir_okay=False), help="Write the full report as JSON.")
@click.option("--record", is_flag=True, help="Store the figures and file sha256s in BAKED/headbake.json.")
@click.option("--quiet", "-q", is_flag=True, help="No progress bars.")
def verify(src, baked, gains_file, tensors_only, samples, new_tokens, device, device_map, trust_remote_code,
           report, record, quiet):
    """Check BAKED against SRC: exact tensor comparison, then hooked SRC vs plain BAKED logits.

    SRC is the checkpoint directory, alias or Hub id that was baked.

    Exit 0 when both levels pass, 1 when either fails.
    """
    from headbake.bake.verify import run_verify
    from headbake.hub import resolve_model

    if report:
        from headbake.fsutil import ensure_writable

        ensure_writable(report, "--report")
    src = resolve_model(src, progress=not quiet).path
    res = run_verify(src, baked, gains_file=gains_file, tensors_only=tensors_only, samples=samples,
                     new_tokens=new_tokens, device=device, device_map=device_map,
                     trust_remote_code=trust_remote_code, progress=not quiet, record=record)
    for line in res["summary"]:
        click.echo(line)
    if report:
        from headbake.gains import write_json_atomic

        write_json_atomic(report, res)
    click.echo("PASS" if res["passed"] else "FAIL")
    raise SystemExit(0 if res["passed"] else 1)


COMMANDS = [bake, verify]
