"""bench_store: the whole data directory against the raw text it holds, store format 1 vs the
current one.

For the Python docs (497 files, one document each) and the same corpus cut into ~500-byte
passages (one document each, ids ``p000000``…, no source or metadata, as a jsonl import would
give), in one run:

- bytes on disk by part: the store's LMDB pages per sub-database (and free pages), the index
  bundle, and everything under the data directory as ``du`` counts it, against the raw UTF-8
  text of the documents, after add + build; then after deleting every second document and
  ``meshdex compact`` (store and indexes; format 1 has no compaction), and after the next
  build;
- LEANN's layout beside it: the passages as LEANN's ``passages.jsonl`` lines
  (``{"id", "text", "metadata"}``) plus the same index (LEANN's offset file not counted);
- ingest throughput (documents/s into the store, no embedding), as ``meshdex add`` meets it:
  each run in a fresh process, the formats alternating, ``INGEST_ROUNDS`` runs each (median).
  Timed once each in this process, format 1 first, format 4 read 0.66x format 1 on the
  passages corpus and 1.18x in fresh processes: the in-process figure depends on the order
  (it is still reported, as such);
- the passage read path of a search: the resolver's checks of 40 candidates, their 40 texts
  and five hits, median of 30 (wall and CPU), against the real model recomputing 40 passages;
- the block layouts the read path was chosen from (text per block, dictionary or not): size
  on disk against CPU time to read 40 random documents;
- how the text compresses record by record (zlib as format 1, zstd, zstd with a dictionary);
- search latency end to end (unless ``--no-search``): p50 of a few semantic searches with the
  real model on a few hundred passages, format 1 vs current; recompute dominates it.

Version 1 is the real code at commit e045a51 (``bench/legacy_store.py``). The index is built
with ``bench.fast_embedder`` (random unit vectors, the real model's 384 dimensions): its size
depends on the passage count, not on the vectors, and no CPU goes into a model.

    python -m bench.bench_store [--mode docs|passages] [--no-search]
    python -m bench.bench_store --ingest-only 1|FORMAT --mode docs|passages --scratch DIR
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
from meshdex.node.keyword_indexes import KEYWORD_DIR_NAME
from meshdex.node.paths import INDEX_DIR_NAME, STORE_DIR_NAME
from meshdex.node.records import DocumentInput
from meshdex.node.service import BATCH_DOCUMENTS
from meshdex.node.store import STORE_FORMAT_VERSION, Store
from meshdex.node.store.blocks import (
    BLOCK_FRAME_BUDGET_BYTES,
    DICTIONARY_BYTES,
    ZSTD_LEVEL,
    Block,
    BlockPacker,
    Dictionary,
    train_dictionary,
)
from meshdex.sync.trust import TrustStore

from bench.corpus import ensure_sources, faq_questions
from bench.fast_embedder import RandomVectorEmbedder
from bench.legacy_store import V1_COMMIT, V1SearchAdapter, load_v1_store
from bench.metrics import RESULTS_DIR, machine_context

COLLECTION = "bench"
PASSAGE_CUT = ChunkingParams(max_chars=500, overlap_chars=0)
READ_LABELS = 40
READ_HIT_DOCUMENTS = 5
READ_REPEATS = 30
RECOMPUTE_REPEATS = 3
FORMAT_2_BLOCK_BYTES = 128 * 1024
OPTION_BLOCK_BYTES = (8 * 1024, 16 * 1024, 32 * 1024, FORMAT_2_BLOCK_BYTES)
SEARCH_PASSAGES = 300
SEARCH_QUERIES = 6  # measured, after one warm-up query
TARGET_RATIO = 0.7
AIM_RATIO = 0.6
MIN_INGEST_RATIO = 0.8
INGEST_ROUNDS = 3
CURRENT = f"v{STORE_FORMAT_VERSION}"
LOAD_AT_START = round(os.getloadavg()[0], 2)


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
    ``Node.upsert_documents`` does (format 3: with its compaction at the end, if due)."""
    started = time.perf_counter()
    with open_store(data_dir) as store:
        store.create_collection(COLLECTION, embedder=EmbedderSpec(), chunking=ChunkingParams())
        bytes_before = store.store_bytes() if hasattr(store, "store_bytes") else 0
        for start in range(0, len(docs), BATCH_DOCUMENTS):
            store.upsert_documents(COLLECTION, docs[start : start + BATCH_DOCUMENTS])
        if hasattr(store, "compact_if_worthwhile"):
            store.compact_if_worthwhile(bytes_before=bytes_before)
    return time.perf_counter() - started


def ingest_rate(version: int, mode: str, scratch: Path) -> float:
    """Documents/s of one ingest of ``mode``'s corpus in a fresh Python process."""
    out = subprocess.run(
        [sys.executable, "-m", "bench.bench_store", "--ingest-only", str(version),
         "--mode", mode, "--scratch", str(scratch)],
        check=True, capture_output=True, text=True, cwd=Path(__file__).resolve().parent.parent)
    return float(json.loads(out.stdout.splitlines()[-1])["docs_per_s"])


def ingest_rates(mode: str, scratch: Path) -> dict[str, Any]:
    """``INGEST_ROUNDS`` fresh-process ingests per format, alternating which goes first."""
    rates: dict[str, list[float]] = {"v1": [], CURRENT: []}
    order = [("v1", 1), (CURRENT, STORE_FORMAT_VERSION)]
    for _ in range(INGEST_ROUNDS):
        for key, version in order:
            rates[key].append(round(ingest_rate(version, mode, scratch), 1))
        order.reverse()
    medians = {key: statistics.median(values) for key, values in rates.items()}
    return {"runs_docs_per_s": rates, "median_docs_per_s": medians,
            "ratio": round(medians[CURRENT] / medians["v1"], 3)}


def ingest_once(version: int, mode: str, scratch: Path) -> None:
    """``--ingest-only``: ingest ``mode``'s corpus into a new store, print documents/s."""
    docs = corpus_documents(mode)
    open_store = load_v1_store().Store.open if version == 1 else Store.open
    with tempfile.TemporaryDirectory(dir=scratch) as data_dir:
        seconds = ingest(open_store, Path(data_dir) / "store", docs)
    print(json.dumps({"docs_per_s": len(docs) / seconds}))


def build(store: Any) -> int:
    """Build the collection's index with the fast embedder; the bundle's bytes."""
    embedder = RandomVectorEmbedder()
    manager = IndexManager(store, embedder_factory=lambda info: embedder)
    manager.build(COLLECTION)
    manager.close()
    bundle = store.data_dir / INDEX_DIR_NAME
    return sum(path.stat().st_size for path in bundle.glob("*.leann"))


def compact_indexes(store: Any) -> None:
    """Drop the deleted documents' passages from the bundle and keyword index, as
    ``meshdex compact`` does before rewriting the store (nothing is embedded)."""
    manager = IndexManager(store, embedder_factory=lambda info: RandomVectorEmbedder())
    manager.drop_deleted(COLLECTION)
    manager.close()


def keyword_index_bytes(data_dir: Path) -> int:
    """``du`` of the BM25 index a build writes beside the bundle (0 if there is none)."""
    folder = data_dir / INDEX_DIR_NAME / KEYWORD_DIR_NAME
    return du_bytes(folder) if folder.exists() else 0


def read_path_ms(store: Any, keys: list[bytes]) -> tuple[float, float]:
    """Median wall and CPU ms of a search's store reads, through the search's own resolver:
    each of 40 candidates checked (its documents loaded), their 40 texts read for recompute,
    the top five turned into hits. CPU time is this process's, so a loaded machine inflates
    it less than the wall clock."""
    rng = random.Random(7)
    wall, cpu = [], []
    for _ in range(READ_REPEATS):
        labels = [passage_label(key) for key in rng.sample(keys, READ_LABELS)]
        started, started_cpu = time.perf_counter(), time.process_time()
        with store.passage_reads(COLLECTION) as reads:
            resolver = HitResolver(reads, None)
            accepted = [label for label in labels if resolver.accept(label)]
            resolver.texts(np.array(accepted, dtype=np.uint64))
            for label in accepted[:READ_HIT_DOCUMENTS]:
                resolver.hit(label, 1.0)
        wall.append((time.perf_counter() - started) * 1000)
        cpu.append((time.process_time() - started_cpu) * 1000)
    return statistics.median(wall), statistics.median(cpu)


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
    """Record by record: how format 1 compressed, and what zstd with and without a
    dictionary would (the block layouts are in ``block_options``)."""
    texts = [doc.text.encode("utf-8") for doc in docs]
    raw = sum(len(t) for t in texts)
    plain = zstandard.ZstdCompressor(level=ZSTD_LEVEL, write_checksum=False)
    dictionary = train_dictionary(texts)
    assert dictionary is not None
    with_dict = zstandard.ZstdCompressor(level=ZSTD_LEVEL, dict_data=dictionary,
                                         write_checksum=False, write_dict_id=False)
    return {
        "zlib-6 per record (format 1)": sum(len(zlib.compress(t, 6)) for t in texts) / raw,
        f"zstd-{ZSTD_LEVEL} per record": sum(len(plain.compress(t)) for t in texts) / raw,
        f"zstd-{ZSTD_LEVEL} per record + {DICTIONARY_BYTES // 1024} KiB dictionary": (
            sum(len(with_dict.compress(t)) for t in texts) + DICTIONARY_BYTES) / raw,
    }


def block_options(docs: list[DocumentInput]) -> list[dict[str, Any]]:
    """The block layouts the read path was chosen from, with the store's own block codec:
    documents in order cut into blocks of a fixed amount of text, with and without the
    collection's dictionary, or (format 3) filled until the frame fills one LMDB page.

    Per option: compressed / raw (the dictionary counted once, and LMDB's page granularity
    for each frame: a frame is one value in overflow pages), the median CPU ms to read 40
    random documents' texts (decompress + decode their blocks, no cache, as a search's 40
    reads touch ~40 blocks), and how many distinct blocks those 40 reads touched (what
    grouping reads by block or an LRU of decoded blocks could save at most)."""
    items = [(doc.id, doc.text.encode("utf-8")) for doc in docs]
    raw = sum(len(text) for _, text in items)
    trained = train_dictionary(text for _, text in items)
    assert trained is not None
    dictionary = Dictionary(id=1, zstd=trained)
    page = 4096
    layouts: list[tuple[str, Dictionary | None, list[list[tuple[str, bytes]]]]] = []
    for size in OPTION_BLOCK_BYTES:
        groups: list[list[tuple[str, bytes]]] = [[]]
        held = 0
        for item in items:
            if groups[-1] and held >= size:
                groups.append([])
                held = 0
            groups[-1].append(item)
            held += len(item[1])
        for chosen in (None, dictionary):
            name = f"{size // 1024} KiB of text per block" + (
                f", {DICTIONARY_BYTES // 1024} KiB dictionary" if chosen else "")
            if size == FORMAT_2_BLOCK_BYTES and chosen is None:
                name += " (format 2)"
            layouts.append((name, chosen, groups))
    for pages in (1, 2):
        packer = BlockPacker(dictionary, budget_bytes=pages * page - 16)
        packed = [group for group, _ in packer.pack(items)]
        layouts.append((f"filled to {pages} page(s) of {page} B, {DICTIONARY_BYTES // 1024} KiB "
                        "dictionary" + (" (the store's)" if pages * page - 16 == (
                            BLOCK_FRAME_BUDGET_BYTES) else ""), dictionary, packed))
    rng = random.Random(7)
    samples = [rng.sample(range(len(items)), READ_LABELS) for _ in range(READ_REPEATS)]
    out = []
    for name, chosen, groups in layouts:
        values = [Block(members=group).encode(chosen) for group in groups]
        where = {}
        for number, group in enumerate(groups):
            for slot in range(len(group)):
                where[len(where)] = (number, slot)
        stored = sum(-(-(len(v) + 16) // page) * page for v in values) + (
            DICTIONARY_BYTES if chosen else 0)
        timings, touched = [], []
        for sample in samples:
            started = time.process_time()
            for index in sample:
                number, slot = where[index]
                Block.decode(b"k", values[number], lambda i, chosen=chosen: chosen).members[slot]
            timings.append((time.process_time() - started) * 1000)
            touched.append(len({where[index][0] for index in sample}))
        out.append({"layout": name, "blocks": len(values), "stored_ratio": stored / raw,
                    "read_40_cpu_ms": statistics.median(timings),
                    "distinct_blocks_per_40": statistics.median(touched)})
    return out


def search_corpus() -> tuple[list[DocumentInput], list[str]]:
    """The FAQ pages cut into ~500-byte passages (the first ``SEARCH_PASSAGES``) and the FAQ
    questions: the small corpus the end-to-end search latency is measured on."""
    sources = ensure_sources()
    pieces = [piece for path in sorted((sources / "faq").glob("*.rst.txt"))
              for piece in chunk_text(path.read_text(encoding="utf-8"), PASSAGE_CUT)]
    docs = [DocumentInput(id=f"q{n:04d}", text=piece)
            for n, piece in enumerate(pieces[:SEARCH_PASSAGES])]
    return docs, faq_questions(sources)[: SEARCH_QUERIES + 1]


def search_latency(version: int, work: Path) -> dict[str, Any]:
    """p50 of semantic searches (real model, fp32) on the small corpus, store format
    ``version``: the whole of ``IndexManager.search``, recompute included."""
    from meshdex.index.embedders import default_embedder

    docs, queries = search_corpus()
    open_store = load_v1_store().Store.open if version == 1 else Store.open
    data_dir = work / f"search-v{version}"
    ingest(open_store, data_dir, docs)
    embedder = default_embedder("fp32")
    with open_store(data_dir) as opened:
        store = V1SearchAdapter(opened) if version == 1 else opened
        manager = IndexManager(store, embedder_factory=lambda info: embedder)
        manager.build(COLLECTION)
        manager.search(COLLECTION, queries[0], mode="semantic")  # warm up
        wall, model, recomputed = [], [], []
        for query in queries[1:]:
            started = time.perf_counter()
            results = manager.search(COLLECTION, query, mode="semantic")
            wall.append((time.perf_counter() - started) * 1000)
            model.append(results.stats.model_seconds * 1000)
            recomputed.append(results.stats.passages_recomputed)
        manager.close()
    shutil.rmtree(data_dir)
    return {"passages": len(docs), "queries": len(wall),
            "search_p50_ms": round(statistics.median(wall), 1),
            "model_p50_ms": round(statistics.median(model), 1),
            "passages_recomputed_p50": statistics.median(recomputed)}


def measure_format(version: int, docs: list[DocumentInput], work: Path) -> dict[str, Any]:
    open_store = load_v1_store().Store.open if version == 1 else Store.open
    data_dir = work / f"v{version}"
    seconds = ingest(open_store, data_dir, docs)
    with open_store(data_dir) as opened:
        store = V1SearchAdapter(opened) if version == 1 else opened
        index_bytes = build(store)
        passages = list(store.iter_passages(COLLECTION))
        keys = [key for key, _ in passages]
        read_ms, read_cpu_ms = read_path_ms(store, keys)
        model_ms = recompute_ms([text for _, text in passages]) if version > 1 else None
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
        "keyword_index_du_bytes": keyword_index_bytes(data_dir),
        "du_bytes": du_bytes(data_dir),
        "leann_jsonl_bytes": leann,
        "read_path_ms": round(read_ms, 2),
        "read_path_cpu_ms": round(read_cpu_ms, 2),
        "recompute_40_ms": round(model_ms, 1) if model_ms else None,
    }
    row["du_ratio"] = round(row["du_bytes"] / row["raw_text_bytes"], 3)
    row["leann_ratio"] = round((leann + index_bytes) / row["raw_text_bytes"], 3)
    kept = docs[1::2]
    with open_store(data_dir) as store:
        store.delete_documents(COLLECTION, [doc.id for doc in docs[::2]])
        if version > 1:  # what `meshdex compact` runs (Node.compact), paired with no one
            compact_indexes(store)
            store.compact(paired=TrustStore(data_dir).sharing())
    row["after_delete_half"] = {
        "raw_text_bytes": raw_bytes(kept),
        "du_bytes": du_bytes(data_dir),
        "keyword_index_du_bytes": keyword_index_bytes(data_dir),
        "index_bytes_after_compact": sum(
            path.stat().st_size for path in (data_dir / INDEX_DIR_NAME).glob("*.leann")),
        "compacted": version > 1,
        "store_parts_bytes": lmdb_parts(data_dir / STORE_DIR_NAME),
    }
    row["after_delete_half"]["du_ratio"] = round(
        row["after_delete_half"]["du_bytes"] / row["after_delete_half"]["raw_text_bytes"], 3)
    if version > 1:  # the next build finds nothing left to drop
        with open_store(data_dir) as store:
            row["after_delete_half"]["index_bytes"] = build(store)
        row["after_delete_half"]["du_bytes_after_rebuild"] = du_bytes(data_dir)
        row["after_delete_half"]["keyword_index_du_bytes_after_rebuild"] = (
            keyword_index_bytes(data_dir))
        row["after_delete_half"]["du_ratio_after_rebuild"] = round(
            row["after_delete_half"]["du_bytes_after_rebuild"] / raw_bytes(kept), 3)
    shutil.rmtree(data_dir)
    return row


def format_report(results: dict[str, Any]) -> str:
    lines = [f"# {results['title']}", ""]
    for key, value in results["context"].items():
        lines.append(f"- {key}: {value}")
    search = results.get("search")
    for mode, rows in results["modes"].items():
        v1, v3 = rows["v1"], rows[CURRENT]
        raw = v3["raw_text_bytes"]
        lines += ["", f"## {mode}: {v3['documents']:,} documents, {v3['passages']:,} passages, "
                  f"{raw:,} bytes of text", "",
                  f"| | format 1 | format {STORE_FORMAT_VERSION} |", "|---|---|---|"]

        def line(label: str, a: Any, b: Any, lines: list[str] = lines) -> None:
            lines.append(f"| {label} | {a} | {b} |")

        def mb(n: int, raw: int = raw) -> str:
            return f"{n / 1e6:.2f} MB ({n / raw:.2f}x)"

        parts = sorted(set(v1["store_parts_bytes"]) | set(v3["store_parts_bytes"]))
        for part in parts:
            line(f"store: {part}", mb(v1["store_parts_bytes"].get(part, 0)),
                 mb(v3["store_parts_bytes"].get(part, 0)))
        line("store: data.mdb file", mb(v1["data_mdb_bytes"]), mb(v3["data_mdb_bytes"]))
        line("index bundle", mb(v1["index_bytes"]), mb(v3["index_bytes"]))
        line("keyword (BM25) index of the build, du", mb(v1["keyword_index_du_bytes"]),
             mb(v3["keyword_index_du_bytes"]))
        line("**everything (du of the data dir)**", f"**{mb(v1['du_bytes'])}**",
             f"**{mb(v3['du_bytes'])}**")
        line("LEANN layout: passages.jsonl + index", mb(v1["leann_jsonl_bytes"] +
             v1["index_bytes"]), mb(v3["leann_jsonl_bytes"] + v3["index_bytes"]))
        a1, a3 = v1["after_delete_half"], v3["after_delete_half"]
        line(f"after deleting half (format {STORE_FORMAT_VERSION}: + `meshdex compact`, which "
             "also drops the deleted passages from the indexes and, paired with no device, "
             "the tombstones), du / remaining text",
             f"{a1['du_bytes'] / 1e6:.2f} MB ({a1['du_ratio']:.2f}x)",
             f"{a3['du_bytes'] / 1e6:.2f} MB ({a3['du_ratio']:.2f}x)")
        line("... and after `meshdex build` (the index drops the deleted passages)", "",
             f"{a3['du_bytes_after_rebuild'] / 1e6:.2f} MB "
             f"({a3['du_ratio_after_rebuild']:.2f}x)")
        rates = rows["ingest"]
        line(f"ingest, documents/s (no embedding), fresh process per run, median of "
             f"{INGEST_ROUNDS} alternating", rates["median_docs_per_s"]["v1"],
             f"{rates['median_docs_per_s'][CURRENT]} ({rates['ratio']:.2f}x)")
        line("... the runs", ", ".join(map(str, rates["runs_docs_per_s"]["v1"])),
             ", ".join(map(str, rates["runs_docs_per_s"][CURRENT])))
        line("... in the bench's process, format 1 first (order-dependent)",
             v1["ingest_docs_per_s"], v3["ingest_docs_per_s"])
        line("search read path (40 candidates' documents and passages, 5 hits), wall ms",
             v1["read_path_ms"], v3["read_path_ms"])
        line("the same, CPU ms of this process", v1["read_path_cpu_ms"],
             v3["read_path_cpu_ms"])
        line("the model recomputing those 40 passages (fp32, this run), ms", "",
             v3["recompute_40_ms"])
        kept = a3["raw_text_bytes"]
        lines += ["", f"After deleting half and compacting (format {STORE_FORMAT_VERSION}), by "
                  f"part, against the {kept:,} bytes of remaining text: " + ", ".join(
                      f"{part} {size / 1e6:.2f} MB ({size / kept:.2f}x)"
                      for part, size in sorted(a3["store_parts_bytes"].items(),
                                               key=lambda item: -item[1]) if size > 4096)
                  + f"; index bundle {a3['index_bytes_after_compact'] / 1e6:.2f} MB "
                  f"({a3['index_bytes_after_compact'] / kept:.2f}x), keyword index "
                  f"{a3['keyword_index_du_bytes'] / 1e6:.2f} MB "
                  f"({a3['keyword_index_du_bytes'] / kept:.2f}x); after the next build: index "
                  f"{a3['index_bytes'] / 1e6:.2f} MB, keyword index "
                  f"{a3['keyword_index_du_bytes_after_rebuild'] / 1e6:.2f} MB."]
        lines += ["", per_item_bytes(v3)]
        lines += ["", f"Targets (format {STORE_FORMAT_VERSION}): "
                  + "; ".join(targets(v1, v3, rates, search)), "",
                  "Block layouts (the store's block codec on this corpus; read = CPU ms to read "
                  "40 random documents' texts, no cache):", "",
                  "| layout | blocks | stored / raw | read 40, CPU ms | distinct blocks per 40 "
                  "reads |", "|---|---|---|---|---|"]
        lines += [f"| {o['layout']} | {o['blocks']:,} | {o['stored_ratio']:.3f} | "
                  f"{o['read_40_cpu_ms']:.2f} | {o['distinct_blocks_per_40']:.0f} |"
                  for o in rows["block_options"]]
        lines += ["", "Compression record by record (compressed / raw):", ""]
        lines += [f"- {name}: {ratio:.3f}" for name, ratio in rows["compression"].items()]
    if search:
        s1, s3 = search["v1"], search[CURRENT]
        lines += ["", f"## Search latency, end to end ({s3['passages']} passages of the FAQ "
                  f"pages, {s3['queries']} FAQ questions, semantic, real model fp32)", "",
                  f"| | format 1 | format {STORE_FORMAT_VERSION} |", "|---|---|---|",
                  f"| search p50, ms | {s1['search_p50_ms']} | {s3['search_p50_ms']} |",
                  f"| of which the model (query + recomputes), p50 ms | {s1['model_p50_ms']} | "
                  f"{s3['model_p50_ms']} |",
                  f"| passages recomputed, p50 | {s1['passages_recomputed_p50']} | "
                  f"{s3['passages_recomputed_p50']} |", "",
                  "Recomputing passages with the model dominates a search; the store's reads "
                  "are the rest with the graph walk and scoring. A few queries on a shared "
                  "machine: differences of a few percent are noise."]
    return "\n".join(lines) + "\n"


def per_item_bytes(row: dict[str, Any]) -> str:
    """Where the current format's bytes go, per document and per passage: which parts a
    smaller data directory would have to shrink (LMDB pages, so each record's share of page
    and node overhead is included)."""
    parts, docs, passages = row["store_parts_bytes"], row["documents"], row["passages"]
    records = {name: parts.get(name, 0) for name in ("documents", "changes", "passages")}
    text = parts.get("blocks", 0)
    return (f"Per document ({docs:,}) and passage ({passages:,}), format "
            f"{STORE_FORMAT_VERSION}: document record {records['documents'] / docs:.0f} B and "
            f"change-log entry {records['changes'] / docs:.0f} B a document, passage reference "
            f"{records['passages'] / passages:.0f} B a passage; text blocks {text / docs:.0f} B "
            f"a document ({text / row['raw_text_bytes']:.3f} of its text); index bundle "
            f"{row['index_bytes'] / passages:.0f} B and keyword index "
            f"{row['keyword_index_du_bytes'] / passages:.0f} B a passage.")


def targets(v1: dict[str, Any], v3: dict[str, Any], rates: dict[str, Any],
            search: dict[str, Any] | None) -> list[str]:
    def verdict(ok: bool) -> str:
        return "met" if ok else "MISSED"

    ingest = rates["ratio"]
    after = v3["after_delete_half"]
    out = [
        f"everything <= {TARGET_RATIO}x the text: {v3['du_ratio']:.3f}x "
        f"{verdict(v3['du_ratio'] <= TARGET_RATIO)} (aim {AIM_RATIO}x: "
        f"{verdict(v3['du_ratio'] <= AIM_RATIO)}; without the keyword index: "
        f"{(v3['du_bytes'] - v3['keyword_index_du_bytes']) / v3['raw_text_bytes']:.3f}x)",
        f"after deleting half + compact <= {TARGET_RATIO}x: {after['du_ratio']:.3f}x "
        f"{verdict(after['du_ratio'] <= TARGET_RATIO)} (after the next build: "
        f"{after['du_ratio_after_rebuild']:.3f}x)",
        f"ingest >= {MIN_INGEST_RATIO}x format 1 (fresh processes, median): {ingest:.2f}x "
        f"{verdict(ingest >= MIN_INGEST_RATIO)}",
    ]
    share = v3["read_path_ms"] / (v3["recompute_40_ms"] + v3["read_path_ms"])
    out.append(f"read path < 2% of search (read + recompute of the same 40, this run): "
               f"{share:.2%} {verdict(share < 0.02)}; {v3['read_path_ms']:.1f} ms wall, "
               f"{v3['read_path_cpu_ms']:.1f} ms CPU (\"a few ms\": "
               f"{verdict(v3['read_path_cpu_ms'] <= 5)} on CPU)")
    if search:
        ratio = search[CURRENT]["search_p50_ms"] / search["v1"]["search_p50_ms"]
        out.append(f"search p50 format {STORE_FORMAT_VERSION} / format 1: {ratio:.2f}x "
                   f"(small corpus, {search[CURRENT]['queries']} queries)")
    return out


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--mode", choices=["docs", "passages"], action="append",
                        help="measure only this corpus (repeatable; default both)")
    parser.add_argument("--no-search", action="store_true",
                        help="skip the end-to-end search latency (it runs the real model)")
    parser.add_argument("--ingest-only", type=int, choices=[1, STORE_FORMAT_VERSION],
                        metavar="FORMAT", help="only ingest the corpus (one --mode) into a new "
                        "store of FORMAT and print documents/s (how the ingest runs are made)")
    parser.add_argument("--scratch", type=Path,
                        help="with --ingest-only: the directory to make the store in")
    args = parser.parse_args(argv)
    if args.ingest_only is not None:
        if not args.mode or len(args.mode) != 1 or args.scratch is None:
            parser.error("--ingest-only takes one --mode and --scratch")
        ingest_once(args.ingest_only, args.mode[0], args.scratch)
        return
    modes = args.mode or ["docs", "passages"]
    results: dict[str, Any] = {
        "title": f"meshdex store on disk: format 1 vs {STORE_FORMAT_VERSION}, Python 3.11 docs",
        "modes": {}}
    with tempfile.TemporaryDirectory(prefix="bench-store-") as scratch:
        for mode in modes:
            docs = corpus_documents(mode)
            rows: dict[str, Any] = {key: measure_format(version, docs, Path(scratch))
                                    for key, version in (("v1", 1), (CURRENT,
                                                                     STORE_FORMAT_VERSION))}
            rows["ingest"] = ingest_rates(mode, Path(scratch))
            rows["compression"] = compression_ratios(docs)
            rows["block_options"] = block_options(docs)
            results["modes"][mode] = rows
            print(f"{mode}: " + "; ".join(targets(rows["v1"], rows[CURRENT], rows["ingest"],
                                                  None)), flush=True)
        if not args.no_search:
            results["search"] = {key: search_latency(version, Path(scratch))
                                 for key, version in (("v1", 1), (CURRENT,
                                                                  STORE_FORMAT_VERSION))}
    results["context"] = machine_context() | {
        "load_average_1min_at_start": LOAD_AT_START,
        "command": "python -m bench.bench_store" + "".join(f" --mode {m}" for m in args.mode or [])
                   + (" --no-search" if args.no_search else ""),
        "format 1": f"node/store.py at {V1_COMMIT} (bench/legacy_store.py)",
        "format 2 (not run here)": "the previous run's figures are in git: "
                                   "`git show 094dffd:bench/results/store.md`",
        "format 3 (not run here)": "passage references named their document by id; the "
                                   "previous run: `git show 68037ae:bench/results/store.md`",
        "index": "built with bench.fast_embedder (384-d random unit vectors): the bundle's "
                 "size depends on the passage count only",
        "passages corpus": f"the docs cut with {PASSAGE_CUT.to_dict()}, one document each",
        "pid": os.getpid(),
    }
    report = format_report(results)
    print(report)
    RESULTS_DIR.mkdir(parents=True, exist_ok=True)
    (RESULTS_DIR / "store.json").write_text(json.dumps(results, indent=2) + "\n")
    (RESULTS_DIR / "store.md").write_text(report)


if __name__ == "__main__":
    sys.exit(main())
