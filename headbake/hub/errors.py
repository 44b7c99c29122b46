"""One line for each way talking to the Hub fails, with any token scrubbed from it.

huggingface_hub raises its own classes (``huggingface_hub.errors``) for answers it
understands and the HTTP library's (``httpx2``) for the network; a user should see
neither a traceback nor a token, but what happened and what to do about it.
"""

from __future__ import annotations

import re
from pathlib import Path

import httpx2
from huggingface_hub.errors import (
    GatedRepoError,
    HfHubHTTPError,
    HFValidationError,
    IncompleteSnapshotError,
    LocalEntryNotFoundError,
    OfflineModeIsEnabled,
    RepositoryNotFoundError,
    RevisionNotFoundError,
)

from headbake.errors import EnvironmentProblem, HeadbakeError, first_line


def scrub(text: str, token: str | None) -> str:
    """Remove a token (and anything shaped like an HF token) from text meant for a human."""
    text = str(text)
    if token:
        text = text.replace(token, "***")
    return re.sub(r"\bhf_[A-Za-z0-9]{8,}\b", "hf_***", text)


def scrubbed(e: HeadbakeError, token: str | None) -> HeadbakeError:
    return EnvironmentProblem(scrub(str(e), token))


def status_of(e: BaseException) -> int | None:
    """The HTTP status of the answer behind ``e``, if there was one."""
    return getattr(getattr(e, "response", None), "status_code", None)


def server_message(e: BaseException) -> str:
    """What the server said (``X-Error-Message`` or the JSON ``error``), else the exception's first line."""
    resp = getattr(e, "response", None)
    msg = None
    if resp is not None:
        msg = resp.headers.get("X-Error-Message")
        if not msg:
            try:
                doc = resp.json()
                msg = doc.get("error") if isinstance(doc, dict) else None
            except Exception:  # noqa: BLE001 - a body that is not JSON just has no message
                msg = None
    return str(msg or first_line(e)).rstrip(".")


def is_network(e: BaseException) -> bool:
    """A failure to reach the server or a lost connection (not an answer, not offline mode)."""
    if isinstance(e, OfflineModeIsEnabled):
        return False
    return isinstance(e, (httpx2.TransportError, ConnectionError, TimeoutError))


def retryable(e: BaseException) -> bool:
    return is_network(e) or (status_of(e) or 0) in (500, 502, 503, 504)


def push_error(e: BaseException, *, stage: str, repo_id: str, endpoint: str, attempts: int) -> HeadbakeError:
    """One line per way a push fails at ``stage`` (create, info, branch, commit); a push never touches the folder."""
    status = status_of(e)
    again = "re-run `headbake push` to retry"
    if is_network(e):
        tries = f"{attempts} attempt{'s' if attempts != 1 else ''}"
        what = "cannot reach" if isinstance(e, (httpx2.ConnectError, httpx2.ConnectTimeout)) else "lost the connection to"
        return EnvironmentProblem(f"{what} {endpoint} ({type(e).__name__}, {tries}); the local folder is intact, {again}")
    if status == 401:
        return EnvironmentProblem(
            f"{endpoint} rejected the token (401 Unauthorized); log in again with `hf auth login` or set a valid HF_TOKEN"
        )
    if status == 403:
        ns = repo_id.split("/")[0]
        what = f"create repos under '{ns}'" if stage == "create" else f"write to {repo_id}"
        return EnvironmentProblem(f"the token may not {what} (403 Forbidden: {server_message(e)}); use a token with write access")
    if status in (409, 412):
        if stage in ("create", "info"):
            return EnvironmentProblem(f"the repo name {repo_id} is taken ({status}: {server_message(e)}); choose another")
        return EnvironmentProblem(f"{repo_id} changed while pushing ({status}: {server_message(e)}); {again}")
    if isinstance(e, RevisionNotFoundError):
        return EnvironmentProblem(f"revision not found in {repo_id}: {server_message(e)}")
    if isinstance(e, RepositoryNotFoundError):
        if stage == "info":
            return EnvironmentProblem(
                f"the repo name {repo_id} is taken: it exists but this token cannot see it; choose another name"
            )
        return EnvironmentProblem(f"repository {repo_id} not found on {endpoint} (or the token cannot see it)")
    if isinstance(e, ValueError) and "README.md" in str(e):  # huggingface_hub's card-metadata check
        detail = "; ".join(ln.strip("- ").strip() for ln in str(e).splitlines()[1:] if ln.strip()) or str(e)
        return EnvironmentProblem(f"{endpoint} rejected the model card metadata: {detail}")
    if status is not None:
        return EnvironmentProblem(f"{endpoint} answered {status} during {stage}: {server_message(e)}; {again}")
    return EnvironmentProblem(f"push failed during {stage}: {server_message(e)}")


def download_error(e: BaseException, *, repo_id: str, revision: str | None, endpoint: str, cache: Path,
                   offline: bool) -> HeadbakeError:
    """One line for each way fetching a Hub model fails."""
    rev = revision or "main"
    if isinstance(e, RevisionNotFoundError):
        return EnvironmentProblem(f"revision {rev!r} not found in {repo_id} on {endpoint}")
    if isinstance(e, GatedRepoError):
        return EnvironmentProblem(
            f"{repo_id} is gated: accept its terms at {endpoint}/{repo_id}, then log in (hf auth login) or set HF_TOKEN"
        )
    if isinstance(e, RepositoryNotFoundError):
        return EnvironmentProblem(f"model {repo_id!r} not found on {endpoint} (if it is private, log in or set HF_TOKEN)")
    if isinstance(e, IncompleteSnapshotError):
        return EnvironmentProblem(
            f"the cached snapshot of {repo_id} ({rev}) is incomplete and the Hub cannot be used to finish it; "
            f"re-run with network access{' and HF_HUB_OFFLINE unset' if offline else ''}"
        )
    if isinstance(e, LocalEntryNotFoundError):
        if offline:
            return EnvironmentProblem(
                f"HF_HUB_OFFLINE is set and {repo_id} ({rev}) is not in the cache {cache}; "
                "download it once online or unset HF_HUB_OFFLINE"
            )
        return EnvironmentProblem(
            f"cannot reach {endpoint} and {repo_id} ({rev}) is not in the cache {cache}; check the network and retry"
        )
    if isinstance(e, OfflineModeIsEnabled):
        return EnvironmentProblem(f"HF_HUB_OFFLINE is set; {repo_id} ({rev}) must be downloaded first")
    if isinstance(e, HFValidationError):
        return HeadbakeError(f"invalid Hub id {repo_id!r}: {first_line(e)}")
    if isinstance(e, HfHubHTTPError):
        return EnvironmentProblem(f"the Hub at {endpoint} refused {repo_id} (HTTP {status_of(e) or '?'}): {first_line(e)}")
    if is_network(e):
        return EnvironmentProblem(
            f"network error while downloading {repo_id} from {endpoint} ({type(e).__name__}); "
            "re-run to resume, finished files are kept in the cache"
        )
    return EnvironmentProblem(f"could not fetch {repo_id} ({rev}): {first_line(e)}")
