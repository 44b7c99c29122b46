"""Everything headbake does with the Hugging Face Hub, split by concern.

- ``ids``: what a repo id, a commit sha, a path or an alias looks like.
- ``env``: token, endpoint, offline mode, cache folder, xet and timeouts, decided per call.
- ``download``: MODEL (alias | Hub id | local dir) to a local checkpoint, and the demo model.
- ``push``: check a baked folder and publish it in one commit.
- ``errors``: one line for each way the Hub or the network fails, tokens scrubbed.

Only public huggingface_hub APIs are used (``HfApi``, ``snapshot_download``,
``CommitOperationAdd``, ``ModelCard``, ``get_token``, ``get_session``,
``is_offline_mode``, ``huggingface_hub.errors``, ``huggingface_hub.constants``).
"""

from headbake.hub.download import (
    CHECKPOINT_PATTERNS,
    ResolvedModel,
    alias_table,
    cached_snapshot,
    card_license,
    demo_dir,
    ensure_demo,
    resolve_model,
)
from headbake.hub.env import (
    headbake_home,
    hub_cache_dir,
    hub_endpoint,
    offline_mode,
    offline_variable,
    resolve_token,
    xet_allowed,
)
from headbake.hub.errors import scrub
from headbake.hub.ids import is_commit_sha, looks_like_path, looks_like_repo_id
from headbake.hub.push import (
    PushResult,
    card_for_repo,
    check_publishable,
    check_push_target,
    folder_files,
    publish,
    push_folder,
)
from headbake.model.aliases import aliases, find_alias, nearest_alias

__all__ = [
    "CHECKPOINT_PATTERNS", "PushResult", "ResolvedModel", "alias_table", "aliases", "cached_snapshot", "card_for_repo",
    "card_license", "check_publishable", "check_push_target", "demo_dir", "ensure_demo", "find_alias",
    "folder_files", "headbake_home", "hub_cache_dir", "hub_endpoint", "is_commit_sha", "looks_like_path",
    "looks_like_repo_id", "nearest_alias", "offline_mode", "offline_variable", "publish", "push_folder",
    "resolve_model", "resolve_token", "scrub", "xet_allowed",
]
