"""Chunking: deterministic passages, bounded length, nothing lost, stable keys and labels."""

from __future__ import annotations

import hashlib
import json
import re
import subprocess
import sys

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from meshdex.index.chunking import (
    ChunkingParams,
    chunk_text,
    passage_key,
    passage_label,
)
from meshdex.index.errors import InvalidArgument

PROSE = (
    "Meshdex keeps a pruned graph and the passages. It recomputes embeddings on demand!\n\n"
    "A second paragraph follows here. It has two sentences?\n\n"
    "Third paragraph: short."
)

_texts = st.lists(
    st.sampled_from(list("abcde XYZ.!?\n\t\r,é中") + ["\n\n", ". ", "  ", "word "]),
    max_size=300,
).map("".join)
_params = st.builds(
    lambda max_chars, ratio: ChunkingParams(
        max_chars=max_chars, overlap_chars=int((max_chars - 1) * ratio)
    ),
    st.integers(min_value=1, max_value=120),
    st.floats(min_value=0.0, max_value=0.9),
)


def _squash(text: str) -> str:
    return re.sub(r"\s", "", text)


@settings(max_examples=300, deadline=None)
@given(text=_texts, params=_params)
def test_passages_are_bounded_stripped_and_in_order(text: str, params: ChunkingParams) -> None:
    passages = chunk_text(text, params)
    normalised = text.replace("\r\n", "\n").replace("\r", "\n")
    position = 0
    for passage in passages:
        assert 0 < len(passage) <= params.max_chars
        assert passage == passage.strip()
        found = normalised.find(passage, position)
        assert found >= 0, "each passage is a piece of the text, in order"
        position = found + 1
    assert chunk_text(text, params) == passages


@settings(max_examples=300, deadline=None)
@given(text=_texts, max_chars=st.integers(min_value=1, max_value=120))
def test_without_overlap_the_passages_are_exactly_the_text(text: str, max_chars: int) -> None:
    passages = chunk_text(text, ChunkingParams(max_chars=max_chars, overlap_chars=0))
    assert _squash("".join(passages)) == _squash(text)


def test_short_text_is_one_passage_and_blank_text_none() -> None:
    assert chunk_text("  hello world \n", ChunkingParams()) == ["hello world"]
    assert chunk_text(" \n\t ", ChunkingParams()) == []


def test_cuts_prefer_paragraph_then_sentence_then_word_boundaries() -> None:
    by_paragraph = chunk_text(PROSE, ChunkingParams(max_chars=120, overlap_chars=0))
    assert by_paragraph == [
        "Meshdex keeps a pruned graph and the passages. It recomputes embeddings on demand!",
        "A second paragraph follows here. It has two sentences?\n\nThird paragraph: short.",
    ]
    by_sentence = chunk_text(PROSE, ChunkingParams(max_chars=60, overlap_chars=0))
    assert by_sentence[0] == "Meshdex keeps a pruned graph and the passages."
    by_word = chunk_text("alpha beta gamma delta", ChunkingParams(max_chars=12, overlap_chars=0))
    assert by_word == ["alpha beta", "gamma delta"]
    exact_fit = chunk_text("alpha beta gamma delta", ChunkingParams(max_chars=10, overlap_chars=0))
    assert exact_fit == ["alpha beta", "gamma", "delta"]
    hard = chunk_text("x" * 25, ChunkingParams(max_chars=10, overlap_chars=3))
    assert hard == ["x" * 10, "x" * 10, "x" * 5]


def test_overlap_repeats_the_tail_of_the_previous_passage_from_a_word_start() -> None:
    passages = chunk_text("aa bb cc dd ee ff gg hh", ChunkingParams(max_chars=10, overlap_chars=4))
    assert passages == ["aa bb cc", "cc dd ee", "ee ff gg", "gg hh"]


def test_overlap_prefers_a_sentence_start() -> None:
    text = "One two. Three four five six seven eight"
    passages = chunk_text(text, ChunkingParams(max_chars=20, overlap_chars=12))
    assert passages[0] == "One two. Three four"
    assert passages[1].startswith("Three four")


def test_line_endings_do_not_change_passages() -> None:
    params = ChunkingParams(max_chars=60, overlap_chars=10)
    assert chunk_text(PROSE.replace("\n", "\r\n"), params) == chunk_text(PROSE, params)


def test_chunking_is_identical_in_another_process() -> None:
    code = (
        "import json,sys;from meshdex.index.chunking import ChunkingParams,chunk_text;"
        "params = ChunkingParams(max_chars=70, overlap_chars=10);"
        "print(json.dumps(chunk_text(sys.stdin.read(), params)))"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], input=PROSE * 5, capture_output=True, text=True, check=True
    )
    assert json.loads(out.stdout) == chunk_text(
        PROSE * 5, ChunkingParams(max_chars=70, overlap_chars=10)
    )


def test_passage_key_and_label() -> None:
    key = passage_key("héllo")
    assert key == hashlib.sha256("héllo".encode()).digest()
    assert len(key) == 32
    assert passage_label(key) == int.from_bytes(key[:8], "big")
    assert 0 <= passage_label(key) < 2**64
    assert passage_key("héllo ") != key


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"max_chars": 0}, "max_chars"),
        ({"max_chars": 10, "overlap_chars": 10}, "overlap_chars"),
        ({"overlap_chars": -1}, "overlap_chars"),
        ({"max_chars": 1.5}, "max_chars"),
    ],
)
def test_bad_params_are_refused(kwargs: dict, message: str) -> None:
    with pytest.raises(InvalidArgument, match=message):
        ChunkingParams(**kwargs)


def test_params_round_trip_and_unknown_keys_refused() -> None:
    params = ChunkingParams(max_chars=500, overlap_chars=50)
    assert ChunkingParams.from_dict(params.to_dict()) == params
    with pytest.raises(InvalidArgument, match="unknown chunking parameter"):
        ChunkingParams.from_dict({"max_chars": 5, "stride": 2})


def test_label_needs_a_full_key() -> None:
    with pytest.raises(InvalidArgument, match="32 bytes"):
        passage_label(b"short")
