"""bench_store: the whole data directory against the raw text it holds, store format 1 vs 2.

For the Python docs (497 files, one document each) and the same corpus cut into ~500-byte
passages (one document each, ids ``p000000``…, no source or metadata, as a jsonl import would
give), in one run:

- bytes on disk by part: the store's LMDB pages per sub-database (and free pages), the index
  bundle, and everything under the data directory as ``du`` counts it, against the raw UTF-8
  text of the documents, after add + build; then after deleting every second document and
  ``compact`` (format 2; format 1 has no compaction);
- LEANN's layout beside it: the passages as LEANN's ``passages.jsonl`` lines
  (``{"id", "text", "metadata"}``) plus the same index (LEANN's offset file not counted);
- ingest throughput (documents/s into the store, no embedding), both formats on the same
  documents in the same process;
- the passage read path of a search: ``passage_texts`` for 40 labels plus the five hit
  documents, median of 30, against the search p50 in ``bench/results/search.json``;
- how the text compresses record by record (zlib as format 1, zstd, zstd with a 64 KiB
  dictionary trained on the collection) and in blocks of neighbours (what format 2 stores).

Version 1 is the real code at commit e045a51 (``bench/legacy_store.py``). The index is built
with ``bench.fast_embedder`` (random unit vectors, the real model's 384 dimensions): its size
depends on the passage count, not on the vectors, and no CPU goes into a model.

    python -m bench.bench_store [--mode docs|passages]
"""

from __future__ import annotations

import argparse
import json
import os
import random
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
import zlib
from collections.abc import Callable
from pathlib import Path
from typing import Any

import lmdb
import numpy as np
import zstandard
from meshdex.index.chunking import ChunkingParams, chunk_text, passage_label
from meshdex.index.embedders import EmbedderSpec
from meshdex.node.indexing import HitResolver, IndexManager
from meshdex.node.paths import INDEX_DIR_NAME, STORE_DIR_NAME
from meshdex.node.records import DocumentInput
from meshdex.node.service import BATCH_DOCUMENTS
from meshdex.node.store import Store
from meshdex.node.store.blocks import ZSTD_LEVEL

BLOCK_TARGET_BYTES = 128 * 1024

from bench.corpus import ensure_sources
from bench.fast_embedder import RandomVectorEmbedder
from bench.legacy_store import V1_COMMIT, V1SearchAdapter, load_v1_store
from bench.metrics import RESULTS_DIR, machine_context

COLLECTION = "bench"
PASSAGE_CUT = ChunkingParams(max_chars=500, overlap_chars=0)
READ_LABELS = 40
READ_HIT_DOCUMENTS = 5
READ_REPEATS = 30
RECOMPUTE_REPEATS = 3
DICTIONARY_BYTES = 64 * 1024
TARGET_RATIO = 0.7
AIM_RATIO = 0.6
MIN_INGEST_RATIO = 0.8


def corpus_documents(mode: str) -> list[DocumentInput]:
    sources = ensure_sources()
    paths = sorted(sources.rglob("*.rst.txt"), key=lambda path: path.as_posix())
    if mode == "docs":
        return [DocumentInput(id=path.relative_to(sources).as_posix(),
                              text=path.read_text(encoding="utf-8"),
                              source=path.relative_to(sources).as_posix()) for path in paths]
    pieces = [piece for path in paths
              for piece in chunk_text(path.read_text(encoding="utf-8"), PASSAGE_CUT)]
    return [DocumentInput(id=f"p{n:06d}", text=piece) for n, piece in enumerate(pieces)]


def raw_bytes(docs: list[DocumentInput]) -> int:
    return sum(len(doc.text.encode("utf-8")) for doc in docs)


def du_bytes(path: Path) -> int:
    """What ``du`` counts for ``path`` (allocated blocks), in bytes: the outside measure."""
    out = subprocess.run(["du", "-s", "--block-size=1", str(path)], check=True,
                         capture_output=True, text=True).stdout
    return int(out.split()[0])


def lmdb_parts(store_dir: Path) -> dict[str, int]:
    """Bytes of LMDB pages per named sub-database, and the free pages, of a closed store."""
    env = lmdb.open(str(store_dir), readonly=True, max_dbs=64, lock=False)
    try:
        page = env.stat()["psize"]
        parts, used = {}, 2
        with env.begin() as txn:
            names = [bytes(key) for key, _ in txn.cursor()]
            for name in names:
                stat = txn.stat(env.open_db(name, txn=txn, create=False))
                pages = stat["branch_pages"] + stat["leaf_pages"] + stat["overflow_pages"]
                parts[name.decode()] = pages * page
                used += pages
        main = env.stat()
        used += main["branch_pages"] + main["leaf_pages"] + main["overflow_pages"]
        parts["(free pages)"] = (env.info()["last_pgno"] + 1 - used) * page
        return parts
    finally:
        env.close()


def ingest(open_store: Callable[[Path], Any], data_dir: Path,
           docs: list[DocumentInput]) -> float:
    """Seconds to create the collection and upsert ``docs`` in the service's batch size, as
    ``Node.upsert_documents`` does (format 2: with its compaction at the end, if due)."""
    started = time.perf_counter()
    with open_store(data_dir) as store:
        store.create_collection(COLLECTION, embedder=EmbedderSpec(), chunking=ChunkingParams())
        for start in range(0, len(docs), BATCH_DOCUMENTS):
            store.upsert_documents(COLLECTION, docs[start : start + BATCH_DOCUMENTS])
        if hasattr(store, "compact_if_worthwhile"):
            store.compact_if_worthwhile()
    return time.perf_counter() - started


def build(store: Any) -> int:
    """Build the collection's index with the fast embedder; the bundle's bytes."""
    embedder = RandomVectorEmbedder()
    manager = IndexManager(store, embedder_factory=lambda info: embedder)
    manager.build(COLLECTION)
    manager.close()
    bundle = store.data_dir / INDEX_DIR_NAME
    return sum(path.stat().st_size for path in bundle.glob("*.leann"))


def read_path_ms(store: Any, keys: list[bytes]) -> float:
    """Median ms of a search's store reads, through the search's own resolver: each of 40
    candidates checked (its documents loaded), their 40 texts read for recompute, the top
    five turned into hits."""
    rng = random.Random(7)
    timings = []
    for _ in range(READ_REPEATS):
        labels = [passage_label(key) for key in rng.sample(keys, READ_LABELS)]
        started = time.perf_counter()
        resolver = HitResolver(store, COLLECTION, None)
        accepted = [label for label in labels if resolver.accept(label)]
        store.passage_texts(COLLECTION, np.array(accepted, dtype=np.uint64))
        for label in accepted[:READ_HIT_DOCUMENTS]:
            resolver.hit(label, 1.0)
        timings.append((time.perf_counter() - started) * 1000)
    return statistics.median(timings)


def recompute_ms(texts: list[str]) -> float:
    """Median ms the real model (fp32) takes to embed 40 of the passages: what a search
    spends recomputing, measured in this run so the read path's share is under equal load."""
    from meshdex.index.embedders import default_embedder

    embedder = default_embedder("fp32")
    rng = random.Random(11)
    embedder.embed_documents(rng.sample(texts, 4))  # warm up
    timings = []
    for _ in range(RECOMPUTE_REPEATS):
        sample = rng.sample(texts, READ_LABELS)
        started = time.perf_counter()
        embedder.embed_documents(sample)
        timings.append((time.perf_counter() - started) * 1000)
    return statistics.median(timings)


def leann_layout_bytes(store: Any) -> int:
    """LEANN's passages.jsonl for the same passages (``{"id", "text", "metadata"}``)."""
    return sum(len(json.dumps({"id": str(n), "text": text, "metadata": {}}).encode()) + 1
               for n, (_, text) in enumerate(store.iter_passages(COLLECTION)))


def compression_ratios(docs: list[DocumentInput]) -> dict[str, float]:
    texts = [doc.text.encode("utf-8") for doc in docs]
    raw = sum(len(t) for t in texts)
    plain = zstandard.ZstdCompressor(level=ZSTD_LEVEL, write_checksum=False)
    samples = [t[i : i + 4096] for t in texts for i in range(0, len(t), 4096)][:4000]
    dictionary = zstandard.train_dictionary(DICTIONARY_BYTES, samples, k=1024, d=8, threads=1)
    with_dict = zstandard.ZstdCompressor(level=ZSTD_LEVEL, dict_data=dictionary,
                                         write_checksum=False, write_dict_id=False)
    blob = b"".join(texts)
    return {
        "zlib-6 per record (format 1)": sum(len(zlib.compress(t, 6)) for t in texts) / raw,
        f"zstd-{ZSTD_LEVEL} per record": sum(len(plain.compress(t)) for t in texts) / raw,
        f"zstd-{ZSTD_LEVEL} per record + 64 KiB dictionary": (
            sum(len(with_dict.compress(t)) for t in texts) + DICTIONARY_BYTES) / raw,
        f"zstd-{ZSTD_LEVEL} in 64 KiB blocks": sum(
            len(plain.compress(blob[i : i + 65536])) for i in range(0, len(blob), 65536)) / raw,
        f"zstd-{ZSTD_LEVEL} in {BLOCK_TARGET_BYTES // 1024} KiB blocks (format 2)": sum(
            len(plain.compress(blob[i : i + BLOCK_TARGET_BYTES]))
            for i in range(0, len(blob), BLOCK_TARGET_BYTES)) / raw,
    }


def measure_format(version: int, docs: list[DocumentInput], work: Path) -> dict[str, Any]:
    open_store = load_v1_store().Store.open if version == 1 else Store.open
    data_dir = work / f"v{version}"
    seconds = ingest(open_store, data_dir, docs)
    with open_store(data_dir) as opened:
        store = V1SearchAdapter(opened) if version == 1 else opened
        index_bytes = build(store)
        passages = list(store.iter_passages(COLLECTION))
        keys = [key for key, _ in passages]
        read_ms = read_path_ms(store, keys)
        model_ms = recompute_ms([text for _, text in passages]) if version == 2 else None
        leann = leann_layout_bytes(store)
    row: dict[str, Any] = {
        "format": version,
        "documents": len(docs),
        "passages": len(keys),
        "raw_text_bytes": raw_bytes(docs),
        "ingest_s": round(seconds, 2),
        "ingest_docs_per_s": round(len(docs) / seconds, 1),
        "store_parts_bytes": lmdb_parts(data_dir / STORE_DIR_NAME),
        "data_mdb_bytes": (data_dir / STORE_DIR_NAME / "data.mdb").stat().st_size,
        "index_bytes": index_bytes,
        "du_bytes": du_bytes(data_dir),
        "leann_jsonl_bytes": leann,
        "read_path_ms": round(read_ms, 2),
        "recompute_40_ms": round(model_ms, 1) if model_ms else None,
    }
    row["du_ratio"] = round(row["du_bytes"] / row["raw_text_bytes"], 3)
    row["leann_ratio"] = round((leann + index_bytes) / row["raw_text_bytes"], 3)
    kept = docs[1::2]
    with open_store(data_dir) as store:
        store.delete_documents(COLLECTION, [doc.id for doc in docs[::2]])
        if version == 2:
            store.compact()  # what `meshdex compact` runs
    row["after_delete_half"] = {
        "raw_text_bytes": raw_bytes(kept),
        "du_bytes": du_bytes(data_dir),
        "compacted": version == 2,
        "store_parts_bytes": lmdb_parts(data_dir / STORE_DIR_NAME),
    }
    row["after_delete_half"]["du_ratio"] = round(
        row["after_delete_half"]["du_bytes"] / row["after_delete_half"]["raw_text_bytes"], 3)
    shutil.rmtree(data_dir)
    return row


def format_report(results: dict[str, Any], search_p50_ms: float | None) -> str:
    lines = [f"# {results['title']}", ""]
    for key, value in results["context"].items():
        lines.append(f"- {key}: {value}")
    for mode, rows in results["modes"].items():
        v1, v2 = rows["v1"], rows["v2"]
        raw = v2["raw_text_bytes"]
        lines += ["", f"## {mode}: {v2['documents']:,} documents, {v2['passages']:,} passages, "
                  f"{raw:,} bytes of text", "",
                  "| | format 1 | format 2 |", "|---|---|---|"]

        def line(label: str, a: Any, b: Any, lines: list[str] = lines) -> None:
            lines.append(f"| {label} | {a} | {b} |")

        def mb(n: int, raw: int = raw) -> str:
            return f"{n / 1e6:.2f} MB ({n / raw:.2f}x)"

        parts = sorted(set(v1["store_parts_bytes"]) | set(v2["store_parts_bytes"]))
        for part in parts:
            line(f"store: {part}", mb(v1["store_parts_bytes"].get(part, 0)),
                 mb(v2["store_parts_bytes"].get(part, 0)))
        line("store: data.mdb file", mb(v1["data_mdb_bytes"]), mb(v2["data_mdb_bytes"]))
        line("index bundle", mb(v1["index_bytes"]), mb(v2["index_bytes"]))
        line("**everything (du of the data dir)**", f"**{mb(v1['du_bytes'])}**",
             f"**{mb(v2['du_bytes'])}**")
        line("LEANN layout: passages.jsonl + index", mb(v1["leann_jsonl_bytes"] +
             v1["index_bytes"]), mb(v2["leann_jsonl_bytes"] + v2["index_bytes"]))
        a1, a2 = v1["after_delete_half"], v2["after_delete_half"]
        line("after deleting half (format 2: + compact), du / remaining text",
             f"{a1['du_bytes'] / 1e6:.2f} MB ({a1['du_ratio']:.2f}x)",
             f"{a2['du_bytes'] / 1e6:.2f} MB ({a2['du_ratio']:.2f}x)")
        speedup = v2["ingest_docs_per_s"] / v1["ingest_docs_per_s"]
        line("ingest, documents/s (no embedding)", v1["ingest_docs_per_s"],
             f"{v2['ingest_docs_per_s']} ({speedup:.2f}x)")
        line("search read path (40 candidates' documents and passages, 5 hits), ms",
             v1["read_path_ms"], v2["read_path_ms"])
        line("the model recomputing those 40 passages (fp32, this run), ms", "",
             v2["recompute_40_ms"])
        lines += ["", "Targets (format 2): " + "; ".join(targets(v1, v2, search_p50_ms)), "",
                  "Compression of the documents' text (compressed / raw):", ""]
        lines += [f"- {name}: {ratio:.3f}" for name, ratio in rows["compression"].items()]
    return "\n".join(lines) + "\n"


def targets(v1: dict[str, Any], v2: dict[str, Any], search_p50_ms: float | None) -> list[str]:
    def verdict(ok: bool) -> str:
        return "met" if ok else "MISSED"

    ingest = v2["ingest_docs_per_s"] / v1["ingest_docs_per_s"]
    out = [
        f"everything <= {TARGET_RATIO}x the text: {v2['du_ratio']:.3f}x "
        f"{verdict(v2['du_ratio'] <= TARGET_RATIO)} (aim {AIM_RATIO}x: "
        f"{verdict(v2['du_ratio'] <= AIM_RATIO)})",
        f"after deleting half + compact <= {TARGET_RATIO}x: "
        f"{v2['after_delete_half']['du_ratio']:.3f}x "
        f"{verdict(v2['after_delete_half']['du_ratio'] <= TARGET_RATIO)}",
        f"ingest >= {MIN_INGEST_RATIO}x format 1: {ingest:.2f}x "
        f"{verdict(ingest >= MIN_INGEST_RATIO)}",
    ]
    share = v2["read_path_ms"] / (v2["recompute_40_ms"] + v2["read_path_ms"])
    out.append(f"read path < 2% of search (read + recompute, this run): {share:.2%} "
               f"{verdict(share < 0.02)}")
    if search_p50_ms:
        out.append(f"(against the {search_p50_ms / 1000:.2f} s search p50 of "
                   f"bench/results/search.json, measured idle: "
                   f"{v2['read_path_ms'] / search_p50_ms:.2%})")
    return out


def search_p50_ms() -> float | None:
    """The default row's p50 from the last bench_search run (``bench/results/search.json``)."""
    path = RESULTS_DIR / "search.json"
    if not path.exists():
        return None
    rows = [row for row in json.loads(path.read_text())["rows"]
            if row["method"].startswith("meshdex default")]
    return float(rows[0]["latency_p50_ms"]) if rows else None


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--mode", choices=["docs", "passages"], action="append",
                        help="measure only this corpus (repeatable; default both)")
    args = parser.parse_args(argv)
    modes = args.mode or ["docs", "passages"]
    results: dict[str, Any] = {"title": "meshdex store on disk: format 1 vs 2, Python 3.11 docs",
                               "modes": {}}
    with tempfile.TemporaryDirectory(prefix="bench-store-") as scratch:
        for mode in modes:
            docs = corpus_documents(mode)
            rows = {f"v{version}": measure_format(version, docs, Path(scratch))
                    for version in (1, 2)}
            rows["compression"] = compression_ratios(docs)
            results["modes"][mode] = rows
            print(f"{mode}: " + "; ".join(targets(rows["v1"], rows["v2"], search_p50_ms())),
                  flush=True)
    results["context"] = machine_context() | {
        "command": "python -m bench.bench_store" + "".join(f" --mode {m}" for m in args.mode or []),
        "format 1": f"node/store.py at {V1_COMMIT} (bench/legacy_store.py)",
        "index": "built with bench.fast_embedder (384-d random unit vectors): the bundle's "
                 "size depends on the passage count only",
        "passages corpus": f"the docs cut with {PASSAGE_CUT.to_dict()}, one document each",
        "pid": os.getpid(),
    }
    report = format_report(results, search_p50_ms())
    print(report)
    RESULTS_DIR.mkdir(parents=True, exist_ok=True)
    (RESULTS_DIR / "store.json").write_text(json.dumps(results, indent=2) + "\n")
    (RESULTS_DIR / "store.md").write_text(report)


if __name__ == "__main__":
    sys.exit(main())
