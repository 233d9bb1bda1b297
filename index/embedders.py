"""Choosing an embedder: the spec stored with a collection, and the process-wide model cache.

A collection records an ``EmbedderSpec`` (as JSON) when it is created; every later build and
search turns that spec back into an embedder with ``embedder_from_spec``. The local model is
loaded once per process and shared (``default_embedder``): loading costs seconds, and LEANN's
reload-per-call made every search take 13-19 s (their issue #177).

Privacy: an HTTP embedder sends passage text off the machine, so ``embedder_from_spec``
refuses ``kind="http"`` unless the caller passes ``allow_remote=True`` — which the node does
only for collections created explicitly with that spec.
"""

from __future__ import annotations

import json
import os
import threading
from dataclasses import asdict, dataclass, fields
from typing import Any

from meshdex.index.embedder import Embedder
from meshdex.index.embedders_local import MODEL_ID, PRECISIONS, MiniLMEmbedder
from meshdex.index.errors import InvalidArgument, PermissionDenied

__all__ = [
    "EMBEDDER_KINDS",
    "EmbedderSpec",
    "default_embedder",
    "embedder_from_spec",
]

EMBEDDER_KINDS = ("local", "http")

_cache_lock = threading.Lock()
_local_embedders: dict[str, MiniLMEmbedder] = {}
_http_embedders: dict[EmbedderSpec, Embedder] = {}


@dataclass(frozen=True, kw_only=True)
class EmbedderSpec:
    """Which embedder a collection uses; validated on construction, stored as JSON.

    ``kind="local"`` is the packaged all-MiniLM-L6-v2 (``precision`` "fp32" or "bf16").
    New collections recompute in bf16: on the docs corpus it keeps recall@3 0.989 / 0.989
    (FAQ / glossary) against exact fp32 search at 1.7× fp32's speed, where int8 (ONNX dynamic
    quantisation) falls to 0.69 / 0.71 (``bench/results/precision.md``). The precision is part
    of the fingerprint, so a collection keeps the precision it was created with and an index
    built at another one is rebuilt, never served (``compat.decide_compatibility``).
    ``kind="http"`` is an OpenAI-compatible ``/v1/embeddings`` server at ``url`` serving
    ``model_id``; the API key is never stored, only the name of the environment variable
    that holds it (``api_key_env``).
    """

    kind: str = "local"
    model_id: str = MODEL_ID
    precision: str = "bf16"
    url: str | None = None
    api_key_env: str | None = None

    def __post_init__(self) -> None:
        if self.kind not in EMBEDDER_KINDS:
            raise InvalidArgument(
                f"embedder kind must be one of {EMBEDDER_KINDS}, got {self.kind!r}"
            )
        if not isinstance(self.model_id, str) or not self.model_id.strip():
            raise InvalidArgument("embedder model_id must be a non-empty string")
        if self.kind == "local":
            self._check_local()
        else:
            self._check_http()

    def _check_local(self) -> None:
        if self.model_id != MODEL_ID:
            raise InvalidArgument(
                f"the local embedder only serves {MODEL_ID}, not {self.model_id!r}",
                hint="use kind='http' with a server for other models",
            )
        if self.precision not in PRECISIONS:
            raise InvalidArgument(
                f"local precision must be one of {PRECISIONS}, got {self.precision!r}"
            )
        if self.url is not None or self.api_key_env is not None:
            raise InvalidArgument("url and api_key_env only apply to kind='http'")

    def _check_http(self) -> None:
        if not self.url or not self.url.startswith(("http://", "https://")):
            raise InvalidArgument(
                f"an http embedder needs a url starting with http:// or https://, got {self.url!r}"
            )
        if self.api_key_env is not None and not self.api_key_env.isidentifier():
            raise InvalidArgument(
                f"api_key_env must name an environment variable, got {self.api_key_env!r}"
            )

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: Any) -> EmbedderSpec:
        """Build a spec from a mapping; unknown keys or wrong types are ``InvalidArgument``."""
        if not isinstance(data, dict):
            raise InvalidArgument(f"an embedder spec must be an object, got {type(data).__name__}")
        known = {field.name for field in fields(cls)}
        unknown = sorted(set(data) - known)
        if unknown:
            raise InvalidArgument(f"unknown embedder spec keys: {', '.join(unknown)}")
        for key, value in data.items():
            if value is not None and not isinstance(value, str):
                raise InvalidArgument(f"embedder spec {key!r} must be a string, got {value!r}")
        return cls(**data)

    def to_json(self) -> str:
        """Canonical JSON (sorted keys, no spaces): equal specs give equal strings."""
        return json.dumps(self.to_dict(), sort_keys=True, separators=(",", ":"))

    @classmethod
    def from_json(cls, text: str | bytes) -> EmbedderSpec:
        try:
            data = json.loads(text)
        except (ValueError, UnicodeDecodeError) as error:
            raise InvalidArgument(f"embedder spec is not valid JSON: {error}") from error
        return cls.from_dict(data)


def default_embedder(precision: str = "fp32") -> MiniLMEmbedder:
    """The packaged model at ``precision``, loaded on first use and shared by the process."""
    if precision not in PRECISIONS:
        raise InvalidArgument(f"precision must be one of {PRECISIONS}, got {precision!r}")
    with _cache_lock:
        embedder = _local_embedders.get(precision)
        if embedder is None:
            embedder = MiniLMEmbedder(precision=precision)
            _local_embedders[precision] = embedder
        return embedder


def embedder_from_spec(spec: EmbedderSpec, *, allow_remote: bool = False) -> Embedder:
    """The embedder a spec names, shared per process; ``kind="http"`` needs ``allow_remote``.

    Raises ``PermissionDenied`` for an http spec without ``allow_remote=True`` (nothing leaves
    the machine unless the collection was created with a remote embedder on purpose), and
    ``InvalidArgument`` when the spec's ``api_key_env`` names an unset variable.
    """
    if spec.kind == "local":
        return default_embedder(spec.precision)
    if not allow_remote:
        raise PermissionDenied(
            f"refusing to send text to the remote embedder at {spec.url}",
            hint="only collections created with an http embedder spec may use one",
        )
    from meshdex.index.embedders_http import HttpEmbedder

    with _cache_lock:
        embedder = _http_embedders.get(spec)
        if embedder is None:
            api_key = None
            if spec.api_key_env is not None:
                api_key = os.environ.get(spec.api_key_env)
                if not api_key:
                    raise InvalidArgument(
                        f"environment variable {spec.api_key_env} (the embedder's API key) "
                        "is not set"
                    )
            embedder = HttpEmbedder(url=spec.url or "", model=spec.model_id, api_key=api_key)
            _http_embedders[spec] = embedder
        return embedder
