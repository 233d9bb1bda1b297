"""Errors raised by ``meshdex.node`` (the store, ingestion and the ``Node`` facade).

Each subclasses a kind from ``meshdex.index.errors`` so the one CLI exit-code table and the one
gRPC status mapping cover it without new entries::

    FailedPrecondition
    ├── StoreLocked             another process holds the data directory's writer lock
    ├── StoreCorrupt            the store holds bytes this build cannot decode
    ├── StoreTooNew             the store was written by a newer meshdex (newer format)
    ├── DataDirNotWritable      a writing command on a data directory this user cannot write
    ├── LLMUnavailable          `ask`: the chat server is down, refused, or answered garbage
    └── LLMEmptyAnswer          `ask`: the model answered nothing
    DeadlineExceeded
    └── LLMTimeout              `ask`: the chat server sent nothing within llm_timeout_s
    NotFound
    ├── CollectionNotFound      no collection by that name
    └── DocumentNotFound        no live document by that id in the collection
    AlreadyExists
    └── CollectionExists        creating a collection whose name is taken
    InvalidArgument
    └── ClockSkew               a received HLC stamp is too far ahead of this device's clock
"""

from __future__ import annotations

import errno
from pathlib import Path
from typing import NoReturn

from meshdex.index.errors import (
    AlreadyExists,
    DeadlineExceeded,
    FailedPrecondition,
    InvalidArgument,
    NotFound,
)

__all__ = [
    "ClockSkew",
    "CollectionExists",
    "DataDirNotWritable",
    "CollectionNotFound",
    "DocumentNotFound",
    "ListenFailed",
    "LLMEmptyAnswer",
    "LLMTimeout",
    "LLMUnavailable",
    "StoreCorrupt",
    "StoreLocked",
    "StoreTooNew",
]


class StoreLocked(FailedPrecondition):
    """Another process is writing to this data directory; only one writer at a time."""

    recoverable = True


class DataDirNotWritable(FailedPrecondition):
    """A command that writes met a data directory it cannot write (a read-only mount, another
    user's folder); the commands that only read still work there. ``reason`` is the system's
    word for it ("Read-only file system")."""

    reason: str = ""

    @staticmethod
    def is_cause(error: OSError) -> bool:
        """Whether ``error`` says a path cannot be written (read-only file system, no
        permission) rather than something else going wrong."""
        return error.errno in (errno.EROFS, errno.EACCES, errno.EPERM)

    @classmethod
    def raise_for(cls, data_dir: Path, error: OSError) -> NoReturn:
        """Raise this error for ``error`` when it is the cause, ``error`` itself otherwise."""
        if not cls.is_cause(error):
            raise error
        refusal = cls(
            f"cannot write to the data directory {data_dir} ({error.strerror})",
            path=data_dir,
            hint="this command changes the data directory; search, list, status and stats "
                 "only read it and work without write access",
        )
        refusal.reason = error.strerror
        raise refusal from error


class ListenFailed(FailedPrecondition):
    """A server cannot listen on its configured address (in use, or not this machine's)."""


class CollectionNotFound(NotFound):
    """No collection by that name exists in this store."""

    @classmethod
    def named(cls, name: str) -> CollectionNotFound:
        """The error for ``name``, with what to do about it."""
        return cls(f"no collection named {name!r}",
                   hint="`meshdex list` shows the collections; `meshdex init` creates one")


class DocumentNotFound(NotFound):
    """No live (non-deleted) document by that id exists in the collection."""


class CollectionExists(AlreadyExists):
    """A collection by that name already exists."""


class StoreCorrupt(FailedPrecondition):
    """The store holds records this build cannot decode (written by a newer version, or damaged)."""


class StoreTooNew(FailedPrecondition):
    """The store has a format version newer than this program reads; upgrade meshdex."""


class LLMUnavailable(FailedPrecondition):
    """The chat completions server could not be reached, refused the request, or sent a reply
    that is not a chat completion."""

    recoverable = True


class LLMEmptyAnswer(FailedPrecondition):
    """The chat model answered with no text at all."""


class LLMTimeout(DeadlineExceeded):
    """The chat completions server sent nothing for longer than the configured timeout."""


class ClockSkew(InvalidArgument):
    """A stamp from elsewhere is further ahead of this device's clock than allowed."""
