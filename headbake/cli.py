"""The ``headbake`` command line.

Each half of the tool keeps its own commands (``headbake.bake.cli``,
``headbake.calibrate.cli``, ``headbake.publish_cli``); this module only
assembles them and turns errors into one line. Command modules import
torch/transformers inside their functions so ``--help`` stays instant.
"""

from __future__ import annotations

import errno
import os
import sys

import click

from headbake import __version__
from headbake.errors import HeadbakeError, first_line


def _one_line(exc: BaseException) -> str:
    if isinstance(exc, OSError):
        if exc.errno == errno.ENOSPC:
            return f"no space left on device{f' writing {exc.filename}' if exc.filename else ''}; nothing was kept"
        where = f": {exc.filename}" if exc.filename else ""
        return f"{exc.strerror or exc}{where}"
    return first_line(exc)


class HeadbakeGroup(click.Group):
    """Turns every failure into ``Error: ...`` on one line and a non-zero exit."""

    def invoke(self, ctx):
        try:
            return super().invoke(ctx)
        except (click.exceptions.Exit, click.exceptions.Abort, click.ClickException):
            raise
        except HeadbakeError as e:
            click.echo(f"Error: {e}", err=True)
            ctx.exit(e.exit_code)
        except KeyboardInterrupt:
            click.echo("Interrupted; no partial output was kept.", err=True)
            ctx.exit(130)
        except Exception as e:  # noqa: BLE001 - last resort, still one line
            if os.environ.get("HEADBAKE_DEBUG"):
                raise
            click.echo(f"Error: {_one_line(e)} ({type(e).__name__}; set HEADBAKE_DEBUG=1 for a traceback)", err=True)
            ctx.exit(1)


@click.group(cls=HeadbakeGroup, context_settings={"help_option_names": ["-h", "--help"], "max_content_width": 100})
@click.version_option(__version__, prog_name="headbake")
def main():
    """Bake the perceptual/reasoning head gains of arXiv 2510.10285 into checkpoints.

    \b
    Typical flow:
      headbake calibrate MODEL --preset default --out heads.json
      headbake bake MODEL --gains heads.json --out MODEL-baked
      headbake verify MODEL MODEL-baked
    or all of it, plus a model card and an optional Hub push:
      headbake convert MODEL --preset default --out MODEL-baked
    """


def _register() -> None:
    from headbake.bake import cli as bake_cli

    for cmd in bake_cli.COMMANDS:
        main.add_command(cmd)
    for modname in ("headbake.calibrate.cli", "headbake.convert_cli", "headbake.publish_cli"):
        try:
            mod = __import__(modname, fromlist=["COMMANDS"])
        except ModuleNotFoundError as e:
            if e.name != modname:
                raise
            continue
        for cmd in mod.COMMANDS:
            main.add_command(cmd)


_register()


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
