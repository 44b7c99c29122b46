"""Dev and held-out rows for ``headbake tune``: loading, a seeded split, and the overlap refusal.

The held-out rows exist so the reported gain is not measured on the rows the
search selected on; a row that appears on both sides (the same id, or the
same images with the same question under another id) would quietly undo
that, so it is refused. A ``--holdout-fraction`` split keeps rows with the
same content on one side, so it never overlaps by construction.

Data sets are named by file name or dataset id and a fingerprint, never by a
local path: the names go into tuned.json, the record and the card.
"""

from __future__ import annotations

import hashlib
import random
from dataclasses import dataclass
from pathlib import Path

from headbake.errors import HeadbakeError
from headbake.evaluate.cache import image_digest
from headbake.evaluate.recipes import load_recipe_rows
from headbake.evaluate.recipes import recipe as get_recipe
from headbake.evaluate.rows import read_rows, rows_fingerprint

DEFAULT_HOLDOUT_FRACTION = 0.3


@dataclass
class RowSet:
    name: str  # public: a file name, a recipe or dataset id (never a path)
    rows: list  # headbake.evaluate.rows.EvalRow

    @property
    def fingerprint(self) -> str:

        return rows_fingerprint(self.rows)

    def describe(self, **extra) -> dict:
        return {"name": self.name, "fingerprint": self.fingerprint, "rows": len(self.rows), **extra}


def _public(name: str) -> str:
    p = Path(name).expanduser()
    return p.name if p.exists() else name


def load_rowset(jsonl: str | None = None, recipe: str | None = None, dataset: str | None = None,
                split: str | None = None, config: str | None = None, limit: int | None = None,
                what: str = "--dev") -> RowSet:
    """Rows from a JSONL file or a benchmark recipe (``--dataset`` then names the recipe's dataset or a saved copy)."""
    if jsonl and recipe:
        raise HeadbakeError(f"give either {what} FILE.jsonl or --recipe, not both")
    if jsonl:
        return RowSet(f"jsonl:{Path(jsonl).name}", read_rows(jsonl, limit))
    if recipe:
        rc = get_recipe(recipe)
        rows = load_recipe_rows(recipe, dataset, split, config, limit)
        return RowSet(f"{rc.name} ({_public(dataset or rc.dataset)} [{split or rc.split}])", rows)
    if dataset:
        raise HeadbakeError("--dataset names the data of a --recipe; for other data write a JSONL file for --dev")
    raise HeadbakeError(f"no dev rows: give {what} FILE.jsonl or --recipe NAME")


def content_key(row) -> str:
    """The row's question and images (bytes or pixels), whatever its id: two rows with the same key ask the same."""
    h = hashlib.sha256(" ".join(row.question.split()).lower().encode())
    for im in row.images:
        h.update(image_digest(im).encode())
    return h.hexdigest()


def split_rows(rows: RowSet, fraction: float, seed: int) -> tuple[RowSet, RowSet]:
    """``(dev, holdout)``: about ``fraction`` of the rows held out (drawn with ``seed``); equal content stays together."""
    if not 0 < fraction < 1:
        raise HeadbakeError(f"--holdout-fraction must be in [0, 1), got {fraction}")
    groups: dict[str, list[int]] = {}
    for i, r in enumerate(rows.rows):
        groups.setdefault(content_key(r), []).append(i)
    order = list(groups.values())
    random.Random(seed).shuffle(order)
    want = round(fraction * len(rows.rows))
    held: set[int] = set()
    for g in order:
        if len(held) >= want:
            break
        held.update(g)
    if not held or len(held) == len(rows.rows):
        raise HeadbakeError(f"{len(rows.rows)} dev rows are too few to hold {fraction:g} of them out; give more rows "
                            "or a separate --holdout file")
    pct = round(100 * fraction)
    dev = RowSet(f"{rows.name} [dev {100 - pct}%, seed {seed}]", [r for i, r in enumerate(rows.rows) if i not in held])
    hold = RowSet(f"{rows.name} [holdout {pct}%, seed {seed}]", [r for i, r in enumerate(rows.rows) if i in held])
    return dev, hold


def check_overlap(dev: RowSet, holdout: RowSet) -> None:
    """Refuse a held-out set that shares a row with the dev set (by id, or by images and question)."""
    ids = {r.id for r in dev.rows}
    same_id = [r.id for r in holdout.rows if r.id in ids]
    if same_id:
        raise HeadbakeError(f"the dev and held-out rows overlap: {len(same_id)} row id(s) in both (first: "
                            f"{same_id[0]!r}); a gain measured on rows the search saw is not held out")
    keys = {content_key(r): r.id for r in dev.rows}
    for r in holdout.rows:
        k = content_key(r)
        if k in keys:
            raise HeadbakeError(f"the dev and held-out rows overlap: held-out row {r.id!r} has the same images and "
                                f"question as dev row {keys[k]!r}")
