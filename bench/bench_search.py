"""The index engine's benchmark: meshdex variants against exact search and hnswlib.

Run from the repository root: ``python -m bench.bench_search`` (``--queries N`` to change the
FAQ sample, ``--precision fp32`` for the fp32 model). The default precision is that of new
collections (``EmbedderSpec.precision``): index, query vectors and recomputes all use it, and
recall is always measured against exact search over the fp32 embeddings, so the headline row
is the configuration a new user gets, judged against the target's truth. Writes
``bench/results/search.{json,md}`` at the default precision, ``search-PRECISION.{json,md}``
at another.

Corpus, queries, ground truth, baselines and table come from the shared harness
(``bench/corpus.py``, ``embeddings_cache.py``, ``baselines.py``, ``metrics.py``). Every meshdex
index is built from the cached exact embeddings (``Index.build(..., embeddings=...)``), so the
benchmark does not re-embed the corpus; build time is reported against the pure embedding time
of the same model measured in this process on a sample of passages.

Two kinds of meshdex rows:

- **measured** rows recompute with the real model on passage texts, so their latency includes
  every model call they make (query embedding excluded for every method, see the context);
- **sweep** rows (the knob sweep) take recomputed vectors from the embeddings cache instead of
  the model, to keep the run short; their recompute counts are exact, and their latency is
  *estimated* as measured candidate time + recomputes × the per-passage model time measured
  in the measured rows (flagged in the notes).
"""

from __future__ import annotations

import argparse
import dataclasses
import logging
import math
import os
import statistics
import time
from collections.abc import Sequence

import numpy as np
from meshdex.index.embedder import Embedder
from meshdex.index.embedders import EmbedderSpec, default_embedder
from meshdex.index.engine import Index, SearchStats
from meshdex.index.learned_cache import LearnedCache, entry_bytes
from meshdex.index.params import BuildParams, SearchParams
from meshdex.index.score_memo import QueryScoreMemo
from meshdex.node.search_caches import LEARNED_PASSAGE_FRACTION, MEMO_BUDGET_BYTES

from bench.baselines import (
    HNSW_EF_CONSTRUCTION,
    HNSW_M,
    TOP_K,
    HnswBaseline,
    exact_index_bytes,
    exact_search,
    exact_searcher,
)
from bench.corpus import Corpus, load_corpus
from bench.embeddings_cache import (
    TRUTH_PRECISION,
    embed_passages,
    load_or_embed,
    truth_embeddings,
)
from bench.metrics import Measured, Query, QueryOutcome, Row, make_row, measure, write_results
from bench.run_baselines import query_embed_ms

log = logging.getLogger(__name__)

DEFAULT_QUERY_SAMPLE = 60
EMBED_RATE_SAMPLE_PASSAGES = 256
MEASURE_REPEATS = 20


class CachedVectorsEmbedder:
    """Answers ``embed_documents`` from the embeddings cache (same fingerprint as the model):
    the sweep's stand-in for recompute, counting calls and passages like a real model."""

    def __init__(self, real: Embedder, texts: Sequence[str], vectors: np.ndarray) -> None:
        self._real = real
        self._row_of_text = {text: row for row, text in enumerate(texts)}
        self._vectors = vectors

    model_id = property(lambda self: self._real.model_id)
    model_hash = property(lambda self: self._real.model_hash)
    dim = property(lambda self: self._real.dim)
    fingerprint = property(lambda self: self._real.fingerprint)

    def embed_documents(self, texts: Sequence[str]) -> np.ndarray:
        return self._vectors[[self._row_of_text[text] for text in texts]]

    def embed_query(self, text: str) -> np.ndarray:
        raise AssertionError("the benchmark searches from cached query vectors")


@dataclasses.dataclass(frozen=True, kw_only=True)
class Variant:
    name: str
    build: BuildParams
    search: SearchParams
    measured: bool  # recompute with the real model (else cached vectors + estimated latency)


def _sample(items: Sequence, count: int) -> list[int]:
    """``count`` evenly spaced positions (deterministic)."""
    if count >= len(items):
        return list(range(len(items)))
    return np.linspace(0, len(items) - 1, count).round().astype(int).tolist()


def _describe(build: BuildParams, search: SearchParams, defaults: BuildParams) -> str:
    changed = {k: v for k, v in build.to_dict().items() if v != defaults.to_dict()[k]}
    build_text = " ".join(f"{k}={v}" for k, v in changed.items())
    return (f"{build_text + ' ' if build_text else ''}ef={search.ef} "
            f"frac={search.recompute_fraction} {search.strategy}").strip()


def variants(query_default: SearchParams) -> list[Variant]:
    """The rows: headline comparisons measured with the model, then a small knob sweep."""
    base = BuildParams()  # the default: no graph below graph_min_nodes, flat code scan
    graphed = dataclasses.replace(base, graph_min_nodes=0)
    graph = dataclasses.replace(query_default, strategy="graph")
    unpruned = dataclasses.replace(graphed, pruned_degree=base.M, hub_fraction=1.0)
    rows = [
        Variant(name="meshdex default (flat codes + re-rank)", build=base,
                search=query_default, measured=True),
        Variant(name="meshdex pruned, graph walk", build=graphed, search=graph, measured=True),
        Variant(name="meshdex unpruned", build=unpruned, search=graph, measured=True),
        Variant(name="meshdex no two-level", build=base,
                search=dataclasses.replace(query_default, recompute_fraction=1.0), measured=True),
        Variant(name="meshdex graph, no hot cache",
                build=dataclasses.replace(graphed, cache_budget_nodes=0), search=graph,
                measured=True),
        Variant(name="meshdex full storage", build=dataclasses.replace(base, storage_mode="full"),
                search=query_default, measured=True),
    ]
    for ef in (40, 80, 160):
        for fraction in (0.25, 0.5, 1.0):
            rows.append(Variant(name="sweep ef/recompute", build=base,
                                search=dataclasses.replace(query_default, ef=ef,
                                                           recompute_fraction=fraction),
                                measured=False))
    rows.append(Variant(name="sweep code size (no rotation, as before issue 12)",
                        build=dataclasses.replace(base, pq_rotation_iterations=0),
                        search=query_default, measured=False))
    for subvectors, bits in ((32, 4), (48, 4), (24, 8)):
        rows.append(Variant(name="sweep code size",
                            build=dataclasses.replace(base, pq_subvectors=subvectors, pq_bits=bits),
                            search=query_default, measured=False))
    for budget in (128, 512):
        rows.append(Variant(name="sweep cache budget (graph hubs)",
                            build=dataclasses.replace(graphed, cache_budget_nodes=budget),
                            search=graph, measured=False))
    for degree in (4, 8):
        rows.append(Variant(name="sweep pruned degree",
                            build=dataclasses.replace(graphed, pruned_degree=degree),
                            search=graph, measured=False))
    return rows


def _index_bytes(index: Index) -> tuple[int, dict[str, int]]:
    sizes = {name: len(data) for name, data in index.to_sections().items()}
    return sum(sizes.values()), sizes


def _searcher(index: Index, corpus: Corpus, embedder: Embedder, params: SearchParams,
              fetch, candidate_seconds: list[float], vector_caches: Sequence = (),
              score_memo: QueryScoreMemo | None = None, stats: list[SearchStats] | None = None):
    def search(query: Query) -> QueryOutcome:
        result = index.search(query.vector, TOP_K, embedder=embedder, texts=fetch, params=params,
                              vector_caches=vector_caches, score_memo=score_memo)
        candidate_seconds.append(result.stats.graph_seconds)
        if stats is not None:
            stats.append(result.stats)
        return QueryOutcome(
            ids=corpus.positions(np.array([hit.label for hit in result.hits], dtype=np.uint64)),
            passages_recomputed=result.stats.passages_recomputed,
            model_calls=result.stats.model_calls,
        )

    return search


def _estimated(measured: Measured, candidate_seconds: list[float],
               per_passage_s: float) -> Measured:
    """Replace cached-vector latencies by candidate time + modelled recompute time."""
    latencies = (np.array(candidate_seconds[-len(measured.latencies_s):])
                 + measured.passages_recomputed * per_passage_s)
    return dataclasses.replace(measured, latencies_s=latencies)


# Mechanical rewordings of the FAQ questions: near-repeats that embed close to, not onto, the
# original (the query words change, the subject stays).
REWORDINGS = (
    ("How do I ", "What is the way to "), ("How can I ", "Is there a way to "),
    ("Why does ", "For what reason does "), ("Why is ", "For what reason is "),
    ("Why are ", "For what reason are "), ("What is ", "Explain "),
    ("Is there ", "Does Python have "),
    ("Can I ", "Is it possible to "), ("Are there ", "Does Python offer "),
)
WARM_BUDGET_PASSAGE_FRACTIONS = (0.01, 0.1, 0.2)  # beside the node's default


def reworded(question: str) -> str:
    for old, new in REWORDINGS:
        if question.startswith(old):
            return new + question[len(old):]
    return "In Python: " + question.lower()


@dataclasses.dataclass(frozen=True, kw_only=True)
class WarmSetup:
    """One warm-cache configuration: a learned cache budget (or none) and whether the query
    score memo sits in front of it, as in a serving node."""

    name: str
    learned_fraction: float | None
    memo: bool


def warm_setups() -> list[WarmSetup]:
    """The learned cache alone at the node's default and a few other budgets (what the
    embedding cache does by itself), then the memo alone and the memo in front of the node's
    default learned cache (what a serving node does)."""
    setups = []
    for fraction in sorted({LEARNED_PASSAGE_FRACTION, *WARM_BUDGET_PASSAGE_FRACTIONS}):
        default = " (node default)" if fraction == LEARNED_PASSAGE_FRACTION else ""
        setups.append(WarmSetup(name=f"learned cache {fraction:.0%} of passages{default}",
                                learned_fraction=fraction, memo=False))
    setups.append(WarmSetup(name="score memo alone", learned_fraction=None, memo=True))
    setups.append(WarmSetup(
        name=f"score memo + learned cache {LEARNED_PASSAGE_FRACTION:.0%} (node default)",
        learned_fraction=LEARNED_PASSAGE_FRACTION, memo=True))
    return setups


def warm_cache_rows(index: Index, corpus: Corpus, oracle: Embedder, fetch,
                    passes: Sequence[tuple[str, str, Sequence[Query], np.ndarray]], *,
                    per_passage_s: float, index_bytes: int) -> tuple[list[Row], dict[str, str]]:
    """``passes`` (name, query set, queries, truth: the FAQ sample cold, again, reworded) run
    through each ``warm_setups`` configuration with fresh caches, with the default search
    params; the notes say how many scores the memo and the learned cache served.

    Recompute is served from the embeddings cache (exact counts; latency estimated from the
    measured per-passage model time); no warm-up query runs before the cold pass.
    """
    rows: list[Row] = []
    context: dict[str, str] = {}
    for setup in warm_setups():
        caches, memo, budget_text = [], None, f"memo {MEMO_BUDGET_BYTES:,} B"
        if setup.learned_fraction is not None:
            budget = math.ceil(setup.learned_fraction * len(corpus)) * entry_bytes(index.dim)
            caches.append(LearnedCache(fingerprint_digest=index.fingerprint.digest(),
                                       dim=index.dim, budget_bytes=budget))
            learned_text = (f"learned {budget:,} B = "
                            f"{budget / corpus.raw_passage_bytes:.1%} of the text")
            budget_text = f"{budget_text} + {learned_text}" if setup.memo else learned_text
        if setup.memo:
            memo = QueryScoreMemo(budget_bytes=MEMO_BUDGET_BYTES)
        totals: dict[str, int] = {}
        for name, query_set, asked, answers in passes:
            candidate_s: list[float] = []
            stats: list[SearchStats] = []
            search = _searcher(index, corpus, oracle, SearchParams(), fetch, candidate_s,
                               vector_caches=caches, score_memo=memo, stats=stats)
            measured = _estimated(measure(search, asked, answers, warmup=0), candidate_s,
                                  per_passage_s)
            totals[name] = int(measured.passages_recomputed.sum())
            of_cold = totals[name] / max(totals[passes[0][0]], 1)
            held = "; ".join(
                [*([f"learned cache holds {len(caches[0])}"] if caches else []),
                 *([f"memo holds {len(memo)} queries, {memo.used_bytes:,} B"] if memo else [])])
            rows.append(make_row(
                method=f"{setup.name}: {name}", query_set=query_set, params=budget_text,
                measured=measured, index_bytes=index_bytes,
                raw_passage_bytes=corpus.raw_passage_bytes,
                notes=f"recomputed {totals[name]} in all ({of_cold:.0%} of the cold pass); "
                      f"scores from the memo {sum(s.memo_hits for s in stats)}, from cached "
                      f"vectors {sum(s.cache_hits for s in stats)}; {held}; latency estimated"))
            log.info("%s", rows[-1])
        cold = max(totals[passes[0][0]], 1)
        context[f"warm, {setup.name}"] = (
            f"{budget_text}: same questions again recompute "
            f"{totals[passes[1][0]] / cold:.0%} of the cold pass, reworded ones "
            f"{totals[passes[2][0]] / cold:.0%}")
    return rows, context


def graph_walk_time(index: Index, oracle: Embedder, fetch, queries: Sequence[Query]) -> str:
    """The graph walk's candidate time on this corpus (median over ``MEASURE_REPEATS``
    queries), beside the flat scan's, which ``bench_scan`` measures by node count."""
    walk = []
    for query in queries[:MEASURE_REPEATS]:
        result = index.search(query.vector, TOP_K, embedder=oracle, texts=fetch,
                              params=SearchParams(strategy="graph"))
        walk.append(result.stats.graph_seconds)
    return f"{statistics.median(walk) * 1e3:.1f} ms"


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    default_precision = EmbedderSpec().precision
    parser.add_argument("--precision", choices=["fp32", "bf16"], default=default_precision,
                        help="index, query and recompute precision (default: that of new "
                             f"collections, {default_precision}); truth is always fp32")
    parser.add_argument("--queries", type=int, default=DEFAULT_QUERY_SAMPLE,
                        help="FAQ questions sampled (evenly) for the measured rows")
    parser.add_argument("--glossary", type=int, default=None,
                        help="glossary queries sampled (evenly); default all")
    parser.add_argument("--no-sweep", action="store_true", help="headline rows only")
    parser.add_argument("--default-only", action="store_true",
                        help="of the meshdex rows only the default (measured) and the learned "
                             "cache passes: for a busy machine")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s")

    corpus = load_corpus()
    embedder = default_embedder(args.precision)
    cached = load_or_embed(corpus, embedder)
    truth_cached = truth_embeddings(corpus, cached, args.precision)
    texts_by_label = dict(zip(corpus.labels.tolist(), corpus.texts, strict=True))
    oracle = CachedVectorsEmbedder(embedder, corpus.texts, cached.passages)

    def fetch(labels: np.ndarray) -> list[str]:
        return [texts_by_label[int(label)] for label in labels]

    # Pure embedding time of this model in this process, on a sample, scaled to the corpus.
    sample = [corpus.texts[i] for i in _sample(corpus.texts, EMBED_RATE_SAMPLE_PASSAGES)]
    _, sample_s = embed_passages(sample, embedder, progress=False)
    embed_s = sample_s / len(sample) * len(corpus)

    # Searched with the vectors of the run's precision, judged against exact fp32 search.
    query_sets = {}
    glossary_count = args.glossary or len(corpus.query_sets["glossary"])
    for set_name, count in (("faq", args.queries), ("glossary", glossary_count)):
        picks = _sample(corpus.query_sets[set_name], count)
        vectors = cached.queries[set_name][picks]
        query_sets[set_name] = (
            [Query(text=corpus.query_sets[set_name][i], vector=v)
             for i, v in zip(picks, vectors, strict=True)],
            exact_search(truth_cached.passages, truth_cached.queries[set_name][picks]),
        )

    rows: list[Row] = []
    raw = corpus.raw_passage_bytes
    hnsw = HnswBaseline.build(cached.passages)
    for set_name, (queries, truth) in query_sets.items():
        common = {"query_set": set_name, "raw_passage_bytes": raw, "embed_s": embed_s}
        rows.append(make_row(method="exact", params="brute force",
                             measured=measure(exact_searcher(cached.passages), queries, truth),
                             index_bytes=exact_index_bytes(cached.passages), build_s=0.0,
                             **common))
        for ef in (40, 80):
            rows.append(make_row(method="hnswlib stored vectors",
                                 params=f"M={HNSW_M} efC={HNSW_EF_CONSTRUCTION} ef={ef}",
                                 measured=measure(hnsw.searcher(ef), queries, truth),
                                 index_bytes=hnsw.index_bytes, build_s=hnsw.build_s, **common))

    built: dict[BuildParams, tuple[Index, float]] = {}
    per_passage: list[float] = []
    default_sizes: dict[str, int] = {}
    graph_walk = ""
    all_variants = variants(SearchParams())
    if args.no_sweep:
        all_variants = [v for v in all_variants if v.measured]
    if args.default_only:
        all_variants = all_variants[:1]
    for variant in all_variants:
        if variant.build not in built:
            started = time.perf_counter()
            index = Index.build(corpus.texts, corpus.labels, embedder=embedder,
                                params=variant.build, embeddings=cached.passages)
            built[variant.build] = (index, time.perf_counter() - started)
            log.info("built %s in %.1f s", variant.build, built[variant.build][1])
        index, build_s = built[variant.build]
        index_bytes, sizes = _index_bytes(index)
        if variant.build == BuildParams():
            default_sizes = sizes
        if variant.search.strategy == "graph" and index.has_graph and not graph_walk:
            graph_walk = graph_walk_time(index, oracle, fetch, query_sets["faq"][0])
        first_two = variant in all_variants[:2]  # flat and graph: both query sets
        set_names = ("faq", "glossary") if first_two else ("faq",)
        for set_name in set_names:
            queries, truth = query_sets[set_name]
            candidate_s: list[float] = []
            search = _searcher(index, corpus, embedder if variant.measured else oracle,
                               variant.search, fetch, candidate_s)
            measured = measure(search, queries, truth)
            notes = ""
            recomputed = int(measured.passages_recomputed.sum())
            if variant.measured and recomputed:
                model_s = measured.latencies_s.sum() - sum(candidate_s[-len(queries):])
                per_passage.append(model_s / recomputed)
                notes = (f"p95 {np.percentile(measured.latencies_s, 95) * 1e3:.0f} ms, "
                         f"recomputed mean {measured.passages_recomputed.mean():.1f}, "
                         f"load {os.getloadavg()[0]:.1f}")
            elif not variant.measured:
                measured = _estimated(measured, candidate_s, statistics.median(per_passage))
                notes = "latency estimated: recompute served from the cache, model time modelled"
            rows.append(make_row(
                method=variant.name, query_set=set_name,
                params=_describe(variant.build, variant.search, BuildParams()),
                measured=measured, index_bytes=index_bytes, raw_passage_bytes=raw,
                build_s=build_s, embed_s=embed_s, notes=notes))
            log.info("%s", rows[-1])

    default_index, _ = built[BuildParams()]
    faq_queries, faq_truth = query_sets["faq"]
    rewordings = [reworded(q.text) for q in faq_queries]
    paraphrases = [Query(text=text, vector=vector) for text, vector in zip(
        rewordings, embedder.embed_documents(rewordings), strict=True)]
    paraphrase_truth = exact_search(truth_cached.passages,
                                    default_embedder(TRUTH_PRECISION)
                                    .embed_documents(rewordings))
    warm_rows, warm_context = warm_cache_rows(
        default_index, corpus, oracle, fetch,
        (("cold (first pass)", "faq", faq_queries, faq_truth),
         ("warm (same questions again)", "faq", faq_queries, faq_truth),
         ("reworded questions after both", "faq reworded", paraphrases, paraphrase_truth)),
        per_passage_s=statistics.median(per_passage), index_bytes=_index_bytes(default_index)[0])
    rows.extend(warm_rows)
    write_results(
        f"search-{args.precision}" if args.precision != default_precision else "search",
        rows,
        title=f"meshdex search on the Python 3.11 docs ({args.precision})",
        context={
            "command": "python -m bench.bench_search"
                       + (f" --precision {args.precision}"
                          if args.precision != default_precision else "")
                       + (f" --queries {args.queries}" if args.queries != DEFAULT_QUERY_SAMPLE
                          else "")
                       + (f" --glossary {args.glossary}" if args.glossary else "")
                       + (" --no-sweep" if args.no_sweep else "")
                       + (" --default-only" if args.default_only else ""),
            "corpus": f"{corpus.files} files, {len(corpus)} passages, {raw:,} raw passage bytes",
            "queries": f"{len(query_sets['faq'][0])} of {len(corpus.query_sets['faq'])} FAQ "
                       f"questions and {len(query_sets['glossary'][0])} of "
                       f"{len(corpus.query_sets['glossary'])} glossary queries, evenly sampled; "
                       "the glossary only for the default and graph-walk rows",
            "ground truth": f"exact inner product over the {TRUTH_PRECISION} model's "
                            "embeddings of passages and queries, top 10 (every row, the exact "
                            f"and hnswlib rows over {args.precision} embeddings included)",
            "fingerprint": f"{embedder.model_id} {embedder.fingerprint.precision} "
                           f"{embedder.fingerprint.digest()[:16]}",
            "pure embedding": f"{embed_s:.0f} s for the corpus ({len(corpus) / embed_s:.1f} "
                              f"passages/s, measured on {len(sample)} passages in this run)",
            "query embedding p50": f"{query_embed_ms(embedder, corpus.query_sets['faq']):.1f} ms"
                                   " (excluded from every latency below)",
            "model time per recomputed passage": (
                f"{statistics.median(per_passage) * 1e3:.1f} ms (median over measured rows)"
                if per_passage else "-"),
            "default index sections (bytes)": ", ".join(
                f"{name} {size:,}" for name, size in sorted(default_sizes.items())),
            "build params (default)": BuildParams().to_dict(),
            "search params (default)": SearchParams().to_dict(),
            "candidate generation time": (f"graph walk, this corpus: {graph_walk}; "
                                          if graph_walk else "")
                                         + "flat scan by node count: bench/results/scan.md",
            **warm_context,
            "latency": "per query, from the exact query vector; meshdex rows include every "
                       "recompute model call unless the notes say estimated",
        },
    )


if __name__ == "__main__":
    main()
