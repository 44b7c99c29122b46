"""``bake`` and ``verify``: fold the gains into a copy, and prove the copy right."""

from __future__ import annotations

from pathlib import Path

import click

from headbake.bake.output_dir import check_target
from headbake.cli.main import emit_json
from headbake.cli.options import device_options, json_option, out_option, quiet_option, revision_option
from headbake.errors import CHECK_FAILED, HeadbakeError
from headbake.fsutil import ensure_writable, write_json_atomic
from headbake.gains import load_gains


@click.command()
@click.argument("src")
@click.option("--gains", "gains_file", type=click.Path(path_type=Path),
              help="headbake.gains/v1 file (from `headbake calibrate` or written by hand).")
@click.option("--preset-file", type=click.Path(path_type=Path, dir_okay=False),
              help="Bake the gains a `headbake tune` preset file carries (instead of --gains).")
@out_option("Output directory (created; must not exist unless --overwrite).", dir_okay=True, file_okay=False)
@revision_option
@click.option("--overwrite", is_flag=True, help="Replace an existing non-empty output directory.")
@click.option("--force", is_flag=True, help="Bake a source that is itself a headbake output (gains compound).")
@click.option("--checksums", is_flag=True,
              help="Also record sha256 of every weight shard (reads all bytes twice; `verify` records them anyway).")
@quiet_option
def bake(src, gains_file, preset_file, out, revision, overwrite, force, checksums, quiet):
    """Fold per-head gains into the o_proj columns of checkpoint SRC, writing OUT.

    SRC is a checkpoint directory, an alias (`headbake models`) or a Hub id.

    Streams shard by shard: OUT has SRC's exact files and shard layout, every
    tensor byte-identical except the edited o_proj weights, plus headbake.json.
    SRC is never modified and OUT appears only when complete.
    """
    from headbake.bake.writer import bake_checkpoint
    from headbake.hub import resolve_model

    if (gains_file is None) == (preset_file is None):
        raise HeadbakeError("give either --gains or --preset-file")
    tuned = None
    if preset_file is not None:
        from headbake.calibrate.preset_file import load_preset_file

        tuned = load_preset_file(preset_file)  # carries the gains tune evaluated (bake cannot measure S_v)
    else:
        load_gains(gains_file)  # a bad gains file or --out fails before any download
    check_target(out, overwrite)
    resolved = resolve_model(src, revision=revision, progress=not quiet)
    res = bake_checkpoint(resolved.path, tuned.gains if tuned else gains_file, out, overwrite=overwrite, force=force,
                          checksums=checksums, progress=not quiet, source=resolved.source())
    if tuned is not None:
        from headbake.calibrate.preset_file import transfer_warning
        from headbake.model.info import load_model_info
        from headbake.record import read_record, write_record

        rec = read_record(out)
        rec.tuning = tuned.tuning or None  # the card says it was tuned, on what data, and the held-out result
        write_record(out, rec)
        warning = transfer_warning(tuned, load_model_info(resolved.path), resolved.source().get("id"))
        if warning:
            res.warnings.append(warning)
    for w in res.warnings:
        click.echo(f"Warning: {w}", err=True)
    how = ", ".join(f"{n} by {m}" for m, n in sorted(res.copy_methods.items()))
    click.echo(f"baked {res.edited_heads} heads in {res.edited_tensors} o_proj tensors -> {res.out} "
               f"({res.seconds:.1f} s; files copied: {how})")


@click.command()
@click.argument("src")
@click.argument("baked", type=click.Path(path_type=Path))
@revision_option
@click.option("--gains", "gains_file", type=click.Path(path_type=Path),
              help="Gains to check against (default: the ones recorded in BAKED/headbake.json).")
@click.option("--tensors-only", is_flag=True, help="Skip the model-level check (no model is loaded).")
@click.option("--samples", default=4, show_default=True, type=click.IntRange(min=1),
              help="Image+text inputs for the model-level check.")
@click.option("--new-tokens", default=8, show_default=True, type=click.IntRange(min=1),
              help="Greedy tokens compared per input.")
@device_options
@click.option("--max-memory", help="With --device-map auto: per-device limits, e.g. 'cpu=8GiB,0=20GiB'.")
@click.option("--offload-folder", type=click.Path(file_okay=False),
              help="With --device-map auto: folder for weights that fit in no memory (disk offload).")
@click.option("--trust-remote-code", is_flag=True, help="Allow the checkpoint's own Python code (needed for Kimi-VL).")
@click.option("--report", type=click.Path(path_type=Path, dir_okay=False), help="Write the full report as JSON.")
@click.option("--record", is_flag=True, help="Store the figures and file sha256s in BAKED/headbake.json.")
@quiet_option
@json_option
def verify(src, baked, revision, gains_file, tensors_only, samples, new_tokens, device, device_map, max_memory,
           offload_folder, trust_remote_code, report, record, quiet, as_json):
    """Check BAKED against SRC: exact tensor comparison, then hooked SRC vs plain BAKED logits.

    SRC is the checkpoint directory, alias or Hub id that was baked.

    Exit 0 when both levels pass, 1 when either fails.
    """
    from headbake.bake.verify import run_verify
    from headbake.hub import resolve_model

    if report:
        ensure_writable(report, "--report")
    src = resolve_model(src, revision=revision, progress=not quiet).path
    res = run_verify(src, baked, gains_file=gains_file, tensors_only=tensors_only, samples=samples,
                     new_tokens=new_tokens, device=device, device_map=device_map, max_memory=max_memory,
                     offload_folder=offload_folder,
                     trust_remote_code=trust_remote_code, progress=not quiet, record=record)
    if report:
        write_json_atomic(report, res)
    if as_json:
        emit_json(res)
    else:
        for line in res["summary"]:
            click.echo(line)
        click.echo("PASS" if res["passed"] else "FAIL")
    raise SystemExit(0 if res["passed"] else CHECK_FAILED)


COMMANDS = [bake, verify]
