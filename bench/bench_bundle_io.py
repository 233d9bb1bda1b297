"""What a bundle costs to write and open, as ratios against plain file I/O of the same bytes.

Writes bundles of a few sizes (random section bytes, the engine's section names), then times:

- ``write_bundle`` against a baseline of writing the same bytes to a temp file, fsync, rename;
- ``open_bundle`` with ``verify="none"``, ``"lazy"`` (plus reading one small section) and
  ``"full"`` against a baseline of reading the file and SHA-256-ing it once.

The files are in the page cache when opened (written just before), so the figures are the CPU
cost of checking, not disk reads. Usage::

    python -m bench.bench_bundle_io            # -> bench/results/bundle_io.{json,md}
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import statistics
import tempfile
import time
import uuid
from collections.abc import Callable
from pathlib import Path

from meshdex.index.bundle_io import open_bundle, write_bundle
from meshdex.index.bundle_manifest import BundleManifest, HlcStamp, StoreState
from meshdex.index.embedder import EmbeddingFingerprint

RESULTS_DIR = Path(__file__).resolve().parent / "results"
SIZES_MB = (16, 128)
REPEATS = 5
# Share of the bundle each section takes, roughly as in a compact index.
SECTION_SHARES = {
    "graph_offsets": 0.02,
    "graph_neighbors": 0.55,
    "entry_points": 0.0005,
    "codes": 0.35,
    "codebook": 0.01,
    "id_map": 0.06,
    "tombstones": 0.001,
}


def _manifest() -> BundleManifest:
    return BundleManifest(
        bundle_id=str(uuid.uuid4()),
        collection="bench",
        generation=1,
        parent_generation=None,
        device_id="bench",
        created_at=HlcStamp(physical_ms=int(time.time() * 1000), device_id="bench"),
        store_state=StoreState(seq_watermarks={"bench": 1}),
        build_params={"M": 24},
        fingerprint=EmbeddingFingerprint(
            model_id="bench", model_hash="0" * 64, precision="fp32", max_seq_length=256,
            pooling="mean", normalize=True, dim=384,
        ),
    )


def _median_s(*actions: Callable[[], object]) -> list[float]:
    """Median seconds of each action, run interleaved so machine noise hits all alike."""
    times: list[list[float]] = [[] for _ in actions]
    for _ in range(REPEATS):
        for action, samples in zip(actions, times, strict=True):
            started = time.perf_counter()
            action()
            samples.append(time.perf_counter() - started)
    return [statistics.median(samples) for samples in times]


def _plain_write(directory: Path, data: list[bytes]) -> None:
    temp = directory / "plain.tmp"
    with temp.open("wb") as file:
        for chunk in data:
            file.write(chunk)
        file.flush()
        os.fsync(file.fileno())
    os.replace(temp, directory / "plain.bin")


def _read_and_hash(path: Path) -> None:
    digest = hashlib.sha256()
    with path.open("rb") as file:
        while chunk := file.read(4 * 1024 * 1024):
            digest.update(chunk)


def _open_lazy_one_section(path: Path) -> None:
    with open_bundle(path, verify="lazy") as bundle:
        bundle.section("entry_points")


def measure(size_mb: int, directory: Path) -> list[dict[str, object]]:
    total = size_mb * 1024 * 1024
    sections = {name: os.urandom(int(total * share)) for name, share in SECTION_SHARES.items()}
    path = directory / "bench.leann"
    manifest = _manifest()
    plain_write, bundle_write = _median_s(
        lambda: _plain_write(directory, list(sections.values())),
        lambda: write_bundle(path, manifest, sections),
    )
    rows = [
        {"size_mb": size_mb, "operation": "write_bundle", "seconds": bundle_write,
         "baseline": "write+fsync+rename", "ratio": bundle_write / plain_write},
    ]
    opens = {
        f"open verify={mode}": (lambda mode=mode: open_bundle(path, verify=mode).close())
        for mode in ("none", "lazy", "full")
    }
    opens["open lazy + 1 small section"] = lambda: _open_lazy_one_section(path)
    read_hash, *seconds = _median_s(lambda: _read_and_hash(path), *opens.values())
    rows += [
        {"size_mb": size_mb, "operation": operation, "seconds": spent,
         "baseline": "read+sha256", "ratio": spent / read_hash}
        for operation, spent in zip(opens, seconds, strict=True)
    ]
    return rows


def _table(rows: list[dict[str, object]]) -> str:
    header = f"| {'MB':>4} | {'operation':<28} | {'seconds':>9} | {'baseline':<18} | {'ratio':>7} |"
    lines = [header, "|" + "|".join("-" * (len(c)) for c in header.split("|")[1:-1]) + "|"]
    lines += [
        f"| {r['size_mb']:>4} | {r['operation']:<28} | {r['seconds']:>9.4f} | "
        f"{r['baseline']:<18} | {r['ratio']:>7.3f} |"
        for r in rows
    ]
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes-mb", type=int, nargs="+", default=list(SIZES_MB))
    args = parser.parse_args()
    rows: list[dict[str, object]] = []
    with tempfile.TemporaryDirectory(dir=RESULTS_DIR.parent) as tmp:
        for size_mb in args.sizes_mb:
            rows += measure(size_mb, Path(tmp))
    table = _table(rows)
    print(table)
    context = {"repeats": REPEATS, "statistic": "median", "cpu_count": os.cpu_count(),
               "page_cache": "warm (files written just before opening)"}
    RESULTS_DIR.mkdir(exist_ok=True)
    (RESULTS_DIR / "bundle_io.json").write_text(
        json.dumps({"rows": rows, "context": context}, indent=2) + "\n"
    )
    (RESULTS_DIR / "bundle_io.md").write_text(
        "# Bundle write and open cost\n\n" + table + "\n\n"
        + "\n".join(f"- {k}: {v}" for k, v in context.items()) + "\n"
    )


if __name__ == "__main__":
    main()
