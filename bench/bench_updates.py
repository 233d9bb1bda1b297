"""Incremental updates against fresh builds: quality and cost (issue 4's measurement).

Run from the repository root: ``python -m bench.bench_updates`` (``--queries N``). Writes
``bench/results/updates.{json,md}``.

For each share f of new passages (10%, 30%), the corpus is split deterministically: an index is
built on the other (1 - f) and the f are inserted with ``Index.add``; a fresh index is built on
all of it. Deletes: 10% of passages are tombstoned with ``Index.remove`` and compared with a
fresh build of the remaining 90%. Both sides search the same queries with the default
``SearchParams``; ground truth is exact search over the passages each index should hold.

Every index is built from the cached exact embeddings, and recompute during search and
``add`` takes vectors from the same cache (``CachedVectorsEmbedder``), so graph costs are
measured alone; the model's per-passage cost, measured in this process on a sample, is added
where a column says "incl. embedding" — an incremental add embeds only the new passages, a
rebuild embeds every passage.
"""

from __future__ import annotations

import argparse
import logging
import time

import numpy as np
from meshdex.index.embedders import default_embedder
from meshdex.index.engine import Index
from meshdex.index.params import BuildParams, SearchParams

from bench.baselines import TOP_K, exact_search
from bench.bench_search import EMBED_RATE_SAMPLE_PASSAGES, CachedVectorsEmbedder
from bench.corpus import load_corpus
from bench.embeddings_cache import embed_passages, load_or_embed
from bench.metrics import Query, QueryOutcome, Row, make_row, measure, write_results

log = logging.getLogger(__name__)

ADD_FRACTIONS = (0.1, 0.3)
DELETE_FRACTION = 0.1
DEFAULT_QUERY_SAMPLE = 100
SPLIT_SEED = 7


def _searcher(index: Index, embedder: CachedVectorsEmbedder, positions: np.ndarray,
              position_of_label: dict[int, int], params: SearchParams):
    """Search from the exact query vector; ids are positions within ``positions``."""
    local = {int(p): i for i, p in enumerate(positions)}

    def search(query: Query) -> QueryOutcome:
        result = index.search(query.vector, TOP_K, embedder=embedder,
                              texts=embedder.texts_of_labels, params=params)
        ids = [local[position_of_label[hit.label]] for hit in result.hits]
        return QueryOutcome(ids=np.array(ids, dtype=np.int64),
                            passages_recomputed=result.stats.passages_recomputed,
                            model_calls=result.stats.model_calls)

    return search


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--queries", type=int, default=DEFAULT_QUERY_SAMPLE,
                        help="FAQ + glossary questions used (evenly sampled)")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s")

    corpus = load_corpus()
    real = default_embedder("fp32")
    cached = load_or_embed(corpus, real)
    vectors, texts = cached.passages, corpus.texts
    labels = np.array([p.label for p in corpus.passages], dtype=np.uint64)
    position_of_label = {int(label): i for i, label in enumerate(labels)}
    oracle = CachedVectorsEmbedder(real, texts, vectors)
    oracle.texts_of_labels = lambda found: [texts[position_of_label[int(x)]] for x in found]

    query_texts = corpus.query_sets["faq"] + corpus.query_sets["glossary"]
    query_vectors = np.vstack([cached.queries["faq"], cached.queries["glossary"]])
    chosen = np.linspace(0, len(query_texts) - 1, min(args.queries, len(query_texts)))
    chosen = chosen.round().astype(int)
    queries = [Query(text=query_texts[i], vector=query_vectors[i]) for i in chosen]

    sample = texts[:EMBED_RATE_SAMPLE_PASSAGES]
    embed_s_per_passage = embed_passages(sample, real, progress=False)[1] / len(sample)
    configurations = {  # name -> how it is built and searched
        "default (no graph)": (BuildParams(), SearchParams()),
        "graph walk": (BuildParams(graph_min_nodes=0), SearchParams(strategy="graph")),
    }
    raw_bytes = sum(len(t.encode()) for t in texts)
    rng = np.random.default_rng(SPLIT_SEED)
    order = rng.permutation(len(texts))
    rows: list[Row] = []
    costs: dict[str, str] = {}

    def fresh(positions: np.ndarray, params: BuildParams) -> tuple[Index, float]:
        started = time.perf_counter()
        index = Index.build([texts[i] for i in positions], labels[positions], embedder=oracle,
                            params=params, embeddings=vectors[positions])
        return index, time.perf_counter() - started

    def evaluate(name: str, index: Index, positions: np.ndarray, notes: str,
                 search_params: SearchParams) -> None:
        truth = exact_search(vectors[positions], np.vstack([q.vector for q in queries]))
        search = _searcher(index, oracle, positions, position_of_label, search_params)
        measured = measure(search, queries, truth)
        size = sum(len(data) for data in index.to_sections().values())
        rows.append(make_row(method=name, query_set="faq+glossary", measured=measured,
                             index_bytes=size, raw_passage_bytes=raw_bytes, notes=notes))

    all_positions = np.sort(order)
    deleted = np.sort(order[: int(len(order) * DELETE_FRACTION)])
    kept = np.setdiff1d(all_positions, deleted)
    for config, (params, search_params) in configurations.items():
        full_index, full_build_s = fresh(all_positions, params)
        rebuild_graph_ms = full_build_s / len(texts) * 1e3
        evaluate(f"{config}: fresh build", full_index, all_positions, "all passages",
                 search_params)
        for fraction in ADD_FRACTIONS:
            cut = int(len(order) * (1 - fraction))
            base, added = np.sort(order[:cut]), np.sort(order[cut:])
            index, _ = fresh(base, params)
            started = time.perf_counter()
            index.add([texts[i] for i in added], labels[added], embedder=oracle)
            add_ms = (time.perf_counter() - started) / len(added) * 1e3
            evaluate(f"{config}: +{fraction:.0%} incremental", index, all_positions,
                     f"{len(added)} passages added with Index.add", search_params)
            costs[f"{config}, add {fraction:.0%}: index ms per added passage"] = f"{add_ms:.2f}"
            costs[f"{config}, add {fraction:.0%}: incl. embedding, ms per passage"] = (
                f"{add_ms + embed_s_per_passage * 1e3:.1f}")
        tombstoned, _ = fresh(all_positions, params)
        tombstoned.remove(labels[deleted])
        evaluate(f"{config}: -{DELETE_FRACTION:.0%} tombstoned", tombstoned, kept,
                 f"{len(deleted)} passages removed with Index.remove", search_params)
        fresh_kept, _ = fresh(kept, params)
        evaluate(f"{config}: fresh build of the {1 - DELETE_FRACTION:.0%} kept", fresh_kept,
                 kept, "", search_params)
        costs[f"{config}, rebuild: index ms per passage (embeddings given)"] = (
            f"{rebuild_graph_ms:.2f}")
        costs[f"{config}, rebuild: incl. embedding, ms per passage"] = (
            f"{rebuild_graph_ms + embed_s_per_passage * 1e3:.1f}")
    costs["model: ms per passage embedded (this process)"] = f"{embed_s_per_passage * 1e3:.1f}"
    write_results(
        "updates", rows,
        title="Incremental adds and deletes vs fresh builds (Python docs, fp32)",
        context={
            "command": "python -m bench.bench_updates"
                       + (f" --queries {args.queries}" if args.queries != DEFAULT_QUERY_SAMPLE
                          else ""),
            "corpus": f"{len(texts)} passages, {raw_bytes:,} raw bytes",
            "queries": f"{len(queries)} (FAQ + glossary, evenly sampled)",
            "params": "defaults; 'graph walk' builds with graph_min_nodes=0 and searches "
                      "with strategy=graph",
            "latency": "graph + cached-vector recompute only (no model time)",
            **costs,
        },
    )


if __name__ == "__main__":
    main()
