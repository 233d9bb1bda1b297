"""Adaptive re-ranking on the docs corpus: recall and passages recomputed per ``recall_target``.

Run from the repository root: ``python -m bench.bench_rerank [--measured-queries 20]``.
Writes ``bench/results/rerank.{json,md}``.

Recall is against exact search over the fp32 model's embeddings (the outside baseline and
issue 12's truth), at any ``--precision`` (default: that of new collections). The
primary figure is **passages recomputed per query**: it does not depend on how busy the
shared machine is. Sweep rows take recomputed vectors from the embeddings cache (the same
vectors the model gives; counts exact, latency estimated as candidate time + recomputes × the
per-passage model time measured in this run); ``measured`` rows run the real model on a
sample of the FAQ questions, and their latency is reported with the machine's load average.
"""

from __future__ import annotations

import argparse
import dataclasses
import logging
import os
import time

import numpy as np
from meshdex.index.embedders import EmbedderSpec, default_embedder
from meshdex.index.engine import Index
from meshdex.index.params import RECALL_TARGETS as CODE_RECALL_TARGETS
from meshdex.index.params import BuildParams, SearchParams

from bench.baselines import TOP_K, exact_search
from bench.bench_search import CachedVectorsEmbedder, _estimated, _sample, _searcher
from bench.corpus import load_corpus
from bench.embeddings_cache import TRUTH_PRECISION, load_or_embed, truth_embeddings
from bench.metrics import Query, Row, make_row, measure, write_results

log = logging.getLogger(__name__)

# The docs corpus learns its own rotation: its default is that kind's.
RECALL_TARGETS = tuple(sorted({0.5, 0.6, 0.7, 0.8, 0.9, 0.95, 0.99,
                              CODE_RECALL_TARGETS["learnt rotation"]}))
BATCH_SIZES = (4, 8, 16)
DEFAULT_MEASURED_QUERIES = 20
RECALL_AT_3_TARGET = 0.97


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    default_precision = EmbedderSpec().precision
    parser.add_argument("--precision", choices=["fp32", "bf16"], default=default_precision)
    parser.add_argument("--measured-queries", type=int, default=DEFAULT_MEASURED_QUERIES)
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s")
    corpus = load_corpus()
    embedder = default_embedder(args.precision)
    cached = load_or_embed(corpus, embedder)
    truth = truth_embeddings(corpus, cached, args.precision)
    oracle = CachedVectorsEmbedder(embedder, corpus.texts, cached.passages)
    texts_by_label = dict(zip(corpus.labels.tolist(), corpus.texts, strict=True))

    def fetch(labels: np.ndarray) -> list[str]:
        return [texts_by_label[int(label)] for label in labels]

    query_sets = {}
    for name, texts in corpus.query_sets.items():
        vectors = cached.queries[name]
        query_sets[name] = ([Query(text=t, vector=v) for t, v in zip(texts, vectors, strict=True)],
                            exact_search(truth.passages, truth.queries[name]))
    started = time.perf_counter()
    index = Index.build(corpus.texts, corpus.labels, embedder=embedder, params=BuildParams(),
                        embeddings=cached.passages)
    build_s = time.perf_counter() - started
    index_bytes = sum(len(data) for data in index.to_sections().values())
    raw = corpus.raw_passage_bytes
    rows: list[Row] = []

    def row(name: str, set_name: str, params: SearchParams, *, measured_model: bool,
            queries=None, truth=None, per_passage_s: float | None = None) -> Row:
        queries, truth = (queries, truth) if queries is not None else query_sets[set_name]
        candidate_s: list[float] = []
        search = _searcher(index, corpus, embedder if measured_model else oracle, params,
                           fetch, candidate_s)
        measured = measure(search, queries, truth)
        notes = f"recomputed mean {float(np.mean(measured.passages_recomputed)):.1f}"
        if measured_model:
            p95_ms = float(np.percentile(measured.latencies_s, 95)) * 1e3
            recomputed_p95 = float(np.percentile(measured.passages_recomputed, 95))
            notes += (f", p95 {p95_ms:.0f} ms, recomputed p95 {recomputed_p95:.0f}, "
                      f"load {os.getloadavg()[0]:.1f}")
        if not measured_model and per_passage_s is not None:
            measured = _estimated(measured, candidate_s, per_passage_s)
            notes += "; latency estimated from measured per-passage model time"
        made = make_row(method=name, query_set=set_name, measured=measured,
                        params=f"recall_target={params.recall_target or 'default'} "
                               f"frac={params.recompute_fraction} batch={params.batch_size}",
                        index_bytes=index_bytes, raw_passage_bytes=raw, notes=notes)
        log.info("%s", made)
        return made

    default = SearchParams()
    fixed = dataclasses.replace(default, recall_target=1.0, recompute_fraction=0.5)
    picks = _sample(query_sets["faq"][0], args.measured_queries)
    sample = [query_sets["faq"][0][i] for i in picks]
    sample_truth = query_sets["faq"][1][picks]
    measured_rows = [
        row("measured: fixed re-rank of 40 (before)", "faq", fixed, measured_model=True,
            queries=sample, truth=sample_truth),
        row("measured: adaptive (default)", "faq", default, measured_model=True,
            queries=sample, truth=sample_truth),
    ]
    fixed_row = measured_rows[0]
    per_passage_s = ((fixed_row.latency_p50_ms or 0.0) / 1e3) / max(fixed_row.recomputed_p50, 1)
    rows.extend(measured_rows)
    for set_name in query_sets:
        rows.append(row("fixed re-rank of 40 (before)", set_name, fixed, measured_model=False,
                        per_passage_s=per_passage_s))
        for target in RECALL_TARGETS:
            rows.append(row("adaptive", set_name, dataclasses.replace(default,
                                                                   recall_target=target),
                            measured_model=False, per_passage_s=per_passage_s))
        for target in RECALL_TARGETS:
            rows.append(row("adaptive, ceiling = half the pool", set_name,
                            dataclasses.replace(default, recall_target=target,
                                                recompute_fraction=0.5),
                            measured_model=False, per_passage_s=per_passage_s))
    for batch in BATCH_SIZES:
        rows.append(row("adaptive, batch size", "faq", dataclasses.replace(default,
                                                                          batch_size=batch),
                        measured_model=False, per_passage_s=per_passage_s))
    bound = index.rerank_bound
    write_results(
        "rerank", rows,
        title=f"Adaptive re-ranking on the Python 3.11 docs ({args.precision})",
        context={
            "command": "python -m bench.bench_rerank"
                       + (f" --precision {args.precision}"
                          if args.precision != default_precision else "")
                       + (f" --measured-queries {args.measured_queries}"
                          if args.measured_queries != DEFAULT_MEASURED_QUERIES else ""),
            "corpus": f"{len(corpus)} passages, {raw:,} raw passage bytes",
            "queries": ", ".join(f"{name}: all {len(q)}" for name, (q, _) in query_sets.items())
                       + f"; measured rows: {len(sample)} FAQ questions (evenly sampled)",
            "ground truth": f"exact inner product over the {TRUTH_PRECISION} model's "
                            f"embeddings, top {TOP_K}",
            "build": f"{build_s:.1f} s from cached embeddings, calibration included",
            "rerank bound": (f"slope {bound.score_slope:.3f}, noise quantiles "
                             + ", ".join(f"{lv}: {e:.3f}" for lv, e in
                                         zip(bound.levels, bound.score_errors, strict=True))
                             if bound else "none"),
            "per-passage model time (fixed row)": f"{per_passage_s * 1e3:.1f} ms",
            "search params (default)": default.to_dict(),
            "recall@3 target": RECALL_AT_3_TARGET,
            "load average note": "the 2-core machine is shared by several agents; compare "
                                 "recompute counts, not milliseconds",
            "latency p50 of measured rows": "; ".join(
                f"{r.method}: {r.latency_p50_ms:.0f} ms" for r in measured_rows),
        },
    )


if __name__ == "__main__":
    main()
