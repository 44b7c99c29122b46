"""Gains files, JSONL data, records and the weight index: bounded reads, and property tests.

Every generated input is either accepted with the meaning Python's json
module gives it (and the shape the format asks for), or refused with one
HeadbakeError line; nothing else escapes, and nothing blocks or grows without
bound.
"""

from __future__ import annotations

import contextlib
import json
import math
import os
import shutil
import tempfile
import tracemalloc
from datetime import timedelta
from pathlib import Path

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from headbake.bounded import MAX_JSON_BYTES
from headbake.calibrate.data import load_jsonl
from headbake.checkpoint import INDEX_NAME, open_checkpoint, read_json
from headbake.errors import HeadbakeError
from headbake.gains import FORMAT, load_gains
from headbake.model.info import ModelInfo

SETTINGS = settings(max_examples=200, deadline=timedelta(seconds=10),
                    suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture])
INFO = ModelInfo("qwen2_5_vl", {}, num_layers=2, num_heads=3, head_dim=4, hidden_size=12,
                 visual_token_ids=(), config={})


@contextlib.contextmanager
def memory_bound(nbytes: int):
    """Peak Python allocations inside the block stay proportional to the input's size."""
    tracemalloc.start()
    try:
        yield
    finally:
        _, peak = tracemalloc.get_traced_memory()
        tracemalloc.stop()
    assert peak < 64 * nbytes + (2 << 20), peak


def one_line(e: HeadbakeError) -> str:
    msg = str(e)
    assert msg and "\n" not in msg, msg
    return msg


@pytest.fixture(scope="module")
def scratch():
    d = Path(tempfile.mkdtemp(prefix="hb-inputs-"))
    yield d
    shutil.rmtree(d, ignore_errors=True)


# ----------------------------------------------------------------------------- bounded reads


@pytest.fixture
def fifo(tmp_path):
    p = tmp_path / "fifo.json"
    os.mkfifo(p)
    return p


def test_gains_from_dev_zero_refused():
    with pytest.raises(HeadbakeError, match="not a regular file"):
        load_gains("/dev/zero")


def test_gains_from_a_fifo_refused_without_blocking(fifo):
    with pytest.raises(HeadbakeError, match="not a regular file"):
        load_gains(fifo)


def test_oversized_json_refused(tmp_path):
    big = tmp_path / "gains.json"
    with open(big, "wb") as f:
        f.truncate(MAX_JSON_BYTES + 1)  # sparse: no real disk
    with pytest.raises(HeadbakeError, match="more than the 64 MiB"):
        load_gains(big)
    with pytest.raises(HeadbakeError, match="more than the 64 MiB"):
        read_json(big, "headbake.json")


@pytest.mark.parametrize("path", ["/dev/zero", "fifo"])
def test_record_and_jsonl_readers_refuse_non_regular_files(path, fifo):
    path = fifo if path == "fifo" else Path(path)
    with pytest.raises(HeadbakeError, match="not a regular file"):
        read_json(path, "headbake.json")
    with pytest.raises(HeadbakeError, match="not a regular file"):
        load_jsonl(path)


def test_jsonl_image_that_is_a_device_or_fifo_refused(tmp_path, fifo):
    data = tmp_path / "d.jsonl"
    data.write_text(json.dumps({"image": "/dev/zero", "question": "q"}) + "\n"
                    + json.dumps({"image": str(fifo), "question": "q"}) + "\n")
    with pytest.raises(HeadbakeError, match=r"d.jsonl line 1: .*/dev/zero"):
        load_jsonl(data)
    data.write_text(json.dumps({"image": str(fifo), "question": "q"}) + "\n")
    with pytest.raises(HeadbakeError, match=r"d.jsonl line 1: .*fifo.json"):
        load_jsonl(data)


# ----------------------------------------------------------------------------- gains files

finite = st.floats(min_value=1e-6, max_value=1e6)
cells = st.one_of(
    finite, finite, finite, st.integers(-2, 3), st.floats(), st.booleans(), st.none(), st.text(max_size=3),
    st.just(10**400), st.lists(finite, max_size=2),
)


@st.composite
def gains_texts(draw):
    """A gains file's text: mostly near-valid documents, some plain junk."""
    kind = draw(st.sampled_from(["doc", "doc", "doc", "json", "text"]))
    if kind == "text":
        return draw(st.text(max_size=40))
    if kind == "json":
        return json.dumps(draw(st.recursive(st.none() | st.booleans() | st.floats() | st.text(max_size=4),
                                             lambda c: st.lists(c, max_size=3) | st.dictionaries(st.text(max_size=4), c, max_size=3),
                                             max_leaves=8)))
    layers = draw(st.integers(0, 3))
    heads = draw(st.integers(0, 4))
    gains = [[draw(cells) if draw(st.integers(0, 5)) == 0 else draw(finite) for _ in range(heads)] for _ in range(layers)]
    doc = {"format": draw(st.sampled_from([FORMAT, FORMAT, "headbake.gains/v2"])), "gains": gains}
    for key, value in (("num_layers", 2), ("num_heads", 3), ("head_dim", 4)):
        if draw(st.booleans()):
            doc[key] = draw(st.sampled_from([value, value, value + 1, str(value)]))
    text = json.dumps(doc, allow_nan=True)
    if draw(st.integers(0, 6)) == 0:  # a key given twice: ambiguous
        text = text[:-1] + ', "gains": [[1.0, 1.0, 1.0], [1.0, 1.0, 1.0]]}'
    return text


@SETTINGS
@given(gains_texts())
def test_gains_file_property(scratch, text):
    path = scratch / "gains.json"
    path.write_text(text, encoding="utf-8", errors="surrogatepass")
    try:
        with memory_bound(path.stat().st_size):
            doc = load_gains(path, INFO)
    except HeadbakeError as e:
        one_line(e)
        return
    want = json.loads(text)  # the meaning Python's json gives the same text
    assert want["format"] == FORMAT
    assert doc["gains"] == [[float(g) for g in row] for row in want["gains"]]
    assert len(doc["gains"]) == 2 and all(len(r) == 3 for r in doc["gains"])
    assert all(math.isfinite(g) and g > 0 and type(g) is float for r in doc["gains"] for g in r)
    assert text.count('"gains"') == 1


@SETTINGS
@given(gains_texts())
def test_gains_file_without_a_model_property(scratch, text):
    path = scratch / "gains.json"
    path.write_text(text, encoding="utf-8", errors="surrogatepass")
    try:
        doc = load_gains(path)
    except HeadbakeError as e:
        one_line(e)
        return
    rows = doc["gains"]
    assert rows and len({len(r) for r in rows}) == 1 and rows[0]
    assert all(math.isfinite(g) and g > 0 for r in rows for g in r)


def test_gain_overflowing_a_double_refused(tmp_path):
    p = tmp_path / "g.json"
    p.write_text('{"format": "%s", "gains": [[1e400, 1, 1], [1, 1, 1]]}' % FORMAT)
    with pytest.raises(HeadbakeError):
        load_gains(p, INFO)
    p.write_text('{"format": "%s", "gains": [[%s, 1, 1], [1, 1, 1]]}' % (FORMAT, "1" + "0" * 400))
    with pytest.raises(HeadbakeError):
        load_gains(p, INFO)


# ----------------------------------------------------------------------------- JSONL


@pytest.fixture(scope="module")
def jsonl_dir(scratch):
    from PIL import Image

    d = scratch / "jsonl"
    d.mkdir()
    Image.new("RGB", (32, 32), (200, 10, 10)).save(d / "ok.png")
    (d / "bad.png").write_bytes(b"\x89PNG\r\n\x1a\n" + b"\0" * 40)
    return d


line_values = st.one_of(
    st.builds(lambda img, q: json.dumps({"image": img, "question": q}),
              st.sampled_from(["ok.png", "ok.png", "ok.png", ["ok.png", "ok.png"], "missing.png", "bad.png", "",
                               [], 3, None]),
              st.one_of(st.text(min_size=1, max_size=8), st.just(""), st.just("  "), st.integers())),
    st.just(""), st.just("   "), st.just("[1, 2]"), st.just('{"image": "ok.png", "question": "a", "question": "b"}'),
    st.just('{"image": "ok.png", "question": NaN}'), st.text(max_size=10),
)


@SETTINGS
@given(st.lists(line_values, max_size=5), st.sampled_from([None, 1, 3]))
def test_jsonl_property(jsonl_dir, lines, limit):
    path = jsonl_dir / "d.jsonl"
    path.write_text("\n".join(lines), encoding="utf-8", errors="surrogatepass")
    try:
        d = load_jsonl(path, limit)
    except HeadbakeError as e:
        msg = one_line(e)
        assert str(path) in msg
        return
    records = [json.loads(ln) for ln in path.read_text().splitlines() if ln.strip()]
    wanted = records if limit is None else records[:limit]
    assert [s.question for s in d.samples] == [r["question"] for r in wanted]
    for s, r in zip(d.samples, wanted):
        n = len(r["image"]) if isinstance(r["image"], list) else 1
        imgs = s.image if isinstance(s.image, list) else [s.image]
        assert len(imgs) == n and all(im.size == (32, 32) for im in imgs)


# ----------------------------------------------------------------------------- the weight index


@pytest.fixture(scope="module")
def indexed(scratch):
    from safetensors.numpy import save_file

    d = scratch / "indexed"
    d.mkdir()
    save_file({"a": np.zeros(2, np.float32), "b": np.ones(3, np.float16)}, str(d / "s1.safetensors"))
    save_file({"c": np.zeros(1, np.int8)}, str(d / "s2.safetensors"))
    (scratch / "outside.safetensors").write_bytes((d / "s2.safetensors").read_bytes())
    return d


shard_names = st.sampled_from(["s1.safetensors", "s2.safetensors", "s3.safetensors", "../outside.safetensors",
                               "/etc/passwd", "s1.safetensors\0", "", 1, None, ["s1.safetensors"]])
wmaps = st.dictionaries(st.sampled_from(["a", "b", "c", "d"]), shard_names, max_size=4)


@SETTINGS
@given(st.one_of(
    st.builds(lambda w: json.dumps({"metadata": {}, "weight_map": w}), wmaps),
    st.builds(lambda w: json.dumps({"metadata": {}, "weight_map": w}),
              st.just({"a": "s1.safetensors", "b": "s1.safetensors", "c": "s2.safetensors"})),
    st.just('{"weight_map": {"a": "s1.safetensors", "a": "s2.safetensors"}}'),
    st.builds(json.dumps, st.none() | st.lists(st.integers(), max_size=2) | st.dictionaries(st.text(max_size=3), st.integers())),
    st.text(max_size=20),
))
def test_index_property(indexed, text):
    (indexed / INDEX_NAME).write_text(text, encoding="utf-8", errors="surrogatepass")
    try:
        with memory_bound(sum(p.stat().st_size for p in indexed.iterdir())):
            ck = open_checkpoint(indexed)
    except HeadbakeError as e:
        one_line(e)
        return
    wmap = json.loads(text)["weight_map"]
    assert text.count('"a"') <= 1
    assert set(ck.shards) == set(wmap.values()) <= {"s1.safetensors", "s2.safetensors"}
    for tensor, shard in wmap.items():
        assert ck.tensors[tensor].file == shard
