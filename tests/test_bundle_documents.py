"""The documents section (``export --with-documents``): lossless round trip, damage refused."""

from __future__ import annotations

import zlib

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from meshdex.index import bundle_documents
from meshdex.index.bundle_documents import DOCUMENTS_MAGIC, decode_documents, encode_documents
from meshdex.index.errors import BundleCorrupt, InvalidArgument

json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(), inner, max_size=4),
    max_leaves=12,
)
records = st.lists(st.dictionaries(st.text(max_size=10), json_values, max_size=5), max_size=20)


def sample_records() -> list[dict]:
    return [
        {"id": f"doc-{i}", "source": f"notes/{i}.md", "text": f"Paragraph {i}.\nLine two é ✓",
         "metadata": {"year": 2020 + i % 5, "tags": ["a", "b"]}, "deleted": i % 7 == 0}
        for i in range(30)
    ]


@settings(max_examples=60, deadline=None)
@given(records)
def test_round_trip_is_lossless_and_in_order(values):
    assert list(decode_documents(encode_documents(values))) == values


def test_records_bigger_than_one_read_chunk_round_trip():
    big = [{"id": "big", "text": "lorem ipsum " * 400_000}, {"id": "after", "text": "x\ny"}]
    data = encode_documents(big)
    assert len(data) < 100_000  # compressed
    assert list(decode_documents(memoryview(data))) == big


def test_every_truncation_is_refused():
    data = encode_documents(sample_records())
    for length in range(len(data)):
        with pytest.raises(BundleCorrupt, match="documents section"):
            list(decode_documents(data[:length]))


def test_every_flipped_byte_is_refused():
    data = encode_documents(sample_records())
    for position in range(len(data)):
        flipped = bytearray(data)
        flipped[position] ^= 0x01
        with pytest.raises(BundleCorrupt, match="documents section"):
            list(decode_documents(bytes(flipped)))


def test_trailing_bytes_are_refused():
    with pytest.raises(BundleCorrupt, match="bytes follow"):
        list(decode_documents(encode_documents(sample_records()) + b"\x00"))


def test_oversized_record_is_refused_without_buffering_it(monkeypatch):
    monkeypatch.setattr(bundle_documents, "MAX_RECORD_BYTES", 1000)
    data = encode_documents([{"text": "a" * 500}])
    monkeypatch.setattr(bundle_documents, "MAX_RECORD_BYTES", 100)
    monkeypatch.setattr(bundle_documents, "_READ_CHUNK_BYTES", 64)
    with pytest.raises(BundleCorrupt, match="longer than 100 bytes"):
        list(decode_documents(data))


@pytest.mark.parametrize(
    ("lines", "expected"),
    [([b"[1, 2]\n"], "not a JSON object"), ([b"{oops\n"], "not valid JSON"),
     ([b'{"a": 1}'], "not terminated")],
)
def test_records_that_are_not_json_objects_are_refused(lines, expected):
    data = DOCUMENTS_MAGIC + zlib.compress(b"".join(lines))
    with pytest.raises(BundleCorrupt, match=expected):
        list(decode_documents(data))


@pytest.mark.parametrize(
    "record", [{"x": float("nan")}, {"x": b"bytes"}, {"x": object()}]
)
def test_records_that_cannot_be_json_are_refused_on_encode(record):
    with pytest.raises(InvalidArgument, match="record 0 cannot be stored as JSON"):
        encode_documents([record])
