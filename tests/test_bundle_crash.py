"""Crash safety: a writer killed with SIGKILL at random points never leaves a broken bundle.

A real subprocess writes generation after generation of a multi-megabyte bundle to one path;
the test kills it after a random delay, then opens the bundle with full verification. It must
always be one whole generation (old or new, never a mix), and generations only move forward.
"""

from __future__ import annotations

import random
import signal
import subprocess
import sys
from pathlib import Path

from meshdex.index.bundle_io import open_bundle, remove_stale_temp_files, write_bundle

ROOT = Path(__file__).resolve().parent
MIN_ITERATIONS = 20
MAX_ITERATIONS = 40
SECTION_BYTES = 6 * 1024 * 1024

WRITER = """
import sys
from pathlib import Path
sys.path.insert(0, sys.argv[3])
from bundle_samples import make_manifest
from test_bundle_crash import sections_for
from meshdex.index.bundle_io import write_bundle

path, generation = Path(sys.argv[1]), int(sys.argv[2])
print("ready", flush=True)
while True:
    generation += 1
    manifest = make_manifest(generation=generation, parent_generation=generation - 1)
    write_bundle(path, manifest, sections_for(generation))
"""


def sections_for(generation: int) -> dict[str, bytes]:
    """Content that identifies its generation in every section, with sizes that differ too."""
    rng = random.Random(generation)
    return {
        "graph_neighbors": rng.randbytes(SECTION_BYTES // 4),
        "codes": bytes([generation % 251]) * (SECTION_BYTES + generation * 4099),
        "id_map": generation.to_bytes(8, "little") * 1000,
    }


def _assert_whole_generation(path: Path) -> int:
    with open_bundle(path, verify="full") as bundle:
        generation = bundle.manifest.generation
        expected = sections_for(generation)
        assert set(bundle.section_names) == set(expected)
        for name, data in expected.items():
            assert bundle.section(name) == data, f"section {name} is not generation {generation}"
    return generation


def test_sigkilled_writer_always_leaves_a_whole_bundle(tmp_path: Path):
    from bundle_samples import make_manifest

    path = tmp_path / "notes.leann"
    write_bundle(path, make_manifest(generation=1), sections_for(1))
    rng = random.Random(20261125)
    generation = 1
    advanced = killed_mid_write = 0
    iteration = 0
    while iteration < MIN_ITERATIONS or not (advanced and killed_mid_write):
        assert iteration < MAX_ITERATIONS, (
            f"after {iteration} kills: {advanced} advanced, {killed_mid_write} mid-write"
        )
        iteration += 1
        writer = subprocess.Popen(
            [sys.executable, "-c", WRITER, str(path), str(generation), str(ROOT)],
            stdout=subprocess.PIPE,
            text=True,
        )
        try:
            assert writer.stdout.readline().strip() == "ready"
            try:
                writer.wait(timeout=rng.uniform(0.0, 0.6))
            except subprocess.TimeoutExpired:
                pass
            assert writer.returncode is None, "the writer died on its own"
        finally:
            writer.send_signal(signal.SIGKILL)
            writer.wait()
            writer.stdout.close()
        on_disk = _assert_whole_generation(path)
        assert on_disk >= generation
        advanced += on_disk > generation
        generation = on_disk
        leftovers = sorted(p for p in tmp_path.iterdir() if p != path)
        killed_mid_write += bool(leftovers)
        assert sorted(remove_stale_temp_files(path)) == leftovers
        assert list(tmp_path.iterdir()) == [path]
