"""An opt-in embedder that calls an OpenAI-compatible ``/v1/embeddings`` server.

For a local Ollama, vLLM or text-embeddings-inference server. It sends passage text over the
network, so ``embedder_from_spec`` only builds one for a collection created with it on purpose.

Only the standard library is used (``urllib``). Requests go out in batches; 5xx, 429 and
connection failures are retried a bounded number of times with exponential backoff; anything
else, and a response that is not exactly one finite, non-zero vector of the expected dimension
per input, is an ``EmbedderError`` — never a zero vector or a partial result.

Model hash: a remote model's files cannot be read, so ``model_hash`` is the SHA-256 of the
model name, its dimension and the probe embedding of ``PROBE_TEXT`` rounded to
``PROBE_DECIMALS`` decimals. This is weaker than hashing files: it detects a different model
or a different dimension behind the same name in practice, but not every weight change, and
a server whose numerics drift by more than the rounding gives a new hash. The URL is left out
so the same model served elsewhere has the same fingerprint.
"""

from __future__ import annotations

import hashlib
import http.client
import json
import logging
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Sequence
from typing import Any

import numpy as np
from meshdex.index.embedder import EmbeddingFingerprint
from meshdex.index.embedders_local import check_texts, l2_normalise
from meshdex.index.errors import EmbedderError, InvalidArgument

log = logging.getLogger(__name__)

DEFAULT_BATCH_SIZE = 64
DEFAULT_TIMEOUT_S = 30.0
DEFAULT_MAX_RETRIES = 3
DEFAULT_BACKOFF_S = 0.5  # first retry waits this long, then doubles
PROBE_TEXT = "meshdex embedding fingerprint probe: the quick brown fox jumps over the lazy dog"
PROBE_DECIMALS = 3
_RETRYABLE_HTTP_STATUSES = frozenset({429, 500, 502, 503, 504})
_ERROR_BODY_CHARS = 200


def embeddings_endpoint(url: str) -> str:
    """``{url}/v1/embeddings``, accepting a base URL with or without the ``/v1`` suffix."""
    if not url.startswith(("http://", "https://")):
        raise InvalidArgument(f"embedder url must start with http:// or https://, got {url!r}")
    base = url.rstrip("/")
    if base.endswith("/v1/embeddings"):
        return base
    if base.endswith("/v1"):
        return f"{base}/embeddings"
    return f"{base}/v1/embeddings"


class HttpEmbedder:
    """Embeddings from an OpenAI-compatible server; thread-safe, lazily probed.

    Nothing is sent on construction. The first use of ``dim``, ``model_hash`` or
    ``fingerprint`` embeds ``PROBE_TEXT`` once to learn the dimension and the hash.
    ``model_calls`` counts successful HTTP requests (one per batch).
    """

    def __init__(
        self,
        *,
        url: str,
        model: str,
        api_key: str | None = None,
        batch_size: int = DEFAULT_BATCH_SIZE,
        timeout_s: float = DEFAULT_TIMEOUT_S,
        max_retries: int = DEFAULT_MAX_RETRIES,
        backoff_s: float = DEFAULT_BACKOFF_S,
    ) -> None:
        if batch_size < 1:
            raise InvalidArgument(f"batch_size must be at least 1, got {batch_size}")
        if timeout_s <= 0 or max_retries < 0 or backoff_s < 0:
            raise InvalidArgument("timeout_s must be positive; max_retries and backoff_s >= 0")
        self._endpoint = embeddings_endpoint(url)
        self._model = model
        self._api_key = api_key
        self._batch_size = batch_size
        self._timeout_s = timeout_s
        self._max_retries = max_retries
        self._backoff_s = backoff_s
        self._lock = threading.Lock()  # guards the one-time probe
        self._counter_lock = threading.Lock()
        self._fingerprint: EmbeddingFingerprint | None = None
        self._model_calls = 0
        self._texts_embedded = 0

    @property
    def model_id(self) -> str:
        return self._model

    @property
    def endpoint(self) -> str:
        return self._endpoint

    @property
    def model_hash(self) -> str:
        return self.fingerprint.model_hash

    @property
    def dim(self) -> int:
        return self.fingerprint.dim

    @property
    def model_calls(self) -> int:
        return self._model_calls

    @property
    def texts_embedded(self) -> int:
        return self._texts_embedded

    @property
    def fingerprint(self) -> EmbeddingFingerprint:
        """Probes the server once (first call) to learn the dimension and the model hash."""
        with self._lock:
            if self._fingerprint is None:
                probe = self._request([PROBE_TEXT], dim=None)[0]
                self._fingerprint = EmbeddingFingerprint(
                    model_id=self._model,
                    model_hash=remote_model_hash(self._model, probe),
                    precision="remote",
                    max_seq_length=0,
                    pooling="remote",
                    normalize=True,
                    dim=int(probe.shape[0]),
                )
            return self._fingerprint

    def embed_documents(self, texts: Sequence[str]) -> np.ndarray:
        """One request per ``batch_size`` texts; shape ``(len(texts), dim)``, unit rows."""
        check_texts(texts)
        dim = self.dim
        out = np.empty((len(texts), dim), dtype=np.float32)
        for start in range(0, len(texts), self._batch_size):
            batch = list(texts[start : start + self._batch_size])
            out[start : start + len(batch)] = self._request(batch, dim=dim)
        return out

    def embed_query(self, text: str) -> np.ndarray:
        return self.embed_documents([text])[0]

    def _request(self, texts: list[str], *, dim: int | None) -> np.ndarray:
        """POST one batch, retrying transient failures; validated, normalised vectors."""
        body = json.dumps({"model": self._model, "input": texts}).encode()
        headers = {"Content-Type": "application/json", "Accept": "application/json"}
        if self._api_key:
            headers["Authorization"] = f"Bearer {self._api_key}"
        attempts = self._max_retries + 1
        for attempt in range(1, attempts + 1):
            request = urllib.request.Request(self._endpoint, data=body, headers=headers,
                                             method="POST")
            try:
                with urllib.request.urlopen(request, timeout=self._timeout_s) as response:
                    payload = response.read()
            except urllib.error.HTTPError as error:
                detail = error.read()[:_ERROR_BODY_CHARS].decode(errors="replace")
                failure = f"HTTP {error.code} from {self._endpoint}: {detail}"
                if error.code not in _RETRYABLE_HTTP_STATUSES:
                    raise EmbedderError(failure, op="embed", recoverable=False,
                                        hint="check the embedder url, model name and API key"
                                        ) from error
            except (urllib.error.URLError, http.client.HTTPException, OSError) as error:
                reason = getattr(error, "reason", error)
                failure = f"cannot reach the embedder at {self._endpoint}: {reason}"
            else:
                vectors = parse_embeddings_response(payload, count=len(texts), dim=dim)
                with self._counter_lock:
                    self._model_calls += 1
                    self._texts_embedded += len(texts)
                return vectors
            if attempt < attempts:
                delay_s = self._backoff_s * 2 ** (attempt - 1)
                log.warning("%s (attempt %d of %d); retrying in %.1f s",
                            failure, attempt, attempts, delay_s)
                time.sleep(delay_s)
        raise EmbedderError(f"{failure} (gave up after {attempts} attempts)", op="embed",
                            hint="is the embedding server running and reachable?")


def parse_embeddings_response(payload: bytes, *, count: int, dim: int | None) -> np.ndarray:
    """Vectors from an OpenAI-style response, in input order, checked and L2-normalised.

    The response must be ``{"data": [{"index": i, "embedding": [...]}, ...]}`` with exactly one
    entry per input (indices 0..count-1, any order), all of one dimension (``dim`` if given),
    every number finite and no vector all zeros. Anything else is an ``EmbedderError``.
    """
    try:
        document = json.loads(payload)
        data = document["data"]
    except (ValueError, TypeError, KeyError) as error:
        raise EmbedderError(f"malformed embeddings response: {error!s:.200}") from error
    if not isinstance(data, list) or len(data) != count:
        got = len(data) if isinstance(data, list) else type(data).__name__
        raise EmbedderError(f"embeddings response has {got} entries for {count} inputs")
    rows: list[Any] = [None] * count
    for position, item in enumerate(data):
        index = item.get("index", position) if isinstance(item, dict) else None
        if not isinstance(index, int) or not 0 <= index < count or rows[index] is not None:
            raise EmbedderError(f"embeddings response entry {position} has a bad index {index!r}")
        rows[index] = item.get("embedding")
    try:
        vectors = np.array(rows, dtype=np.float64)
    except (ValueError, TypeError) as error:
        raise EmbedderError(f"embeddings response holds non-numeric or ragged vectors: {error}"
                            ) from error
    if vectors.ndim != 2 or vectors.shape[1] == 0:
        raise EmbedderError("embeddings response vectors are not one flat list of numbers each")
    if dim is not None and vectors.shape[1] != dim:
        raise EmbedderError(
            f"embeddings response has dimension {vectors.shape[1]}, expected {dim}",
            hint="the server's model changed; rebuild the collection with the new model",
        )
    if not np.all(np.isfinite(vectors)):
        raise EmbedderError("embeddings response holds NaN or infinite values")
    return l2_normalise(vectors)


def remote_model_hash(model: str, probe: np.ndarray) -> str:
    """SHA-256 of the model name, dimension and the rounded probe vector (see module docs)."""
    digest = hashlib.sha256()
    digest.update(f"{model}\n{probe.shape[0]}\n".encode())
    for value in probe:
        rounded = round(float(value), PROBE_DECIMALS)
        digest.update(f"{0.0 if rounded == 0 else rounded:.{PROBE_DECIMALS}f},".encode())
    return digest.hexdigest()
