"""Publish a baked directory to the Hugging Face Hub as one commit.

Why it is built the way it is (huggingface_hub 2.4.0, read in its source):

- **One commit.** With ``hf_xet`` installed, ``HfApi.upload_folder`` goes through a
  streamed pipeline that commits large folders in several batches (and forces a
  commit every few minutes), so a 16 GB checkpoint could appear on the Hub with
  weights but no card. ``create_commit`` with one ``CommitOperationAdd`` per file
  always makes a single commit (it still uploads through xet or LFS as the server
  allows), so a repo never shows weights without their card or the reverse.
- **No-op.** ``create_commit`` asks the ``preupload`` endpoint for each file's
  remote oid and drops unchanged files; when nothing is left it makes no commit
  and returns the current head. We read the head of the target revision before
  committing and report ``no_op`` when the commit that comes back is that head;
  how many files changed is read from the repo tree before and after.
- **Xet, offline mode, timeouts.** See ``headbake.hub.env``: xet only on
  huggingface.co, no push while offline, bounded timeouts while pushing.
- **Secrets.** The token comes from the argument, ``HF_TOKEN`` or the stored login;
  it is checked before any network call, never printed, and scrubbed from every
  error message.
- **Retries.** Connection failures and 5xx answers are retried a few times with
  backoff, on top of huggingface_hub's own backoff for LFS calls; each retry is
  safe because files already on the Hub are skipped by oid.
"""

from __future__ import annotations

import contextlib
import fnmatch
import os
import re
import time
from dataclasses import dataclass
from pathlib import Path

from huggingface_hub import CommitOperationAdd, HfApi, RepoFile
from huggingface_hub.errors import HfHubHTTPError

from headbake import __version__
from headbake.errors import EnvironmentProblem, HeadbakeError
from headbake.fsutil import write_text_atomic
from headbake.hub.download import card_license
from headbake.hub.env import bounded_timeouts, hub_endpoint, offline_variable, resolve_token, xet_scope
from headbake.hub.errors import push_error, retryable, scrubbed, server_message, status_of
from headbake.hub.ids import looks_like_repo_id
from headbake.record import has_record, local_paths, read_record
from headbake.safepaths import check_inside, check_no_token, safe_member

IGNORE_PATTERNS = [
    ".git", ".git/*", "*/.git/*", ".cache/*", "*/.cache/*", "__pycache__/*", "*/__pycache__/*", "*.pyc",
    ".*.tmp-*", "*.tmp", ".*.partial-*", "*.partial", "*.lock", ".DS_Store", ".ipynb_checkpoints/*",
]
RETRIES = 3  # attempts for a push that fails on the network or with a 5xx
RETRY_WAIT = 2.0  # seconds before the 2nd attempt, doubled after each
TIMEOUT = 300.0  # seconds a single read/write may stall (connect: at most 15)
RECORD_FILE = "headbake.json"
CARD_FILE = "README.md"
HEATMAP_FILE = "headbake_heatmap.png"


@dataclass(frozen=True)
class PushResult:
    url: str  # the repo (or branch) page
    commit_oid: str | None
    pr_url: str | None
    no_op: bool
    repo_id: str = ""
    branch: str | None = None
    commit_url: str | None = None
    files_uploaded: int | None = None  # files that differed from the remote (None if unknown)
    files_total: int = 0


def folder_files(folder: str | os.PathLike) -> list[str]:
    """Relative paths (POSIX) of what gets uploaded: every file except temp/VCS/cache leftovers."""
    root = Path(folder)
    out = []
    for path in sorted(root.rglob("*")):
        if not path.is_file():
            continue
        rel = path.relative_to(root).as_posix()
        if any(fnmatch.fnmatch(rel, p) or fnmatch.fnmatch(path.name, p) for p in IGNORE_PATTERNS):
            continue
        out.append(rel)
    return out


def _read_record(folder: Path) -> dict | None:
    """``headbake.json`` as a dict, or None when it is missing or invalid (``check_publishable`` refuses those)."""
    try:
        return read_record(folder).to_dict() if has_record(folder) else None
    except HeadbakeError:
        return None


def _default_message(folder: Path) -> tuple[str, str]:
    rec = _read_record(folder)
    if rec is None:
        return f"Upload {folder.name} with headbake", ""
    src = rec.get("source") or {}
    sid, rev = src.get("id") or "model", src.get("revision")
    summary = f"headbake: {sid} with rescaled attention heads"
    desc = (
        f"Baked by headbake {rec.get('headbake_version', '?')} from {sid}"
        f"{'@' + rev[:12] if isinstance(rev, str) else ''}; the full record is in {RECORD_FILE}."
    )
    return summary, desc


# ----------------------------------------------------------------------------- pre-flight


def check_push_target(repo_id: str, branch: str | None = None, create_pr: bool = False) -> None:
    """Reject a malformed repo id or branch, or offline mode, before any network call or long work."""
    if branch and create_pr:
        raise HeadbakeError("--branch and --create-pr exclude each other (pull requests target main)")
    if not looks_like_repo_id(repo_id):
        raise HeadbakeError(f"invalid repo id {repo_id!r}: expected namespace/name, e.g. your-user/Ocean-R1-headbake")
    if branch is not None and (not branch or re.search(r"\s|\.\.|^refs/|^/|/$|[~^:?*\[\\]", branch)):
        raise HeadbakeError(f"invalid branch name {branch!r}")
    var = offline_variable()
    if var:
        raise EnvironmentProblem(f"{var} is set; unset it (or set it to 0) to push")


def check_publishable(folder: str | os.PathLike, *, allow_unbaked: bool = False, force: bool = False) -> list[str]:
    """Refuse to publish a folder that is not what headbake baked; returns warnings.

    Required: a README.md card, and (unless ``allow_unbaked``) a ``headbake.json``
    whose recorded files are all present at their recorded sizes (catches a shard
    that was deleted or truncated since the bake). A failed verification is an
    error unless ``force``; a missing one is a warning.
    """
    folder = Path(folder)
    if not folder.is_dir():
        raise HeadbakeError(f"folder not found: {folder}")
    warnings: list[str] = []
    record = folder / RECORD_FILE
    if not record.is_file():
        if not allow_unbaked:
            raise HeadbakeError(
                f"{folder} has no {RECORD_FILE}, so it was not made by `headbake bake`; "
                "pass --allow-unbaked to push it anyway"
            )
        warnings.append(f"{folder} has no {RECORD_FILE}; pushing it as a plain folder")
        rec = None
    else:
        from headbake.record import read_record

        rec = read_record(folder).to_dict()  # strict, bounded and validated
        leaks = local_paths(rec)
        if leaks:
            raise HeadbakeError(f"{record} names local paths ({', '.join(leaks[:2])}); refusing to publish them")
    card = folder / CARD_FILE
    if card.is_file():
        leaks = local_paths(card.read_text(encoding="utf-8", errors="replace"), patterns=False)
        if leaks:
            raise HeadbakeError(f"{card} names local paths ({', '.join(leaks[:2])}); refusing to publish them")
    if not (folder / CARD_FILE).is_file():
        hint = "`headbake card DIR` renders it from headbake.json" if rec is not None else "write one first"
        raise HeadbakeError(f"{folder} has no {CARD_FILE} model card; {hint}")
    if rec is not None:
        for rel, meta in (rec.get("files") or {}).items():
            p = safe_member(folder, rel, what=f"{RECORD_FILE} file")
            size = meta.get("size") if isinstance(meta, dict) else None
            if not p.is_file():
                raise HeadbakeError(f"{p} is listed in {RECORD_FILE} but missing; re-run the bake")
            if isinstance(size, int) and p.stat().st_size != size:
                raise HeadbakeError(f"{p} has {p.stat().st_size} bytes, {RECORD_FILE} recorded {size}; re-run the bake")
        ver = rec.get("verification")
        if isinstance(ver, dict) and ver.get("passed") is False:
            if not force:
                raise HeadbakeError(
                    f"verification of {folder} failed (see {RECORD_FILE}); pass --force to push it anyway"
                )
            warnings.append("pushing although verification failed (--force)")
        elif not isinstance(ver, dict):
            warnings.append(f"{folder} has not been verified (run `headbake verify SOURCE {folder}`)")
    return warnings


def _validate(folder: Path, repo_id: str, branch: str | None, create_pr: bool) -> list[str]:
    if not folder.is_dir():
        raise HeadbakeError(f"folder not found: {folder}")
    check_push_target(repo_id, branch, create_pr)
    files = folder_files(folder)
    if not files:
        raise HeadbakeError(f"nothing to push: {folder} has no files")
    return files


# ----------------------------------------------------------------------------- push


def push_folder(
    folder: str | os.PathLike,
    repo_id: str,
    *,
    token: str | None = None,
    private: bool = False,
    branch: str | None = None,
    create_pr: bool = False,
    endpoint: str | None = None,
    commit_message: str | None = None,
    commit_description: str | None = None,
    replace_files: dict[str, bytes] | None = None,
) -> PushResult:
    """Create ``repo_id`` if needed and upload ``folder`` to it in exactly one commit.

    ``branch`` (created from main if missing) or ``create_pr`` (a PR against main)
    choose where the commit goes. With ``private`` an existing public repo is
    refused rather than silently receiving the files. Identical content makes no
    commit (``no_op``). The folder is only read: ``replace_files`` uploads the
    given bytes instead of (or in addition to) the file at that relative path, so
    a caller can write its own change locally only once the push has succeeded.
    """
    folder = Path(folder)
    files = _validate(folder, repo_id, branch, create_pr)
    replace_files = dict(replace_files or {})
    files = sorted(set(files) | set(replace_files))
    token = resolve_token(token)
    endpoint = hub_endpoint(endpoint)
    summary, desc = _default_message(folder)
    summary = commit_message or summary
    desc = commit_description if commit_description is not None else desc

    attempts = 0
    state: dict = {}  # "head": the target revision's head as first seen, kept across retries
    while True:
        attempts += 1
        try:
            with xet_scope(endpoint), bounded_timeouts(TIMEOUT):
                return _push_once(
                    folder, files, repo_id, token=token, private=private, branch=branch, create_pr=create_pr,
                    endpoint=endpoint, summary=summary, desc=desc, state=state, replace_files=replace_files,
                )
        except _Stage as st:
            err = st.__cause__
            if retryable(err) and attempts < RETRIES:
                time.sleep(RETRY_WAIT * 2 ** (attempts - 1))
                continue
            raise scrubbed(push_error(err, stage=st.stage, repo_id=repo_id, endpoint=endpoint, attempts=attempts),
                           token) from None
        except HeadbakeError as e:
            raise scrubbed(e, token) from None


class _Stage(Exception):
    """Carries which step failed, with the original error as ``__cause__``."""
    def __init__(self, stage: str):
        super().__init__(stage)
        self.stage = stage


@contextlib.contextmanager
def _stage(name: str):
    try:
        yield
    except HeadbakeError:
        raise
    except Exception as e:  # noqa: BLE001 - mapped to one line by the caller
        raise _Stage(name) from e


def _ensure_repo(api: HfApi, repo_id: str, private: bool) -> None:
    """``create_repo`` with ``exist_ok`` semantics, but telling "name taken" apart from "no rights".

    ``create_repo(exist_ok=True)`` answers a 403 for an existing repo by building a
    ``RepoUrl`` that only accepts huggingface.co hosts (huggingface_hub 2.4), and it
    cannot say whose repo it is; so the 409/403 cases are handled here.
    """
    try:
        with _stage("create"):
            api.create_repo(repo_id, private=private, exist_ok=False, repo_type="model")
        return
    except _Stage as e:
        st = e
        status = status_of(st.__cause__) if isinstance(st.__cause__, HfHubHTTPError) else None
        if status == 409:
            return  # exists already; visibility and access are checked next
        if status != 403:
            raise
    # 403: no right to create here, but the repo may exist and be someone else's.
    try:
        api.repo_info(repo_id, repo_type="model")
    except Exception:  # noqa: BLE001 - not visible: the original 403 is the answer
        raise st from st.__cause__
    raise HeadbakeError(
        f"the repo name {repo_id} is taken: it exists and this token may not write to it "
        f"({server_message(st.__cause__)}); choose another name or use a token with write access"
    )


def _tree(api: HfApi, repo_id: str, revision: str) -> dict[str, str]:
    """path -> content id (LFS sha256 or git blob id) of every file at ``revision``."""
    return {f.path: (f.lfs.sha256 if f.lfs else f.blob_id)
            for f in api.list_repo_tree(repo_id, revision=revision, recursive=True, repo_type="model")
            if isinstance(f, RepoFile)}


def _changed_files(api: HfApi, repo_id: str, files: list[str], before: str, after: str) -> int | None:
    """How many of ``files`` differ between commits ``before`` and ``after`` (None if the trees cannot be read)."""
    try:
        old, new = _tree(api, repo_id, before), _tree(api, repo_id, after)
    except Exception:  # noqa: BLE001 - a count is a nicety; the push itself succeeded
        return None
    return sum(1 for rel in files if rel not in old or old[rel] != new.get(rel))


def _push_once(folder, files, repo_id, *, token, private, branch, create_pr, endpoint, summary, desc, state,
               replace_files):
    api = HfApi(endpoint=endpoint, token=token, library_name="headbake", library_version=__version__)
    _ensure_repo(api, repo_id, private)
    with _stage("info"):
        info = api.repo_info(repo_id, repo_type="model")
    if private and info.private is False:
        raise HeadbakeError(
            f"{repo_id} already exists and is public; --private does not change an existing repo "
            "(make it private in its settings first, or push to a new name)"
        )
    if branch:
        with _stage("branch"):
            api.create_branch(repo_id, branch=branch, exist_ok=True, repo_type="model")
    with _stage("info"):
        head = api.repo_info(repo_id, repo_type="model", revision=branch).sha
    head_before = state.setdefault("head", head)
    ops = [CommitOperationAdd(path_in_repo=rel, path_or_fileobj=replace_files.get(rel, str(folder / rel)))
           for rel in files]
    with _stage("commit"):
        ci = api.create_commit(
            repo_id, ops, commit_message=summary, commit_description=desc, repo_type="model",
            revision=branch, create_pr=create_pr,
        )
    pr_url = ci.pr_url or None
    no_op = pr_url is None and ci.oid == head_before
    base = f"{endpoint}/{repo_id}"
    url = f"{base}/tree/{branch}" if branch else base
    return PushResult(
        url=url, commit_oid=ci.oid, pr_url=pr_url, no_op=no_op, repo_id=repo_id, branch=branch,
        commit_url=ci.commit_url, files_total=len(files),
        files_uploaded=0 if no_op else _changed_files(api, repo_id, files, head_before, ci.oid),
    )


# ----------------------------------------------------------------------------- publish (push + card)


def card_for_repo(folder: Path, repo_id: str) -> str | None:
    """The headbake-generated card re-rendered with ``repo_id`` in its usage snippet, or None.

    Only a card that is exactly what headbake rendered (for whatever repo id it
    named before) is re-rendered; a hand-edited card is pushed as it is.
    """
    # Deferred: the card renderer imports headbake.hub.ids (a cycle at module level), and resolving a model,
    # which every command does, should not load it.
    from headbake.model_cards.render import card_repo_marker, card_text

    readme = folder / CARD_FILE
    if not readme.is_file():
        return None
    rec = _read_record(folder)
    if rec is None:
        return None
    text = readme.read_text(encoding="utf-8")
    old = card_repo_marker(text)
    if old is None or old == repo_id:
        return None
    heatmap = HEATMAP_FILE if (folder / HEATMAP_FILE).is_file() else None
    lic = card_license(text)
    try:
        previous = card_text(rec, None, heatmap, repo_id=old or None, out_name=folder.name, license=lic)
        if previous != text:
            return None
        return card_text(rec, None, heatmap, repo_id=repo_id, out_name=folder.name, license=lic)
    except Exception:  # noqa: BLE001 - an odd record just means the card goes up unchanged
        return None


def publish(folder, repo_id: str, *, private: bool = False, branch: str | None = None, create_pr: bool = False,
            endpoint: str | None = None, commit_message: str | None = None, allow_unbaked: bool = False,
            force: bool = False) -> tuple[PushResult, list[str], bool]:
    """What ``headbake push`` and ``convert --push-to-hub`` both do: check the folder, aim the card at
    ``repo_id``, push in one commit, and only then write the updated card locally.

    Returns ``(PushResult, warnings, card_updated)``.
    """
    folder = Path(folder)
    warnings = check_publishable(folder, allow_unbaked=allow_unbaked, force=force)
    files = folder_files(folder)
    for rel in files:
        check_inside(folder, folder / rel)  # no link that leads out of the folder goes up
    check_no_token(folder, [f for f in files if not f.endswith(".safetensors")])
    card = card_for_repo(folder, repo_id)
    res = push_folder(folder, repo_id, private=private, branch=branch, create_pr=create_pr, endpoint=endpoint,
                      commit_message=commit_message,
                      replace_files={CARD_FILE: card.encode("utf-8")} if card else None)
    if card:  # written only now, so a failed push leaves the folder exactly as it was
        write_text_atomic(folder / CARD_FILE, card)
    return res, warnings, bool(card)
