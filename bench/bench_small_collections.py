"""Search in collections too small for a rotation of their own: none against the model's.

Run from the repository root: ``python -m bench.bench_small_collections``. Writes
``bench/results/small_collections.{json,md}``.

A collection below ``rotation_min_vectors`` (4,608 passages of 384 dimensions) cannot pay for
its own OPQ rotation (147 KB, as much as its codes). It gets the rotation shipped for its model
(plain PQ for a model without one) (``index/model_rotations.py``), which costs its bundle 32
bytes. Each small collection here is the first N passages of the docs corpus (whole files, in
path order, so a collection about a few topics, as a person's notes are); every FAQ and
glossary question is asked of it and judged against exact fp32 search over the same passages.
The rows marked ``recall_target=default`` search as a user's search does: adaptive re-ranking
at the default ``recall_target`` of each kind of codes (``index/params.py``
``RECALL_TARGETS``, chosen from the explicit ``--recall-targets`` rows of this benchmark);
recomputed passages are served from the embeddings cache: recall and
recompute counts are exact, latency is not measured (each recompute costs ~8 ms of model time
on this machine in bf16, ``bench/results/search.md``).
"""

from __future__ import annotations

import argparse
import dataclasses
import itertools
import logging

import numpy as np
from meshdex.index.embedders import EmbedderSpec, default_embedder
from meshdex.index.engine import Index
from meshdex.index.params import RECALL_TARGETS, BuildParams, SearchParams

from bench.baselines import TOP_K, exact_search
from bench.bench_search import CachedVectorsEmbedder, _index_bytes, _searcher
from bench.corpus import load_corpus
from bench.embeddings_cache import load_or_embed, truth_embeddings
from bench.metrics import Query, Row, make_row, measure, write_results

log = logging.getLogger(__name__)

DEFAULT_SIZES = (1000, 3000, 4600)
LAYOUTS = {
    "no rotation (a model without a shipped one)": BuildParams(pq_rotation_iterations=0),
    "model rotation (the packaged model's default)": BuildParams(),
}


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=list(DEFAULT_SIZES),
                        help="collection sizes in passages (default: %(default)s)")
    parser.add_argument("--recall-targets", type=float, nargs="*", default=[],
                        help="also search each layout at these explicit recall_target values "
                             "(the default rows use SearchParams())")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s")
    corpus = load_corpus()
    precision = EmbedderSpec().precision
    embedder = default_embedder(precision)
    cached = load_or_embed(corpus, embedder)
    truth = truth_embeddings(corpus, cached, precision)
    # Recomputes, fetches and result positions over the whole corpus serve any first N of it.
    oracle = CachedVectorsEmbedder(embedder, corpus.texts, cached.passages)
    texts_by_label = dict(zip(corpus.labels.tolist(), corpus.texts, strict=True))

    def fetch(labels: np.ndarray) -> list[str]:
        return [texts_by_label[int(label)] for label in labels]

    query_sets = {name: [Query(text=text, vector=vector) for text, vector in
                         zip(corpus.query_sets[name], vectors, strict=True)]
                  for name, vectors in cached.queries.items()}
    rows: list[Row] = []
    for size in args.sizes:
        texts, labels = corpus.texts[:size], corpus.labels[:size]
        raw = sum(len(text.encode()) for text in texts)
        for layout, params in LAYOUTS.items():
            index = Index.build(texts, labels, embedder=embedder, params=params,
                                embeddings=cached.passages[:size])
            index_bytes, _ = _index_bytes(index)
            targets = [None, *args.recall_targets]
            for target, set_name in itertools.product(targets, query_sets):
                search_params = (SearchParams() if target is None
                                 else SearchParams(recall_target=target))
                search = _searcher(index, corpus, oracle, search_params, fetch, [])
                exact = exact_search(truth.passages[:size], truth.queries[set_name], TOP_K)
                measured = measure(search, query_sets[set_name], exact)
                rows.append(make_row(
                    method=f"{size} passages, {layout}", query_set=set_name,
                    params=f"rotation_iterations={params.pq_rotation_iterations}, "
                           f"recall_target={'default' if target is None else target}",
                    measured=measured, index_bytes=index_bytes, raw_passage_bytes=raw,
                    notes=f"recomputed mean {measured.passages_recomputed.mean():.1f}; "
                          "latency not measured (recompute from the embeddings cache)"))
                log.info("%s", dataclasses.asdict(rows[-1]))
    write_results("small_collections", rows,
                  title="Small collections: the model's shipped rotation against none, "
                        "by recall_target",
                  context={"corpus": f"first N of {len(corpus)} docs passages",
                           "precision": precision, "truth": "exact fp32, same passages",
                           "search params": SearchParams().to_dict(),
                           "default recall_target by codes": RECALL_TARGETS})


if __name__ == "__main__":
    main()
