"""Errors raised by ``meshdex.sync``: identity, trust, pairing and the sync session.

Each class also subclasses a kind from ``meshdex.index.errors`` (listed first, so it decides
the gRPC status and the CLI exit code); ``SyncError`` itself, for a peer that cannot be
reached or answers nonsense, has its own entries in both tables::

    MeshdexError
    └── SyncError                    a peer unreachable or misbehaving (UNAVAILABLE, exit 12)
        ├── PeerUnreachable          nothing answered at the address, or not the pinned device
        ├── InvalidDeviceId          (InvalidArgument) not a device id, or a check char is wrong
        ├── InvalidInvite            (InvalidArgument) not an ``mdxi_`` token
        ├── ProtocolViolation        (InvalidArgument) a peer's message breaks the protocol
        ├── PeerNotFound             (NotFound) no paired peer by that id
        ├── PeerExists               (AlreadyExists) that device is already paired
        ├── PeerNameTaken            (AlreadyExists) another paired device has that name
        ├── PeerNotTrusted           (PermissionDenied) unpaired or removed certificate
        ├── PeerIdentityMismatch     (PermissionDenied) a peer's certificate is not the id we pinned
        ├── InviteRefused            (PermissionDenied) used, expired, unknown or forged invite
        ├── CollectionNotShared      (PermissionDenied) a collection the peer may not see
        ├── ReadOnlyPeer             (PermissionDenied) a read-only peer tried to write
        ├── BundleNotTrusted         (PermissionDenied) unsigned, badly signed or unpaired signer
        ├── BundleRefused            (FailedPrecondition) a bundle this device will not install
        ├── PairingRateLimited       (ResourceExhausted) too many failed pairing attempts
        ├── PeerForgotten            (FailedPrecondition) a store forgotten with `peer forget`
        └── TrustStoreCorrupt        (FailedPrecondition) peers/identity files cannot be read

Every error carries ``op`` (what was being done), ``peer`` (the device id involved, if any),
``hint`` (what a person can do) and ``recoverable``. A message never contains key material.
"""

from __future__ import annotations

from typing import Any

from meshdex.index.errors import (
    AlreadyExists,
    FailedPrecondition,
    InvalidArgument,
    MeshdexError,
    NotFound,
    PermissionDenied,
    ResourceExhausted,
)

__all__ = [
    "BundleNotTrusted",
    "BundleRefused",
    "CollectionNotShared",
    "InvalidDeviceId",
    "InvalidInvite",
    "InviteRefused",
    "PairingRateLimited",
    "PeerExists",
    "PeerForgotten",
    "PeerIdentityMismatch",
    "PeerNameTaken",
    "PeerNotFound",
    "PeerNotTrusted",
    "PeerUnreachable",
    "ProtocolViolation",
    "ReadOnlyPeer",
    "SyncError",
    "TrustStoreCorrupt",
]


class SyncError(MeshdexError):
    """A peer could not be reached or did not follow the protocol; retrying later may work."""

    recoverable = True

    def __init__(self, message: str, *, peer: str | None = None, **options: Any) -> None:
        super().__init__(message, **options)
        self.peer = peer

    def __str__(self) -> str:
        text = super().__str__()
        return f"{text} (peer: {self.peer})" if self.peer else text


class PeerUnreachable(SyncError):
    """Nothing answered at the peer's address in time, or what answered is not the pinned
    device (its TLS handshake fails): a session tries the peer's next address."""


class InvalidDeviceId(InvalidArgument, SyncError):
    """Not a device id: wrong length, a character outside base32, or a check character wrong."""

    recoverable = False


class InvalidInvite(InvalidArgument, SyncError):
    """Text that is not an ``mdxi_`` invite token (truncated, mistyped, another kind of token)."""

    recoverable = False


class ProtocolViolation(InvalidArgument, SyncError):
    """A peer sent a message that breaks the protocol (bad field, wrong order, too big)."""

    recoverable = False


class PeerNotFound(NotFound, SyncError):
    """No paired peer has that device id."""

    recoverable = False


class PeerExists(AlreadyExists, SyncError):
    """That device is already paired."""

    recoverable = False


class PeerNameTaken(AlreadyExists, SyncError):
    """Another paired device already has that name: commands that take a peer's name could
    not tell them apart."""

    recoverable = False


class PeerNotTrusted(PermissionDenied, SyncError):
    """The caller's certificate is not one of the paired peers' (never paired, or removed);
    on the calling side, the peer refuses this device's certificate for that reason
    (``meshdex.sync.transport.refuses_our_certificate``)."""

    recoverable = False


class PeerIdentityMismatch(PermissionDenied, SyncError):
    """The certificate a peer presented does not hash to the device id we expected."""

    recoverable = False


class InviteRefused(PermissionDenied, SyncError):
    """An invite that is used, expired, unknown, or whose proof of the secret is wrong."""

    recoverable = False


class CollectionNotShared(PermissionDenied, SyncError):
    """The peer asked for a collection that is not shared with it."""

    recoverable = False


class ReadOnlyPeer(PermissionDenied, SyncError):
    """A peer paired read-only sent changes; it may only receive."""

    recoverable = False


class PairingRateLimited(ResourceExhausted, SyncError):
    """Too many failed pairing attempts from one address; wait before trying again."""


class PeerForgotten(FailedPrecondition, SyncError):
    """A session with a store this device forgot (``meshdex peer forget``): the tombstones it
    had not acknowledged may be gone, so its documents could bring deleted ones back."""

    recoverable = False


class TrustStoreCorrupt(FailedPrecondition, SyncError):
    """The identity, peers or invites file cannot be decoded."""

    recoverable = False


class BundleNotTrusted(PermissionDenied, SyncError):
    """A bundle that is unsigned, whose signature does not verify, or whose signer is not a
    paired device (nor this one): its codes are never installed."""

    recoverable = False


class BundleRefused(FailedPrecondition, SyncError):
    """A bundle this device will not install: an older generation or a superseded manifest
    (no rollback, no replay), another model hash, or a transfer that did not verify."""

    recoverable = False
