"""Build speed against plain ``SentenceTransformer.encode`` of the same passages, same run.

Run from the repository root: ``python -m bench.bench_build [--passages 3000]``. Writes
``bench/results/build.{json,md}``.

The baseline lies outside meshdex's code path: ``SentenceTransformer(model).encode(texts,
batch_size=32)`` as a new user would call it, on the same passages (an even sample of the
docs corpus), in the same process, with the same torch threads. The meshdex row is
``Index.build`` with the default embedder and params: embedding, PQ training and codes, i.e.
everything a ``meshdex build`` spends beyond reading the store. The two run alternately
(baseline, meshdex, baseline, meshdex, ...) so that load drifting on a shared machine hits
both alike, and every figure is the median of the repeats. A batch-size sweep of meshdex's
length-ordered embedding on a smaller sample picks ``DEFAULT_BATCH_SIZE``.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import statistics
import time
from dataclasses import asdict, dataclass

import numpy as np
from meshdex.index.chunking import ChunkingParams
from meshdex.index.embedders_local import MiniLMEmbedder, packaged_model_dir
from meshdex.index.engine import Index
from meshdex.index.length_batches import embed_in_length_order

from bench.corpus import load_corpus
from bench.metrics import RESULTS_DIR, machine_context

log = logging.getLogger(__name__)

DEFAULT_PASSAGES = 3000
DEFAULT_REPEATS = 1
SWEEP_PASSAGES = 512
SWEEP_BATCH_SIZES = (16, 32, 64, 128)
BASELINE_BATCH_SIZE = 32


@dataclass(frozen=True, kw_only=True)
class BuildRow:
    method: str
    passages: int
    seconds: float
    over_plain_encode: float
    passages_per_s: float
    notes: str = ""


def _even_sample(count: int, total: int) -> np.ndarray:
    return np.unique(np.linspace(0, total - 1, num=min(count, total)).astype(np.int64))


def _timed(run) -> float:
    started = time.perf_counter()
    run()
    return time.perf_counter() - started


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--passages", type=int, default=DEFAULT_PASSAGES)
    parser.add_argument("--repeats", type=int, default=DEFAULT_REPEATS)
    parser.add_argument("--no-sweep", action="store_true", help="skip the batch-size sweep")
    parser.add_argument("--max-chars", type=int, default=None,
                        help="cut the docs corpus into passages of at most this many characters")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO)
    from sentence_transformers import SentenceTransformer

    corpus = load_corpus(chunking=ChunkingParams(max_chars=args.max_chars, overlap_chars=0)
                         if args.max_chars else None)
    chosen = _even_sample(args.passages, len(corpus))
    texts = [corpus.texts[i] for i in chosen]
    labels = corpus.labels[chosen]
    raw_bytes = sum(len(text.encode()) for text in texts)
    load_before = os.getloadavg()[0]
    embedder = MiniLMEmbedder()
    plain = SentenceTransformer(str(packaged_model_dir()), device="cpu", local_files_only=True)
    plain.encode(texts[:64], batch_size=BASELINE_BATCH_SIZE)  # warm both paths alike
    embedder.embed_documents(texts[:64])

    plain_s, build_s = [], []
    for repeat in range(args.repeats):
        # Alternate which runs first, so a load that rises or falls during the run does not
        # favour one side.
        plain_first = repeat % 2 == 0
        if not plain_first:
            build_s.append(_timed(lambda: Index.build(texts, labels, embedder=embedder)))
        plain_s.append(_timed(lambda: plain.encode(texts, batch_size=BASELINE_BATCH_SIZE)))
        if plain_first:
            build_s.append(_timed(lambda: Index.build(texts, labels, embedder=embedder)))
        log.info("repeat %d: plain encode %.1f s, Index.build %.1f s", repeat + 1,
                 plain_s[-1], build_s[-1])
    plain_median, build_median = statistics.median(plain_s), statistics.median(build_s)
    rows = [
        BuildRow(method="plain SentenceTransformer.encode", passages=len(texts),
                 seconds=plain_median, over_plain_encode=1.0,
                 passages_per_s=len(texts) / plain_median,
                 notes=f"batch_size={BASELINE_BATCH_SIZE}, the baseline"),
        BuildRow(method="meshdex Index.build", passages=len(texts), seconds=build_median,
                 over_plain_encode=build_median / plain_median,
                 passages_per_s=len(texts) / build_median,
                 notes=f"default params, batch_size={embedder.batch_size}; embedding + PQ"),
    ]
    if not args.no_sweep:
        sample = [texts[i] for i in _even_sample(SWEEP_PASSAGES, len(texts))]
        sweep_plain = _timed(lambda: plain.encode(sample, batch_size=BASELINE_BATCH_SIZE))
        for batch_size in SWEEP_BATCH_SIZES:
            swept = MiniLMEmbedder(batch_size=batch_size)
            seconds = _timed(lambda e=swept: embed_in_length_order(e, sample))
            rows.append(BuildRow(
                method=f"meshdex embedding, batch {batch_size}", passages=len(sample),
                seconds=seconds, over_plain_encode=seconds / sweep_plain,
                passages_per_s=len(sample) / seconds,
                notes=f"length-ordered embedding only; plain encode of this sample "
                      f"{sweep_plain:.1f} s",
            ))
    context = machine_context() | {
        "command": "python -m bench.bench_build"
                   + (f" --passages {args.passages}" if args.passages != DEFAULT_PASSAGES else "")
                   + (f" --repeats {args.repeats}" if args.repeats != DEFAULT_REPEATS else "")
                   + (f" --max-chars {args.max_chars}" if args.max_chars else "")
                   + (" --no-sweep" if args.no_sweep else ""),
        "passages": f"{len(texts)} of {len(corpus)} docs passages (even sample, chunking "
                    f"{corpus.chunking}), "
                    f"{raw_bytes:,} raw bytes",
        "load_average_1min_at_start": round(load_before, 2),
        "plain encode runs (s)": [round(s, 1) for s in plain_s],
        "Index.build runs (s)": [round(s, 1) for s in build_s],
        "target": "Index.build <= 1.05x plain encode",
    }
    _write(rows, context)


def _write(rows: list[BuildRow], context: dict) -> None:
    header = "| method | passages | seconds | × plain encode | passages/s | notes |"
    lines = [header, "|---|---|---|---|---|---|"]
    for row in rows:
        lines.append(f"| {row.method} | {row.passages} | {row.seconds:.1f} | "
                     f"{row.over_plain_encode:.3f} | {row.passages_per_s:.1f} | {row.notes} |")
    table = "\n".join(lines)
    print(table)
    RESULTS_DIR.mkdir(parents=True, exist_ok=True)
    (RESULTS_DIR / "build.json").write_text(json.dumps(
        {"context": context, "rows": [asdict(row) for row in rows]}, indent=2) + "\n")
    bullets = "\n".join(f"- **{key}**: {value}" for key, value in context.items())
    (RESULTS_DIR / "build.md").write_text(
        f"# Build speed vs plain SentenceTransformer.encode\n\n{bullets}\n\n{table}\n")


if __name__ == "__main__":
    main()
