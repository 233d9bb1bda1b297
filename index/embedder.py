"""The ``Embedder`` interface, declared here by the code that uses it (build and search).

Implementations live in ``meshdex.index.embedders_*`` modules; every one of them runs through
the same contract test (``tests/test_embedder_contract.py``).
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from typing import Protocol, runtime_checkable

import numpy as np


@dataclass(frozen=True, kw_only=True)
class EmbeddingFingerprint:
    """Everything that changes the vectors an embedder produces.

    Two embedders with equal fingerprints produce interchangeable vectors; search refuses to
    recompute embeddings for an index whose fingerprint differs from the embedder's.
    ``model_hash`` is the SHA-256 of the model's files, not its name: the same model name with
    different weights is a different fingerprint.
    """

    model_id: str
    model_hash: str
    precision: str  # "fp32" | "bf16" | "fp16" | "remote"
    max_seq_length: int
    pooling: str  # "mean" | "cls" | ...
    normalize: bool
    dim: int
    metric: str = "cosine"

    def digest(self) -> str:
        """A stable hex digest of all fields (order-independent of dataclass layout)."""
        payload = json.dumps(asdict(self), sort_keys=True, separators=(",", ":"))
        return hashlib.sha256(payload.encode()).hexdigest()

    def differences(self, other: EmbeddingFingerprint) -> list[str]:
        """Human-readable list of the fields that differ, e.g. ``["precision: fp32 != bf16"]``."""
        mine, theirs = asdict(self), asdict(other)
        return [f"{key}: {mine[key]} != {theirs[key]}" for key in mine if mine[key] != theirs[key]]


@runtime_checkable
class Embedder(Protocol):
    """Turns text into L2-normalised float32 vectors.

    Contract:
    - ``embed_documents(texts)`` returns an array of shape ``(len(texts), dim)``, dtype float32,
      each row with unit L2 norm; an empty list returns shape ``(0, dim)``.
    - ``embed_query(text)`` returns shape ``(dim,)`` float32 with unit norm.
    - Both are deterministic for a fixed fingerprint (up to float rounding).
    - Failures raise ``meshdex.index.errors.EmbedderError``; never zero vectors.
    - Thread-safe: concurrent calls are allowed (implementations serialise internally if needed).
    """

    @property
    def model_id(self) -> str: ...

    @property
    def model_hash(self) -> str: ...

    @property
    def dim(self) -> int: ...

    @property
    def fingerprint(self) -> EmbeddingFingerprint: ...

    def embed_documents(self, texts: Sequence[str]) -> np.ndarray: ...

    def embed_query(self, text: str) -> np.ndarray: ...
