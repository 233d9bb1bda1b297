"""Candidate generation by flat scan: meshdex's byte-pair scan against faiss's 4-bit fast scan.

Run from the repository root (needs the bench extra, for faiss):
``python -m bench.bench_scan [--repeats N]``. Writes ``bench/results/scan.{json,md}``.

What an index without a graph does for every search: score every code (``codes.scan_scores``)
and take the best ``ef`` (``search.flat_candidates``, as the engine does). Issue 12 allows 50 ms
at a million nodes; past the count where the scan gets slower than that the graph
(``BuildParams.graph_min_nodes``) has to take over. Codes are random 64 × 4-bit codes, one query:
a scan's cost depends on the count and the code size only. Rows at each count:

- meshdex on one thread, and on every core this process may use (``codes.scan_workers``, what a
  search uses);
- the same with a filter that admits one node in ten (any filter, or a single tombstone,
  takes this path: ``search.flat_candidates`` with ``admit``);
- the outside baseline: faiss's ``IndexPQFastScan`` (SIMD lookups of 8-bit rounded tables, in
  registers) over the same codes, one thread and every core.

Repeats take turns across the rows, so that a slow spell of the shared machine hits every row
alike; the CPU time stolen by the hypervisor during the run is recorded beside the load.
"""

from __future__ import annotations

import argparse
import logging
import os
import statistics
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path

import faiss
import numpy as np
from meshdex.index import codes
from meshdex.index.params import SearchParams
from meshdex.index.search import flat_candidates

from bench.metrics import machine_context, save_results

log = logging.getLogger(__name__)

NODE_COUNTS = (10_000, 100_000, 300_000, 1_000_000)
SUBVECTORS, BITS = 64, 4  # the default codes: 32 bytes
DIM = 384
TARGET_MS_AT_1M = 50.0
FILTER_ADMITS_ONE_IN = 10  # the filtered row: every 10th node passes (a tombstone or filter)


@dataclass(frozen=True, kw_only=True)
class ScanRow:
    method: str
    nodes: int
    threads: int
    median_ms: float
    p90_ms: float
    min_ms: float


def _steal_jiffies() -> int:
    """CPU time the hypervisor gave to others (the ``steal`` column of ``/proc/stat``)."""
    fields = Path("/proc/stat").read_text().split("\n", 1)[0].split()
    return int(fields[8])


def _scanners(count: int, rng: np.random.Generator, workers: int
              ) -> dict[tuple[str, int], Callable[[], None]]:
    """Every row's one search at ``count`` nodes, keyed by (method, threads)."""
    raw_codes = rng.integers(0, 256, size=(count, SUBVECTORS * BITS // 8), dtype=np.uint8)
    query = rng.standard_normal((1, DIM)).astype(np.float32)
    plain = faiss.IndexPQ(DIM, SUBVECTORS, BITS, faiss.METRIC_INNER_PRODUCT)
    plain.train(rng.standard_normal((4096, DIM)).astype(np.float32))
    faiss.copy_array_to_vector(raw_codes.ravel(), plain.codes)
    plain.ntotal = count
    fast = faiss.IndexPQFastScan(plain)
    quantiser = codes.ProductQuantizer(
        centroids=faiss.vector_to_array(plain.pq.centroids).reshape(SUBVECTORS, 1 << BITS,
                                                                    DIM // SUBVECTORS),
        bits=BITS)
    layout = codes.scan_layout(raw_codes)
    ef = SearchParams().ef

    def meshdex(threads: int) -> Callable[[], None]:
        def scan() -> None:
            table = quantiser.byte_table(query[0])
            flat_candidates(codes.scan_scores(table, layout, workers=threads), ef=ef,
                            admit=None)
        return scan

    admitted = np.zeros(count, dtype=bool)
    admitted[::FILTER_ADMITS_ONE_IN] = True

    def meshdex_filtered() -> None:
        table = quantiser.byte_table(query[0])
        flat_candidates(codes.scan_scores(table, layout), ef=ef,
                        admit=lambda node: bool(admitted[node]))

    def faiss_fast(threads: int) -> Callable[[], None]:
        def scan() -> None:
            faiss.omp_set_num_threads(threads)
            fast.search(query, ef)
        return scan

    rows = {("meshdex byte-pair scan + top ef", 1): meshdex(1),
            ("faiss IndexPQFastScan", 1): faiss_fast(1)}
    if workers > 1:
        rows |= {("meshdex byte-pair scan + top ef", workers): meshdex(workers),
                 ("faiss IndexPQFastScan", workers): faiss_fast(workers)}
    rows[(f"meshdex byte-pair scan + top ef, a filter admitting 1 in {FILTER_ADMITS_ONE_IN}",
          workers)] = meshdex_filtered
    return rows


def measure(repeats: int, seed: int = 0) -> list[ScanRow]:
    workers = codes.scan_workers()
    rng = np.random.default_rng(seed)
    rows = []
    for count in NODE_COUNTS:
        scanners = _scanners(count, rng, workers)
        times: dict[tuple[str, int], list[float]] = {key: [] for key in scanners}
        for scan in scanners.values():
            scan()  # warm: page the codes in, start the threads
        for _ in range(repeats):
            for key, scan in scanners.items():
                started = time.perf_counter()
                scan()
                times[key].append((time.perf_counter() - started) * 1e3)
        for (method, threads), measured in times.items():
            rows.append(ScanRow(method=method, nodes=count, threads=threads,
                                median_ms=round(statistics.median(measured), 2),
                                p90_ms=round(float(np.percentile(measured, 90)), 2),
                                min_ms=round(min(measured), 2)))
            log.info("%s", rows[-1])
    return rows


def _markdown(rows: list[ScanRow], context: dict[str, object]) -> str:
    lines = ["# Flat scan: candidate generation by node count (bench/bench_scan.py)", "",
             "| method | nodes | threads | median ms | p90 ms | min ms |", "|---" * 6 + "|"]
    lines += [f"| {row.method} | {row.nodes:,} | {row.threads} | {row.median_ms} | {row.p90_ms} "
              f"| {row.min_ms} |" for row in rows]
    lines += ["", *(f"- {key}: {value}" for key, value in context.items()), ""]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--repeats", type=int, default=25,
                        help="searches per row and node count, the rows taking turns "
                             "(default 25)")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s")
    load_at_start = round(os.getloadavg()[0], 2)
    steal_before, started = _steal_jiffies(), time.monotonic()
    rows = measure(args.repeats)
    stolen = (_steal_jiffies() - steal_before) / os.sysconf("SC_CLK_TCK")
    elapsed = time.monotonic() - started
    ours = [row for row in rows if row.nodes == NODE_COUNTS[-1]
            and row.method == "meshdex byte-pair scan + top ef"
            and row.threads == codes.scan_workers()]
    verdict = "met" if ours and ours[0].median_ms <= TARGET_MS_AT_1M else "MISSED"
    context = machine_context() | {
        "command": "python -m bench.bench_scan"
                   + (f" --repeats {args.repeats}" if args.repeats != 25 else ""),
        "load_average_1min_at_start": load_at_start,
        "cpu time stolen by the hypervisor during the run":
            f"{stolen:.1f} s of {elapsed * os.cpu_count():.0f} CPU-seconds",
        "codes": f"random {SUBVECTORS} x {BITS}-bit ({SUBVECTORS * BITS // 8} bytes), "
                 f"one query, top ef={SearchParams().ef}",
        "faiss": faiss.__version__,
        "target": f"candidate generation at {NODE_COUNTS[-1]:,} nodes <= {TARGET_MS_AT_1M:.0f} "
                  f"ms (median, meshdex on {codes.scan_workers()} threads): "
                  + (f"{ours[0].median_ms} ms {verdict}" if ours else "not measured"),
    }
    save_results("scan", {"context": context, "rows": [asdict(row) for row in rows]},
                 _markdown(rows, context))


if __name__ == "__main__":
    main()
