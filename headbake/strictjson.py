"""JSON read as strictly as the Rust readers downstream (serde_json in safetensors and tokenizers) read it.

Python's ``json`` lets through what serde_json refuses: NaN and Infinity,
numbers beyond a double, unpaired surrogate escapes, nesting deeper than 127,
and keys repeated in one object (silently keeping the last). A file that
headbake accepts must not be one a loader later refuses, nor mean one thing
here and another there, so all of these are refused.
"""

from __future__ import annotations

import json
import math

MAX_DEPTH = 127  # serde_json's recursion limit: 128 nested arrays/objects fail


class StrictJSONError(ValueError):
    """The text is not JSON that a strict reader accepts; the message says why, on one line."""


class NegativeInt(int):
    """An integer written with a minus sign (``-0`` included): serde refuses it where a ``usize`` goes."""


class WideInt(int):
    """An integer beyond u64 (serde reads it as a float, so refuses it where an integer goes)."""


def _parse_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:  # more digits than Python converts (sys.get_int_max_str_digits)
        raise StrictJSONError(f"number out of range: {text[:20]}...") from None
    if abs(value) >= 2**64:
        try:
            float(value)  # serde reads it as a double
        except OverflowError:
            raise StrictJSONError(f"number out of range: {text[:20]}...") from None
        return WideInt(value)
    return NegativeInt(value) if text.startswith("-") else value


def _parse_float(text: str) -> float:
    value = float(text)
    if not math.isfinite(value):
        raise StrictJSONError(f"number out of range: {text[:20]}")
    return value


def _constant(name: str):
    raise StrictJSONError(f"{name} is not JSON")


def _unique(pairs):
    out = {}
    for k, v in pairs:
        if k in out:
            raise StrictJSONError(f"key {k!r} repeats in one object")
        out[k] = v
    return out


def _check(value, depth: int) -> None:
    """Depth and unpaired surrogates, which the decoder itself does not refuse."""
    if isinstance(value, (dict, list)) and depth > MAX_DEPTH:
        raise StrictJSONError(f"nested deeper than {MAX_DEPTH} levels")
    if isinstance(value, str):
        try:
            value.encode("utf-8")
        except UnicodeEncodeError:
            raise StrictJSONError(f"unpaired surrogate escape in {value[:20]!r}") from None
    elif isinstance(value, dict):
        for k, v in value.items():
            _check(k, depth)
            _check(v, depth + 1)
    elif isinstance(value, list):
        for v in value:
            _check(v, depth + 1)


def loads(text: str | bytes, *, allow_nan: bool = False):
    """Parse ``text`` (bytes must be UTF-8, with no byte-order mark) or raise ``StrictJSONError``.

    Integers keep their type except: a minus-signed one is a ``NegativeInt``,
    one beyond u64 a ``WideInt`` (both still ``int``), so a caller can tell
    what serde would read as an unsigned integer: ``type(x) is int``.
    ``allow_nan`` reads NaN/Infinity as floats, for a caller that refuses them
    itself with a better message (a gain "at layer 2 head 0").
    """
    if isinstance(text, (bytes, bytearray, memoryview)):
        try:
            text = bytes(text).decode("utf-8")
        except UnicodeDecodeError as e:
            raise StrictJSONError(f"not UTF-8 ({e.reason} at byte {e.start})") from None
    try:
        value = json.loads(text, object_pairs_hook=_unique, parse_int=_parse_int, parse_float=_parse_float,
                           parse_constant=float if allow_nan else _constant)
    except StrictJSONError:
        raise
    except RecursionError:
        raise StrictJSONError(f"nested deeper than {MAX_DEPTH} levels") from None
    except ValueError as e:
        raise StrictJSONError(str(e).splitlines()[0]) from None
    _check(value, 1)
    return value
