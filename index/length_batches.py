"""Embed many passages at the model's full speed: one global length order, original order back.

A transformer batch is padded to its longest text, so a batch mixing a 40-token and a
256-token passage pays for 256 tokens twice. ``SentenceTransformer.encode`` avoids that by
sorting the whole input by length once; feeding the model fixed windows of passages in
document order (what the build did before) only sorted inside each window, and the build took
1.37× plain ``encode`` of the same texts (issue 12). Here the whole input is sorted once, the
model sees it in windows of that order (so a progress bar can move), and the vectors are put
back in input order.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import numpy as np
from meshdex.index.embedder import Embedder
from meshdex.index.errors import EmbedderError

# Passages handed to the embedder per call: a multiple of every batch size we use (16, 32, 64,
# 128), so window edges never leave a short, badly padded batch in the middle of the build,
# and small enough that the progress bar moves every few seconds.
EMBED_WINDOW_PASSAGES = 256


def length_order(texts: Sequence[str]) -> np.ndarray:
    """Positions of ``texts`` from the longest to the shortest (stable), as
    ``SentenceTransformer.encode`` orders them: characters stand in for tokens."""
    return np.argsort([-len(text) for text in texts], kind="stable")


def embed_in_length_order(
    embedder: Embedder,
    texts: Sequence[str],
    progress: Callable[[int, int], None] | None = None,
    *,
    window: int = EMBED_WINDOW_PASSAGES,
) -> np.ndarray:
    """Vectors of ``texts`` in input order, computed in one global length order.

    ``progress(done, total)`` is called after every window. Raises ``EmbedderError`` if the
    embedder returns the wrong number or shape of vectors.
    """
    order = length_order(texts)
    vectors = np.empty((len(texts), embedder.dim), dtype=np.float32)
    for start in range(0, len(order), window):
        block = order[start : start + window]
        got = np.asarray(embedder.embed_documents([texts[i] for i in block]), dtype=np.float32)
        if got.shape != (len(block), embedder.dim):
            raise EmbedderError(
                f"passage embeddings have shape {got.shape}, expected ({len(block)}, "
                f"{embedder.dim})"
            )
        vectors[block] = got
        if progress is not None:
            progress(start + len(block), len(texts))
    return vectors
