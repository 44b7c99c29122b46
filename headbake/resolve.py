"""Turn what a user types as MODEL into a local checkpoint directory.

MODEL is a local directory, an alias from ``aliases.json`` (``Ocean-R1``,
``demo``, ...) or a Hub id. Hub ids are fetched with ``snapshot_download``
restricted to what a checkpoint needs, into the ordinary Hugging Face cache, and
the commit sha they resolved to is recorded so the bake can name its exact
source. huggingface_hub freezes ``HF_HUB_OFFLINE`` at import; this module reads
the environment at call time instead, so the same process can be told to go
offline (or back online) later, as tests and ``convert`` do.
"""

from __future__ import annotations

import contextlib
import difflib
import json
import os
import re
from dataclasses import dataclass
from functools import lru_cache
from importlib import resources
from pathlib import Path

from headbake.errors import HeadbakeError, first_line

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
_HEX40 = re.compile(r"^[0-9a-f]{40}$")
_TRUE = {"1", "on", "yes", "true"}


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


@lru_cache(maxsize=1)
def aliases() -> dict[str, dict]:
    text = resources.files("headbake.model").joinpath("aliases.json").read_text()
    return {k: v for k, v in json.loads(text).items() if not k.startswith("_")}


def find_alias(name: str) -> str | None:
    """The canonical alias spelling for ``name`` (case-insensitive), or None."""
    low = name.strip().lower()
    return next((a for a in aliases() if a.lower() == low), None)


def nearest_alias(name: str) -> str | None:
    """The alias a typo most likely meant, compared case- and punctuation-insensitively."""

    def norm(s: str) -> str:
        return re.sub(r"[^a-z0-9]", "", s.lower())

    keys = {norm(a): a for a in aliases()}
    for a, spec in aliases().items():
        if spec.get("repo"):
            keys.setdefault(norm(spec["repo"]), a)
            keys.setdefault(norm(spec["repo"].split("/")[-1]), a)
    candidates = [norm(name), norm(name.split("/")[-1])]
    for c in candidates:
        hit = difflib.get_close_matches(c, list(keys), n=1, cutoff=0.5)
        if hit:
            return keys[hit[0]]
    return None


def looks_like_repo_id(s) -> bool:
    """``namespace/name`` as the Hub spells it (not a path)."""
    return isinstance(s, str) and bool(re.fullmatch(r"[A-Za-z0-9][\w.-]*/[\w.-]*[A-Za-z0-9_]", s)) \
        and "--" not in s and ".." not in s and not os.path.isabs(s)


def _env_true(name: str) -> bool:
    return os.environ.get(name, "").strip().lower() in _TRUE


def offline_mode(offline: bool | None = None) -> bool:
    """Effective offline setting: the argument, else the environment *now*."""
    if offline is not None:
        return bool(offline)
    return _env_true("HF_HUB_OFFLINE") or _env_true("TRANSFORMERS_OFFLINE")


def hub_cache_dir() -> Path:
    """The Hugging Face cache as the environment says now (not as it said at import)."""
    env = os.environ
    for var in ("HF_HUB_CACHE", "HUGGINGFACE_HUB_CACHE"):
        if env.get(var):
            return Path(os.path.expandvars(os.path.expanduser(env[var])))
    if env.get("HF_HOME"):
        return Path(os.path.expandvars(os.path.expanduser(env["HF_HOME"]))) / "hub"
    from huggingface_hub import constants

    return Path(constants.HF_HUB_CACHE)


def hub_endpoint(endpoint: str | None = None) -> str:
    if endpoint:
        return endpoint.rstrip("/")
    if os.environ.get("HF_ENDPOINT"):
        return os.environ["HF_ENDPOINT"].rstrip("/")
    from huggingface_hub import constants

    return constants.ENDPOINT.rstrip("/")


def headbake_home() -> Path:
    if os.environ.get("HEADBAKE_HOME"):
        return Path(os.path.expanduser(os.environ["HEADBAKE_HOME"]))
    base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return Path(base) / "headbake"


def cached_snapshot(repo_id: str, revision: str | None = None, cache_dir: str | os.PathLike | None = None) -> Path | None:
    """The cached snapshot folder for ``repo_id`` at ``revision`` (branch, tag or sha), if any."""
    root = Path(cache_dir) if cache_dir else hub_cache_dir()
    repo = root / ("models--" + repo_id.replace("/", "--"))
    rev = revision or "main"
    sha = rev if _HEX40.match(rev) else None
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
    import fcntl

    out = demo_dir()
    marker = out / "headbake_demo.json"
    if marker.is_file() and (out / "config.json").is_file():
        return out
    out.parent.mkdir(parents=True, exist_ok=True)
    with open(out.parent / ".build.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if not (marker.is_file() and (out / "config.json").is_file()):
            if progress:
                import sys

                print(f"Building the tiny demo model in {out} (first use only)...", file=sys.stderr)
            from headbake.demo import build_tiny_qwen25vl

            build_tiny_qwen25vl(out, num_layers=DEMO_LAYERS)
    return out


# ----------------------------------------------------------------------------- local


def _card_license(folder: Path) -> str | None:
    """The ``license`` field of a README.md card next to the weights, if there is one."""
    readme = folder / "README.md"
    if not readme.is_file():
        return None
    try:
        from huggingface_hub import ModelCard

        card = ModelCard(readme.read_text(encoding="utf-8"), ignore_metadata_errors=True)
        value = card.data.get("license")
        return str(value) if value else None
    except Exception:  # noqa: BLE001 - a malformed card must not stop a bake
        return None


def _resolve_local(path: Path, name: str, revision: str | None) -> ResolvedModel:
    path = path.resolve()
    if not (path / "config.json").is_file():
        raise HeadbakeError(f"{name} is a directory but not a model checkpoint (no config.json)")
    source_id, sha = str(path), None
    parent = path.parent
    if parent.name == "snapshots" and parent.parent.name.startswith("models--"):
        # An HF cache snapshot: .../models--org--name/snapshots/<sha> names its repo and commit.
        source_id = parent.parent.name[len("models--"):].replace("--", "/")
        sha = path.name if _HEX40.match(path.name) else None
    if revision is not None and revision != sha:
        raise HeadbakeError(f"--revision applies to Hub ids; {name} is a local directory")
    return ResolvedModel(path=path, source_id=source_id, revision=sha, license=_card_license(path), is_local=True)


def _looks_like_path(name: str) -> bool:
    return name.startswith((".", "/", "~")) or name.endswith(("/", os.sep)) or name.count("/") > 1 or "\\" in name


# ----------------------------------------------------------------------------- hub


@contextlib.contextmanager
def _hub_offline(flag: bool):
    """Make huggingface_hub's import-time offline switch agree with ``flag`` for one call."""
    from huggingface_hub import constants

    old = constants.HF_HUB_OFFLINE
    constants.HF_HUB_OFFLINE = flag
    try:
        yield
    finally:
        constants.HF_HUB_OFFLINE = old


def _hub_license(repo_id: str, sha: str, endpoint: str, token) -> str | None:
    from huggingface_hub import HfApi

    try:
        with _hub_offline(False):
            info = HfApi(endpoint=endpoint, token=token).model_info(repo_id, revision=sha, timeout=15)
    except Exception:  # noqa: BLE001 - the license is a nicety for the card, never a blocker
        return None
    data = info.card_data
    lic = data.get("license") if data is not None else None
    if not lic:
        lic = next((t.split(":", 1)[1] for t in (info.tags or []) if t.startswith("license:")), None)
    return str(lic) if lic else None


def _download_error(e: BaseException, repo_id: str, revision: str | None, endpoint: str, cache: Path,
                    offline: bool) -> HeadbakeError:
    """One clear line for each way fetching a Hub model fails."""
    import httpx2
    from huggingface_hub.errors import (
        GatedRepoError, HfHubHTTPError, HFValidationError, IncompleteSnapshotError, LocalEntryNotFoundError,
        OfflineModeIsEnabled, RepositoryNotFoundError, RevisionNotFoundError,
    )

    rev = revision or "main"
    if isinstance(e, RevisionNotFoundError):
        return HeadbakeError(f"revision {rev!r} not found in {repo_id} on {endpoint}")
    if isinstance(e, GatedRepoError):
        return HeadbakeError(
            f"{repo_id} is gated: accept its terms at {endpoint}/{repo_id}, then log in (hf auth login) or set HF_TOKEN"
        )
    if isinstance(e, RepositoryNotFoundError):
        return HeadbakeError(
            f"model {repo_id!r} not found on {endpoint} (if it is private, log in or set HF_TOKEN)"
        )
    if isinstance(e, IncompleteSnapshotError):
        return HeadbakeError(
            f"the cached snapshot of {repo_id} ({rev}) is incomplete and the Hub cannot be used to finish it; "
            f"re-run with network access{' and HF_HUB_OFFLINE unset' if offline else ''}"
        )
    if isinstance(e, LocalEntryNotFoundError):
        if offline:
            return HeadbakeError(
                f"HF_HUB_OFFLINE is set and {repo_id} ({rev}) is not in the cache {cache}; "
                "download it once online or unset HF_HUB_OFFLINE"
            )
        return HeadbakeError(
            f"cannot reach {endpoint} and {repo_id} ({rev}) is not in the cache {cache}; check the network and retry"
        )
    if isinstance(e, OfflineModeIsEnabled):
        return HeadbakeError(f"HF_HUB_OFFLINE is set; {repo_id} ({rev}) must be downloaded first")
    if isinstance(e, HFValidationError):
        return HeadbakeError(f"invalid Hub id {repo_id!r}: {first_line(e)}")
    if isinstance(e, HfHubHTTPError):
        status = e.response.status_code if e.response is not None else "?"
        return HeadbakeError(f"the Hub at {endpoint} refused {repo_id} (HTTP {status}): {first_line(e)}")
    if isinstance(e, (httpx2.TransportError, ConnectionError, TimeoutError)):
        return HeadbakeError(
            f"network error while downloading {repo_id} from {endpoint} ({type(e).__name__}); "
            "re-run to resume, finished files are kept in the cache"
        )
    return HeadbakeError(f"could not fetch {repo_id} ({rev}): {first_line(e)}")


def _snapshot(repo_id: str, revision: str | None, patterns: list[str], *, cache: Path, endpoint: str, token,
              offline: bool) -> Path:
    from huggingface_hub import snapshot_download

    try:
        with _hub_offline(offline):
            folder = snapshot_download(
                repo_id, revision=revision, cache_dir=str(cache), endpoint=endpoint, token=token,
                local_files_only=offline, allow_patterns=patterns,
            )
    except Exception as e:  # noqa: BLE001 - every failure becomes one line
        raise _download_error(e, repo_id, revision, endpoint, cache, offline) from None
    return Path(folder)


def _resolve_hub(repo_id: str, revision: str | None, *, endpoint: str | None, token, offline: bool | None,
                 cache_dir, trust_remote_code: bool | None, alias: str | None) -> ResolvedModel:
    offline = offline_mode(offline)
    endpoint = hub_endpoint(endpoint)
    cache = Path(cache_dir) if cache_dir else hub_cache_dir()
    folder = _snapshot(repo_id, revision, CHECKPOINT_PATTERNS, cache=cache, endpoint=endpoint, token=token,
                       offline=offline)
    sha = folder.name if _HEX40.match(folder.name) else None
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
    name = (name or "").strip()
    if not name:
        raise HeadbakeError("no model given; pass an alias (see `headbake models`), a Hub id or a directory")
    local = Path(os.path.expanduser(name))
    if local.is_dir():
        return _resolve_local(local, name, revision)
    if _looks_like_path(name) and not looks_like_repo_id(name):
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
    from headbake.model.info import architectures

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
