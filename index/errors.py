"""Errors raised by ``meshdex.index``, and the root of every meshdex error.

Hierarchy (``node`` and ``sync`` extend it in their own ``errors`` modules)::

    MeshdexError                      root: every error meshdex raises on purpose
    ├── InvalidArgument               the caller passed something malformed or out of range
    ├── NotFound                      a named thing (collection, document, index) does not exist
    ├── AlreadyExists                 creating something that is already there
    ├── FailedPrecondition            the request is valid but the state does not allow it
    │   ├── FingerprintMismatch       embeddings would come from a different model/config
    │   └── IndexNotBuilt             the collection has documents but no index yet
    ├── ResourceExhausted             too big, too many, or overloaded
    ├── EmbedderError                 the embedding model failed or is unreachable
    └── BundleError                   a .leann bundle is malformed, tampered or incompatible
        ├── BundleCorrupt             bytes do not match what the manifest promises
        └── BundleVersionError        written by a format version we cannot read

``Unauthenticated``, ``PermissionDenied`` and ``DeadlineExceeded`` live here too so the one
mapping to gRPC status codes (``meshdex.node.errors``) and to CLI exit codes covers them.
Structured errors carry ``op``, ``path``, ``hint`` and ``recoverable`` where they help a person.
"""

from __future__ import annotations

from pathlib import Path


class MeshdexError(Exception):
    """Root of every error meshdex raises on purpose.

    ``hint`` tells a person what to do next; ``recoverable`` says whether retrying the same
    call later may succeed.
    """

    recoverable: bool = False

    def __init__(
        self,
        message: str,
        *,
        op: str | None = None,
        path: Path | str | None = None,
        hint: str | None = None,
        recoverable: bool | None = None,
    ) -> None:
        super().__init__(message)
        self.message = message
        self.op = op
        self.path = str(path) if path is not None else None
        self.hint = hint
        if recoverable is not None:
            self.recoverable = recoverable

    def __str__(self) -> str:
        parts = [self.message]
        if self.path:
            parts.append(f"(path: {self.path})")
        if self.hint:
            parts.append(f"hint: {self.hint}")
        return " ".join(parts)


class InvalidArgument(MeshdexError):
    """The caller passed something malformed or out of range."""


class NotFound(MeshdexError):
    """A named thing (collection, document, index, token) does not exist."""


class AlreadyExists(MeshdexError):
    """Creating something that is already there."""


class FailedPrecondition(MeshdexError):
    """The request is well-formed but the current state does not allow it."""


class FingerprintMismatch(FailedPrecondition):
    """Recomputing would use a different embedding fingerprint than the index was built with."""


class IndexNotBuilt(FailedPrecondition):
    """The collection has no index yet; run ``meshdex build``."""


class ResourceExhausted(MeshdexError):
    """Too big, too many, or overloaded."""

    recoverable = True


class Unauthenticated(MeshdexError):
    """No valid credentials were presented."""


class PermissionDenied(MeshdexError):
    """Valid credentials without the needed scope, or an unpaired device."""


class DeadlineExceeded(MeshdexError):
    """The caller's deadline passed before the work finished."""

    recoverable = True


class EmbedderError(MeshdexError):
    """The embedding model failed to load or answer, or an HTTP embedder is unreachable."""

    recoverable = True


class BundleError(MeshdexError):
    """A ``.leann`` bundle is malformed, tampered with or incompatible."""


class BundleCorrupt(BundleError):
    """The bytes do not match what the manifest promises (truncation, flipped bytes, bounds)."""


class BundleVersionError(BundleError):
    """The bundle was written by a format version this build cannot read."""
