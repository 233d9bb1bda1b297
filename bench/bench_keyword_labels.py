"""The keyword index's label field: bytes on disk and the cost of deletes, v3 against v4.

Run: ``python -m bench.bench_keyword_labels``. Writes ``bench/results/keyword_labels.{json,md}``.

The docs corpus cut into ~500-byte one-passage documents (issue 9's second corpus, 26,441
passages). Baseline: the format-3 layout written with tantivy directly (the label indexed as
well as fast, each removed label deleted by a term query). Against it, the product
(``meshdex.index.keyword``: the label a fast field only, deleted by a one-value range query),
and the product's index with the removed labels batched into boolean queries of
``BATCH_LABELS`` ranges each. For each: bytes by file kind, and seconds for
``KeywordIndex.updated``-style delta updates that remove 1% and 25% of the labels (copy the
directory, delete, commit; median of ``REPEATS``), against the seconds of a fresh build.
"""

from __future__ import annotations

import argparse
import json
import random
import shutil
import statistics
import tempfile
import time
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path

import tantivy
from meshdex.index.chunking import ChunkingParams
from meshdex.index.keyword import (
    LABEL_FIELD,
    WRITER_HEAP_BYTES,
    KeywordIndex,
    passage_document,
    schema,
    with_tokenizers,
)

from bench.corpus import load_corpus
from bench.metrics import RESULTS_DIR, machine_context

REMOVED_FRACTIONS = (0.01, 0.25)
REPEATS = 3
BATCH_LABELS = 500
PASSAGE_CHARS = 500
FILE_KINDS = (".idx", ".term", ".fast", ".store", ".fieldnorm")

Deleter = Callable[[tantivy.IndexWriter, tantivy.Schema, Sequence[int]], None]


@dataclass(frozen=True, kw_only=True)
class LayoutRow:
    layout: str
    index_bytes: int
    over_raw_text: float
    bytes_by_kind: dict[str, int]
    build_s: float
    remove_s: dict[str, float]  # removed fraction -> median seconds
    per_label_ms: float  # at the largest fraction


def _build_v3(path: Path, texts: Sequence[str], labels: Sequence[int]) -> None:
    path.mkdir()
    index = with_tokenizers(tantivy.Index(schema(label_indexed=True), path=str(path)))
    writer = index.writer(heap_size=WRITER_HEAP_BYTES, num_threads=1)
    for text, label in zip(texts, labels, strict=True):
        writer.add_document(passage_document(text, label))
    writer.commit()
    writer.wait_merging_threads()


def _term_deletes(writer: tantivy.IndexWriter, schema: tantivy.Schema,
                  removed: Sequence[int]) -> None:
    for label in removed:
        writer.delete_documents_by_query(tantivy.Query.term_query(schema, LABEL_FIELD, label))


def _range(schema: tantivy.Schema, label: int) -> tantivy.Query:
    return tantivy.Query.range_query(schema, LABEL_FIELD, tantivy.FieldType.Unsigned, label, label)


def _batched_range_deletes(writer: tantivy.IndexWriter, schema: tantivy.Schema,
                           removed: Sequence[int]) -> None:
    for start in range(0, len(removed), BATCH_LABELS):
        writer.delete_documents_by_query(tantivy.Query.boolean_query(
            [(tantivy.Occur.Should, _range(schema, label))
             for label in removed[start:start + BATCH_LABELS]]))


def _remove_with(deleter: Deleter, schema: tantivy.Schema) -> Callable[[Path, Path, list[int]],
                                                                       int]:
    def remove(source: Path, target: Path, removed: list[int]) -> int:
        shutil.copytree(source, target)
        index = with_tokenizers(tantivy.Index(schema, path=str(target)))
        writer = index.writer(heap_size=WRITER_HEAP_BYTES, num_threads=1)
        deleter(writer, schema, removed)
        writer.commit()
        writer.wait_merging_threads()
        index.reload()
        return int(index.searcher().num_docs)
    return remove


def _remove_product(source: Path, target: Path, removed: list[int]) -> int:
    return len(KeywordIndex.open(source).updated(target, added=(), removed=removed))


def _bytes_by_kind(path: Path) -> dict[str, int]:
    kinds: Counter[str] = Counter()
    for file in path.iterdir():
        kinds[file.suffix if file.suffix in FILE_KINDS else "other"] += file.stat().st_size
    return dict(kinds)


def _measure(name: str, built: Path, build_s: float, raw_bytes: int,
             remove: Callable[[Path, Path, list[int]], int], labels: list[int],
             scratch: Path) -> LayoutRow:
    rng = random.Random(9)
    remove_s: dict[str, float] = {}
    for fraction in REMOVED_FRACTIONS:
        removed = rng.sample(labels, int(fraction * len(labels)))
        runs = []
        for repeat in range(REPEATS):
            target = scratch / f"{built.name}-{fraction}-{repeat}"
            started = time.perf_counter()
            left = remove(built, target, removed)
            runs.append(time.perf_counter() - started)
            if left != len(labels) - len(removed):
                raise RuntimeError(f"{name}: {left} documents left, not "
                                   f"{len(labels) - len(removed)}")
            shutil.rmtree(target)
        remove_s[f"{fraction:.0%}"] = round(statistics.median(runs), 3)
    kinds = _bytes_by_kind(built)
    largest = int(REMOVED_FRACTIONS[-1] * len(labels))
    return LayoutRow(layout=name, index_bytes=sum(kinds.values()),
                     over_raw_text=round(sum(kinds.values()) / raw_bytes, 4),
                     bytes_by_kind=kinds, build_s=round(build_s, 2), remove_s=remove_s,
                     per_label_ms=round(1000 * remove_s[f"{REMOVED_FRACTIONS[-1]:.0%}"]
                                        / largest, 4))


def _timed(build: Callable[[], object]) -> float:
    started = time.perf_counter()
    build()
    return time.perf_counter() - started


def _markdown(rows: Sequence[LayoutRow], context: dict[str, object]) -> str:
    fractions = [f"{fraction:.0%}" for fraction in REMOVED_FRACTIONS]
    lines = ["# Keyword index labels: bytes and deletes (bench/bench_keyword_labels.py)", "",
             "| layout | bytes | / raw text | " + " | ".join(FILE_KINDS)
             + " | build s | " + " | ".join(f"remove {f} s" for f in fractions)
             + " | ms per removed label |",
             "|---" * (5 + len(FILE_KINDS) + len(fractions)) + "|"]
    for row in rows:
        lines.append(
            f"| {row.layout} | {row.index_bytes:,} | {row.over_raw_text:.3f} | "
            + " | ".join(f"{row.bytes_by_kind.get(kind, 0):,}" for kind in FILE_KINDS)
            + f" | {row.build_s} | " + " | ".join(str(row.remove_s[f]) for f in fractions)
            + f" | {row.per_label_ms} |")
    lines += ["", "Context: " + ", ".join(f"{key}: {value}" for key, value in context.items()),
              ""]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> None:
    argparse.ArgumentParser(description=__doc__.splitlines()[0]).parse_args(argv)
    corpus = load_corpus(chunking=ChunkingParams(max_chars=PASSAGE_CHARS, overlap_chars=0))
    texts = corpus.texts
    labels = [int(label) for label in corpus.labels]
    raw = corpus.raw_passage_bytes
    scratch = Path(tempfile.mkdtemp(prefix="meshdex-bench-keyword-labels-"))
    try:
        v3, v4 = scratch / "v3", scratch / "v4"
        v3_build = _timed(lambda: _build_v3(v3, texts, labels))
        v4_build = _timed(lambda: KeywordIndex.build(v4, texts, labels))
        v4_schema = tantivy.Index.open(str(v4)).schema
        rows = [
            _measure("v3 baseline: label indexed + fast, term deletes", v3, v3_build, raw,
                     _remove_with(_term_deletes, schema(label_indexed=True)), labels, scratch),
            _measure("v4 product: label fast only, one range delete per label", v4, v4_build,
                     raw, _remove_product, labels, scratch),
            _measure(f"v4, range deletes batched {BATCH_LABELS} per boolean query", v4,
                     v4_build, raw, _remove_with(_batched_range_deletes, v4_schema), labels,
                     scratch),
        ]
    finally:
        shutil.rmtree(scratch, ignore_errors=True)
    per_passage_build_ms = 1000 * rows[1].build_s / len(labels)
    context = machine_context() | {
        "corpus": f"docs cut into ~{PASSAGE_CHARS}-byte passages: {len(labels)} passages, "
                  f"{raw:,} bytes of text",
        "removals": f"random labels, median of {REPEATS}; times include copying the directory",
        "break_even_removed_labels": round(per_passage_build_ms * len(labels)
                                           / rows[1].per_label_ms),
    }
    for row in rows:
        print(asdict(row))
    print(context)
    RESULTS_DIR.mkdir(parents=True, exist_ok=True)
    (RESULTS_DIR / "keyword_labels.json").write_text(json.dumps(
        {"context": context, "layouts": [asdict(row) for row in rows]}, indent=2) + "\n")
    (RESULTS_DIR / "keyword_labels.md").write_text(_markdown(rows, context))


if __name__ == "__main__":
    main()
