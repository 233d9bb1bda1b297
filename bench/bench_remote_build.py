"""What ``build --on`` costs over building locally, both on this one machine.

Run from the repository root: ``python -m bench.bench_remote_build`` (``--docs N``). Writes
``bench/results/remote_build.{json,md}``.

Three timings of the same N fresh documents with the real model:
1. plain ``SentenceTransformer.encode`` of the document texts (outside meshdex: the floor);
2. ``Node.build`` on a node holding them (a local build);
3. ``build --on``: a laptop node holding them asks a paired desktop node (in the same process,
   over loopback mutual TLS) to build: the documents sync to it, it builds, the laptop fetches
   and installs the signed bundle. Both devices share this machine's CPUs, so the ratio to (2)
   is the overhead of doing it remotely (sync, block transfer, verification, install), not a
   speed-up; on a real desktop the build part runs on stronger hardware.
Every node builds a small warm-up collection first, so model loading is not timed.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from pathlib import Path

from meshdex.index.embedders import EmbedderSpec
from meshdex.index.embedders_local import packaged_model_dir
from meshdex.node.records import DocumentInput
from meshdex.sync.admin import LocalSyncAdmin

from bench.metrics import RESULTS_DIR, machine_context

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))
from sync_support import pair, start_sync_node, stop_sync_node  # noqa: E402

DEFAULT_DOCS = 200
WORDS = ["amber", "basalt", "cobalt", "dune", "ember", "fjord", "glacier", "harbor", "iris",
         "juniper", "kestrel", "lagoon", "meadow", "nectar", "obsidian", "prairie", "quartz",
         "river", "sierra", "tundra", "umber", "valley", "willow", "xenon", "yarrow", "zephyr"]
WARMUP = {f"w{i}": f"warm up text {i}" for i in range(8)}


def _documents(count: int) -> dict[str, str]:
    return {f"d{i:05d}": " ".join(WORDS[(i * 7 + j * 3) % len(WORDS)] for j in range(60))
            + f" document {i}" for i in range(count)}


def _node(root: Path, name: str, docs: dict[str, str] | None):
    node = start_sync_node(root, name, sync_interval_s=3600)
    node.service.scheduler.stop()  # only the measured calls run sessions
    node.service.engine.on_applied = None  # no debounced build racing the measured one
    node.node.create_collection("warmup", embedder=EmbedderSpec())
    node.node.upsert_documents("warmup", [DocumentInput(id=k, text=v) for k, v in WARMUP.items()])
    node.node.build("warmup")
    node.node.create_collection("notes", embedder=EmbedderSpec())
    if docs:
        node.node.upsert_documents("notes", [DocumentInput(id=k, text=v) for k, v in docs.items()])
    return node


def _timed(run) -> tuple[float, object]:
    started = time.perf_counter()
    result = run()
    return time.perf_counter() - started, result


def measure(root: Path, count: int) -> dict:
    from sentence_transformers import SentenceTransformer

    docs = _documents(count)
    plain = SentenceTransformer(str(packaged_model_dir()), device="cpu", local_files_only=True)
    plain.encode(list(WARMUP.values()))
    plain_s, _ = _timed(lambda: plain.encode(list(docs.values()), batch_size=32))

    local = _node(root, "local", docs)
    try:
        local_s, local_report = _timed(lambda: local.node.build("notes"))
    finally:
        stop_sync_node(local)

    laptop, desktop = _node(root, "laptop", docs), _node(root, "desktop", None)
    try:
        pair(desktop, laptop, ("notes",))
        admin = LocalSyncAdmin(laptop.service.config, service=laptop.service)
        remote_s, report = _timed(lambda: admin.build_on(
            desktop.device_id, "notes", params=None, rebuild=False, progress=None))
    finally:
        stop_sync_node(laptop)
        stop_sync_node(desktop)
    return {
        "documents": count, "passages": local_report.passages,
        "plain_encode_s": round(plain_s, 3), "local_build_s": round(local_s, 3),
        "build_on_s": round(remote_s, 3), "peer_build_s": round(report.build_seconds, 3),
        "remote_overhead_s": round(remote_s - report.build_seconds, 3),
        "build_on_over_local": round(remote_s / local_s, 3),
        "local_over_plain_encode": round(local_s / plain_s, 3),
        "bundle_bytes_fetched": report.bundle_bytes_fetched,
        "bundle_bytes_total": report.bundle_bytes_total,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--docs", type=int, default=DEFAULT_DOCS)
    args = parser.parse_args()
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    load_before = os.getloadavg()[0]
    with tempfile.TemporaryDirectory() as folder:
        figures = measure(Path(folder), args.docs)
    context = {**machine_context(), "load_average_1min_at_start": round(load_before, 2)}
    RESULTS_DIR.mkdir(parents=True, exist_ok=True)
    (RESULTS_DIR / "remote_build.json").write_text(json.dumps(
        {"context": context, "figures": figures}, indent=2) + "\n")
    f = figures
    (RESULTS_DIR / "remote_build.md").write_text(
        "# build --on vs a local build, same machine (bench/bench_remote_build.py)\n\n"
        f"Context: {context}\n\n"
        "| measure | value |\n|---|---|\n"
        f"| documents / passages | {f['documents']} / {f['passages']} |\n"
        f"| baseline: plain SentenceTransformer.encode | {f['plain_encode_s']} s |\n"
        f"| local build (Node.build) | {f['local_build_s']} s "
        f"({f['local_over_plain_encode']}x plain encode) |\n"
        f"| build --on a paired node (sync + peer build + fetch + install) | "
        f"{f['build_on_s']} s ({f['build_on_over_local']}x local build) |\n"
        f"| of which the peer's build | {f['peer_build_s']} s |\n"
        f"| remote overhead (build --on minus the peer's build) | "
        f"{f['remote_overhead_s']} s |\n"
        f"| bundle bytes fetched / total | {f['bundle_bytes_fetched']} / "
        f"{f['bundle_bytes_total']} |\n")
    print((RESULTS_DIR / "remote_build.md").read_text())


if __name__ == "__main__":
    main()
