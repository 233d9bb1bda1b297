"""Search modes and how the keyword and semantic rankings are merged (hybrid).

Reciprocal rank fusion (Cormack et al., 2009): each passage scores
``sum weight / (RRF_K + rank)`` over the rankings it appears in. It needs no score calibration
between BM25 and cosine, which live on unrelated scales; only the keyword hits close to the
best BM25 score take part (see ``KEYWORD_MIN_RELATIVE_SCORE``), and for an identifier query
(``meshdex.index.identifiers``) the keyword ranking weighs ``IDENTIFIER_KEYWORD_WEIGHT`` times
the semantic one: the embedding model knows what ``copyfileobj`` is about but not which of
the passages naming it defines it, which the keyword index's defined names do.
``bench/bench_keyword.py`` measures it against semantic alone on the FAQ and identifier
queries, which is how ``DEFAULT_SEARCH_MODE`` and the constants were chosen.
"""

from __future__ import annotations

from collections.abc import Sequence
from enum import StrEnum

from meshdex.index.errors import InvalidArgument
from meshdex.index.identifiers import query_identifiers

RRF_K = 60  # the constant of the original paper; damps the weight of the very first ranks
# Plain RRF lets passages that match only a query's common words, but appear in both lists,
# outrank the one passage holding its rare identifier. So the keyword ranking is cut to hits
# scoring at least this share of the best BM25 score before fusing (0 keeps all: plain RRF;
# measured: identifiers hit@10 0.610 against 0.585, FAQ MRR 0.801 against 0.797).
KEYWORD_MIN_RELATIVE_SCORE = 0.5
# Chosen on the development identifier queries (bench/bench_keyword.py): with equal weights a
# passage both rankings hold at rank 2 (1/62 + 1/62) beats the keyword index's first hit (1/61)
# that semantic search missed, and that first hit is the defining passage nine times in ten.
IDENTIFIER_KEYWORD_WEIGHT = 3.0


class SearchMode(StrEnum):
    SEMANTIC = "semantic"
    KEYWORD = "keyword"
    HYBRID = "hybrid"


# Measured (bench/results/keyword.md, hit@3 of the known passage): hybrid 0.925 against
# semantic 0.626 on the FAQ questions; on identifier queries 0.976 against 0.317 (development
# set) and 0.939 against 0.327 (held out).
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


def reciprocal_rank_fusion(
    rankings: Sequence[Sequence[int]], k: int, *, weights: Sequence[float] | None = None
) -> list[tuple[int, float]]:
    """The ``k`` best labels over ``rankings`` (each best first) with their fused scores,
    each ranking counted ``weights[i]`` times (default: once).

    Ties keep the order of first appearance, so the result is deterministic.
    """
    scores: dict[int, float] = {}
    for ranking, weight in zip(rankings, weights or [1.0] * len(rankings), strict=True):
        for rank, label in enumerate(ranking, start=1):
            scores[label] = scores.get(label, 0.0) + weight / (RRF_K + rank)
    ordered = sorted(scores.items(), key=lambda item: -item[1])  # stable: first seen wins ties
    return ordered[:k]


def hybrid_ranking(
    query: str, semantic: Sequence[int], keyword: Sequence[tuple[int, float]], k: int
) -> list[tuple[int, float]]:
    """The hybrid mode's ``k`` best labels for ``query``: the ``semantic`` labels (best first)
    fused with the confident ``(label, bm25)`` ``keyword`` hits, weighted up for identifiers."""
    weight = IDENTIFIER_KEYWORD_WEIGHT if query_identifiers(query) else 1.0
    return reciprocal_rank_fusion([semantic, confident_keyword_labels(keyword)], k,
                                  weights=(1.0, weight))
