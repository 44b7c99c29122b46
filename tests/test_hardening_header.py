"""The safetensors header reader against the reference library's verdict on the same bytes.

Every crafted or generated file is either refused by both (ours in one
HeadbakeError line naming the shard), or accepted by both with the same
tensors (names, dtypes, shapes, bytes) and metadata. The one deliberate
difference: a name repeated in the header JSON is refused here, although the
reference keeps the last copy (another JSON reader may keep the first).
"""

from __future__ import annotations

import json
import shutil
import struct
import tempfile
import tracemalloc
from datetime import timedelta
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from safetensors import deserialize, safe_open

from headbake.checkpoint import read_shard
from headbake.errors import HeadbakeError

NAME = "model.safetensors"
REF_DTYPES = {  # dtype -> bits per element, as the reference library (0.8) knows them
    "BOOL": 8, "F4": 4, "F6_E2M3": 6, "F6_E3M2": 6, "U8": 8, "I8": 8, "F8_E5M2": 8, "F8_E4M3": 8,
    "F8_E8M0": 8, "F8_E4M3FNUZ": 8, "F8_E5M2FNUZ": 8, "I16": 16, "U16": 16, "F16": 16, "BF16": 16,
    "I32": 32, "U32": 32, "F32": 32, "C64": 64, "F64": 64, "I64": 64, "U64": 64,
}


def pack(header: str | bytes, data: bytes = b"") -> bytes:
    hb = header.encode() if isinstance(header, str) else header
    return struct.pack("<Q", len(hb)) + hb + data


def entry(dtype, shape, s, e) -> dict:
    return {"dtype": dtype, "shape": shape, "data_offsets": [s, e]}


def reference(raw: bytes, path: Path):
    """The reference verdict: None (refused) or (tensors, metadata)."""
    try:
        with safe_open(str(path), "pt") as f:
            meta = f.metadata()
        tensors = {n: (d["dtype"], list(d["shape"]), bytes(d["data"])) for n, d in deserialize(raw)}
    except Exception:  # noqa: BLE001 - any refusal
        return None
    return tensors, meta


def ours(path: Path):
    tracemalloc.start()
    try:
        shard = read_shard(path.parent, path.name)
    except HeadbakeError as e:
        msg = str(e)
        assert "\n" not in msg and msg.startswith(path.name), msg
        return None, msg
    finally:
        _, peak = tracemalloc.get_traced_memory()
        tracemalloc.stop()
        # memory bounded by the input's size, not by what its header claims
        assert peak < 64 * path.stat().st_size + (1 << 20), peak
    raw = path.read_bytes()
    tensors = {n: (t.dtype, list(t.shape), raw[t.start:t.end]) for n, t in shard.tensors.items()}
    return (tensors, shard.metadata), None


def compare(raw: bytes, folder: Path):
    """Assert our verdict agrees with the reference; returns (reference verdict, our refusal message)."""
    path = folder / NAME
    path.write_bytes(raw)
    ref = reference(raw, path)
    got, msg = ours(path)
    if ref is None:
        assert got is None, f"reference refuses, headbake accepted: {raw[:300]!r}"
    elif got is None:
        assert "repeats" in msg, f"reference accepts, headbake refused ({msg}): {raw[:300]!r}"
    else:
        assert got == ref
    return ref, msg


T = entry
CASES = {
    # valid files
    "valid": (pack(json.dumps({"a": T("F32", [2], 0, 8)}), b"\0" * 8), True),
    "empty": (pack("{}"), True),
    "padded header": (pack('{"a":{"dtype":"F16","shape":[1],"data_offsets":[0,2]}}   ', b"\0\0"), True),
    "json order is not offset order": (pack(json.dumps({"b": T("F32", [1], 4, 8), "a": T("F32", [1], 0, 4)}), b"\0" * 8), True),
    "zero-size tensors": (pack(json.dumps({"a": T("F32", [0, 3], 0, 0), "b": T("F32", [1], 0, 4)}), b"\0" * 4), True),
    "scalar": (pack(json.dumps({"a": T("BF16", [], 0, 2)}), b"\0\0"), True),
    "string metadata": (pack(json.dumps({"__metadata__": {"format": "pt"}, "a": T("U8", [1], 0, 1)}), b"\0"), True),
    "null metadata": (pack('{"__metadata__":null}'), True),
    "extra tensor field": (pack('{"a":{"dtype":"F32","shape":[1],"data_offsets":[0,4],"x":[1,{"y":-2.5}]}}', b"\0" * 4), True),
    "sub-byte dtype": (pack(json.dumps({"a": T("F4", [2], 0, 1)}), b"\0"), True),
    # refused by the format
    "hole between tensors": (pack(json.dumps({"a": T("F32", [1], 0, 4), "b": T("F32", [1], 8, 12)}), b"\0" * 12), False),
    "overlapping tensors": (pack(json.dumps({"a": T("F32", [2], 0, 8), "b": T("F32", [1], 4, 8)}), b"\0" * 8), False),
    "bytes after the last tensor": (pack(json.dumps({"a": T("F32", [2], 0, 8)}), b"\0" * 9), False),
    "data does not start at 0": (pack(json.dumps({"a": T("F32", [1], 4, 8)}), b"\0" * 8), False),
    "end before start": (pack(json.dumps({"a": T("F32", [0], 4, 0)}), b"\0" * 4), False),
    "truncated data": (pack(json.dumps({"a": T("F32", [2], 0, 8)}), b"\0" * 7), False),
    "negative dimension": (pack('{"a":{"dtype":"F32","shape":[-1],"data_offsets":[0,0]}}'), False),
    "minus zero dimension": (pack('{"a":{"dtype":"F32","shape":[-0],"data_offsets":[0,0]}}'), False),
    "float dimension": (pack('{"a":{"dtype":"F32","shape":[2.0],"data_offsets":[0,8]}}', b"\0" * 8), False),
    "string dimension": (pack('{"a":{"dtype":"F32","shape":["2"],"data_offsets":[0,8]}}', b"\0" * 8), False),
    "bool dimension": (pack('{"a":{"dtype":"F32","shape":[true],"data_offsets":[0,4]}}', b"\0" * 4), False),
    "dimension beyond u64": (pack('{"a":{"dtype":"F32","shape":[18446744073709551616],"data_offsets":[0,4]}}', b"\0" * 4), False),
    "shape product overflows": (pack('{"a":{"dtype":"F32","shape":[4294967296,4294967296,0],"data_offsets":[0,0]}}'), False),
    "shape x dtype != bytes": (pack(json.dumps({"a": T("F32", [3], 0, 8)}), b"\0" * 8), False),
    "misaligned sub-byte": (pack(json.dumps({"a": T("F6_E2M3", [1], 0, 1)}), b"\0"), False),
    "unknown dtype": (pack(json.dumps({"a": T("F128", [1], 0, 16)}), b"\0" * 16), False),
    "lower-case dtype": (pack(json.dumps({"a": T("f32", [1], 0, 4)}), b"\0" * 4), False),
    "three offsets": (pack('{"a":{"dtype":"F32","shape":[1],"data_offsets":[0,4,4]}}', b"\0" * 4), False),
    "missing field": (pack('{"a":{"dtype":"F32","shape":[1]}}'), False),
    "entry not an object": (pack('{"a":1}'), False),
    "repeated field": (pack('{"a":{"dtype":"F32","dtype":"F32","shape":[1],"data_offsets":[0,4]}}', b"\0" * 4), False),
    "repeated key, different tensors": (pack('{"a":{"dtype":"F32","shape":[1],"data_offsets":[0,4]},'
                                             '"a":{"dtype":"F32","shape":[1],"data_offsets":[4,8]}}', b"\0" * 8), False),
    "integer metadata value": (pack('{"__metadata__":{"x":1}}'), False),
    "null metadata value": (pack('{"__metadata__":{"x":null}}'), False),
    "list metadata": (pack('{"__metadata__":[]}'), False),
    "metadata twice": (pack('{"__metadata__":{"x":"1"},"__metadata__":{"y":"2"}}'), False),
    "NaN": (pack('{"a":{"dtype":"F32","shape":[1],"data_offsets":[0,4],"x":NaN}}', b"\0" * 4), False),
    "number out of range": (pack('{"a":{"dtype":"F32","shape":[1],"data_offsets":[0,4],"x":1e400}}', b"\0" * 4), False),
    "lone surrogate": (pack('{"\\ud800":{"dtype":"F32","shape":[1],"data_offsets":[0,4]}}', b"\0" * 4), False),
    "nesting too deep": (pack('{"a":{"dtype":"F32","shape":[1],"data_offsets":[0,4],"x":' + "[" * 126 + "]" * 126 + "}}",
                              b"\0" * 4), False),
    "header not an object": (pack("[]"), False),
    "trailing NUL in header": (pack("{}\0\0"), False),
    "byte-order mark": (pack("\ufeff{}"), False),
    "invalid UTF-8": (pack(b'{"\xff":{"dtype":"F32","shape":[1],"data_offsets":[0,4]}}', b"\0" * 4), False),
    "header length beyond file": (struct.pack("<Q", 1000) + b"{}", False),
    "header too large": (struct.pack("<Q", 100_000_001) + b"{}", False),
    "shorter than 8 bytes": (b"\1\0\0", False),
}


@pytest.mark.parametrize("name", list(CASES))
def test_each_rule_matches_the_reference(name, tmp_path):
    raw, valid = CASES[name]
    ref, msg = compare(raw, tmp_path)
    assert (ref is not None) == valid  # the table itself says what the reference does
    if not valid:
        assert msg  # and we refuse it, in one line that names the shard


def test_repeated_identical_key_is_refused_though_the_reference_keeps_one(tmp_path):
    raw = pack('{"a":{"dtype":"F32","shape":[1],"data_offsets":[0,4]},'
               '"a":{"dtype":"F32","shape":[1],"data_offsets":[0,4]}}', b"\0" * 4)
    ref, msg = compare(raw, tmp_path)
    assert ref is not None and "repeats" in msg and "'a'" in msg


def test_refusal_names_the_rule(tmp_path):
    hole = CASES["hole between tensors"][0]
    (tmp_path / NAME).write_bytes(hole)
    with pytest.raises(HeadbakeError, match=r"^model.safetensors: .*hole"):
        read_shard(tmp_path, NAME)
    (tmp_path / NAME).write_bytes(CASES["bytes after the last tensor"][0])
    with pytest.raises(HeadbakeError, match=r"^model.safetensors: .*1 byte.* after the last tensor"):
        read_shard(tmp_path, NAME)


# ----------------------------------------------------------------------------- generated headers

names = st.text(st.characters(codec="utf-8", exclude_categories=("Cs",)), max_size=6)
good_dims = st.lists(st.integers(0, 4), max_size=3)
MUTATIONS = [
    "hole", "overlap", "short", "swap", "negative offset", "float offset", "bad dim", "bad dtype",
    "drop field", "extra field", "metadata value", "repeat key", "trailing", "missing data", "misaligned",
]


@st.composite
def headers(draw):
    """A valid header and data section, then (more often than not) one or two of many ways to break it."""
    entries, pos = [], 0
    for name in draw(st.lists(names, max_size=4, unique=True).filter(lambda ns: "__metadata__" not in ns)):
        dtype, shape = draw(st.sampled_from(sorted(REF_DTYPES))), draw(good_dims)
        numel = 1
        for d in shape:
            numel *= d
        if numel * REF_DTYPES[dtype] % 8:
            shape, numel = shape + [2], numel * 2  # valid: whole bytes
        size = numel * REF_DTYPES[dtype] // 8
        entries.append([name, {"dtype": dtype, "shape": shape, "data_offsets": [pos, pos + size]}])
        pos += size
    meta = draw(st.none() | st.dictionaries(st.text(max_size=4), st.text(max_size=4), max_size=3))
    data_len = pos
    for mutation in draw(st.lists(st.sampled_from(MUTATIONS), max_size=2)):
        body = draw(st.sampled_from(entries))[1] if entries else None
        if mutation == "trailing":
            data_len += draw(st.integers(1, 3))
        elif mutation == "missing data":
            data_len = max(0, data_len - draw(st.integers(1, 3)))
        elif mutation == "metadata value":
            meta = {**(meta or {}), draw(st.text(max_size=3)): draw(st.one_of(st.integers(), st.none(), st.booleans()))}
        elif mutation == "repeat key" and entries:
            name, body = draw(st.sampled_from(entries))
            entries.append([name, dict(body)])
        elif body is None or len(body) < 3:
            continue  # no tensor, or one already missing a field
        elif mutation in ("hole", "overlap", "short", "swap", "negative offset", "float offset"):
            s, e = body["data_offsets"]
            body["data_offsets"] = {
                "hole": [s + 1, e + 1], "overlap": [max(s - 1, 0), max(e - 1, 0)], "short": [s, max(s, e - 1)],
                "swap": [e, s], "negative offset": [s - 1, e], "float offset": [float(s), e],
            }[mutation]
        elif mutation == "bad dim":
            body["shape"] = body["shape"] + [draw(st.sampled_from([-1, 2**64, 2**63, 1.0, "1", True, None]))]
        elif mutation == "bad dtype":
            body["dtype"] = draw(st.sampled_from(["f32", "F128", "", "I4", 5]))
        elif mutation == "drop field":
            del body[draw(st.sampled_from(["dtype", "shape", "data_offsets"]))]
        elif mutation == "extra field":
            body["extra"] = draw(st.one_of(st.integers(), st.text(max_size=3), st.lists(st.integers(), max_size=2)))
        elif mutation == "misaligned":
            body["dtype"], body["shape"] = "F6_E2M3", [1]
    pairs = [(k, v) for k, v in entries]
    draw(st.randoms()).shuffle(pairs)
    if meta is not None or draw(st.booleans()):
        pairs.insert(draw(st.integers(0, len(pairs))), ("__metadata__", meta))
    text = "{" + ",".join(f"{json.dumps(k)}:{json.dumps(v)}" for k, v in pairs) + "}"
    text += " " * draw(st.integers(0, 7))
    return text.encode(), draw(st.binary(min_size=data_len, max_size=data_len))


@pytest.fixture(scope="module")
def scratch():
    d = Path(tempfile.mkdtemp(prefix="hb-hyp-"))
    yield d
    shutil.rmtree(d, ignore_errors=True)


SETTINGS = settings(max_examples=300, deadline=timedelta(seconds=10),
                    suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture])


@SETTINGS
@given(headers())
def test_generated_headers_match_the_reference(scratch, hd):
    header, data = hd
    compare(pack(header, data), scratch)


@SETTINGS
@given(st.binary(max_size=64), st.integers(0, 2**64 - 1) | st.integers(0, 80))
def test_random_bytes_match_the_reference(scratch, body, n):
    compare(struct.pack("<Q", n) + body, scratch)


def test_verify_tensor_level_refuses_what_bake_refuses(tiny_bf16, tmp_path):
    """verify reads both folders through the same reader: a baked shard with bytes after its last tensor fails."""
    from headbake.bake.writer import bake_checkpoint
    from headbake.bake.verify_tensors import verify_tensors
    from headbake.model.info import load_model_info
    from builders import write_gains

    info = load_model_info(tiny_bf16)
    g = write_gains(tmp_path / "g.json", info, {(0, 1): 1.5})
    out = tmp_path / "out"
    bake_checkpoint(tiny_bf16, g, out, progress=False)
    shard = sorted(out.glob("*.safetensors"))[-1]
    with open(shard, "ab") as f:
        f.write(b"\0" * 8)
    gains = json.loads((out / "headbake.json").read_text())["gains"]["gains"]
    with pytest.raises(HeadbakeError, match=rf"^{shard.name}: .*after the last tensor"):
        verify_tensors(tiny_bf16, out, gains, progress=False)
