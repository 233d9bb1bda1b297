"""Test doubles for mechanics tests. Never a stand-in for the one end-to-end test of the real model.

``HashingEmbedder`` is a deterministic bag-of-words embedder: each lower-cased word is hashed
to one of ``dim`` coordinates with a sign, counts are summed and the vector normalised. Texts
that share words are close, so graph and search mechanics behave sensibly, and it runs in
microseconds. It counts model calls (one per batch) like the real embedder does.
"""

from __future__ import annotations

import hashlib
import re
import threading
from collections.abc import Sequence

import numpy as np
from meshdex.index.embedder import EmbeddingFingerprint
from meshdex.index.embedders_local import l2_normalise

HASHING_DIM = 64
HASHING_MODEL_ID = "meshdex-test/hashing-bag-of-words"
_WORD = re.compile(r"\w+")
# Every text also counts this token, so even the empty text gets a non-zero vector.
_BIAS_TOKEN = "\x00bias"


def _token_slot(token: str, dim: int) -> tuple[int, float]:
    digest = hashlib.blake2b(token.encode(), digest_size=8).digest()
    value = int.from_bytes(digest, "big")
    return value % dim, 1.0 if (value >> 63) & 1 else -1.0


class HashingEmbedder:
    """Deterministic token-hash embedder with its own fingerprint and a ``model_calls`` counter."""

    def __init__(self, *, dim: int = HASHING_DIM, batch_size: int = 32) -> None:
        self._dim = dim
        self._batch_size = batch_size
        self._lock = threading.Lock()
        self.model_calls = 0
        self.texts_embedded = 0
        self._fingerprint = EmbeddingFingerprint(
            model_id=HASHING_MODEL_ID,
            model_hash=hashlib.sha256(f"{HASHING_MODEL_ID}:{dim}".encode()).hexdigest(),
            precision="fp32",
            max_seq_length=0,
            pooling="sum",
            normalize=True,
            dim=dim,
        )

    @property
    def model_id(self) -> str:
        return HASHING_MODEL_ID

    @property
    def model_hash(self) -> str:
        return self._fingerprint.model_hash

    @property
    def dim(self) -> int:
        return self._dim

    @property
    def fingerprint(self) -> EmbeddingFingerprint:
        return self._fingerprint

    def vector(self, text: str) -> np.ndarray:
        """The un-normalised bag-of-words vector of one text (no call counted)."""
        out = np.zeros(self._dim, dtype=np.float32)
        for token in [*_WORD.findall(text.lower()), _BIAS_TOKEN]:
            slot, sign = _token_slot(token, self._dim)
            out[slot] += sign
        if not out.any():  # the signs cancelled out exactly; keep the vector non-zero
            out[_token_slot(_BIAS_TOKEN, self._dim)[0]] = 1.0
        return out

    def embed_documents(self, texts: Sequence[str]) -> np.ndarray:
        if isinstance(texts, str):
            raise TypeError("embed_documents takes a list of texts")
        out = np.empty((len(texts), self._dim), dtype=np.float32)
        for start in range(0, len(texts), self._batch_size):
            batch = texts[start : start + self._batch_size]
            with self._lock:
                self.model_calls += 1
                self.texts_embedded += len(batch)
            vectors = np.stack([self.vector(text) for text in batch])
            out[start : start + len(batch)] = l2_normalise(vectors)
        return out

    def embed_query(self, text: str) -> np.ndarray:
        return self.embed_documents([text])[0]
