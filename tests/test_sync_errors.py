"""Every sync error maps to a gRPC status and a CLI exit code of its kind, and says its peer."""

from __future__ import annotations

import inspect

import grpc
import pytest
from meshdex.index import errors
from meshdex.node.cli.main import exit_code_for
from meshdex.node.grpc_errors import status_for
from meshdex.sync import errors as sync_errors

SYNC_ERRORS = sorted(
    (cls for _, cls in inspect.getmembers(sync_errors, inspect.isclass)
     if issubclass(cls, errors.MeshdexError) and cls.__module__ == sync_errors.__name__),
    key=lambda cls: cls.__name__)

EXPECTED = {
    "SyncError": (grpc.StatusCode.UNAVAILABLE, 12),
    "PeerUnreachable": (grpc.StatusCode.UNAVAILABLE, 12),
    "InvalidDeviceId": (grpc.StatusCode.INVALID_ARGUMENT, 2),
    "InvalidInvite": (grpc.StatusCode.INVALID_ARGUMENT, 2),
    "ProtocolViolation": (grpc.StatusCode.INVALID_ARGUMENT, 2),
    "PeerNotFound": (grpc.StatusCode.NOT_FOUND, 3),
    "PeerExists": (grpc.StatusCode.ALREADY_EXISTS, 4),
    "PeerNameTaken": (grpc.StatusCode.ALREADY_EXISTS, 4),
    "PeerNotTrusted": (grpc.StatusCode.PERMISSION_DENIED, 7),
    "PeerIdentityMismatch": (grpc.StatusCode.PERMISSION_DENIED, 7),
    "InviteRefused": (grpc.StatusCode.PERMISSION_DENIED, 7),
    "CollectionNotShared": (grpc.StatusCode.PERMISSION_DENIED, 7),
    "ReadOnlyPeer": (grpc.StatusCode.PERMISSION_DENIED, 7),
    "PairingRateLimited": (grpc.StatusCode.RESOURCE_EXHAUSTED, 6),
    "PeerForgotten": (grpc.StatusCode.FAILED_PRECONDITION, 5),
    "TrustStoreCorrupt": (grpc.StatusCode.FAILED_PRECONDITION, 5),
    "BundleNotTrusted": (grpc.StatusCode.PERMISSION_DENIED, 7),
    "BundleRefused": (grpc.StatusCode.FAILED_PRECONDITION, 5),
}


def test_the_table_covers_every_sync_error_and_the_export_list() -> None:
    assert sorted(EXPECTED) == [cls.__name__ for cls in SYNC_ERRORS]
    assert sorted(sync_errors.__all__) == sync_errors.__all__ == sorted(EXPECTED)


@pytest.mark.parametrize("cls", SYNC_ERRORS, ids=lambda cls: cls.__name__)
def test_sync_error_maps_to_its_status_and_exit_code(cls) -> None:
    error = cls("refused", peer="AAAAAAA", hint="pair first", op="hello")
    code, message = status_for(error)
    assert (code, exit_code_for(error)) == EXPECTED[cls.__name__]
    assert message == "refused hint: pair first (peer: AAAAAAA)"
    assert error.op == "hello" and isinstance(error, sync_errors.SyncError)
