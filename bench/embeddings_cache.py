"""Embed the benchmark corpus once per model fingerprint and keep the vectors on disk.

Every benchmark needs the exact embeddings (ground truth, hnswlib baseline, meshdex builds fed
with precomputed vectors), and computing them costs minutes, so they are cached as raw ``.npy``
files (loaded with ``allow_pickle=False``) under ``bench/.cache``, keyed by the corpus digest
and the embedding fingerprint digest. Beside each array a JSON sidecar records the fingerprint
and the pure embedding time, so a benchmark can report build time as a ratio to it.

Run ``python -m bench.embeddings_cache [--precision bf16]`` to fill the cache ahead of time.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import sys
import time
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
from meshdex.index.embedder import Embedder
from meshdex.index.embedders import default_embedder
from meshdex.index.length_batches import embed_in_length_order
from tqdm import tqdm

from bench.corpus import CACHE_DIR, Corpus, load_corpus

log = logging.getLogger(__name__)

MIN_RATE_SAMPLE_PASSAGES = 500  # fewer freshly embedded passages than this: keep the old rate
# Issue 12's targets judge recall against exact search with the fp32 model, whatever precision
# the index and its recomputes use.
TRUTH_PRECISION = "fp32"


@dataclass(frozen=True, kw_only=True)
class CachedEmbeddings:
    """Passage and query vectors for one corpus and fingerprint, plus how long embedding took."""

    passages: np.ndarray  # (len(corpus), dim) float32, unit rows, corpus order
    queries: dict[str, np.ndarray]  # query set name -> (len(set), dim) float32
    embed_seconds: float  # wall time of embedding all passages, nothing else
    passages_per_s: float
    fingerprint_digest: str


def _paths(cache_dir: Path, corpus: Corpus, embedder: Embedder) -> tuple[Path, Path]:
    stem = f"embeddings-{corpus.digest[:16]}-{embedder.fingerprint.digest()[:16]}"
    return cache_dir / f"{stem}.npy", cache_dir / f"{stem}.json"


def _save_npy(path: Path, array: np.ndarray) -> None:
    """Write atomically: a crash never leaves a truncated cache behind."""
    partial = path.with_suffix(".partial")
    with partial.open("wb") as handle:
        np.save(handle, array, allow_pickle=False)
        handle.flush()
        os.fsync(handle.fileno())
    partial.replace(path)


def embed_passages(
    texts: list[str], embedder: Embedder, *, progress: bool
) -> tuple[np.ndarray, float]:
    """All passage vectors in input order and the seconds spent embedding them.

    The same length-ordered embedding as ``Index.build`` (``embed_in_length_order``); the
    progress bar moves every window of texts.
    """
    with tqdm(total=len(texts), unit="passage", disable=not progress, file=sys.stderr) as bar:
        started = time.perf_counter()
        vectors = embed_in_length_order(
            embedder, texts, lambda done, _total: bar.update(done - bar.n)
        )
        seconds = time.perf_counter() - started
    return vectors, seconds


def load_or_embed(
    corpus: Corpus,
    embedder: Embedder,
    *,
    cache_dir: Path = CACHE_DIR,
    progress: bool | None = None,
) -> CachedEmbeddings:
    """Cached vectors for ``corpus`` under ``embedder``'s fingerprint, embedding on a miss.

    On a miss, vectors of passages that an earlier cache entry with the same fingerprint
    already holds (matched by passage key) are reused, so a chunking change re-embeds only
    the passages it changed.
    """
    vectors_path, meta_path = _paths(cache_dir, corpus, embedder)
    if progress is None:
        progress = sys.stderr.isatty()
    if vectors_path.exists() and meta_path.exists():
        meta = json.loads(meta_path.read_text())
        passages = np.load(vectors_path, allow_pickle=False)
        if passages.shape == (len(corpus), embedder.dim):
            return CachedEmbeddings(
                passages=passages, queries=_load_queries(vectors_path),
                embed_seconds=meta["embed_seconds"], passages_per_s=meta["passages_per_s"],
                fingerprint_digest=embedder.fingerprint.digest(),
            )
        log.warning("cached embeddings %s have the wrong shape; re-embedding", vectors_path)
    cache_dir.mkdir(parents=True, exist_ok=True)
    known, donor_rate = _reusable_vectors(cache_dir, embedder)
    passages = np.empty((len(corpus), embedder.dim), dtype=np.float32)
    missing = [i for i, passage in enumerate(corpus.passages) if passage.key not in known]
    for i, passage in enumerate(corpus.passages):
        if passage.key in known:
            passages[i] = known[passage.key]
    log.info("reusing %d cached passage vectors, embedding %d",
             len(corpus) - len(missing), len(missing))
    fresh, seconds = embed_passages([corpus.texts[i] for i in missing], embedder,
                                    progress=progress)
    passages[missing] = fresh
    if len(missing) >= MIN_RATE_SAMPLE_PASSAGES or donor_rate is None:
        rate = len(missing) / seconds if seconds else float("inf")
    else:
        rate = donor_rate  # too few fresh passages to measure a rate; keep the earlier one
    queries = {name: embedder.embed_documents(texts) for name, texts in corpus.query_sets.items()}
    _save_npz(vectors_path.with_suffix(".queries.npz"), queries)
    _save_npy(vectors_path.with_suffix(".keys.npy"),
              np.frombuffer(b"".join(p.key for p in corpus.passages), dtype=np.uint8)
              .reshape(len(corpus), -1))
    _save_npy(vectors_path, passages)
    meta = {
        "corpus_digest": corpus.digest,
        "passages": len(corpus),
        "passages_embedded": len(missing),
        "passages_reused": len(corpus) - len(missing),
        "fingerprint": asdict(embedder.fingerprint),
        "fingerprint_digest": embedder.fingerprint.digest(),
        "embed_seconds": len(corpus) / rate,  # for the whole corpus at the measured rate
        "passages_per_s": rate,
        "torch_threads": _torch_threads(),
        "created_unix_s": time.time(),
    }
    meta_path.with_suffix(".partial").write_text(json.dumps(meta, indent=2) + "\n")
    meta_path.with_suffix(".partial").replace(meta_path)  # written last: marks the entry complete
    return CachedEmbeddings(
        passages=passages, queries=queries, embed_seconds=meta["embed_seconds"],
        passages_per_s=rate, fingerprint_digest=meta["fingerprint_digest"],
    )


def _load_queries(vectors_path: Path) -> dict[str, np.ndarray]:
    with np.load(vectors_path.with_suffix(".queries.npz"), allow_pickle=False) as archive:
        return {name: np.asarray(archive[name], dtype=np.float32) for name in archive.files}


def _save_npz(path: Path, arrays: dict[str, np.ndarray]) -> None:
    partial = path.with_suffix(".partial")
    with partial.open("wb") as handle:
        np.savez(handle, **arrays)
    partial.replace(path)


def _reusable_vectors(
    cache_dir: Path, embedder: Embedder
) -> tuple[dict[bytes, np.ndarray], float | None]:
    """Passage key -> vector from every complete cache entry with this fingerprint, and the
    embedding rate the most recent of them measured."""
    suffix = f"-{embedder.fingerprint.digest()[:16]}"
    known: dict[bytes, np.ndarray] = {}
    rate, newest = None, -1.0
    for meta_path in sorted(cache_dir.glob(f"embeddings-*{suffix}.json")):
        vectors_path = meta_path.with_suffix(".npy")
        keys_path = meta_path.with_suffix(".keys.npy")
        if not (vectors_path.exists() and keys_path.exists()):
            continue
        meta = json.loads(meta_path.read_text())
        keys = np.load(keys_path, allow_pickle=False)
        vectors = np.load(vectors_path, allow_pickle=False)
        if keys.shape[0] != vectors.shape[0] or vectors.shape[1] != embedder.dim:
            continue
        known.update((row.tobytes(), vector) for row, vector in zip(keys, vectors, strict=True))
        if meta.get("created_unix_s", 0) > newest:
            rate, newest = meta["passages_per_s"], meta.get("created_unix_s", 0)
    return known, rate


def _torch_threads() -> int:
    import torch

    return torch.get_num_threads()


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--precision", choices=["fp32", "bf16"], default="fp32")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO)
    corpus = load_corpus()
    cached = load_or_embed(corpus, default_embedder(args.precision), progress=True)
    print(f"{len(corpus)} passages x {cached.passages.shape[1]} dims ({args.precision}): "
          f"{cached.embed_seconds:.0f} s, {cached.passages_per_s:.1f} passages/s")


if __name__ == "__main__":
    main()


def truth_embeddings(corpus: Corpus, cached: CachedEmbeddings,
                     precision: str) -> CachedEmbeddings:
    """The vectors ground truth is computed over: ``cached`` itself when the run is at
    ``TRUTH_PRECISION``, else the cached embeddings of the ``TRUTH_PRECISION`` model."""
    if precision == TRUTH_PRECISION:
        return cached
    return load_or_embed(corpus, default_embedder(TRUTH_PRECISION))
