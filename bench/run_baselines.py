"""Print the baseline table on the Python-docs corpus and write bench/results/baselines.*.

Run from the repository root: ``python -m bench.run_baselines``. The first run downloads the
corpus and embeds it (minutes); later runs reuse ``bench/.cache``.
"""

from __future__ import annotations

import argparse
import statistics
import time

from meshdex.index.embedders import default_embedder

from bench.baselines import (
    HNSW_EF_CONSTRUCTION,
    HNSW_EF_SWEEP,
    HNSW_M,
    HnswBaseline,
    exact_index_bytes,
    exact_search,
    exact_searcher,
)
from bench.corpus import load_corpus
from bench.embeddings_cache import load_or_embed
from bench.metrics import Query, Row, make_row, measure, write_results

QUERY_EMBED_SAMPLES = 30


def query_embed_ms(embedder, texts: list[str]) -> float:
    """Median milliseconds to embed one query with the real model (same for every method)."""
    embedder.embed_query(texts[0])
    samples = []
    for text in texts[:QUERY_EMBED_SAMPLES]:
        started = time.perf_counter()
        embedder.embed_query(text)
        samples.append((time.perf_counter() - started) * 1e3)
    return statistics.median(samples)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--precision", choices=["fp32", "bf16"], default="fp32")
    args = parser.parse_args(argv)

    corpus = load_corpus()
    embedder = default_embedder(args.precision)
    cached = load_or_embed(corpus, embedder)
    hnsw = HnswBaseline.build(cached.passages)
    rows: list[Row] = []
    for set_name, texts in corpus.query_sets.items():
        vectors = cached.queries[set_name]
        queries = [Query(text=text, vector=vector) for text, vector in zip(texts, vectors,
                                                                          strict=True)]
        truth = exact_search(cached.passages, vectors)
        common = {"query_set": set_name, "raw_passage_bytes": corpus.raw_passage_bytes,
                  "embed_s": cached.embed_seconds}
        rows.append(make_row(
            method="exact", params="brute force", measured=measure(
                exact_searcher(cached.passages), queries, truth),
            index_bytes=exact_index_bytes(cached.passages), build_s=0.0, **common))
        for ef in HNSW_EF_SWEEP:
            rows.append(make_row(
                method="hnswlib", params=f"M={HNSW_M} efC={HNSW_EF_CONSTRUCTION} ef={ef}",
                measured=measure(hnsw.searcher(ef), queries, truth),
                index_bytes=hnsw.index_bytes, build_s=hnsw.build_s, **common))
    write_results(
        f"baselines-{args.precision}" if args.precision != "fp32" else "baselines",
        rows,
        title=f"Baselines on the Python 3.11 docs ({args.precision})",
        context={
            "command": "python -m bench.run_baselines"
                       + (f" --precision {args.precision}" if args.precision != "fp32" else ""),
            "corpus": f"{corpus.files} files, {len(corpus)} passages, "
                      f"{corpus.raw_passage_bytes:,} raw passage bytes, "
                      f"digest {corpus.digest[:16]}",
            "query sets": ", ".join(f"{name} ({len(texts)})"
                                    for name, texts in corpus.query_sets.items()),
            "fingerprint": f"{embedder.fingerprint.digest()[:16]} "
                           f"({embedder.model_id}, {embedder.fingerprint.precision})",
            "pure embedding": f"{cached.embed_seconds:.0f} s "
                              f"({cached.passages_per_s:.1f} passages/s, from the embeddings "
                              "cache; measured while other jobs shared the cores)",
            "query embedding p50": f"{query_embed_ms(embedder, corpus.query_sets['faq']):.1f} ms "
                                   "(not included in the latencies below)",
            "hnswlib build": f"{hnsw.build_s:.1f} s, {hnsw.index_bytes:,} bytes",
            "latency": "per query, single thread, from the exact query vector",
        },
    )


if __name__ == "__main__":
    main()
