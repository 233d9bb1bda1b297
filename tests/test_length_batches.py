"""Builds embed in one global length order (little padding), with vectors back in input order."""

from __future__ import annotations

import numpy as np
import pytest
from meshdex.index.engine import Index
from meshdex.index.errors import EmbedderError
from meshdex.index.length_batches import EMBED_WINDOW_PASSAGES, embed_in_length_order

from tests.fakes import HashingEmbedder


class RecordingEmbedder(HashingEmbedder):
    """Records the texts of every ``embed_documents`` call, in call order."""

    def __init__(self) -> None:
        super().__init__()
        self.calls: list[list[str]] = []

    def embed_documents(self, texts):
        self.calls.append(list(texts))
        return super().embed_documents(texts)


def _texts(count: int, seed: int = 0) -> list[str]:
    rng = np.random.default_rng(seed)
    return [" ".join(f"w{rng.integers(500)}" for _ in range(rng.integers(1, 120)))
            for _ in range(count)]


def test_the_model_sees_all_passages_longest_first_across_windows():
    texts = _texts(3 * EMBED_WINDOW_PASSAGES + 17)
    embedder = RecordingEmbedder()
    embed_in_length_order(embedder, texts)
    seen = [len(text) for call in embedder.calls for text in call]
    assert len(seen) == len(texts)
    # One global order, not one per window: every window's texts are no longer than the last
    # window's shortest.
    for earlier, later in zip(embedder.calls, embedder.calls[1:], strict=False):
        assert min(map(len, earlier)) >= max(map(len, later))


@pytest.mark.parametrize("count", [1, EMBED_WINDOW_PASSAGES, EMBED_WINDOW_PASSAGES + 1, 700])
def test_vectors_come_back_in_input_order(count):
    texts = _texts(count, seed=count)
    embedder = HashingEmbedder()
    vectors = embed_in_length_order(embedder, texts)
    expected = np.stack([embedder.embed_documents([text])[0] for text in texts])
    np.testing.assert_allclose(vectors, expected, atol=1e-6)


def test_progress_reaches_the_total_once_per_window():
    texts = _texts(2 * EMBED_WINDOW_PASSAGES + 5)
    reports: list[tuple[int, int]] = []
    embed_in_length_order(HashingEmbedder(), texts,
                          lambda done, total: reports.append((done, total)))
    window = EMBED_WINDOW_PASSAGES
    assert reports == [(window, len(texts)), (2 * window, len(texts)), (len(texts), len(texts))]


def test_a_wrong_shaped_answer_is_an_embedder_error():
    class Short(HashingEmbedder):
        def embed_documents(self, texts):
            return super().embed_documents(texts)[:-1]

    with pytest.raises(EmbedderError, match="shape"):
        embed_in_length_order(Short(), _texts(10))


def test_index_build_embeds_in_global_length_order():
    texts = _texts(2 * EMBED_WINDOW_PASSAGES + 40)
    embedder = RecordingEmbedder()
    Index.build(texts, np.arange(len(texts), dtype=np.uint64), embedder=embedder)
    flat = [len(text) for call in embedder.calls for text in call]
    assert flat == sorted(flat, reverse=True)
