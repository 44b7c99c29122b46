"""Render the model card (README.md) of a baked checkpoint.

The YAML goes through huggingface_hub's ``ModelCardData`` (so the Hub's own
serialisation and field names are used) and the body through ``card.md.j2``,
with the fields ``context.card_context`` computes from the record; the result
is parsed back by ``ModelCard`` before it is written, so a card that the Hub
could not read is never written.
"""

from __future__ import annotations

import os
import re
from importlib import resources
from pathlib import Path

import jinja2
from huggingface_hub import ModelCard

from headbake.errors import HeadbakeError
from headbake.fsutil import write_text_atomic
from headbake.model_cards.context import CARD_FILE, MARKER, card_context


def card_text(
    provenance: dict,
    command: str | None = None,
    heatmap: str | None = None,
    *,
    repo_id: str | None = None,
    out_name: str = "baked-model",
    license: str | None = None,
) -> str:
    """The full README.md text (YAML + Markdown); ``heatmap`` is a path relative to the card, or None."""
    ctx = card_context(provenance, command, heatmap, repo_id=repo_id, out_name=out_name, license=license)
    template = resources.files("headbake.model_cards").joinpath("card.md.j2").read_text(encoding="utf-8")
    env = jinja2.Environment(trim_blocks=True, lstrip_blocks=True, undefined=jinja2.StrictUndefined,
                             keep_trailing_newline=True)
    text = env.from_string(template).render(**ctx)
    text = re.sub(r"\n{3,}", "\n\n", text).rstrip() + "\n"

    card = ModelCard(text)  # parses the YAML back: a card the Hub cannot read never reaches disk
    return str(card.content)



def render_card(
    out_dir: str | os.PathLike,
    provenance: dict,
    command: str | None = None,
    heatmap: str | None = "headbake_heatmap.png",
    *,
    repo_id: str | None = None,
    license: str | None = None,
    out_name: str | None = None,
) -> str:
    """Write ``out_dir/README.md`` atomically and return its text.

    ``out_name`` is the folder name the card shows when no ``repo_id`` is
    known (default: ``out_dir``'s own name; convert renders in a work folder).

    The heatmap is linked only if that file exists in ``out_dir``; ``repo_id``
    (when known) goes into the usage snippet, else the folder name does.
    """
    if hasattr(provenance, "to_dict"):
        provenance = provenance.to_dict()
    out = Path(out_dir)
    if not out.is_dir():
        raise HeadbakeError(f"output directory not found: {out}")
    hm = heatmap if heatmap and (out / heatmap).is_file() else None
    text = card_text(provenance, command, hm, repo_id=repo_id, out_name=out_name or out.name, license=license)

    write_text_atomic(out / CARD_FILE, text)
    return text


def card_repo_marker(text: str) -> str | None:
    """The repo id a headbake card was rendered for ('' for none); None if not a headbake card."""
    m = MARKER.search(text or "")
    return m.group(1) if m else None
