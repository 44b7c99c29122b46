"""Progress bars for people, silence for pipes: one switch for every bar headbake draws.

A bar redraws with ``\\r`` and escape codes; in a pipe or a CI log those frames
are noise. Bars show only when asked for, stderr is a terminal, and
``HF_HUB_DISABLE_PROGRESS_BARS`` (the Hugging Face convention) is not set.
"""

from __future__ import annotations

import os
import sys

from tqdm.auto import tqdm

_TRUE = {"1", "true", "yes", "on"}


def progress_enabled(requested: bool = True) -> bool:
    if not requested:
        return False
    if os.environ.get("HF_HUB_DISABLE_PROGRESS_BARS", "").strip().lower() in _TRUE:
        return False
    try:
        return sys.stderr.isatty()
    except (AttributeError, ValueError):
        return False


def bar(total=None, desc: str = "", unit: str = "it", enabled: bool = True, **kw):
    """A tqdm bar on stderr with ETA, or a silent stand-in with the same methods."""
    return tqdm(total=total, desc=desc, unit=unit, file=sys.stderr, disable=not progress_enabled(enabled),
                dynamic_ncols=True, **kw)


def quiet_libraries(requested: bool = True) -> None:
    """Switch off transformers' and huggingface_hub's own bars (loading weights, downloading files) when
    headbake would not draw one: the same rule, so a pipe gets no frames from them either."""
    if progress_enabled(requested):
        return
    # deferred: this module is imported by the command line, which must not load transformers
    from huggingface_hub.utils import disable_progress_bars
    from transformers.utils import logging as hf_logging

    disable_progress_bars()
    hf_logging.disable_progress_bar()
