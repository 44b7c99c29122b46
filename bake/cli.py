"""CLI commands of the bake half: ``bake`` and ``verify``."""

from __future__ import annotations

import click

COMMANDS: list[click.Command] = []
