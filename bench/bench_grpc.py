"""What the gRPC node costs: search over loopback gRPC against the same searches in-process.

Run from the repository root: ``python -m bench.bench_grpc`` (``--calls N`` calls per client
per round, ``--clients 1,4,16``, ``--ops search,get``). Writes ``bench/results/grpc.{json,md}``.

Two operations: ``search`` (the product's default search: query embedding plus exact
recompute of the most promising passages — model time dominates) and ``get`` (GetDocument: no
model at all, so its gRPC-vs-in-process gap is the transport's own cost per call).

Setup: the sample corpus shipped in ``node/sample`` (the Python tutorial, one document per
file) is ingested and indexed with the real packaged model in a temporary data directory.
A ``meshdex serve`` subprocess serves it on 127.0.0.1; the in-process side opens the same
store read-only in this process. For each client count the two sides make the same calls
(queries from ``node/sample/queries.txt`` cycled; for ``get`` the documents' ids), alternating
in-process and gRPC rounds so drift on a shared machine hits both alike; each gRPC client has
its own channel.

Then the same with a writer adding small documents throughout (through gRPC for the gRPC row;
for the in-process row the server is stopped and this process opens the store for writing).

Target (issue 5): gRPC adds at most 10% to search latency at one client.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import signal
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path

from meshdex.node.auth import TokenStore
from meshdex.node.client import MeshdexClient
from meshdex.node.records import DocumentInput
from meshdex.node.service import Node

from bench.metrics import RESULTS_DIR, machine_context

SAMPLE_DIR = Path(__file__).resolve().parents[1] / "node" / "sample"
COLLECTION = "bench"
TOP_K = 5
WARMUP_CALLS = 1  # per client; the first search also loads the model
ROUNDS = 2
WRITER_CLIENTS = 4
SERVE_START_TIMEOUT_S = 60
# Client deadline for one search: on a loaded 2-core machine 16 concurrent searches queue for
# minutes; the benchmark measures that wait instead of failing on the 30 s default.
BENCH_SEARCH_DEADLINE_S = 900.0
ADDRESS_LINE = re.compile(r"listening on (\S+)")

Search = Callable[[str], object]


@dataclass(frozen=True, kw_only=True)
class Row:
    op: str  # "search" | "get"
    mode: str  # "in-process" | "grpc"
    clients: int
    writer: bool
    calls: int
    throughput_per_s: float
    p50_ms: float
    p99_ms: float
    writes_per_s: float | None = None


def percentile(values: list[float], fraction: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(round(fraction * (len(ordered) - 1))))]


def run_clients(make_search: Callable[[], Search], queries: list[str], *, clients: int,
                calls: int) -> tuple[list[float], float]:
    """``clients`` threads, each with its own ``make_search()``, ``calls`` searches each.
    Returns every call's latency (s) and the wall time of the whole round."""
    latencies: list[float] = []
    failures: list[BaseException] = []
    lock = threading.Lock()
    searches = [make_search() for _ in range(clients)]
    for search in searches:
        for query in queries[:WARMUP_CALLS]:
            search(query)
    start_line = threading.Barrier(clients + 1)

    def work(index: int) -> None:
        mine = []
        start_line.wait()
        try:
            for call in range(calls):
                query = queries[(index + call) % len(queries)]
                started = time.perf_counter()
                searches[index](query)
                mine.append(time.perf_counter() - started)
        except Exception as error:  # reported after the round, not lost in a thread
            failures.append(error)
        with lock:
            latencies.extend(mine)

    threads = [threading.Thread(target=work, args=(i,)) for i in range(clients)]
    for thread in threads:
        thread.start()
    start_line.wait()
    started = time.perf_counter()
    for thread in threads:
        thread.join()
    if failures:
        raise RuntimeError(f"{len(failures)} client(s) failed; first: {failures[0]!r}")
    return latencies, time.perf_counter() - started


def make_row(op: str, mode: str, clients: int, latencies: list[float], wall_s: float, *,
             writer: bool = False, writes: int | None = None) -> Row:
    return Row(op=op, mode=mode, clients=clients, writer=writer, calls=len(latencies),
               throughput_per_s=len(latencies) / wall_s,
               p50_ms=1000 * statistics.median(latencies),
               p99_ms=1000 * percentile(latencies, 0.99),
               writes_per_s=None if writes is None else writes / wall_s)


class Writer:
    """Adds one small document per call until stopped; counts acknowledged writes."""

    def __init__(self, upsert: Callable[[list[DocumentInput]], object]) -> None:
        self.upsert = upsert
        self.written = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run)

    def _run(self) -> None:
        while not self._stop.is_set():
            number = self.written
            self.upsert([DocumentInput(id=f"written-{number}",
                                       text=f"a note written during the benchmark, #{number}")])
            self.written += 1

    def __enter__(self) -> Writer:
        self._thread.start()
        return self

    def __exit__(self, *exc_info: object) -> None:
        self._stop.set()
        self._thread.join()


class ServeProcess:
    """``meshdex serve`` on an OS-chosen loopback port, stopped with SIGTERM."""

    def __init__(self, data_dir: Path) -> None:
        self.process = subprocess.Popen(
            [sys.executable, "-m", "meshdex", "--data-dir", str(data_dir), "serve",
             "--listen", "127.0.0.1:0", "--max-concurrent-rpcs", "64"],
            stderr=subprocess.PIPE, text=True, env={**os.environ, "HF_HUB_OFFLINE": "1"})
        deadline = time.monotonic() + SERVE_START_TIMEOUT_S
        for line in self.process.stderr:
            match = ADDRESS_LINE.search(line)
            if match:
                self.address = match.group(1)
                threading.Thread(target=self.process.stderr.read, daemon=True).start()
                return
            if time.monotonic() > deadline:
                break
        raise RuntimeError("meshdex serve did not start")

    def stop(self) -> None:
        self.process.terminate()
        self.process.wait(30)


def prepare(data_dir: Path) -> tuple[list[str], int, float]:
    """Ingest the sample corpus and build its index; returns (document ids, passages, build
    seconds)."""
    docs = [DocumentInput(id=path.name, text=path.read_text(encoding="utf-8"),
                          source=str(path.relative_to(SAMPLE_DIR)))
            for path in sorted((SAMPLE_DIR / "python-tutorial").glob("*.rst"))]
    with Node.open(data_dir) as node:
        node.create_collection(COLLECTION)
        node.upsert_documents(COLLECTION, docs)
        report = node.build(COLLECTION)
    return [doc.id for doc in docs], report.passages, report.seconds


def local_call(node: Node, op: str) -> Callable[[], Search]:
    if op == "search":
        return lambda: (lambda q: node.search(COLLECTION, q, top_k=TOP_K))
    return lambda: (lambda doc_id: node.get_document(COLLECTION, doc_id))


def remote_call(address: str, token: str, op: str) -> Callable[[], Search]:
    def make() -> Search:
        client = MeshdexClient(address, token=token,
                               deadlines_s={"Search": BENCH_SEARCH_DEADLINE_S})
        if op == "search":
            return lambda q: client.search(COLLECTION, q, top_k=TOP_K)
        return lambda doc_id: client.get_document(COLLECTION, doc_id)

    return make


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--calls", type=int, default=5, help="calls per client per round")
    parser.add_argument("--clients", default="1,4,16", help="comma-separated client counts")
    parser.add_argument("--ops", default="search,get", help="search and/or get")
    parser.add_argument("--out", default="grpc", help="results name: bench/results/OUT.{json,md}")
    args = parser.parse_args()
    client_counts = [int(n) for n in args.clients.split(",")]
    ops = args.ops.split(",")
    writer_op = "search" if "search" in ops else ops[0]
    # SIGTERM runs the finally blocks below, so the serve subprocess is stopped too.
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(1))
    queries = [q for q in (SAMPLE_DIR / "queries.txt").read_text().splitlines() if q.strip()]

    with tempfile.TemporaryDirectory(prefix="meshdex-bench-grpc-") as tmp:
        data_dir = Path(tmp)
        doc_ids, passages, build_s = prepare(data_dir)
        inputs = {"search": queries, "get": doc_ids}
        _, token = TokenStore(data_dir).create("write")
        rows: list[Row] = []
        serve = ServeProcess(data_dir)
        try:
            with Node.open(data_dir, readonly=True) as node:
                for op in ops:
                    modes = {"in-process": local_call(node, op),
                             "grpc": remote_call(serve.address, token, op)}
                    for clients in client_counts:
                        samples: dict[str, list[float]] = {mode: [] for mode in modes}
                        walls = dict.fromkeys(modes, 0.0)
                        for _ in range(ROUNDS):
                            for mode, factory in modes.items():
                                latencies, wall = run_clients(factory, inputs[op],
                                                              clients=clients, calls=args.calls)
                                samples[mode] += latencies
                                walls[mode] += wall
                        rows += [make_row(op, mode, clients, samples[mode], walls[mode])
                                 for mode in modes]
                        print(*rows[-2:], sep="\n", flush=True)
            with MeshdexClient(serve.address, token=token) as writer_client, Writer(
                    lambda docs: writer_client.upsert_documents(COLLECTION, docs)) as writer:
                latencies, wall = run_clients(remote_call(serve.address, token, writer_op),
                                              inputs[writer_op], clients=WRITER_CLIENTS,
                                              calls=args.calls)
            rows.append(make_row(writer_op, "grpc", WRITER_CLIENTS, latencies, wall, writer=True,
                                 writes=writer.written))
        finally:
            serve.stop()
        with Node.open(data_dir) as node:
            with Writer(lambda docs: node.upsert_documents(COLLECTION, docs)) as writer:
                latencies, wall = run_clients(local_call(node, writer_op), inputs[writer_op],
                                              clients=WRITER_CLIENTS, calls=args.calls)
            rows.append(make_row(writer_op, "in-process", WRITER_CLIENTS, latencies, wall,
                                 writer=True, writes=writer.written))

    report(rows, passages=passages, build_s=build_s, calls=args.calls, name=args.out)


def ratios(rows: list[Row]) -> list[dict[str, object]]:
    """gRPC against in-process for each (clients, writer) pair."""
    by_key = {(r.op, r.mode, r.clients, r.writer): r for r in rows}
    out = []
    for row in rows:
        if row.mode != "grpc":
            continue
        base = by_key[(row.op, "in-process", row.clients, row.writer)]
        out.append({"op": row.op, "clients": row.clients, "writer": row.writer,
                    "p50_added_ms": row.p50_ms - base.p50_ms,
                    "p50_ratio": row.p50_ms / base.p50_ms,
                    "p99_ratio": row.p99_ms / base.p99_ms,
                    "throughput_ratio": row.throughput_per_s / base.throughput_per_s})
    return out


def report(rows: list[Row], *, passages: int, build_s: float, calls: int, name: str) -> None:
    header = ("| op | mode | clients | writer | calls | calls/s | p50 ms | p99 ms | writes/s |\n"
              "|---|---|---|---|---|---|---|---|---|")
    lines = [header] + [
        f"| {r.op} | {r.mode} | {r.clients} | {'yes' if r.writer else 'no'} | {r.calls} | "
        f"{r.throughput_per_s:.1f} | {r.p50_ms:.1f} | {r.p99_ms:.1f} | "
        f"{'' if r.writes_per_s is None else f'{r.writes_per_s:.1f}'} |" for r in rows]
    ratio_rows = ratios(rows)
    lines += ["", "| op | clients | writer | gRPC/in-process p50 | p99 | throughput | "
              "p50 added ms |", "|---|---|---|---|---|---|---|"] + [
        f"| {r['op']} | {r['clients']} | {'yes' if r['writer'] else 'no'} | "
        f"{r['p50_ratio']:.3f} | {r['p99_ratio']:.3f} | {r['throughput_ratio']:.3f} | "
        f"{r['p50_added_ms']:.2f} |" for r in ratio_rows]
    one = next((r for r in ratio_rows
                if r["op"] == "search" and r["clients"] == 1 and not r["writer"]), None)
    verdict = (f"gRPC adds {100 * (one['p50_ratio'] - 1):.1f}% to p50 latency at one client "
               f"(target <= 10%: {'met' if one['p50_ratio'] <= 1.10 else 'NOT met'})"
               if one else "no one-client search row (run with --ops search)")
    context = machine_context() | {
        "corpus": f"node/sample python-tutorial, {passages} passages, built in {build_s:.1f} s",
        "top_k": TOP_K, "calls_per_client_per_round": calls, "rounds": ROUNDS,
        "server": "meshdex serve subprocess on 127.0.0.1 (plaintext loopback, bearer token)",
        "verdict": verdict,
    }
    table = "\n".join(lines)
    print(table)
    print(verdict)
    RESULTS_DIR.mkdir(parents=True, exist_ok=True)
    (RESULTS_DIR / f"{name}.json").write_text(json.dumps(
        {"title": "Search over loopback gRPC vs in-process", "context": context,
         "rows": [asdict(r) for r in rows], "ratios": ratio_rows}, indent=2) + "\n")
    context_lines = "\n".join(f"- {key}: {value}" for key, value in context.items())
    (RESULTS_DIR / f"{name}.md").write_text(
        f"# Search over loopback gRPC vs in-process\n\n{context_lines}\n\n{table}\n")


if __name__ == "__main__":
    main()
