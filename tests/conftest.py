"""Shared fixtures. Others may ADD fixtures at the end of this file.

``real_embedder`` loads the packaged all-MiniLM-L6-v2 once per test session (through the same
process-wide cache the product uses); ``fake_embedder`` is a fresh deterministic
``HashingEmbedder`` for mechanics tests.
"""

from __future__ import annotations

import signal
from pathlib import Path

import pytest
from fakes import HashingEmbedder
from grpc_support import ServeProcess
from meshdex.index.embedders import EmbedderSpec, default_embedder
from meshdex.index.embedders_local import MiniLMEmbedder
from sync_support import SyncServeProcess


@pytest.fixture(scope="session")
def real_embedder() -> MiniLMEmbedder:
    """The real packaged model (fp32), loaded once per session and shared."""
    return default_embedder("fp32")


@pytest.fixture
def fake_embedder() -> HashingEmbedder:
    """A fresh deterministic bag-of-words embedder (its call counters start at zero)."""
    return HashingEmbedder()


@pytest.fixture(scope="session")
def collection_embedder() -> MiniLMEmbedder:
    """The real model at the precision a collection created with defaults gets (bf16): the
    embedder a node loads for it, so its call counters see what the node embeds."""
    return default_embedder(EmbedderSpec().precision)


@pytest.fixture(autouse=True)
def _no_serve_process_outlives_its_test():
    """A test that fails before stopping its ``meshdex serve`` would leave it running, holding
    ports and CPU for the rest of the run."""
    yield
    ServeProcess.kill_leftovers()


@pytest.fixture
def two(tmp_path: Path):
    """Two ``meshdex serve`` processes with peer sync, ``a`` and ``b``, not started, killed
    after the test."""
    a, b = SyncServeProcess(tmp_path / "a"), SyncServeProcess(tmp_path / "b")
    yield a, b
    for process in (a, b):
        process.stop(signal.SIGKILL)
