"""What peer sync costs: add-to-searchable latency, replication throughput, bytes per document.

Run from the repository root: ``python -m bench.bench_sync`` (``--latency-docs N``,
``--throughput-docs N``). Writes ``bench/results/sync.{json,md}``.

1. Latency (issue 10 target: p50 <= 5 s): two ``meshdex serve`` processes paired over
   loopback mTLS. Each small document is added on A through gRPC; the clock starts when A
   acknowledges the write and stops when B's top search hit for the document's unique words is
   that document. B embeds it itself (debounced delta build), which is most of the time. The
   first document (B loading the model and building its first index) is a warm-up, not counted.
2. Throughput: N documents replicated A -> B in one session over loopback mTLS (in-process
   nodes, a collection that sync never builds, so only replication is timed), against the
   baseline of applying the very same batches to a fresh store in-process (no network, no TLS,
   no protobuf): the ratio is what the transport and session add.
3. Bytes on the wire per replicated document: the serialized ``ChangeBatch`` messages of that
   session over the documents' UTF-8 text bytes (HTTP/2 and TLS framing not included).
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import statistics
import sys
import tempfile
import time
from pathlib import Path

from meshdex.index.errors import FailedPrecondition, NotFound
from meshdex.node.client import MeshdexClient
from meshdex.node.records import DocumentInput
from meshdex.node.service import Node
from meshdex.sync.engine import SyncEngine
from meshdex.sync.identity import load_identity
from meshdex.sync.wire import batch_to_wire

from bench.metrics import RESULTS_DIR, machine_context

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))
from sync_support import (  # noqa: E402  (test helpers double as the benchmark's harness)
    UNBUILT,
    SyncServeProcess,
    pair,
    start_sync_node,
    stop_sync_node,
    wait_for,
)

LATENCY_TARGET_P50_S = 5.0
WORDS = ["amber", "basalt", "cobalt", "dune", "ember", "fjord", "glacier", "harbor", "iris",
         "juniper", "kestrel", "lagoon", "meadow", "nectar", "obsidian", "prairie", "quartz",
         "river", "sierra", "tundra", "umber", "valley", "willow", "xenon", "yarrow", "zephyr"]


def _percentile(values: list[float], fraction: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(fraction * (len(ordered) - 1)))]


def measure_latency(root: Path, count: int) -> dict:
    a, b = SyncServeProcess(root / "a"), SyncServeProcess(root / "b")
    a.meshdex("add", "--jsonl", str(_write_jsonl(root / "seed.jsonl", {
        "seed": "A first note so the collection exists on both devices."})))
    a.start()
    b.start()
    try:
        token = a.meshdex("invite").stdout.strip()
        b.meshdex("join", token)
        with MeshdexClient(a.node_address) as on_a, MeshdexClient(b.node_address) as on_b:
            def searchable(doc_id: str, query: str) -> bool:
                try:
                    hits = on_b.search("default", query, top_k=1).hits
                except (FailedPrecondition, NotFound):  # no index, or no collection, on B yet
                    return False
                return bool(hits) and hits[0].document_id == doc_id

            timings = []
            for i in range(count + 1):
                words = " ".join(WORDS[(i * 7 + k) % len(WORDS)] for k in range(3))
                doc_id, text = f"note-{i}", f"Field note {i}: {words} seen at dawn."
                on_a.upsert_documents("default", [DocumentInput(id=doc_id, text=text)])
                started = time.monotonic()
                wait_for(lambda d=doc_id, t=text: searchable(d, t), timeout_s=600, what=doc_id)
                if i > 0:
                    timings.append(time.monotonic() - started)
    finally:
        a.stop(signal.SIGTERM)
        b.stop(signal.SIGTERM)
    return {"documents": count, "p50_s": round(statistics.median(timings), 3),
            "p95_s": round(_percentile(timings, 0.95), 3), "max_s": round(max(timings), 3),
            "target_p50_s": LATENCY_TARGET_P50_S,
            "met": statistics.median(timings) <= LATENCY_TARGET_P50_S}


def _write_jsonl(path: Path, docs: dict[str, str]) -> Path:
    path.write_text("".join(json.dumps({"id": k, "text": v}) + "\n" for k, v in docs.items()))
    return path


def measure_throughput(root: Path, count: int) -> dict:
    a, b = start_sync_node(root, "ta"), start_sync_node(root, "tb")
    try:
        for node in (a, b):
            node.service.scheduler.stop()
        texts = {f"doc-{i:06}": f"Document {i}: " + " ".join(
            WORDS[(i + k) % len(WORDS)] for k in range(40)) for i in range(count)}
        a.node.create_collection("notes", embedder=UNBUILT)
        a.node.upsert_documents("notes", [DocumentInput(id=k, text=v) for k, v in texts.items()])
        batches = list(a.service.engine.outgoing("notes", after_seq=0, receiver_store_id="-",
                                                 receiver_watermarks={}, with_config=True))
        wire_bytes = sum(batch_to_wire(batch).ByteSize() for batch in batches)
        text_bytes = sum(len(v.encode()) for v in texts.values())

        def in_process(name: str) -> float:
            with Node.open(root / name) as node:
                engine = SyncEngine(node=node, identity=load_identity(root / name))
                started = time.monotonic()
                for batch in batches:
                    engine.apply(batch)
                return time.monotonic() - started

        before = in_process("baseline-1")
        pair(a, b)
        started = time.monotonic()
        [report] = b.service.sync_now()
        session_s = time.monotonic() - started
        assert report.error is None and len(b.texts("notes")) == count, report
        # the baseline runs before and after the session, so load drift hits both sides
        in_process_s = min(before, in_process("baseline-2"))
    finally:
        stop_sync_node(a)
        stop_sync_node(b)
    return {"documents": count, "session_s": round(session_s, 3),
            "in_process_apply_s": round(in_process_s, 3),
            "docs_per_s": round(count / session_s), "ratio_to_in_process": round(
                session_s / in_process_s, 3),
            "wire_bytes_per_doc": round(wire_bytes / count, 1),
            "text_bytes_per_doc": round(text_bytes / count, 1),
            "wire_over_text": round(wire_bytes / text_bytes, 3)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--latency-docs", type=int, default=20)
    parser.add_argument("--throughput-docs", type=int, default=10_000)
    args = parser.parse_args()
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    with tempfile.TemporaryDirectory() as folder:
        throughput = measure_throughput(Path(folder), args.throughput_docs)
        print("throughput:", throughput, flush=True)
        latency = measure_latency(Path(folder), args.latency_docs)
        print("latency:", latency, flush=True)
    context = machine_context()
    RESULTS_DIR.mkdir(parents=True, exist_ok=True)
    (RESULTS_DIR / "sync.json").write_text(json.dumps(
        {"context": context, "latency": latency, "throughput": throughput}, indent=2) + "\n")
    (RESULTS_DIR / "sync.md").write_text(
        "# Peer sync (bench/bench_sync.py)\n\n"
        f"Context: {context}\n\n"
        "| measure | value |\n|---|---|\n"
        f"| add on A -> searchable on B, p50 ({latency['documents']} docs) | "
        f"{latency['p50_s']} s (target <= {LATENCY_TARGET_P50_S} s: "
        f"{'met' if latency['met'] else 'MISSED'}) |\n"
        f"| same, p95 / max | {latency['p95_s']} s / {latency['max_s']} s |\n"
        f"| replicate {throughput['documents']} docs over loopback mTLS | "
        f"{throughput['session_s']} s ({throughput['docs_per_s']} docs/s) |\n"
        f"| baseline: apply the same batches in-process | {throughput['in_process_apply_s']} s |\n"
        f"| session / in-process | {throughput['ratio_to_in_process']}x |\n"
        f"| wire bytes per doc / text bytes per doc | {throughput['wire_bytes_per_doc']} / "
        f"{throughput['text_bytes_per_doc']} ({throughput['wire_over_text']}x) |\n")
    print((RESULTS_DIR / "sync.md").read_text())


if __name__ == "__main__":
    main()
