"""Search modes and how the keyword and semantic rankings are merged (hybrid).

Reciprocal rank fusion (Cormack et al., 2009): each passage scores ``sum 1 / (RRF_K + rank)``
over the rankings it appears in. It needs no score calibration between BM25 and cosine, which
live on unrelated scales; only the keyword hits close to the best BM25 score take part (see
``KEYWORD_MIN_RELATIVE_SCORE``). ``bench/bench_keyword.py`` measures it against semantic
alone on the FAQ and identifier queries, which is how ``DEFAULT_SEARCH_MODE`` was chosen.
"""

from __future__ import annotations

from collections.abc import Sequence
from enum import StrEnum

from meshdex.index.errors import InvalidArgument

RRF_K = 60  # the constant of the original paper; damps the weight of the very first ranks
# Plain RRF lets passages that match only a query's common words, but appear in both lists,
# outrank the one passage holding its rare identifier. So the keyword ranking is cut to hits
# scoring at least this share of the best BM25 score before fusing (0 keeps all: plain RRF;
# measured: identifiers hit@10 0.610 against 0.585, FAQ MRR 0.801 against 0.797).
KEYWORD_MIN_RELATIVE_SCORE = 0.5


class SearchMode(StrEnum):
    SEMANTIC = "semantic"
    KEYWORD = "keyword"
    HYBRID = "hybrid"


# Measured (bench/results/keyword.md, hit@3 of the known passage): hybrid 0.925 against
# semantic 0.626 on the FAQ questions, 0.341 against 0.317 on identifier queries.
DEFAULT_SEARCH_MODE = SearchMode.HYBRID
SEARCH_MODES = tuple(mode.value for mode in SearchMode)


def search_mode(value: str | None) -> SearchMode:
    """The mode named ``value`` (None or "" is the default); ``InvalidArgument`` otherwise."""
    if not value:
        return DEFAULT_SEARCH_MODE
    try:
        return SearchMode(value)
    except ValueError:
        raise InvalidArgument(f"unknown search mode {value!r}; use one of "
                              f"{', '.join(SEARCH_MODES)}") from None


def confident_keyword_labels(
    hits: Sequence[tuple[int, float]], min_relative_score: float = KEYWORD_MIN_RELATIVE_SCORE
) -> list[int]:
    """Labels of ``(label, bm25)`` hits (best first) within ``min_relative_score`` of the best."""
    if not hits:
        return []
    floor = hits[0][1] * min_relative_score
    return [label for label, score in hits if score >= floor]


def reciprocal_rank_fusion(rankings: Sequence[Sequence[int]], k: int) -> list[tuple[int, float]]:
    """The ``k`` best labels over ``rankings`` (each best first) with their fused scores.

    Ties keep the order of first appearance, so the result is deterministic.
    """
    scores: dict[int, float] = {}
    for ranking in rankings:
        for rank, label in enumerate(ranking, start=1):
            scores[label] = scores.get(label, 0.0) + 1.0 / (RRF_K + rank)
    ordered = sorted(scores.items(), key=lambda item: -item[1])  # stable: first seen wins ties
    return ordered[:k]
