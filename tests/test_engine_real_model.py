"""End to end with the real packaged model: an index over a few hundred real passages finds what
exact search finds, while recomputing only a fraction of the candidates."""

from __future__ import annotations

import collections
import inspect
import json
import pathlib
import re
import shutil
import textwrap

import numpy as np
import pytest
from meshdex.index.engine import Index
from meshdex.index.params import BuildParams, SearchParams

pytestmark = pytest.mark.model

PASSAGE_COUNT = 240
MODULES = (json, pathlib, re, textwrap, inspect, collections, shutil)
QUERIES = [
    "turn a Python object into a JSON string",
    "read the whole contents of a file as text",
    "split a string using a regular expression",
    "wrap a long paragraph to a fixed line width",
    "get the source code of a function",
    "check whether a path points to a directory",
    "replace every match of a pattern in a string",
    "remove common leading whitespace from lines",
    "list the members of a class or module",
    "create a new directory and its parents",
    "escape special characters in a pattern",
    "find the signature of a callable",
    "copy a file together with its permissions",
    "count how often each element occurs",
]


def _real_passages() -> list[str]:
    """Docstrings of the standard library (real prose, same on every machine with 3.11)."""
    texts: list[str] = []
    for module in MODULES:
        for _, member in sorted(inspect.getmembers(module)):
            candidates = [member]
            if inspect.isclass(member):
                candidates += [m for _, m in sorted(vars(member).items())]
            for obj in candidates:
                doc = inspect.getdoc(obj) if callable(obj) or inspect.isclass(obj) else None
                if doc and len(doc) >= 80 and doc not in texts:
                    texts.append(doc[:1200])
    return texts[:PASSAGE_COUNT]


def test_real_model_search_reaches_recall_against_exact(real_embedder):
    texts = _real_passages()
    assert len(texts) >= 200
    labels = np.arange(1, len(texts) + 1, dtype=np.uint64) << np.uint64(20)
    by_label = dict(zip(labels.tolist(), texts, strict=True))
    vectors = real_embedder.embed_documents(texts)
    params = BuildParams(cache_budget_nodes=8)
    index = Index.build(texts, labels, embedder=real_embedder, params=params, embeddings=vectors)
    recomputed, found = [], 0
    search_params = SearchParams(ef=32, recompute_fraction=0.5)
    for query in QUERIES:
        truth = set(labels[np.argsort(-(vectors @ real_embedder.embed_query(query)))[:3]].tolist())
        result = index.search(query, 3, embedder=real_embedder,
                              texts=lambda ls: [by_label[int(x)] for x in ls],
                              params=search_params)
        found += len(truth & {hit.label for hit in result.hits})
        recomputed.append(result.stats.passages_recomputed)
        assert result.stats.model_calls == 1 + -(-result.stats.passages_recomputed
                                                 // search_params.batch_size)
    assert found / (3 * len(QUERIES)) >= 0.9
    assert max(recomputed) <= 16  # the two-level ranking recomputed half the pool at most
    sizes = {name: len(data) for name, data in index.to_sections().items()}
    assert sum(sizes.values()) < vectors.nbytes / 4  # far smaller than the embeddings
