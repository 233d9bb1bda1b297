"""Cheaper recompute where it is faithful: fp32 / bf16 / int8 against the fp32 truth.

Run from the repository root: ``python -m bench.bench_precision`` (the int8 row needs the
``int8`` extra: onnx and onnxruntime). Writes ``bench/results/precision.{json,md}``.

For each precision, on the same passages: cosine of its passage vectors to fp32's (fidelity),
recall@3 of exact search with its own passage and query vectors against the exact fp32 top-3
(the outside baseline), and model time per passage. To keep the run short, recall is measured
over the passages that decide it: the union of the fp32 top-10 of every sampled query (the
answers and their closest rivals); a passage outside every top-10 cannot enter a top-3 unless
its vector moves far, which the cosine column bounds.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import time
from dataclasses import asdict, dataclass

import numpy as np
from meshdex.index.embedders_local import MiniLMEmbedder

from bench.baselines import exact_search
from bench.bench_search import _sample
from bench.corpus import load_corpus
from bench.embeddings_cache import load_or_embed
from bench.metrics import RESULTS_DIR, machine_context, recall_at_k

log = logging.getLogger(__name__)

QUERY_SAMPLES = {"faq": 60, "glossary": 30}
RIVALS = 10
SPEED_SAMPLE_PASSAGES = 128
RECALL_AT_3_TARGET = 0.97


@dataclass(frozen=True, kw_only=True)
class PrecisionRow:
    precision: str
    passages: int
    cosine_mean: float
    cosine_p01: float
    cosine_min: float
    recall_at_3: dict[str, float]
    ms_per_passage: float
    notes: str = ""


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--skip-int8", action="store_true")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s")
    corpus = load_corpus()
    fp32 = MiniLMEmbedder()
    cached = load_or_embed(corpus, fp32)
    queries, truths = {}, {}
    for name, count in QUERY_SAMPLES.items():
        picks = _sample(corpus.query_sets[name], count)
        queries[name] = [corpus.query_sets[name][i] for i in picks]
        truths[name] = exact_search(cached.passages, cached.queries[name][picks], k=RIVALS)
    subset = np.unique(np.concatenate([t.ravel() for t in truths.values()]))
    texts = [corpus.texts[i] for i in subset]
    position_in_subset = {int(p): i for i, p in enumerate(subset)}
    speed_texts = [corpus.texts[i] for i in _sample(corpus.texts, SPEED_SAMPLE_PASSAGES)]

    embedders = {"fp32": fp32, "bf16": MiniLMEmbedder(precision="bf16")}
    if not args.skip_int8:
        from bench.onnx_int8 import OnnxInt8Embedder

        embedders["int8"] = OnnxInt8Embedder(fp32)
    rows = []
    for precision, embedder in embedders.items():
        embedder.embed_documents(speed_texts[:8])  # warm up
        started = time.perf_counter()
        embedder.embed_documents(speed_texts)
        ms = (time.perf_counter() - started) / len(speed_texts) * 1e3
        vectors = cached.passages[subset] if precision == "fp32" else embedder.embed_documents(
            texts)
        cosine = np.sum(vectors * cached.passages[subset], axis=1)
        recall = {}
        for name, query_texts in queries.items():
            query_vectors = embedder.embed_documents(query_texts)
            found = exact_search(vectors, query_vectors, k=3)
            truth = np.vectorize(position_in_subset.get)(truths[name][:, :3])
            recall[name] = recall_at_k(list(found), truth, 3)
        rows.append(PrecisionRow(
            precision=precision, passages=len(subset), cosine_mean=float(cosine.mean()),
            cosine_p01=float(np.percentile(cosine, 1)), cosine_min=float(cosine.min()),
            recall_at_3=recall, ms_per_passage=ms,
            notes=f"load {os.getloadavg()[0]:.1f}"))
        log.info("%s", rows[-1])
    keeping = [r for r in rows if min(r.recall_at_3.values()) >= RECALL_AT_3_TARGET]
    best = min(keeping, key=lambda r: r.ms_per_passage).precision if keeping else "none"
    context = machine_context() | {
        "command": "python -m bench.bench_precision" + (" --skip-int8" if args.skip_int8 else ""),
        "passages": f"{len(subset)}: the union of the fp32 top-{RIVALS} of every sampled query",
        "queries": ", ".join(f"{name}: {len(q)}" for name, q in queries.items()),
        "truth": "exact fp32 search over the whole corpus (11,657 passages), top 3",
        "fastest keeping recall@3 >= 0.97 on both sets": best,
        "model time": f"per passage, on {len(speed_texts)} evenly sampled passages; the "
                      "machine is shared, so compare the rows of one run, not across runs",
    }
    _write(rows, context)


def _write(rows: list[PrecisionRow], context: dict) -> None:
    sets = list(QUERY_SAMPLES)
    header = ("| precision | passages | cosine mean | cosine p1 | cosine min | "
              + " | ".join(f"R@3 {s}" for s in sets) + " | ms / passage | notes |")
    lines = [header, "|" + "---|" * (7 + len(sets))]
    for r in rows:
        lines.append(f"| {r.precision} | {r.passages} | {r.cosine_mean:.4f} | "
                     f"{r.cosine_p01:.4f} | {r.cosine_min:.4f} | "
                     + " | ".join(f"{r.recall_at_3[s]:.3f}" for s in sets)
                     + f" | {r.ms_per_passage:.1f} | {r.notes} |")
    table = "\n".join(lines)
    print(table)
    (RESULTS_DIR / "precision.json").write_text(json.dumps(
        {"context": context, "rows": [asdict(r) for r in rows]}, indent=2) + "\n")
    bullets = "\n".join(f"- **{k}**: {v}" for k, v in context.items())
    (RESULTS_DIR / "precision.md").write_text(
        f"# Recompute precision: fidelity to fp32 and recall@3\n\n{bullets}\n\n{table}\n")


if __name__ == "__main__":
    main()
