"""How far a code score can undershoot the exact score: the bound adaptive re-ranking stops on.

A product-quantisation code gives ``approx = q · x̂`` where the exact score is ``s = q · x``;
the error ``e = s - approx = q · (x - x̂)`` depends on the collection and the codebook, so it
is measured on the collection when the index is built, not assumed. The error grows with the
score itself (a residual ``x - x̂`` leans towards ``x``, so a query close to ``x`` sees more of
it), so it is modelled as ``e = slope · s + n``: the slope is fitted by least squares and the
bound stores quantiles of the rest, ``n``, at ``CALIBRATION_LEVELS``.

Calibration takes a sample of passage vectors as stand-in queries, finds each one's exact top
neighbours among all passages (itself left out) and records ``(s, e)`` for them: the passages
a search must not miss. Re-ranking walks the candidates in code-score order and stops once the
next candidate's code score is at or below ``code_score_floor(kth, recall_target)``: a
passage that scores at least the k-th best exact score found so far has a code score below
that floor only when its ``n`` exceeds the ``recall_target`` quantile. Stand-in queries are not
real questions, so the default target was set by measuring recall on real queries
(``bench/bench_search.py``).

The bound covers the codes it was measured on: the ``covered_nodes`` nodes of the build. A
passage a delta build inserts later gets a code from centroids it never shaped, which can
undershoot its exact score by far more (a note added to a 2-passage collection was never
scored even for its own text), so nodes from ``covered_nodes`` on are always scored exactly.

The bound travels in the bundle manifest (``BundleRerankBound`` in ``bundle.proto``); one
without ``covered_nodes`` (written before it was recorded) is not used.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np
from meshdex.index.errors import InvalidArgument

if TYPE_CHECKING:  # the manifest reads bounds without loading scikit-learn
    from meshdex.index.codes import ProductQuantizer

CALIBRATION_LEVELS = (0.5, 0.75, 0.8, 0.85, 0.9, 0.95, 0.97, 0.98, 0.99, 0.995, 0.999, 1.0)
CALIBRATION_QUERIES = 256
CALIBRATION_NEIGHBOURS = 10  # exact top neighbours per stand-in query whose error is recorded
CALIBRATION_CHUNK_QUERIES = 32  # stand-in queries scored per matrix product (bounded memory)


@dataclass(frozen=True, kw_only=True)
class RerankBound:
    """``score_errors[i]``: the ``levels[i]`` quantile (both ascending) of ``n = e - slope · s``
    over the exact top neighbours of ``sample_queries`` stand-in queries."""

    levels: tuple[float, ...]
    score_errors: tuple[float, ...]
    score_slope: float
    sample_queries: int
    covered_nodes: int  # nodes [0, covered_nodes) had their codes measured; 0: unknown

    def __post_init__(self) -> None:
        if self.covered_nodes < 0:
            raise InvalidArgument("a re-rank bound cannot cover a negative number of nodes")
        if len(self.levels) != len(self.score_errors) or not self.levels:
            raise InvalidArgument("a re-rank bound needs one score error per level")
        numbers = (*self.levels, *self.score_errors, self.score_slope)
        if not all(math.isfinite(v) for v in numbers) or not -1.0 < self.score_slope < 1.0:
            raise InvalidArgument("a re-rank bound holds a non-finite number")
        if any(b <= a for a, b in zip(self.levels, self.levels[1:], strict=False)) or not (
            0.0 < self.levels[0] and self.levels[-1] <= 1.0
        ):
            raise InvalidArgument("re-rank bound levels must ascend within (0, 1]")
        if any(b < a for a, b in zip(self.score_errors, self.score_errors[1:], strict=False)):
            raise InvalidArgument("re-rank bound score errors must not decrease")

    def code_score_floor(self, kth: float, recall_target: float) -> float:
        """The code score at or below which a candidate's exact score stays under ``kth``
        but for a ``1 - recall_target`` chance; minus infinity for a target beyond the
        calibrated levels (re-rank everything the ceiling allows)."""
        if recall_target > self.levels[-1]:
            return -math.inf
        noise = float(np.interp(recall_target, self.levels, self.score_errors))
        return (1.0 - self.score_slope) * kth - noise

    @classmethod
    def calibrate(
        cls,
        vectors: np.ndarray,
        quantizer: ProductQuantizer,
        codes: np.ndarray,
        *,
        seed: int,
        queries: int = CALIBRATION_QUERIES,
        neighbours: int = CALIBRATION_NEIGHBOURS,
    ) -> RerankBound | None:
        """Measure the bound on ``vectors`` (exact, unit rows) and their ``codes``; None for a
        collection too small to have neighbours."""
        count = len(vectors)
        neighbours = min(neighbours, count - 1)
        if neighbours < 1:
            return None
        rng = np.random.default_rng(seed)
        chosen = np.sort(rng.choice(count, size=min(queries, count), replace=False))
        exacts, errors = [], []
        for start in range(0, len(chosen), CALIBRATION_CHUNK_QUERIES):
            rows = chosen[start : start + CALIBRATION_CHUNK_QUERIES]
            stand_ins = vectors[rows]
            exact = stand_ins @ vectors.T
            exact[np.arange(len(rows)), rows] = -np.inf  # a query is not its own neighbour
            top = np.argpartition(-exact, neighbours - 1, axis=1)[:, :neighbours]
            reconstructed = quantizer.reconstruct(codes[top.ravel()]).reshape(*top.shape, -1)
            approx = np.einsum("qd,qnd->qn", stand_ins, reconstructed)
            scores = np.take_along_axis(exact, top, axis=1)
            exacts.append(scores.ravel())
            errors.append((scores - approx).ravel())
        score, error = np.concatenate(exacts), np.concatenate(errors)
        slope = float(np.clip(score @ error / max(float(score @ score), 1e-12), -0.5, 0.5))
        quantiles = np.quantile(error - slope * score, CALIBRATION_LEVELS)
        return cls(
            levels=CALIBRATION_LEVELS,
            score_errors=tuple(float(v) for v in np.maximum.accumulate(quantiles)),
            score_slope=slope,
            sample_queries=len(chosen),
            covered_nodes=count,
        )
