"""Rotations learnt once per embedding model and shipped with meshdex, for collections too
small to pay for a rotation of their own.

OPQ's rotation (``codes.py``) costs ``dim²`` bytes in a bundle (147 KB for 384 dimensions), as
much as the codes of 4,608 passages, so a smaller collection used to get none and its codes
ranked worse: on 3,000 passages of the Python docs, the exact top 3 of a FAQ question lay among
the best 16 by code score 0.914 of the time without a rotation and 0.966 with this module's
rotation for all-MiniLM-L6-v2 (0.985 with one learnt on those very passages, for 147 KB). Much
of what a rotation does (spreading the variance of the embedding evenly over the code's
slices) depends on the model rather than on the collection, so one learnt on other text of the
same model carries over: this one was learnt on Debian's package documentation
(``python -m meshdex.index.train_model_rotation``), never on the benchmark corpus.

A rotation is stored in ``rotation_layout`` form as ``rotations/<model hash>.rot``; a codebook
section that uses it holds its SHA-256 instead of the matrix, so such a bundle opens only where
the same rotation is installed, and a changed file is refused rather than silently used.
"""

from __future__ import annotations

import functools
import hashlib
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from meshdex.index import rotation_layout
from meshdex.index.errors import InvalidArgument

ROTATIONS_DIR = Path(__file__).resolve().parent / "rotations"
ROTATION_SUFFIX = ".rot"
DIGEST_BYTES = 32


@dataclass(frozen=True, kw_only=True)
class ModelRotation:
    """A shipped rotation: ``digest`` (SHA-256 of its stored bytes) names it in codebooks."""

    model_hash: str
    digest: bytes
    rotation: np.ndarray  # (dim, dim) float32


def path_for(model_hash: str) -> Path:
    return ROTATIONS_DIR / f"{model_hash}{ROTATION_SUFFIX}"


def for_model(model_hash: str, dim: int) -> ModelRotation | None:
    """The rotation shipped for the model with these weights, None when there is none."""
    rotation = _installed().get(model_hash)
    if rotation is None or rotation.rotation.shape[0] != dim:
        return None
    return rotation


def by_digest(digest: bytes) -> ModelRotation:
    """The installed rotation named ``digest``; ``InvalidArgument`` when none is."""
    for rotation in _installed().values():
        if rotation.digest == bytes(digest):
            return rotation
    raise InvalidArgument(
        f"codebook uses the model rotation {bytes(digest).hex()[:16]}, "
        "which this meshdex does not ship",
        hint="the bundle was built by another meshdex version: rebuild the collection here",
    )


@functools.cache
def _installed() -> dict[str, ModelRotation]:
    found = {}
    for path in sorted(ROTATIONS_DIR.glob(f"*{ROTATION_SUFFIX}")):
        data = path.read_bytes()
        dim = _dim_of(len(data), path)
        found[path.stem] = ModelRotation(
            model_hash=path.stem,
            digest=hashlib.sha256(data).digest(),
            rotation=rotation_layout.from_bytes(data, dim),
        )
    return found


def _dim_of(size: int, path: Path) -> int:
    """The dimension whose stored rotation has ``size`` bytes (``dim² + 4·dim``)."""
    dim = int(np.sqrt(4 + size) - 2)
    if rotation_layout.rotation_bytes(dim) != size:
        raise InvalidArgument(f"{path} is not a stored rotation ({size} bytes)")
    return dim
