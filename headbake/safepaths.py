"""File names that come from input files, and the Hugging Face token: never escape, never leak.

A checkpoint's index, a bake record or a push list names files; a hostile
one can name ``../../x`` or ``/etc/passwd``, and a folder can hold a symlink
to ``~/.cache/huggingface/token``. headbake reads and writes only files
inside the folder it was given, plus the one place a Hugging Face cache
snapshot legitimately links to: its own repository's blob store
(``models--org--name/blobs``, which ``snapshots/<sha>/*`` point into).

Policy for links that lead anywhere else: refused, for weights and other
files alike. Skipping them instead would produce a folder that loads
differently from its source (a missing tokenizer), and a warning is easy to
miss in a long run; the message says which file and how to fix it.

A file whose content holds the user's token is never copied, wherever it
lives: ``check_no_token`` refuses it.
"""

from __future__ import annotations

import os
from pathlib import Path, PurePosixPath

from headbake.errors import HeadbakeError

HUB_REPO_PREFIXES = ("models--", "datasets--", "spaces--")
MIN_TOKEN_CHARS = 8  # shorter "tokens" would match ordinary text
_CHUNK = 8 << 20


def _blob_store(root: Path) -> Path | None:
    """The ``blobs`` folder of the Hub-cache repo whose snapshot holds ``root`` (resolved), if any."""
    for anc in (root, *root.parents):
        if anc.parent.name == "snapshots" and anc.parent.parent.name.startswith(HUB_REPO_PREFIXES):
            return anc.parent.parent / "blobs"
    return None


def _inside(path: Path, base: Path) -> bool:
    return path == base or base in path.parents


def check_name(name, *, plain: bool = False, what: str = "file name") -> str:
    """``name`` if it is a relative POSIX path of normal components (``plain``: one component), else refuse.

    Refused: non-strings, empty names, NUL, backslashes (a separator on Windows),
    absolute paths, and ``.``/``..``/empty components.
    """
    if not isinstance(name, str) or not name:
        raise HeadbakeError(f"{what} {name!r} is not a file name")
    if "\0" in name or "\\" in name:
        raise HeadbakeError(f"{what} {name!r} holds a NUL or backslash; refusing it")
    if name.startswith("/"):
        raise HeadbakeError(f"{what} {name!r} is an absolute path; only files inside the folder are used")
    parts = name.split("/")
    if any(p in ("", ".", "..") for p in parts):
        raise HeadbakeError(f"{what} {name!r} leads outside its folder or is not normalised; refusing it")
    if plain and len(parts) > 1:
        raise HeadbakeError(f"{what} {name!r} is not a plain file name in the folder; refusing it")
    return name


def check_inside(root: str | os.PathLike, path: str | os.PathLike) -> Path:
    """``path`` if, following every symlink on the way, it ends inside ``root`` or inside the Hub-cache
    blob store of the snapshot ``root`` is (or is in); else refuse. Reads only directory entries."""
    root, path = Path(root), Path(path)
    real_root = root.resolve()
    real = path.resolve()
    if _inside(real, real_root):
        return path
    blobs = _blob_store(real_root)
    if blobs is not None and _inside(real, blobs):
        return path
    raise HeadbakeError(
        f"{path} is a link to {real}, outside {root}"
        f"{' and its Hub-cache blob store' if blobs else ''}; refusing to follow it "
        "(copy the file into the folder if it belongs to the model)"
    )


def safe_member(root: str | os.PathLike, name, *, plain: bool = False, what: str = "file name") -> Path:
    """``root/name`` for a ``name`` read from an input file (an index, a record, a push list), once it is
    known to stay inside ``root``: ``check_name``, then ``check_inside``. The file need not exist."""
    check_name(name, plain=plain, what=what)
    return check_inside(root, Path(root) / PurePosixPath(name))


def hf_tokens() -> list[str]:
    """Every Hugging Face token this user has: ``HF_TOKEN``, the token file, and the stored tokens.

    Paths are worked out from the environment as it is now (tests and users may
    change ``HF_HOME`` after ``huggingface_hub`` was imported), and also from
    ``huggingface_hub``'s own constants.
    """
    tokens: set[str] = set()
    for var in ("HF_TOKEN", "HUGGING_FACE_HUB_TOKEN"):
        if os.environ.get(var, "").strip():
            tokens.add(os.environ[var].strip())
    home = Path(os.environ.get("HF_HOME") or Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache")
                / "huggingface")
    files = {Path(os.environ["HF_TOKEN_PATH"]) if os.environ.get("HF_TOKEN_PATH") else home / "token"}
    stored = {home / "stored_tokens"}
    try:
        from huggingface_hub import constants, get_token

        files.add(Path(constants.HF_TOKEN_PATH))
        stored.add(Path(constants.HF_STORED_TOKENS_PATH))
        if get_token():
            tokens.add(get_token().strip())
    except Exception:  # noqa: BLE001 - a broken hub install must not stop the check of the files above
        pass
    for f in files:
        try:
            if f.is_file() and f.stat().st_size < 4096:
                tokens.add(f.read_text(errors="replace").strip())
        except OSError:
            pass
    for f in stored:  # INI: [name] / hf_token = ...
        try:
            if f.is_file() and f.stat().st_size < 1 << 20:
                for line in f.read_text(errors="replace").splitlines():
                    key, _, value = line.partition("=")
                    if key.strip() == "hf_token" and value.strip():
                        tokens.add(value.strip())
        except OSError:
            pass
    return sorted(t for t in tokens if len(t) >= MIN_TOKEN_CHARS)


def _holds(path: Path, needles: list[bytes]) -> bool:
    overlap = max(len(n) for n in needles) - 1
    tail = b""
    with open(path, "rb") as f:
        while chunk := f.read(_CHUNK):
            window = tail + chunk
            if any(n in window for n in needles):
                return True
            tail = window[-overlap:] if overlap else b""
    return False


def check_no_token(root: str | os.PathLike, names, tokens: list[str] | None = None) -> None:
    """Refuse if any of the files ``root/name`` holds a Hugging Face token of this user.

    Meant for every file about to be copied or uploaded that is not a
    safetensors shard (those are checked by their header; a token in tensor
    bytes would be a deliberate plant, and scanning gigabytes costs more than
    it protects). The message names the file, never the token.
    """
    tokens = hf_tokens() if tokens is None else tokens
    needles = [t.encode() for t in tokens if len(t) >= MIN_TOKEN_CHARS]
    if not needles:
        return
    root = Path(root)
    for name in names:
        path = root / name
        if path.is_file() and _holds(path, needles):
            raise HeadbakeError(
                f"{path} holds your Hugging Face token; refusing to copy or upload it (remove the file, "
                "or the link to your token file, from the model folder)"
            )
