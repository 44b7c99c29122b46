"""Where headbake's Hub settings come from: the caller's arguments first, then the environment as it is now.

huggingface_hub reads its documented ``HF_*`` variables once, when it is imported.
headbake decides per call instead and hands the decision to huggingface_hub through
public parameters (``HfApi(endpoint=, token=)``, ``snapshot_download(cache_dir=,
endpoint=, local_files_only=)``), so a process (a test, an application) can change
the endpoint, the cache or go offline after import. Two things have no per-call
parameter and are handled here in a scoped, restored way: the HTTP timeouts of
huggingface_hub's shared client, and xet uploads.
"""

from __future__ import annotations

import contextlib
import os
from pathlib import Path
from urllib.parse import urlsplit

import httpx2
from huggingface_hub import constants, get_session, get_token, is_offline_mode

from headbake.errors import EnvironmentProblem

_TRUE = {"1", "on", "yes", "true"}
XET_HOSTS = ("huggingface.co", "hf.co")


def env_true(name: str) -> bool:
    """A boolean environment variable as huggingface_hub spells them (1/on/yes/true)."""
    return os.environ.get(name, "").strip().lower() in _TRUE


def offline_variable() -> str | None:
    """The variable that makes the Hub unreachable for this process, or None.

    ``HF_HUB_OFFLINE`` / ``TRANSFORMERS_OFFLINE`` as set now; and ``HF_HUB_OFFLINE``
    when it was set at huggingface_hub's import (``is_offline_mode()``), which
    huggingface_hub then honours for every request of the process.
    """
    for var in ("HF_HUB_OFFLINE", "TRANSFORMERS_OFFLINE"):
        if env_true(var):
            return var
    return "HF_HUB_OFFLINE" if is_offline_mode() else None


def offline_mode(offline: bool | None = None) -> bool:
    """Whether to stay off the network: the argument, else the environment now; always when
    huggingface_hub was imported offline (it would refuse every request anyway)."""
    if is_offline_mode():
        return True
    if offline is not None:
        return bool(offline)
    return offline_variable() is not None


def hub_cache_dir() -> Path:
    """The Hugging Face cache as the environment says now (not as it said at import)."""
    env = os.environ
    for var in ("HF_HUB_CACHE", "HUGGINGFACE_HUB_CACHE"):
        if env.get(var):
            return Path(os.path.expandvars(os.path.expanduser(env[var])))
    if env.get("HF_HOME"):
        return Path(os.path.expandvars(os.path.expanduser(env["HF_HOME"]))) / "hub"
    return Path(constants.HF_HUB_CACHE)


def hub_endpoint(endpoint: str | None = None) -> str:
    """The argument, else ``HF_ENDPOINT`` as set now, else huggingface_hub's default."""
    if endpoint:
        return endpoint.rstrip("/")
    if os.environ.get("HF_ENDPOINT"):
        return os.environ["HF_ENDPOINT"].rstrip("/")
    return constants.ENDPOINT.rstrip("/")


def headbake_home() -> Path:
    """headbake's own cache (the demo model): ``HEADBAKE_HOME``, else ``$XDG_CACHE_HOME/headbake``."""
    if os.environ.get("HEADBAKE_HOME"):
        return Path(os.path.expanduser(os.environ["HEADBAKE_HOME"]))
    base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return Path(base) / "headbake"


def resolve_token(token: str | None = None) -> str:
    """The argument, else ``HF_TOKEN`` or the stored login; checked before any network call, never printed."""
    if token:
        return token
    found = get_token()
    if not found:
        raise EnvironmentProblem(
            "no Hugging Face token: set HF_TOKEN or log in with `hf auth login` (the token needs write access)"
        )
    return found


def xet_allowed(endpoint: str) -> bool:
    """Whether ``endpoint`` is the Hub itself (the only place the xet storage service is known to exist)."""
    host = (urlsplit(endpoint).hostname or "").lower()
    return any(host == h or host.endswith("." + h) for h in XET_HOSTS)


@contextlib.contextmanager
def xet_scope(endpoint: str):
    """Keep xet off for one upload to an endpoint other than huggingface.co.

    hf_xet (installed with huggingface_hub) needs the Hub's CAS service; against a
    mirror or a test server an upload hung for over 120 s (huggingface_hub 2.4.0).
    huggingface_hub has no per-call switch: it reads the documented
    ``HF_HUB_DISABLE_XET`` variable once, at import, into
    ``constants.HF_HUB_DISABLE_XET`` and consults that value at each upload. So,
    only for the length of this block and only for such an endpoint, the value is
    set as if the variable had been set, and restored afterwards. Setting
    ``HF_HUB_DISABLE_XET=1`` before starting keeps xet off everywhere.
    """
    if xet_allowed(endpoint) or constants.HF_HUB_DISABLE_XET:
        yield
        return
    constants.HF_HUB_DISABLE_XET = True
    try:
        yield
    finally:
        constants.HF_HUB_DISABLE_XET = False


@contextlib.contextmanager
def bounded_timeouts(seconds: float):
    """Give huggingface_hub's shared HTTP client bounded timeouts for one block, if it has none.

    Its default client waits forever, so a stalled upload would hang ``headbake
    push``. The client comes from the public ``get_session()``; one an application
    configured with timeouts of its own (``set_client_factory``) keeps them.
    """
    session = get_session()
    old = session.timeout
    if any(t is not None for t in (old.connect, old.read, old.write, old.pool)):
        yield
        return
    session.timeout = httpx2.Timeout(seconds, connect=min(seconds, 15.0))
    try:
        yield
    finally:
        session.timeout = old
