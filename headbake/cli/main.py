"""The root ``headbake`` group: commands in flow order and one error -> exit-code table."""

from __future__ import annotations

import errno
import json
import os
import sys

import click

from headbake import __version__
from headbake.errors import ENVIRONMENT, INTERRUPTED, HeadbakeError, first_line

# Commands in the order a user meets them.
FLOW = ("convert", "models", "presets", "calibrate", "heads", "merge", "tune", "bake", "verify", "eval", "card",
        "push")


def error_line(exc: BaseException) -> tuple[str, int]:
    """The one line and the exit code for any exception that reaches the command line."""
    if isinstance(exc, HeadbakeError):
        return str(exc), exc.exit_code
    if isinstance(exc, MemoryError):
        return "out of memory (see `headbake convert --dry-run` for the memory plan)", ENVIRONMENT
    if isinstance(exc, OSError):
        if exc.errno == errno.ENOSPC:
            where = f" writing {exc.filename}" if exc.filename else ""
            return (f"no space left on device{where}; the output was not created (finished stages of a convert are "
                    "kept in its work folder and reused on the next run)"), ENVIRONMENT
        where = f": {exc.filename}" if exc.filename else ""
        return f"{exc.strerror or exc}{where}", ENVIRONMENT
    return f"{first_line(exc)} ({type(exc).__name__}; set HEADBAKE_DEBUG=1 for a traceback)", 1


class HeadbakeGroup(click.Group):
    """Every failure becomes ``Error: ...`` on one line and its exit code (table in ``headbake.errors``)."""
    def list_commands(self, ctx):
        names = super().list_commands(ctx)
        return [n for n in FLOW if n in names] + sorted(n for n in names if n not in FLOW)

    def invoke(self, ctx):
        try:
            return super().invoke(ctx)
        except click.exceptions.Exit:
            raise
        except click.exceptions.Abort:
            click.echo("Interrupted; no partial output was kept.", err=True)
            ctx.exit(INTERRUPTED)
        except click.ClickException:
            raise
        except KeyboardInterrupt:
            click.echo("Interrupted; no partial output was kept.", err=True)
            ctx.exit(INTERRUPTED)
        except Exception as e:  # noqa: BLE001 - last resort, still one line
            if os.environ.get("HEADBAKE_DEBUG") and not isinstance(e, HeadbakeError):
                raise
            line, code = error_line(e)
            click.echo(f"Error: {line}", err=True)
            ctx.exit(code)


def emit_json(doc) -> None:
    """``--json``: exactly one JSON document on stdout."""
    click.echo(json.dumps(doc, indent=2, default=str))


CONTEXT = {"help_option_names": ["-h", "--help"], "max_content_width": 100, "auto_envvar_prefix": "HEADBAKE"}


@click.group(cls=HeadbakeGroup, context_settings=CONTEXT)
@click.version_option(__version__, prog_name="headbake")
def main():
    """Bake the perceptual/reasoning head gains of arXiv 2510.10285 into checkpoints.

    \b
    Typical flow:
      headbake calibrate MODEL --out heads.json
      headbake bake MODEL --gains heads.json --out MODEL-baked
      headbake verify MODEL MODEL-baked
    or all of it, plus a model card and an optional Hub push:
      headbake convert MODEL --out MODEL-baked

    \b
    Every option can also come from an environment variable HEADBAKE_<COMMAND>_<OPTION>
    (e.g. HEADBAKE_CONVERT_DEVICE=cpu). Exit codes: 0 ok, 1 a check failed, 2 usage error,
    3 environment/Hub/network error, 130 interrupted.
    """


def _register() -> None:
    from headbake.cli import bake, calibrate, convert, evaluate, publish, tune

    for mod in (convert, calibrate, tune, bake, evaluate, publish):
        for cmd in mod.COMMANDS:
            main.add_command(cmd)


_register()


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
