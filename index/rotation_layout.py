"""The stored form of an orthogonal rotation: int8 steps with a float32 scale per column.

A quarter of float32; the rounding moves a code score by ~1e-3, well under the quantisation
error. Codebook sections (``codes.py``) and the rotations shipped per model
(``model_rotations.py``) store rotations this way: ``dim`` little-endian float32 scales, then
``dim × dim`` int8 steps, row-major.
"""

from __future__ import annotations

import numpy as np
from meshdex.index.errors import InvalidArgument

_INT8_MAX = 127


def rotation_bytes(dim: int) -> int:
    """Size of a stored ``dim × dim`` rotation."""
    return dim * 4 + dim * dim


def to_bytes(rotation: np.ndarray) -> bytes:
    """``rotation`` in the stored layout."""
    scale, steps = _int8_columns(np.asarray(rotation, dtype=np.float32))
    return scale.astype("<f4").tobytes() + steps.tobytes()


def from_bytes(data: bytes | memoryview, dim: int) -> np.ndarray:
    """The float32 rotation a stored layout of ``rotation_bytes(dim)`` bytes holds."""
    data = memoryview(data).cast("B")
    if len(data) != rotation_bytes(dim):
        raise InvalidArgument(
            f"a stored rotation of dimension {dim} has {rotation_bytes(dim)} bytes, "
            f"not {len(data)}"
        )
    scale = np.frombuffer(data[: dim * 4], dtype="<f4")
    steps = np.frombuffer(data[dim * 4 :], dtype=np.int8).reshape(dim, dim)
    if not np.isfinite(scale).all():
        raise InvalidArgument("a stored rotation holds a non-finite scale")
    return steps.astype(np.float32) * scale.astype(np.float32)[None, :]


def as_stored(rotation: np.ndarray) -> np.ndarray:
    """``rotation`` as reading its stored layout gives it back."""
    return from_bytes(to_bytes(rotation), rotation.shape[0])


def _int8_columns(rotation: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """``rotation ≈ steps * scale[None, :]``: int8 steps and a float32 scale per column."""
    scale = np.abs(rotation).max(axis=0) / _INT8_MAX
    scale = np.where(scale > 0, scale, 1.0).astype(np.float32)
    steps = np.clip(np.rint(rotation / scale[None, :]), -_INT8_MAX, _INT8_MAX).astype(np.int8)
    return scale, steps
