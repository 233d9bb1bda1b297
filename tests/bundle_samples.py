"""Sample manifests and sections shared by the bundle tests (format, crash, compat, CLI)."""

from __future__ import annotations

import uuid
from dataclasses import replace
from typing import Any

from meshdex.index.bundle_manifest import BundleManifest, CacheManifest, HlcStamp, StoreState
from meshdex.index.embedder import EmbeddingFingerprint

FINGERPRINT = EmbeddingFingerprint(
    model_id="sentence-transformers/all-MiniLM-L6-v2",
    model_hash="a" * 64,
    precision="fp32",
    max_seq_length=256,
    pooling="mean",
    normalize=True,
    dim=384,
    metric="cosine",
)
BUILD_PARAMS = {"M": 16, "ef_construction": 100, "hub_fraction": 0.02, "seed": 7}
CHUNKING = {"max_chars": 1200, "overlap_chars": 150}
COLLECTION_CONFIG = {
    "embedder": {"kind": "local", "model_id": FINGERPRINT.model_id, "precision": "fp32"},
    "chunking": CHUNKING,
}


def make_manifest(**overrides: Any) -> BundleManifest:
    """A valid manifest for collection "notes", generation 1; any field can be overridden."""
    manifest = BundleManifest(
        bundle_id=str(uuid.uuid4()),
        collection="notes",
        generation=1,
        parent_generation=None,
        device_id="laptop",
        created_at=HlcStamp(physical_ms=1_764_000_000_000, logical=3, device_id="laptop"),
        store_state=StoreState(
            seq_watermarks={"laptop": 120, "desktop": 40},
            max_hlc=HlcStamp(physical_ms=1_763_999_999_000, logical=0, device_id="laptop"),
        ),
        build_params=dict(BUILD_PARAMS),
        fingerprint=FINGERPRINT,
        cache=CacheManifest(node_count=12, fingerprint_digest=FINGERPRINT.digest()),
        collection_config=COLLECTION_CONFIG,
    )
    return replace(manifest, **overrides)


def small_sections() -> dict[str, bytes]:
    """Sections of awkward sizes: tiny, empty, just over a page, and one in between."""
    return {
        "graph_offsets": bytes(range(7)),
        "graph_neighbors": bytes((i * 31) % 251 + 1 for i in range(4097)),
        "entry_points": b"",
        "codes": b"\xff" * 900,
    }
