"""Test doubles for mechanics tests. Never a stand-in for the one end-to-end test of the real model.

``HashingEmbedder`` is a deterministic bag-of-words embedder: each lower-cased word is hashed
to one of ``dim`` coordinates with a sign, counts are summed and the vector normalised. Texts
that share words are close, so graph and search mechanics behave sensibly, and it runs in
microseconds. It counts model calls (one per batch) like the real embedder does.
"""

from __future__ import annotations

import hashlib
import json
import re
import threading
import time
from collections.abc import Sequence
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import numpy as np
from meshdex.index.embedder import EmbeddingFingerprint
from meshdex.index.embedders_local import check_texts, l2_normalise

HASHING_DIM = 64
HASHING_MODEL_ID = "meshdex-test/hashing-bag-of-words"
_WORD = re.compile(r"\w+")
# Every text also counts this token, so even the empty text gets a non-zero vector.
_BIAS_TOKEN = "\x00bias"


def _token_slot(token: str, dim: int) -> tuple[int, float]:
    digest = hashlib.blake2b(token.encode(), digest_size=8).digest()
    value = int.from_bytes(digest, "big")
    return value % dim, 1.0 if (value >> 63) & 1 else -1.0


class HashingEmbedder:
    """Deterministic token-hash embedder with its own fingerprint and a ``model_calls`` counter."""

    def __init__(self, *, dim: int = HASHING_DIM, batch_size: int = 32) -> None:
        self._dim = dim
        self._batch_size = batch_size
        self._lock = threading.Lock()
        self.model_calls = 0
        self.texts_embedded = 0
        self._fingerprint = EmbeddingFingerprint(
            model_id=HASHING_MODEL_ID,
            model_hash=hashlib.sha256(f"{HASHING_MODEL_ID}:{dim}".encode()).hexdigest(),
            precision="fp32",
            max_seq_length=0,
            pooling="sum",
            normalize=True,
            dim=dim,
        )

    @property
    def model_id(self) -> str:
        return HASHING_MODEL_ID

    @property
    def model_hash(self) -> str:
        return self._fingerprint.model_hash

    @property
    def dim(self) -> int:
        return self._dim

    @property
    def fingerprint(self) -> EmbeddingFingerprint:
        return self._fingerprint

    def vector(self, text: str) -> np.ndarray:
        """The un-normalised bag-of-words vector of one text (no call counted)."""
        out = np.zeros(self._dim, dtype=np.float32)
        for token in [*_WORD.findall(text.lower()), _BIAS_TOKEN]:
            slot, sign = _token_slot(token, self._dim)
            out[slot] += sign
        if not out.any():  # the signs cancelled out exactly; keep the vector non-zero
            out[_token_slot(_BIAS_TOKEN, self._dim)[0]] = 1.0
        return out

    def embed_documents(self, texts: Sequence[str]) -> np.ndarray:
        check_texts(texts)
        out = np.empty((len(texts), self._dim), dtype=np.float32)
        for start in range(0, len(texts), self._batch_size):
            batch = texts[start : start + self._batch_size]
            with self._lock:
                self.model_calls += 1
                self.texts_embedded += len(batch)
            vectors = np.stack([self.vector(text) for text in batch])
            out[start : start + len(batch)] = l2_normalise(vectors)
        return out

    def embed_query(self, text: str) -> np.ndarray:
        return self.embed_documents([text])[0]


class SlowHashingEmbedder(HashingEmbedder):
    """Each call embedding passages takes ``seconds`` first, as a busy model does."""

    def __init__(self, seconds: float) -> None:
        super().__init__()
        self.seconds = seconds

    def embed_documents(self, texts: Sequence[str]) -> np.ndarray:
        time.sleep(self.seconds)
        return super().embed_documents(texts)


class FakeEmbeddingServer:
    """An OpenAI-compatible ``/v1/embeddings`` server on 127.0.0.1 answering with a fake embedder.

    A real HTTP server in a thread (the HTTP embedder's sockets, timeouts and retries are
    exercised for real); only the vectors are fake. ``script`` holds the next responses to
    misbehave with, consumed one per request: an int is an HTTP status to fail with, a float
    is seconds to stall before answering, bytes are a body to send instead of the embeddings.
    ``requests`` records each request's JSON body, ``headers`` each request's headers.
    """

    def __init__(self, embedder: HashingEmbedder | None = None) -> None:
        self.embedder = embedder or HashingEmbedder()
        self.script: list[int | float | bytes] = []
        self.requests: list[dict] = []
        self.headers: list[dict[str, str]] = []
        self._server = ThreadingHTTPServer(("127.0.0.1", 0), self._handler_class())
        self._server.daemon_threads = True
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)

    @property
    def url(self) -> str:
        host, port = self._server.server_address[:2]
        return f"http://{host}:{port}"

    def __enter__(self) -> FakeEmbeddingServer:
        self._thread.start()
        return self

    def __exit__(self, *exc_info: object) -> None:
        self._server.shutdown()
        self._server.server_close()
        self._thread.join()

    def _respond(self, body: dict) -> tuple[int, bytes]:
        self.requests.append(body)
        action = self.script.pop(0) if self.script else None
        if isinstance(action, int):
            return action, b'{"error": "scripted failure"}'
        if isinstance(action, float):
            time.sleep(action)
        if isinstance(action, bytes):
            return 200, action
        vectors = self.embedder.embed_documents(body["input"])
        data = [{"object": "embedding", "index": i, "embedding": vector.tolist()}
                for i, vector in enumerate(vectors)]
        return 200, json.dumps({"object": "list", "data": data, "model": body["model"]}).encode()

    def _handler_class(self) -> type[BaseHTTPRequestHandler]:
        server = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:  # noqa: N802 (http.server's naming)
                if self.path != "/v1/embeddings":
                    status, payload = 404, b'{"error": "not found"}'
                else:
                    server.headers.append(dict(self.headers))
                    length = int(self.headers.get("Content-Length", 0))
                    status, payload = server._respond(json.loads(self.rfile.read(length)))
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(payload)))
                self.end_headers()
                try:
                    self.wfile.write(payload)
                except (BrokenPipeError, ConnectionResetError):
                    pass  # the client gave up (timeout test); nothing to answer

            def log_message(self, format: str, *args: object) -> None:  # noqa: A002
                pass  # keep test output clean

        return Handler
