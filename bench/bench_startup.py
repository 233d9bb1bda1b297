"""How long a fresh meshdex process takes to answer, against plain sentence-transformers.

Run from the repository root: ``python -m bench.bench_startup [--runs N]``. Writes
``bench/results/startup.{json,md}``.

Every embedded command is a new process, and before meshdex ran the model's forward pass itself
(``index/minilm.py``) each one spent ~10 s importing sentence-transformers before its first
vector. Each row is a new Python process, timed from spawn to exit (median of ``--runs``, the
rows taking turns so that a busy spell of the shared machine hits all of them alike):

- the floor: ``import torch``, which any local embedding needs;
- the outside baseline: plain ``SentenceTransformer(model).encode([query])`` on the same files;
- meshdex's embedder: load the packaged model and embed one query;
- ``meshdex status`` and an embedded ``meshdex search`` of a 300-note collection;
- the same two beside a ``meshdex serve`` of a copy of that data directory, which they go
  through (``meshdex.node.local_endpoint``): its model is loaded (one search warms it first).
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import asdict, dataclass
from pathlib import Path

from meshdex.index.embedders_local import packaged_model_dir

from bench.metrics import RESULTS_DIR, machine_context

NOTES = 300
PLAIN_ENCODE = ("from sentence_transformers import SentenceTransformer; "
                "SentenceTransformer({model!r}, device='cpu', local_files_only=True)"
                ".encode(['which harbour has the red lighthouse'])")
MESHDEX_ENCODE = ("from meshdex.index.embedders import default_embedder; "
                  "default_embedder('bf16').embed_query('which harbour has the red lighthouse')")


@dataclass(frozen=True, kw_only=True)
class StartupRow:
    what: str
    median_s: float
    min_s: float
    max_s: float


def _meshdex(data_dir: Path, *args: str) -> list[str]:
    return [sys.executable, "-c", "from meshdex.node.cli.main import main; main()",
            "--data-dir", str(data_dir), *args]


def _collection(root: Path) -> Path:
    """A data directory holding ``NOTES`` short notes, built (embedded here, not timed)."""
    notes = root / "notes.jsonl"
    notes.write_text("".join(
        json.dumps({"id": f"n{i:05d}", "text": f"note {i}: the lighthouse by harbour {i % 17} "
                    f"keeps {i % 13} lights"}) + "\n" for i in range(NOTES)))
    data_dir = root / "data"
    for args in (("add", "--jsonl", str(notes)), ("build",)):
        subprocess.run(_meshdex(data_dir, *args), check=True, capture_output=True)
    return data_dir


@contextmanager
def _serving(data_dir: Path) -> Iterator[None]:
    """``meshdex serve`` on ``data_dir`` (no sync), warmed with one search, until the block
    ends."""
    process = subprocess.Popen(
        _meshdex(data_dir, "serve", "--listen", "127.0.0.1:0", "--sync-listen", "",
                 "--pair-listen", ""), stderr=subprocess.PIPE, text=True)
    try:
        assert process.stderr is not None
        for line in process.stderr:
            if "listening on" in line:
                break
        else:
            raise RuntimeError("meshdex serve exited before listening")
        subprocess.run(_meshdex(data_dir, "search", "warm up"), check=True, capture_output=True)
        yield
    finally:
        process.send_signal(signal.SIGTERM)
        process.wait(60)


def _timed(command: list[str]) -> float:
    started = time.perf_counter()
    subprocess.run(command, check=True, capture_output=True)
    return time.perf_counter() - started


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--runs", type=int, default=5, help="processes per row (default 5)")
    args = parser.parse_args(argv)
    os.environ["HF_HUB_OFFLINE"] = "1"
    with tempfile.TemporaryDirectory() as scratch:
        data_dir = _collection(Path(scratch))
        served = Path(scratch) / "served"
        shutil.copytree(data_dir, served)
        commands = {
            "floor: python -c 'import torch'": [sys.executable, "-c", "import torch"],
            "baseline: plain SentenceTransformer load + encode one query":
                [sys.executable, "-c", PLAIN_ENCODE.format(model=str(packaged_model_dir()))],
            "meshdex embedder: load + embed one query (bf16)":
                [sys.executable, "-c", MESHDEX_ENCODE],
            "meshdex status": _meshdex(data_dir, "status"),
            f"meshdex search, embedded ({NOTES} notes)":
                _meshdex(data_dir, "search", "which harbour has the red lighthouse"),
            "meshdex status, beside a serving node (through it)": _meshdex(served, "status"),
            f"meshdex search, beside a serving node (through it, {NOTES} notes)":
                _meshdex(served, "search", "which harbour has the red lighthouse"),
        }
        timings: dict[str, list[float]] = {what: [] for what in commands}
        with _serving(served):
            for _ in range(args.runs):
                for what, command in commands.items():
                    timings[what].append(_timed(command))
    rows = [StartupRow(what=what, median_s=round(statistics.median(seconds), 2),
                       min_s=round(min(seconds), 2), max_s=round(max(seconds), 2))
            for what, seconds in timings.items()]
    context = machine_context() | {"runs": args.runs}
    table = ["| process | median | min | max |", "|---|---|---|---|"]
    table += [f"| {row.what} | {row.median_s} s | {row.min_s} s | {row.max_s} s |"
              for row in rows]
    print("\n".join(table))
    RESULTS_DIR.mkdir(parents=True, exist_ok=True)
    (RESULTS_DIR / "startup.json").write_text(json.dumps(
        {"context": context, "rows": [asdict(row) for row in rows]}, indent=2) + "\n")
    (RESULTS_DIR / "startup.md").write_text(
        "# Process start-up: from spawn to exit\n\n" + "\n".join(table) + "\n\n"
        + "\n".join(f"- {key}: {value}" for key, value in context.items()) + "\n")


if __name__ == "__main__":
    main()
