"""Turn what a user types as MODEL into a local checkpoint directory.

MODEL is a local directory, an alias from ``aliases.json`` (``Ocean-R1``,
``demo``, ...) or a Hub id. Hub ids are fetched with ``snapshot_download``
restricted to what a checkpoint needs, into the ordinary Hugging Face cache, and
the commit sha they resolved to is recorded so the bake can name its exact
source. Endpoint, cache and offline mode are decided per call (``headbake.hub.env``)
and passed to huggingface_hub as arguments.
"""

from __future__ import annotations

import fcntl
import json
import os
import sys
from dataclasses import dataclass
from pathlib import Path

from huggingface_hub import HfApi, ModelCard, snapshot_download

from headbake import demo
from headbake.errors import HeadbakeError
from headbake.hub.env import headbake_home, hub_cache_dir, hub_endpoint, offline_mode
from headbake.hub.errors import download_error
from headbake.hub.ids import is_commit_sha, looks_like_path, looks_like_repo_id
from headbake.model.aliases import aliases, find_alias, nearest_alias
from headbake.model.info import architectures
from headbake.progress import quiet_libraries

# Everything transformers needs to load a checkpoint and its processor; nothing else
# (no pickle .bin, no ONNX/GGUF variants, no README/images).
CHECKPOINT_PATTERNS = [
    "*.safetensors",
    "model.safetensors.index.json",
    "config.json",
    "generation_config.json",
    "tokenizer*",
    "vocab*",
    "merges.txt",
    "special_tokens_map.json",
    "added_tokens.json",
    "tiktoken.model",
    "*.tiktoken",
    "preprocessor_config.json",
    "processor_config.json",
    "video_preprocessor_config.json",
    "chat_template.json",
    "chat_template.jinja",
]
# Remote-code models (Kimi-VL) cannot load without their modelling/processing code.
REMOTE_CODE_PATTERNS = ["*.py"]

DEMO_VERSION = 2
# The paper's default preset reaches layer 7 (l_perc), so the demo needs at least 8 decoder layers.
DEMO_LAYERS = 8


@dataclass(frozen=True)
class ResolvedModel:
    path: Path
    source_id: str
    revision: str | None
    license: str | None
    is_local: bool
    alias: str | None = None

    def source(self) -> dict:
        """The ``source`` block of the gains/bake records (the card reads ``license`` from it)."""
        out = {"id": self.source_id, "revision": self.revision}
        if self.is_local:  # a Hub model's cache path names the user's home directory and is published
            out["path"] = str(self.path)
        if self.license:
            out["license"] = self.license
        return out

    @property
    def is_hub_id(self) -> bool:
        """True when ``source_id`` names a Hub repo (so a card may cite it as ``base_model``)."""
        return looks_like_repo_id(self.source_id)


def card_license(text: str) -> str | None:
    """The ``license`` field of a model card's YAML, or None (a malformed card has none)."""
    try:
        value = ModelCard(text, ignore_metadata_errors=True).data.get("license")
    except Exception:  # noqa: BLE001 - the license is a nicety for the card, never a blocker
        return None
    return str(value) if value else None


def cached_snapshot(repo_id: str, revision: str | None = None, cache_dir: str | os.PathLike | None = None) -> Path | None:
    """The cached snapshot folder for ``repo_id`` at ``revision`` (branch, tag or sha), if any."""
    root = Path(cache_dir) if cache_dir else hub_cache_dir()
    repo = root / ("models--" + repo_id.replace("/", "--"))
    rev = revision or "main"
    sha = rev if is_commit_sha(rev) else None
    if sha is None:
        ref = repo / "refs" / rev
        if not ref.is_file():
            return None
        sha = ref.read_text().strip()
    snap = repo / "snapshots" / sha
    return snap if (snap / "config.json").is_file() else None


# ----------------------------------------------------------------------------- demo


def demo_dir() -> Path:
    return headbake_home() / "demo" / f"tiny-qwen2_5_vl-v{DEMO_VERSION}"


def ensure_demo(progress: bool = True) -> Path:
    """Build the tiny demo model once and reuse it; concurrent first uses build it once."""
    out = demo_dir()
    marker = out / "headbake_demo.json"
    if marker.is_file() and (out / "config.json").is_file():
        return out
    out.parent.mkdir(parents=True, exist_ok=True)
    with open(out.parent / ".build.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        demo.sweep_stale_partials(out)  # a kill -9 during an earlier first build left its .partial-<pid>
        if not (marker.is_file() and (out / "config.json").is_file()):
            if progress:
                print(f"Building the tiny demo model in {out} (first use only)...", file=sys.stderr)
            demo.build_tiny_qwen25vl(out, num_layers=DEMO_LAYERS)
    return out


# ----------------------------------------------------------------------------- local


def _resolve_local(path: Path, name: str, revision: str | None) -> ResolvedModel:
    path = path.resolve()
    if not (path / "config.json").is_file():
        raise HeadbakeError(f"{name} is a directory but not a model checkpoint (no config.json)")
    source_id, sha = str(path), None
    parent = path.parent
    if parent.name == "snapshots" and parent.parent.name.startswith("models--"):
        # An HF cache snapshot: .../models--org--name/snapshots/<sha> names its repo and commit.
        source_id = parent.parent.name[len("models--"):].replace("--", "/")
        sha = path.name if is_commit_sha(path.name) else None
    if revision is not None and revision != sha:
        raise HeadbakeError(f"--revision applies to Hub ids; {name} is a local directory")
    readme = path / "README.md"
    lic = card_license(readme.read_text(encoding="utf-8", errors="replace")) if readme.is_file() else None
    return ResolvedModel(path=path, source_id=source_id, revision=sha, license=lic, is_local=True)


# ----------------------------------------------------------------------------- hub


def _hub_license(repo_id: str, sha: str, endpoint: str, token) -> str | None:
    try:
        info = HfApi(endpoint=endpoint, token=token).model_info(repo_id, revision=sha, timeout=15)
    except Exception:  # noqa: BLE001 - the license is a nicety for the card, never a blocker
        return None
    data = info.card_data
    lic = data.get("license") if data is not None else None
    if not lic:
        lic = next((t.split(":", 1)[1] for t in (info.tags or []) if t.startswith("license:")), None)
    return str(lic) if lic else None


def _snapshot(repo_id: str, revision: str | None, patterns: list[str], *, cache: Path, endpoint: str, token,
              offline: bool) -> Path:
    try:
        folder = snapshot_download(
            repo_id, revision=revision, cache_dir=str(cache), endpoint=endpoint, token=token,
            local_files_only=offline, allow_patterns=patterns,
        )
    except Exception as e:  # noqa: BLE001 - every failure becomes one line
        raise download_error(e, repo_id=repo_id, revision=revision, endpoint=endpoint, cache=cache,
                             offline=offline) from None
    return Path(folder)


def _resolve_hub(repo_id: str, revision: str | None, *, endpoint: str | None, token, offline: bool | None,
                 cache_dir, trust_remote_code: bool | None, alias: str | None) -> ResolvedModel:
    offline = offline_mode(offline)
    endpoint = hub_endpoint(endpoint)
    cache = Path(cache_dir) if cache_dir else hub_cache_dir()
    folder = _snapshot(repo_id, revision, CHECKPOINT_PATTERNS, cache=cache, endpoint=endpoint, token=token,
                       offline=offline)
    sha = folder.name if is_commit_sha(folder.name) else None
    try:
        config = json.loads((folder / "config.json").read_text())
    except (OSError, ValueError):
        raise HeadbakeError(f"{repo_id} has no readable config.json; it is not a transformers checkpoint") from None
    if not any(folder.glob("*.safetensors")):
        raise HeadbakeError(f"{repo_id} has no .safetensors weights (pickle .bin checkpoints are not supported)")
    if config.get("auto_map") and trust_remote_code is not False:
        # The modelling code ships as *.py beside the weights; fetched at the same commit, never executed here.
        folder = _snapshot(repo_id, sha or revision, REMOTE_CODE_PATTERNS, cache=cache, endpoint=endpoint,
                           token=token, offline=offline)
    lic = None if offline else _hub_license(repo_id, sha or revision or "main", endpoint, token)
    if lic is None and alias:
        lic = aliases()[alias].get("license")
    return ResolvedModel(path=folder, source_id=repo_id, revision=sha, license=lic, is_local=False, alias=alias)


def resolve_model(
    name: str,
    revision: str | None = None,
    endpoint: str | None = None,
    token: str | bool | None = None,
    offline: bool | None = None,
    *,
    cache_dir: str | os.PathLike | None = None,
    trust_remote_code: bool | None = None,
    progress: bool = True,
) -> ResolvedModel:
    """Resolve MODEL (local dir | alias | Hub id) to a local checkpoint directory.

    ``offline`` None follows ``HF_HUB_OFFLINE`` as set now; ``cache_dir`` None
    follows ``HF_HUB_CACHE``/``HF_HOME`` as set now. ``trust_remote_code``
    None fetches a model's ``*.py`` files only when its config points at them
    (``auto_map``); False never fetches code.
    """
    quiet_libraries(progress)  # no download bars into a pipe either
    name = (name or "").strip()
    if not name:
        raise HeadbakeError("no model given; pass an alias (see `headbake models`), a Hub id or a directory")
    local = Path(os.path.expanduser(name))
    if local.is_dir():
        return _resolve_local(local, name, revision)
    if looks_like_path(name) and not looks_like_repo_id(name):
        raise HeadbakeError(f"{name} is neither an existing directory nor a Hub id (namespace/name)")

    alias = find_alias(name)
    if alias is not None:
        spec = aliases()[alias]
        if spec.get("builtin"):
            if revision is not None:
                raise HeadbakeError(f"--revision does not apply to the built-in {alias!r} model")
            path = ensure_demo(progress=progress)
            return ResolvedModel(path=path, source_id=alias, revision=None, license=spec.get("license"),
                                 is_local=True, alias=alias)
        return _resolve_hub(spec["repo"], revision, endpoint=endpoint, token=token, offline=offline,
                            cache_dir=cache_dir, trust_remote_code=trust_remote_code, alias=alias)

    if "/" not in name or not looks_like_repo_id(name):
        near = nearest_alias(name)
        hint = f"did you mean {near!r}? " if near else ""
        what = "unknown model" if "/" not in name else "malformed Hub id"
        raise HeadbakeError(
            f"{what} {name!r}: not an alias, an existing directory or a Hub id (namespace/name); "
            f"{hint}see `headbake models` for the aliases"
        )
    return _resolve_hub(name, revision, endpoint=endpoint, token=token, offline=offline, cache_dir=cache_dir,
                        trust_remote_code=trust_remote_code, alias=None)


def alias_table(cache_dir: str | os.PathLike | None = None) -> list[dict]:
    """One row per alias for ``headbake models``: repo, architecture, and whether it is on disk."""
    archs = architectures()
    rows = []
    for alias, spec in aliases().items():
        arch = archs.get(spec.get("model_type"), {})
        if spec.get("builtin"):
            repo = "(built locally)"
            cached = (demo_dir() / "headbake_demo.json").is_file()
        else:
            repo = spec["repo"]
            cached = cached_snapshot(repo, None, cache_dir) is not None
        rows.append({
            "alias": alias, "repo": repo, "model_type": spec.get("model_type"),
            "family": arch.get("family", "?"), "remote_code": bool(arch.get("remote_code")),
            "cached": cached, "note": spec.get("note", ""),
        })
    return rows
