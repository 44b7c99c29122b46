"""The baked record, ``headbake.json``: one typed document, read and written only here.

It travels with the weights and is published, so it must be a stable,
validated contract (a ``format`` version, known fields) and must never name
the machine it was made on: sources are named by alias, Hub id or directory
*name*, the reproduce command is rebuilt from settings rather than copied from
``argv``, and :func:`local_paths` finds anything that still looks like a path
of this machine. convert's cache keys live in its work folder, not here.
"""

from __future__ import annotations

import datetime as _dt
import os
import re
import shlex
from dataclasses import asdict, dataclass, field, fields
from importlib import metadata
from pathlib import Path

from headbake import __version__
from headbake.checkpoint import read_json
from headbake.errors import HeadbakeError
from headbake.fsutil import write_json_atomic

FORMAT = "headbake.baked/v1"
RECORD = "headbake.json"
# Files a baked directory may hold beyond the source's own (README.md replaces the source's card).
ADDED_FILES = (RECORD, "README.md", "headbake_heatmap.png")


def _version(pkg: str) -> str | None:
    try:
        return metadata.version(pkg)
    except metadata.PackageNotFoundError:
        return None


def versions() -> dict:
    return {
        "headbake_version": __version__,
        "torch_version": _version("torch"),
        "transformers_version": _version("transformers"),
    }


def now() -> str:
    return _dt.datetime.now(_dt.timezone.utc).replace(microsecond=0).isoformat()


def public_source(source: dict | None) -> dict:
    """A ``source`` block safe to publish: a local directory is named by its last component only."""
    src = dict(source or {})
    src.pop("path", None)
    sid = str(src.get("id") or "")
    if sid and (os.path.isabs(sid) or sid.startswith(("~", "./", "../")) or os.sep in sid and not _hub_like(sid)):
        src["id"] = Path(sid.rstrip("/")).name or "local-model"
        src["local"] = True
    return src


def _hub_like(s: str) -> bool:
    return re.fullmatch(r"[A-Za-z0-9][\w.-]*/[\w.-]+", s) is not None and not s.startswith(".")


_HOME = re.compile(r"(?:^|[\s\"'=(])(/(?:home|root|Users|tmp|var|mnt|media|opt|srv|data|work|scratch)/[^\s\"')]*)")


def local_paths(doc, *, extra: tuple[str, ...] = (), patterns: bool = True) -> list[str]:
    """Strings in ``doc`` (nested JSON values, or text) that look like absolute paths of this machine.

    Checks the current home and working directory verbatim and, with ``patterns``, common absolute roots
    (``/home/...``, ``/tmp/...``; off for free text such as a model card, which may quote other machines).
    """
    roots = {str(Path.home()), os.getcwd(), *extra}
    roots = {r.rstrip("/") for r in roots if r and r not in ("/", "")}
    found: list[str] = []

    def walk(v):
        if isinstance(v, dict):
            for k, x in v.items():
                walk(k)
                walk(x)
        elif isinstance(v, (list, tuple)):
            for x in v:
                walk(x)
        elif isinstance(v, str):
            for r in roots:
                if r in v:
                    found.append(r)
            if patterns:
                found.extend(m.group(1) for m in _HOME.finditer(v))

    walk(doc)
    return sorted(set(found))


@dataclass
class Record:
    """``headbake.json``. ``gains`` is the embedded ``headbake.gains/v1`` document."""
    source: dict
    model: dict
    gains: dict
    edited: list = field(default_factory=list)
    files: dict = field(default_factory=dict)
    verification: dict | None = None
    settings: dict | None = None  # the resolved convert settings, enough to repeat the bake
    reproduce: str | None = None  # normalised command (no local paths)
    evaluation: dict | None = None  # summary of a `headbake eval` report
    tuning: dict | None = None  # how a tuned preset was chosen, with its held-out result
    skipped_files: list = field(default_factory=list)
    previous_bake: dict | None = None
    format: str = FORMAT
    created: str = field(default_factory=now)
    headbake_version: str | None = None
    torch_version: str | None = None
    transformers_version: str | None = None

    def __post_init__(self):
        for k, v in versions().items():
            if getattr(self, k) is None:
                setattr(self, k, v)

    @classmethod
    def from_dict(cls, doc: dict, where: str = RECORD) -> Record:
        if not isinstance(doc, dict):
            raise HeadbakeError(f"{where} must hold a JSON object")
        fmt = doc.get("format")
        if fmt != FORMAT:
            raise HeadbakeError(f"{where}: not a {FORMAT} record (format {fmt!r})")
        known = {f.name for f in fields(cls)}
        for key in ("source", "model", "gains"):
            if not isinstance(doc.get(key), dict):
                raise HeadbakeError(f"{where}: missing or malformed {key!r}")
        for key, typ in (("edited", list), ("files", dict), ("skipped_files", list)):
            if key in doc and not isinstance(doc[key], typ):
                raise HeadbakeError(f"{where}: {key!r} must be a JSON {typ.__name__}")
        for key in ("verification", "settings", "evaluation", "tuning", "previous_bake"):
            if doc.get(key) is not None and not isinstance(doc[key], dict):
                raise HeadbakeError(f"{where}: {key!r} must be a JSON object or null")
        if doc.get("reproduce") is not None and not isinstance(doc["reproduce"], str):
            raise HeadbakeError(f"{where}: 'reproduce' must be a string")
        return cls(**{k: v for k, v in doc.items() if k in known})

    def to_dict(self) -> dict:
        return asdict(self)

    @property
    def verified(self) -> bool:
        return bool((self.verification or {}).get("passed"))


def record_path(folder) -> Path:
    return Path(folder) / RECORD


def has_record(folder) -> bool:
    return record_path(folder).is_file()


def read_record(folder) -> Record:
    """The validated record of a baked directory (or a path to a ``headbake.json``)."""
    path = Path(folder)
    if path.is_dir():
        path = path / RECORD
    return Record.from_dict(read_json(path, RECORD, strict=True), str(path))


def write_record(folder, record: Record) -> None:
    """Validate and write atomically; refuses a record that would publish a local path."""
    doc = record.to_dict()
    Record.from_dict(doc)
    leaks = local_paths(doc)
    if leaks:
        raise HeadbakeError(f"refusing to write {RECORD}: it would publish local paths ({', '.join(leaks[:3])})")
    write_json_atomic(Path(folder) / RECORD, doc)


def reproduce_command(source: dict, settings: dict | None, out_name: str) -> str:
    """The command that repeats this bake on another machine: pinned versions, no local paths.

    The model is named by alias or Hub id and pinned to the recorded revision; a
    local ``--data`` file is named by its fingerprint (the user must supply the
    same data); a bake from given gains reads them back from ``headbake.json``.
    """
    src = public_source(source)
    model = src.get("id") or "BASE_MODEL"
    parts = ["headbake", "convert", model]
    if src.get("revision") and not src.get("local"):
        parts += ["--revision", str(src["revision"])]
    s = dict(settings or {})
    comment = ""
    if s.get("gains_from_file"):
        parts += ["--gains", "headbake.json"]
    else:
        if s.get("preset"):
            parts += ["--preset", str(s["preset"])]
        for key, value in sorted((s.get("overrides") or {}).items()):
            if value is not None:
                parts += ["--" + key.replace("_", "-"), str(value)]
        for key in ("query", "k", "samples", "dtype"):
            if s.get(key) not in (None, "auto") and not (key == "query" and s[key] == "last"):
                parts += ["--" + key, str(s[key])]
        for vid in s.get("visual_token_ids") or []:
            parts += ["--visual-token-id", str(vid)]
        if s.get("prompt_template"):
            parts += ["--prompt-template", "PROMPT.txt"]
            comment += f"  # PROMPT.txt: the prompt template with fingerprint {s['prompt_template']}"
        data = s.get("data") or {}
        if data.get("kind") == "dataset":
            parts += ["--dataset", str(data.get("name"))]
            for key, default in (("split", "train"), ("image_column", "image"), ("question_column", "question")):
                if data.get(key, default) != default:
                    parts += ["--" + key.replace("_", "-"), str(data[key])]
        elif data.get("kind") == "jsonl":
            parts += ["--data", "DATA.jsonl"]
            comment += f"  # DATA.jsonl: your copy of the calibration file with fingerprint {data.get('fingerprint')}"
    if s.get("verify") and s["verify"] != "full":
        parts += ["--verify", str(s["verify"])]
    parts += ["-o", out_name]
    return f"pip install headbake=={__version__}\n" + " ".join(shlex.quote(p) for p in parts) + comment
