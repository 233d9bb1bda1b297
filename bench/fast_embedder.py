"""An embedder for benchmarks that measure bytes, not recall: each text gets a unit vector
drawn from a generator seeded by the text's hash, in the real model's 384 dimensions.
Deterministic and nearly free, so size benchmarks spend no CPU on a model."""

from __future__ import annotations

import hashlib
from collections.abc import Sequence

import numpy as np
from meshdex.index.embedder import EmbeddingFingerprint

RANDOM_VECTOR_DIM = 384
RANDOM_VECTOR_MODEL_ID = "meshdex-bench/random-unit-vectors"


class RandomVectorEmbedder:
    def __init__(self, *, dim: int = RANDOM_VECTOR_DIM) -> None:
        self._dim = dim
        self._fingerprint = EmbeddingFingerprint(
            model_id=RANDOM_VECTOR_MODEL_ID,
            model_hash=hashlib.sha256(f"{RANDOM_VECTOR_MODEL_ID}:{dim}".encode()).hexdigest(),
            precision="fp32", max_seq_length=0, pooling="none", normalize=True, dim=dim,
        )

    @property
    def model_id(self) -> str:
        return RANDOM_VECTOR_MODEL_ID

    @property
    def model_hash(self) -> str:
        return self._fingerprint.model_hash

    @property
    def dim(self) -> int:
        return self._dim

    @property
    def fingerprint(self) -> EmbeddingFingerprint:
        return self._fingerprint

    def embed_documents(self, texts: Sequence[str]) -> np.ndarray:
        out = np.empty((len(texts), self._dim), dtype=np.float32)
        for row, text in enumerate(texts):
            seed = int.from_bytes(hashlib.sha256(text.encode()).digest()[:8], "big")
            vector = np.random.default_rng(seed).standard_normal(self._dim)
            out[row] = vector / np.linalg.norm(vector)
        return out

    def embed_query(self, text: str) -> np.ndarray:
        return self.embed_documents([text])[0]
