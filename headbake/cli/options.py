"""Command-line options generated from the settings they fill, so each is declared once.

``CalibrateOptions`` (calibrate/run.py) declares every calibration setting
with its help text and constraints; :func:`calibration_options` turns those
fields into Click options for ``calibrate`` and ``convert`` alike (as
mergekit's ``options.py`` does for its merge settings).
"""

from __future__ import annotations

import os
from dataclasses import MISSING, fields
from pathlib import Path

import click

from headbake.calibrate.options import CalibrateOptions

def _option(f) -> click.Option:
    meta = dict(f.metadata)
    flag = meta.pop("flag", "--" + f.name.replace("_", "-"))
    help_ = meta.pop("help")
    kw: dict = {"help": help_}
    default = f.default if f.default is not MISSING else None
    if meta.pop("is_flag", False):
        kw["is_flag"] = True
    elif meta.get("multiple"):
        kw["multiple"] = True
        kw["type"] = meta.pop("type", str)
        meta.pop("multiple")
    else:
        if "choices" in meta:
            kw["type"] = click.Choice(list(meta.pop("choices")))
        elif str(f.type).startswith(("int", "float")):
            base = int if str(f.type).startswith("int") else float
            low = meta.pop("min", None)
            kw["type"] = base if low is None else (click.IntRange if base is int else click.FloatRange)(min=low)
        elif meta.pop("path", False):
            kw["type"] = click.Path(dir_okay=False, path_type=str)
        elif meta.pop("dir", False):
            kw["type"] = click.Path(file_okay=False, path_type=str)
        if default is not None:
            kw["default"] = default
            kw["show_default"] = True
    meta.pop("min", None)
    return click.Option([flag, f.name], **kw)


def calibration_params() -> list[click.Option]:
    return [_option(f) for f in fields(CalibrateOptions) if "help" in f.metadata]


def calibration_options(fn):
    """Decorate a command with every calibration flag."""
    for opt in reversed(calibration_params()):
        fn.__click_params__ = getattr(fn, "__click_params__", [])
        fn.__click_params__.append(opt)
    return fn


def calibration_fields(kw: dict) -> dict:
    """Pop the calibration flags out of a command's kwargs as ``CalibrateOptions`` fields."""
    out = {f.name: kw.pop(f.name) for f in fields(CalibrateOptions) if "help" in f.metadata and f.name in kw}
    if "visual_token_ids" in out:
        out["visual_token_ids"] = tuple(out["visual_token_ids"])
    return out


class _OutPath(click.Path):
    """A path that, for a file output, refuses a name ending in a separator (it would name a folder)."""

    def convert(self, value, param, ctx):
        if not self.dir_okay and isinstance(value, str) and value.endswith(("/", os.sep)):
            self.fail(f"{value} names a folder; give the file to write", param, ctx)
        return super().convert(value, param, ctx)


def out_option(help_: str, required: bool = True, dir_okay: bool = False, file_okay: bool = True):
    """``-o/--out``, the same spelling on every command."""
    return click.option("--out", "-o", required=required, help=help_,
                        type=_OutPath(path_type=Path, dir_okay=dir_okay, file_okay=file_okay))


def revision_option(fn):
    return click.option("--revision", metavar="REV",
                        help="Hub branch, tag or commit (when MODEL is a Hub id or alias).")(fn)


def device_options(fn):
    fn = click.option("--device-map", type=click.Choice(["auto"]),
                      help="Spread the model over devices (and CPU/disk) with accelerate.")(fn)
    fn = click.option("--device", default=None,
                      help="auto, cpu, cuda, cuda:1, ... [default: auto: cuda if available].")(fn)
    return fn


def quiet_option(fn):
    return click.option("--quiet", "-q", is_flag=True,
                        help="No progress bars (they are off anyway when stderr is not a terminal).")(fn)


def json_option(fn):
    return click.option("--json", "as_json", is_flag=True, help="Print one JSON document on stdout instead of text.")(fn)
