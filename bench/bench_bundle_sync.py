"""What moving a bundle between peers costs: bytes fetched after a change, and throughput.

Run from the repository root: ``python -m bench.bench_bundle_sync`` (``--passages N``,
``--throughput-passages N``, ``--synthetic-mb MB``, ``--repeats N``). Writes
``bench/results/bundle_sync.{json,md}``.

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
2. Throughput (issue 11 target: ratio >= 0.5): B takes A's offer and fetches the whole bundle
   over loopback mutual TLS (in-process nodes, the real ``GetBundleOffer``/``FetchBlocks``
   calls as a session makes them, ``fetch_bundle``: per-block hash checks, writes, fsync; B
   holds no block, so a bundle of at most ``WHOLE_BUNDLE_BYTES`` comes whole with the offer
   and ``FetchBlocks`` is not called), against copying the same
   file over a TLS 1.3 socket between the same two device certificates (Python ``ssl``, one
   stream, no hashing, fsync at the end): the ratio is what blocks, hashing and gRPC add. Both
   clocks start after the TLS handshake (the gRPC channel is made ready first, the socket
   copy's handshake completes before its clock starts) and stop after the fsync; the
   server's block map is hashed before the clock (once per generation, shown apart). Each
   figure is the median of ``--repeats`` runs. Rows per server run size (``RUN_SIZES``: bytes
   of consecutive blocks per ``FetchBlocks`` message; one 4 KiB block per message is what
   sync did before runs), for A's built bundle (``--throughput-passages``) and a synthetic
   bundle of ``--synthetic-mb`` random bytes in the same layout (blocks grow with the size).
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import socket
import ssl
import statistics
import sys
import tempfile
import threading
import time
from collections.abc import Callable
from pathlib import Path

from meshdex.index.bundle_format import read_layout
from meshdex.index.bundle_io import write_bundle
from meshdex.index.embedders import EmbedderSpec
from meshdex.node.indexing import IndexManager
from meshdex.node.records import DocumentInput
from meshdex.node.service import Node
from meshdex.proto.meshdex.v1 import sync_pb2 as pb
from meshdex.proto.meshdex.v1 import sync_pb2_grpc
from meshdex.sync.blocks import (
    RUN_BYTES,
    SHA256_BYTES,
    WHOLE_BUNDLE_BYTES,
    block_map_of,
    block_size_for,
)
from meshdex.sync.bundle_fetch import fetch_bundle
from meshdex.sync.bundle_receive import BundleReceiver
from meshdex.sync.bundle_shelf import BundleShelf
from meshdex.sync.client import block_fetcher, request_offer
from meshdex.sync.transport import pinned_channel

from bench.fast_embedder import RandomVectorEmbedder
from bench.metrics import RESULTS_DIR, machine_context

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))
from sync_support import pair, start_sync_node, stop_sync_node  # noqa: E402

SHARE_TARGET = 0.02
OVERHEAD_TARGET_BYTES = 16 * 1024
THROUGHPUT_TARGET = 0.5
RUN_SIZES = (4 * 1024, 64 * 1024, 256 * 1024, 1024 * 1024, 4 * 1024 * 1024)  # per message
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
    def cut(data: bytes) -> Chunks:
        from pyfastcdc import FastCDC  # the bench extra: measured against, not used by sync
        chunker = FastCDC(avg_size=average, min_size=average // 4, max_size=average * 4)
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


def _fetch_figures(old: bytes, new: bytes) -> dict[str, dict[str, float | str]]:
    """Per layout: the section bytes a holder of ``old`` fetches (``share`` of the bundle),
    and the fixed overhead: header and manifest bytes fetched, plus the block map."""
    sections_start = min(section.offset for section in read_layout(memoryview(new)).sections)
    figures = {}
    for name, (cut, map_entry_bytes) in LAYOUTS.items():
        try:
            held = {digest for digest, _, _ in cut(old)}
        except ModuleNotFoundError as error:  # FastCDC without the bench extra
            figures[name] = {"not_measured": f"{error.name} is not installed "
                                             "(pip install -e '.[bench]')"}
            continue
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


def _tls_contexts(a, b) -> tuple[ssl.SSLContext, ssl.SSLContext]:
    """Server (A) and client (B) contexts: TLS 1.3 between their device certificates."""
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
    return server_context, client_context


def _tls_copy_seconds(path: Path, contexts: tuple[ssl.SSLContext, ssl.SSLContext]) -> float:
    """Copy ``path`` from A to B over one TLS 1.3 connection; the clock starts once the
    handshake is done (as for the gRPC channel) and stops after B's fsync."""
    server_context, client_context = contexts
    listener = socket.create_server(("127.0.0.1", 0))
    port = listener.getsockname()[1]
    go = threading.Event()

    def serve() -> None:
        connection, _ = listener.accept()
        with server_context.wrap_socket(connection, server_side=True) as tls:
            go.wait()
            tls.sendall(path.read_bytes())

    sender = threading.Thread(target=serve)
    sender.start()
    target = path.with_name("copy.leann")
    with socket.create_connection(("127.0.0.1", port)) as raw, \
            client_context.wrap_socket(raw) as tls, open(target, "wb") as out:
        tls.getpeercert()  # the handshake is complete
        started = time.perf_counter()
        go.set()
        while chunk := tls.recv(1 << 20):
            out.write(chunk)
        out.flush()
        os.fsync(out.fileno())
        elapsed = time.perf_counter() - started
    sender.join()
    listener.close()
    assert target.stat().st_size == path.stat().st_size
    target.unlink()
    return elapsed


def _fetch_seconds(stub, receiver: BundleReceiver, scratch: Path) -> tuple[float, int, int]:
    """One whole fetch through the real calls, as a session makes them: the offer (with the
    whole file if it is small: ``receiver`` holds no block), ``FetchBlocks`` and
    ``fetch_bundle`` (hash checks, writes, fsync) into a fresh partial file. Returns
    (seconds, block size, messages carrying blocks)."""
    started = time.perf_counter()
    offer, whole = request_offer(stub, "a", "notes",
                                 whole_up_to=receiver.whole_bundle_max_bytes("notes"))
    messages = 0 if whole is None else 1
    fetcher = block_fetcher(stub, "a", "notes", offer.manifest.bundle_id)

    def fetch(indexes):  # the client's own calls (each request sent at once), counted
        runs = fetcher(indexes)

        def counted():
            nonlocal messages
            for run in runs:
                messages += 1
                yield run
        return counted()

    outcome = fetch_bundle(data_dir=receiver.node.data_dir, offer=offer,
                           local_bundle=scratch / "none.leann", fetch=fetch, whole=whole)
    elapsed = time.perf_counter() - started
    assert outcome.blocks_fetched == len(offer.block_map.hashes)
    outcome.path.unlink()  # the next repeat fetches everything again
    return elapsed, offer.block_map.block_size_bytes, messages


def _synthetic_bundle(path: Path, size_bytes: int) -> None:
    """A bundle of ``size_bytes`` random (incompressible) section bytes in place of A's."""
    from bundle_samples import make_manifest  # tests/ is on the path (above)
    write_bundle(path, make_manifest(collection="notes"), {"codes": os.urandom(size_bytes)})


def throughput_figures(root: Path, passages: int, *, synthetic_bytes: int, repeats: int,
                       run_sizes: tuple[int, ...]) -> list[dict]:
    """Per bundle (A's built one, then a synthetic one) and server run size: the median of
    ``repeats`` whole fetches against the median of as many TLS socket copies."""
    embedder = RandomVectorEmbedder()
    a = start_sync_node(root, "a", embedder=embedder, sync_interval_s=3600)
    b = start_sync_node(root, "b", embedder=embedder, sync_interval_s=3600)
    rows = []
    try:
        for node in (a, b):
            node.service.scheduler.stop()
        a.node.create_collection("notes", embedder=EmbedderSpec())
        a.node.upsert_documents("notes", [DocumentInput(id=f"d{i:06d}", text=_text(i))
                                          for i in range(passages)])
        a.node.build("notes")
        pair(a, b)
        peer = b.service.trust.get(a.device_id)
        contexts = _tls_contexts(a, b)
        path = a.node.indexes.bundle_path("notes")
        with pinned_channel(peer.addresses[0], peer.cert_pem,
                            identity=b.service.identity) as channel:
            stub = sync_pb2_grpc.MeshdexSyncStub(channel)
            # one call connects the channel: its TLS handshake is off the clock
            stub.GetBundleOffer(pb.BundleOfferRequest(collection="notes"))
            for bundle in (f"built, {passages:,} passages", "synthetic (random bytes)"):
                if bundle.startswith("synthetic"):
                    _synthetic_bundle(path, synthetic_bytes)
                for run_bytes in run_sizes:
                    a.service.engine.shelf = BundleShelf(a.node, run_bytes=run_bytes)
                    hash_started = time.perf_counter()
                    a.service.engine.shelf.offer("notes")  # the block map, once per generation
                    map_s = time.perf_counter() - hash_started
                    fetches, copies = [], []
                    for _ in range(repeats):  # alternated: a load change hits both alike
                        fetches.append(_fetch_seconds(stub, b.service.engine.bundles, root))
                        copies.append(_tls_copy_seconds(path, contexts))
                    fetch_s = statistics.median(seconds for seconds, _, _ in fetches)
                    copy_s = statistics.median(copies)
                    size = path.stat().st_size
                    rows.append({"bundle": bundle, "bundle_bytes": size,
                                 "block_bytes": fetches[0][1], "run_bytes": run_bytes,
                                 "messages": fetches[0][2], "block_map_s": map_s,
                                 "session_s": fetch_s, "tls_copy_s": copy_s,
                                 "session_mb_s": size / fetch_s / 1e6,
                                 "tls_copy_mb_s": size / copy_s / 1e6,
                                 "ratio": copy_s / fetch_s, "repeats": repeats})
                    print(f"{bundle}: runs of {run_bytes:,} B, ratio {rows[-1]['ratio']:.2f}",
                          file=sys.stderr, flush=True)
        return rows
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
            if "not_measured" in figures:
                lines.append(f"| {row['changed_share']:.0%} | {row['build']} | "
                             f"{row['bundle_bytes']:,} | {name} | - | - | - | - | not measured: "
                             f"{figures['not_measured']} |")
                continue
            met = (figures["share"] <= SHARE_TARGET
                   and figures["overhead_bytes"] <= OVERHEAD_TARGET_BYTES)
            verdict = ("met" if met else "missed") if row["changed_share"] == 0.01 else "report"
            lines.append(f"| {row['changed_share']:.0%} | {row['build']} | "
                         f"{row['bundle_bytes']:,} | {name} | {figures['chunks']} | "
                         f"{figures['fetched_bytes']:,} | {figures['share']:.2%} | "
                         f"{figures['overhead_bytes']:,} | {verdict} |")
    lines += ["", f"Full transfer, median of {throughput[0]['repeats']} each; the clock starts "
              "after the TLS handshake on both sides and stops after the receiver's fsync. The "
              "gRPC side is the offer (its block map already hashed: once per generation, "
              "column 'map s'; with the whole bundle when it is at most "
              f"{WHOLE_BUNDLE_BYTES:,} bytes) + FetchBlocks (for larger bundles) + per-block "
              "SHA-256 checks and writes.", "",
              "| bundle | bytes | block | run (per message) | messages | map s | gRPC mTLS s "
              "| MB/s | TLS copy s | MB/s | ratio | target (>= 0.5) |",
              "|---|---|---|---|---|---|---|---|---|---|---|---|"]
    for t in throughput:
        chosen = " (chosen)" if t["run_bytes"] == RUN_BYTES else ""
        verdict = "met" if t["ratio"] >= THROUGHPUT_TARGET else "missed"
        lines.append(f"| {t['bundle']} | {t['bundle_bytes']:,} | {t['block_bytes']:,} | "
                     f"{t['run_bytes']:,}{chosen} | {t['messages']} | {t['block_map_s']:.3f} | "
                     f"{t['session_s']:.3f} | {t['session_mb_s']:.1f} | {t['tls_copy_s']:.3f} | "
                     f"{t['tls_copy_mb_s']:.1f} | {t['ratio']:.2f} | {verdict} |")
    chosen_rows = [t for t in throughput if t["run_bytes"] == RUN_BYTES]
    lines += ["", "Throughput ratio at the chosen run size (RUN_BYTES = "
              f"{RUN_BYTES:,}): " + ", ".join(
                  f"{t['bundle']} {t['ratio']:.2f}" for t in chosen_rows)
              + f" (target >= {THROUGHPUT_TARGET}: "
              + ("met" if all(t["ratio"] >= THROUGHPUT_TARGET for t in chosen_rows)
                 else "missed") + ")."]
    return "\n".join(lines) + "\n"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--passages", type=int, default=20_000)
    parser.add_argument("--throughput-passages", type=int, default=30_000)
    parser.add_argument("--synthetic-mb", type=float, default=20.0)
    parser.add_argument("--repeats", type=int, default=9)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as scratch:
        deltas = delta_figures(Path(scratch), args.passages)
        throughput = throughput_figures(Path(scratch), args.throughput_passages,
                                        synthetic_bytes=int(args.synthetic_mb * 1e6),
                                        repeats=args.repeats, run_sizes=RUN_SIZES)
    context = {**machine_context(), "passages": args.passages,
               "throughput_passages": args.throughput_passages,
               "synthetic_bytes": int(args.synthetic_mb * 1e6),
               "load_average": os.getloadavg()[0], "embeddings": "fake (random unit vectors)"}
    RESULTS_DIR.mkdir(parents=True, exist_ok=True)
    (RESULTS_DIR / "bundle_sync.json").write_text(json.dumps(
        {"context": context, "deltas": deltas, "throughput": throughput}, indent=2) + "\n")
    (RESULTS_DIR / "bundle_sync.md").write_text(_markdown(deltas, throughput, context))
    print((RESULTS_DIR / "bundle_sync.md").read_text())


if __name__ == "__main__":
    main()
