"""Measuring a search method on a query set, one table row per configuration, and the writers.

A method plugs in as a callable ``search(query) -> QueryOutcome`` (ids best first, plus how many
passages it recomputed and how many model calls it made); ``measure`` runs every query through
it, timing each call, and compares the ids with the exact ground truth. ``Row`` is one line of
the results table; ``write_results`` prints the table and writes ``bench/results/NAME.json``
(rows plus context) and ``NAME.md``.

Recall@k here is the mean over queries of |found top-k ∩ exact top-k| / k: ids must be of the
same kind as the ground truth (corpus positions, see ``baselines.exact_search``).
"""

from __future__ import annotations

import json
import math
import os
import platform
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from typing import Any, TextIO

import numpy as np

RESULTS_DIR = Path(__file__).resolve().parent / "results"
RECALL_KS = (3, 10)


@dataclass(frozen=True, kw_only=True)
class Query:
    """One benchmark query: its text and its exact embedding (from the embeddings cache)."""

    text: str
    vector: np.ndarray


@dataclass(frozen=True, kw_only=True)
class QueryOutcome:
    """What a method returned for one query, and what it cost in model work."""

    ids: np.ndarray  # corpus positions, best first, at least max(RECALL_KS) when that many exist
    passages_recomputed: int = 0
    model_calls: int = 0


@dataclass(frozen=True, kw_only=True)
class Measured:
    """Per-query measurements of one method on one query set."""

    recall: dict[int, float]  # k -> mean recall@k
    latencies_s: np.ndarray
    passages_recomputed: np.ndarray
    model_calls: np.ndarray


@dataclass(frozen=True, kw_only=True)
class Row:
    """One configuration's line in a results table; ``None`` shows as "-" (not applicable)."""

    method: str
    query_set: str
    params: str = ""
    queries: int = 0
    index_bytes: int | None = None
    index_over_raw: float | None = None  # index bytes / raw passage bytes
    recall_at_3: float | None = None
    recall_at_10: float | None = None
    recomputed_p50: float | None = None  # passages recomputed per query
    recomputed_p90: float | None = None
    model_calls_per_query: float | None = None
    latency_p50_ms: float | None = None
    latency_p90_ms: float | None = None
    build_s: float | None = None
    build_over_embed: float | None = None  # (embedding + build) / pure embedding time
    notes: str = field(default="")


# Column title and format for each Row field in the printed and Markdown tables.
_COLUMNS: dict[str, tuple[str, str]] = {
    "method": ("method", "{}"),
    "query_set": ("queries", "{}"),
    "params": ("params", "{}"),
    "index_over_raw": ("index/raw", "{:.2%}"),
    "recall_at_3": ("R@3", "{:.3f}"),
    "recall_at_10": ("R@10", "{:.3f}"),
    "recomputed_p50": ("recomp p50", "{:.0f}"),
    "recomputed_p90": ("recomp p90", "{:.0f}"),
    "model_calls_per_query": ("calls/q", "{:.1f}"),
    "latency_p50_ms": ("p50 ms", "{:.2f}"),
    "latency_p90_ms": ("p90 ms", "{:.2f}"),
    "build_over_embed": ("build/embed", "{:.2f}"),
}


def recall_at_k(found: Sequence[np.ndarray], truth: np.ndarray, k: int) -> float:
    """Mean over queries of the share of the exact top-k that ``found``'s top-k contains."""
    if len(found) != len(truth):
        raise ValueError(f"{len(found)} results for {len(truth)} queries")
    hits = [len(set(np.asarray(ids[:k]).tolist()) & set(row[:k].tolist()))
            for ids, row in zip(found, truth, strict=True)]
    return float(np.mean(hits)) / k if hits else math.nan


def measure(
    search: Callable[[Query], QueryOutcome],
    queries: Sequence[Query],
    truth: np.ndarray,
    *,
    warmup: int = 2,
) -> Measured:
    """Run every query through ``search`` (after ``warmup`` untimed calls) and score it."""
    for query in queries[:warmup]:
        search(query)
    outcomes: list[QueryOutcome] = []
    latencies: list[float] = []
    for query in queries:
        started = time.perf_counter()
        outcomes.append(search(query))
        latencies.append(time.perf_counter() - started)
    found = [outcome.ids for outcome in outcomes]
    return Measured(
        recall={k: recall_at_k(found, truth, k) for k in RECALL_KS},
        latencies_s=np.array(latencies),
        passages_recomputed=np.array([o.passages_recomputed for o in outcomes]),
        model_calls=np.array([o.model_calls for o in outcomes]),
    )


def make_row(
    *,
    method: str,
    query_set: str,
    measured: Measured,
    params: str = "",
    index_bytes: int | None = None,
    raw_passage_bytes: int | None = None,
    build_s: float | None = None,
    embed_s: float | None = None,
    notes: str = "",
) -> Row:
    """A table row from measurements plus the method's size and build time (where it has them).

    ``build_over_embed`` is ``(embed_s + build_s) / embed_s`` when ``build_s`` excludes
    embedding; pass ``embed_s=None`` to leave it out.
    """
    latency_ms = measured.latencies_s * 1e3
    return Row(
        method=method,
        query_set=query_set,
        params=params,
        queries=len(measured.latencies_s),
        index_bytes=index_bytes,
        index_over_raw=(index_bytes / raw_passage_bytes
                        if index_bytes is not None and raw_passage_bytes else None),
        recall_at_3=measured.recall[3],
        recall_at_10=measured.recall[10],
        recomputed_p50=float(np.percentile(measured.passages_recomputed, 50)),
        recomputed_p90=float(np.percentile(measured.passages_recomputed, 90)),
        model_calls_per_query=float(np.mean(measured.model_calls)),
        latency_p50_ms=float(np.percentile(latency_ms, 50)),
        latency_p90_ms=float(np.percentile(latency_ms, 90)),
        build_s=build_s,
        build_over_embed=((embed_s + build_s) / embed_s
                          if build_s is not None and embed_s else None),
        notes=notes,
    )


def _cells(row: Row) -> list[str]:
    values = asdict(row)
    return ["-" if values[name] is None else fmt.format(values[name])
            for name, (_, fmt) in _COLUMNS.items()]


def format_table(rows: Sequence[Row]) -> str:
    """A fixed-width plain-text table for the terminal."""
    header = [title for title, _ in _COLUMNS.values()]
    body = [_cells(row) for row in rows]
    widths = [max(len(line[i]) for line in [header, *body]) for i in range(len(header))]
    lines = ["  ".join(cell.ljust(width) for cell, width in zip(line, widths, strict=True))
             for line in [header, *body]]
    lines.insert(1, "  ".join("-" * width for width in widths))
    return "\n".join(lines)


def format_markdown(rows: Sequence[Row], *, title: str, context: dict[str, Any]) -> str:
    """A Markdown report: title, context as a bullet list, the table, then any row notes."""
    header = [title for title, _ in _COLUMNS.values()]
    lines = [f"# {title}", ""]
    lines += [f"- **{key}**: {value}" for key, value in context.items()]
    lines += ["", "| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(_cells(row)) + " |" for row in rows]
    notes = [f"- {row.method} ({row.params}, {row.query_set}): {row.notes}"
             for row in rows if row.notes]
    if notes:
        lines += ["", "Notes:", *notes]
    return "\n".join(lines) + "\n"


def cpu_description(cpuinfo: Path = Path("/proc/cpuinfo")) -> str:
    """The CPU's model name and its bfloat16 matrix units, if any.

    Two machines that both say "2 CPUs" can differ threefold in model time: bf16 runs on
    Intel's AMX tiles where the CPU has them (``amx_bf16``), and on plain AVX-512 otherwise.
    """
    try:
        text = cpuinfo.read_text(encoding="utf-8", errors="replace")
    except OSError:
        return platform.processor() or "unknown CPU"
    first_cpu: dict[str, str] = {}
    for line in text.splitlines():
        key, _, value = line.partition(":")
        first_cpu.setdefault(key.strip(), value.strip())
    model = first_cpu.get("model name", "unknown CPU")
    flags = set(first_cpu.get("flags", "").split())
    units = "AMX bf16" if "amx_bf16" in flags else (
        "AVX-512 bf16" if "avx512_bf16" in flags else "no bf16 units")
    return f"{model}, {units}"


def machine_context() -> dict[str, Any]:
    """Where the numbers came from: CPU count and kind, Python, torch threads, load, time of
    the run.

    The 1-minute load average is recorded because the machine may be shared: timings taken
    under load are slower than the same code on an idle machine.
    """
    import torch

    return {
        "machine": f"{platform.machine()}, {os.cpu_count()} CPUs, torch threads "
                   f"{torch.get_num_threads()}",
        "cpu": cpu_description(),
        "python": platform.python_version(),
        "load_average_1min_at_end": round(os.getloadavg()[0], 2),
        "run_at_utc": time.strftime("%Y-%m-%d %H:%M:%S", time.gmtime()),
    }


def save_results(name: str, data: dict[str, Any], markdown: str,
                 results_dir: Path = RESULTS_DIR) -> None:
    """Write ``NAME.json`` (``data``) and ``NAME.md`` (``markdown``) and print the markdown:
    what a benchmark with a table of its own ends with."""
    results_dir.mkdir(parents=True, exist_ok=True)
    (results_dir / f"{name}.json").write_text(json.dumps(data, indent=2) + "\n")
    (results_dir / f"{name}.md").write_text(markdown)
    print(markdown)


def write_results(
    name: str,
    rows: Sequence[Row],
    *,
    title: str,
    context: dict[str, Any],
    results_dir: Path = RESULTS_DIR,
    out: TextIO = sys.stdout,
) -> tuple[Path, Path]:
    """Print the table and write ``NAME.json`` (rows + context) and ``NAME.md``."""
    context = machine_context() | context
    print(format_table(rows), file=out)
    results_dir.mkdir(parents=True, exist_ok=True)
    json_path, md_path = results_dir / f"{name}.json", results_dir / f"{name}.md"
    json_path.write_text(json.dumps(
        {"title": title, "context": context, "columns": [f.name for f in fields(Row)],
         "rows": [asdict(row) for row in rows]}, indent=2) + "\n")
    md_path.write_text(format_markdown(rows, title=title, context=context))
    return json_path, md_path
