"""What moving a bundle between peers costs: bytes fetched after a change, and throughput.

Run from the repository root: ``python -m bench.bench_bundle_sync`` (``--passages N``,
``--throughput-passages N``). Writes ``bench/results/bundle_sync.{json,md}``.

Embeddings are fake (``bench.fast_embedder.RandomVectorEmbedder``: random unit vectors in the
real model's 384 dimensions), which changes no byte figure: the bundle holds PQ codes, labels
and tombstones, whose sizes do not depend on the vectors' values.

1. Delta transfer (issue 11 target: after 1% of the documents change and a delta build, the
   peer fetches <= 2% of the bundle, plus <= 16 KiB of manifest and block map). A collection
   of short one-passage documents is built; 1% of them are rewritten and delta-built, then 10%
   and rebuilt. For each block layout the bytes a receiver holding the previous generation
   must fetch are counted (every chunk whose SHA-256 it lacks): the share is the section
   bytes fetched over the bundle's size; the fixed overhead is the header and manifest bytes
   fetched plus the block map (32 bytes per fixed block; 40, with the offset, per
   content-defined chunk). Layouts: fixed
   64 KiB blocks (what sync used), fixed 4 KiB blocks (the bundle's page alignment),
   ``page_blocks`` (``sync.blocks.block_size_for``: 4 KiB blocks while the map stays
   within 512 entries, then the smallest power of two that does), and FastCDC (``pyfastcdc``,
   average 8 and 16 KiB).
2. Throughput: B takes A's offer and fetches the whole bundle block by block over loopback
   mutual TLS (in-process nodes, the real ``GetBundleOffer``/``FetchBlocks`` calls and
   ``fetch_bundle``: hash checks, writes, fsync), against copying the same file over a TLS 1.3
   socket between the same two device certificates (Python ``ssl``, one stream, no hashing,
   fsync at the end): the ratio is what blocks, hashing and gRPC add.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import socket
import ssl
import sys
import tempfile
import threading
import time
from collections.abc import Callable
from pathlib import Path

from meshdex.index.bundle_format import read_layout
from meshdex.index.embedders import EmbedderSpec
from meshdex.node.indexing import IndexManager
from meshdex.node.records import DocumentInput
from meshdex.node.service import Node
from meshdex.proto.meshdex.v1 import sync_pb2 as pb
from meshdex.proto.meshdex.v1 import sync_pb2_grpc
from meshdex.sync import wire
from meshdex.sync.blocks import SHA256_BYTES, block_map_of, block_size_for
from meshdex.sync.bundle_fetch import fetch_bundle
from meshdex.sync.transport import pinned_channel

from bench.fast_embedder import RandomVectorEmbedder
from bench.metrics import RESULTS_DIR, machine_context

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))
from sync_support import pair, start_sync_node, stop_sync_node  # noqa: E402

SHARE_TARGET = 0.02
OVERHEAD_TARGET_BYTES = 16 * 1024
THROUGHPUT_TARGET = 0.5
CDC_OFFSET_BYTES = 8  # a content-defined chunk must also say where it starts


def _text(i: int, edition: str = "") -> str:
    return f"note {i}{edition}: passage on topic {i % 97}, colour {i % 13}, words {i * 7 % 1009}"


Chunks = list[tuple[bytes, int, int]]  # (sha256, offset, length)


def _fixed(block_size: int) -> Callable[[bytes], Chunks]:
    def cut(data: bytes) -> Chunks:
        block_map = block_map_of(data, block_size_bytes=block_size)
        return [(h, *block_map.span(i)) for i, h in enumerate(block_map.hashes)]
    return cut


def _page_blocks(data: bytes) -> Chunks:
    return _fixed(block_size_for(len(data)))(data)


def _fastcdc(average: int) -> Callable[[bytes], Chunks]:
    from pyfastcdc import FastCDC  # the bench extra: measured against, not used by sync
    chunker = FastCDC(avg_size=average, min_size=average // 4, max_size=average * 4)

    def cut(data: bytes) -> Chunks:
        return [(hashlib.sha256(chunk.data).digest(), chunk.offset, chunk.length)
                for chunk in chunker.cut_buf(data)]
    return cut


LAYOUTS: dict[str, tuple[Callable[[bytes], Chunks], int]] = {
    "fixed 64 KiB": (_fixed(64 * 1024), SHA256_BYTES),
    "fixed 4 KiB": (_fixed(4096), SHA256_BYTES),
    "page_blocks (chosen)": (_page_blocks, SHA256_BYTES),
    "FastCDC avg 8 KiB": (_fastcdc(8192), SHA256_BYTES + CDC_OFFSET_BYTES),
    "FastCDC avg 16 KiB": (_fastcdc(16384), SHA256_BYTES + CDC_OFFSET_BYTES),
}


def _fetch_figures(old: bytes, new: bytes) -> dict[str, dict[str, float]]:
    """Per layout: the section bytes a holder of ``old`` fetches (``share`` of the bundle),
    and the fixed overhead: header and manifest bytes fetched, plus the block map."""
    sections_start = min(section.offset for section in read_layout(memoryview(new)).sections)
    figures = {}
    for name, (cut, map_entry_bytes) in LAYOUTS.items():
        held = {digest for digest, _, _ in cut(old)}
        chunks = cut(new)
        fetched = [(offset, length) for digest, offset, length in chunks if digest not in held]
        header = sum(max(0, min(offset + length, sections_start) - offset)
                     for offset, length in fetched)
        data = sum(length for _, length in fetched) - header
        map_bytes = len(chunks) * map_entry_bytes
        figures[name] = {"fetched_bytes": data + header, "section_bytes": data,
                         "share": data / len(new), "chunks": len(chunks),
                         "overhead_bytes": header + map_bytes}
    return figures


def _node(root: Path, name: str) -> Node:
    node = Node.open(root / name)
    embedder = RandomVectorEmbedder()
    node.indexes = IndexManager(node.store, embedder_factory=lambda _info: embedder)
    return node


def delta_figures(root: Path, passages: int) -> list[dict]:
    node = _node(root, "delta")
    try:
        node.create_collection("notes", embedder=EmbedderSpec())
        node.upsert_documents("notes", [DocumentInput(id=f"d{i:06d}", text=_text(i))
                                        for i in range(passages)])
        node.build("notes")
        path = node.indexes.bundle_path("notes")
        rows = []
        for share, rebuild in ((0.01, False), (0.10, True)):
            old = path.read_bytes()
            step = round(1 / share)
            node.upsert_documents("notes", [DocumentInput(id=f"d{i:06d}",
                                                          text=_text(i, f" (rev {share})"))
                                            for i in range(0, passages, step)])
            report = node.build("notes", rebuild=rebuild)
            new = path.read_bytes()
            rows.append({"changed_share": share, "build": report.action,
                         "bundle_bytes": len(new), "layouts": _fetch_figures(old, new)})
        return rows
    finally:
        node.close()


def _tls_copy_seconds(path: Path, a, b) -> float:
    """Copy ``path`` from A to B over TLS 1.3 between their device certificates."""
    server_context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    server_context.minimum_version = ssl.TLSVersion.TLSv1_3
    server_context.load_cert_chain(a.service.identity.cert_path, a.service.identity.key_path)
    server_context.verify_mode = ssl.CERT_REQUIRED
    server_context.load_verify_locations(cadata=b.service.identity.cert_pem.decode())
    client_context = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    client_context.minimum_version = ssl.TLSVersion.TLSv1_3
    client_context.check_hostname = False
    client_context.load_verify_locations(cadata=a.service.identity.cert_pem.decode())
    client_context.load_cert_chain(b.service.identity.cert_path, b.service.identity.key_path)
    listener = socket.create_server(("127.0.0.1", 0))
    port = listener.getsockname()[1]

    def serve() -> None:
        connection, _ = listener.accept()
        with server_context.wrap_socket(connection, server_side=True) as tls:
            tls.sendall(path.read_bytes())

    sender = threading.Thread(target=serve)
    sender.start()
    target = path.with_name("copy.leann")
    started = time.perf_counter()
    with socket.create_connection(("127.0.0.1", port)) as raw, \
            client_context.wrap_socket(raw) as tls, open(target, "wb") as out:
        while chunk := tls.recv(1 << 20):
            out.write(chunk)
        out.flush()
        os.fsync(out.fileno())
    elapsed = time.perf_counter() - started
    sender.join()
    listener.close()
    assert target.stat().st_size == path.stat().st_size
    return elapsed


def throughput_figures(root: Path, passages: int) -> dict:
    embedder = RandomVectorEmbedder()
    a = start_sync_node(root, "a", embedder=embedder, sync_interval_s=3600)
    b = start_sync_node(root, "b", embedder=embedder, sync_interval_s=3600)
    try:
        for node in (a, b):
            node.service.scheduler.stop()
        a.node.create_collection("notes", embedder=EmbedderSpec())
        a.node.upsert_documents("notes", [DocumentInput(id=f"d{i:06d}", text=_text(i))
                                          for i in range(passages)])
        a.node.build("notes")
        pair(a, b)
        peer = b.service.trust.get(a.device_id)
        with pinned_channel(peer.addresses[0], peer.cert_pem,
                            identity=b.service.identity) as channel:
            stub = sync_pb2_grpc.MeshdexSyncStub(channel)
            started = time.perf_counter()
            offer = wire.offer_from_wire(stub.GetBundleOffer(
                pb.BundleOfferRequest(collection="notes")))

            def fetch(indexes):
                for block in stub.FetchBlocks(pb.FetchBlocksRequest(
                        collection="notes", bundle_id=offer.manifest.bundle_id,
                        blocks=list(indexes))):
                    yield block.index, block.data

            outcome = fetch_bundle(data_dir=b.node.data_dir, offer=offer,
                                   local_bundle=root / "none.leann", fetch=fetch)
            session_s = time.perf_counter() - started
        assert outcome.blocks_fetched == len(offer.block_map.hashes)
        copy_s = _tls_copy_seconds(a.node.indexes.bundle_path("notes"), a, b)
        size = offer.block_map.size_bytes
        return {"bundle_bytes": size, "block_bytes": offer.block_map.block_size_bytes,
                "session_s": session_s, "tls_copy_s": copy_s,
                "session_mb_s": size / session_s / 1e6, "tls_copy_mb_s": size / copy_s / 1e6,
                "ratio": copy_s / session_s}
    finally:
        stop_sync_node(b)
        stop_sync_node(a)


def _markdown(deltas: list[dict], throughput: dict, context: dict) -> str:
    lines = ["# Bundle sync: bytes fetched after a change, and transfer throughput", "",
             f"Fake embeddings (random unit vectors, 384 dims); {context['passages']} "
             f"one-passage documents; load average {context['load_average']}.", "",
             "Share: section bytes fetched / bundle. Overhead: header and manifest bytes "
             "fetched + the block map in the offer.", "",
             "| change | build | bundle | layout | chunks | fetched | share | overhead "
             "| target (share <= 2%, overhead <= 16 KiB) |",
             "|---|---|---|---|---|---|---|---|---|"]
    for row in deltas:
        for name, figures in row["layouts"].items():
            met = (figures["share"] <= SHARE_TARGET
                   and figures["overhead_bytes"] <= OVERHEAD_TARGET_BYTES)
            verdict = ("met" if met else "missed") if row["changed_share"] == 0.01 else "report"
            lines.append(f"| {row['changed_share']:.0%} | {row['build']} | "
                         f"{row['bundle_bytes']:,} | {name} | {figures['chunks']} | "
                         f"{figures['fetched_bytes']:,} | {figures['share']:.2%} | "
                         f"{figures['overhead_bytes']:,} | {verdict} |")
    t = throughput
    lines += ["", "| full transfer | bytes | seconds | MB/s |", "|---|---|---|---|",
              f"| blocks of {t['block_bytes']:,} B over gRPC mTLS | {t['bundle_bytes']:,} | "
              f"{t['session_s']:.3f} | {t['session_mb_s']:.1f} |",
              f"| copy over a TLS 1.3 socket (baseline) | {t['bundle_bytes']:,} | "
              f"{t['tls_copy_s']:.3f} | {t['tls_copy_mb_s']:.1f} |",
              "", f"Throughput ratio {t['ratio']:.2f} (target >= {THROUGHPUT_TARGET}: "
              f"{'met' if t['ratio'] >= THROUGHPUT_TARGET else 'missed'})."]
    return "\n".join(lines) + "\n"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--passages", type=int, default=20_000)
    parser.add_argument("--throughput-passages", type=int, default=100_000)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as scratch:
        deltas = delta_figures(Path(scratch), args.passages)
        throughput = throughput_figures(Path(scratch), args.throughput_passages)
    context = {**machine_context(), "passages": args.passages,
               "throughput_passages": args.throughput_passages,
               "load_average": os.getloadavg()[0], "embeddings": "fake (random unit vectors)"}
    RESULTS_DIR.mkdir(parents=True, exist_ok=True)
    (RESULTS_DIR / "bundle_sync.json").write_text(json.dumps(
        {"context": context, "deltas": deltas, "throughput": throughput}, indent=2) + "\n")
    (RESULTS_DIR / "bundle_sync.md").write_text(_markdown(deltas, throughput, context))
    print((RESULTS_DIR / "bundle_sync.md").read_text())


if __name__ == "__main__":
    main()
