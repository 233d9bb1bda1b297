"""The one table from meshdex errors to gRPC status codes, and back on the client."""

from __future__ import annotations

import inspect

import grpc
import pytest
from meshdex.index import errors
from meshdex.node import errors as node_errors
from meshdex.node.grpc_errors import ERROR_CLASSES, error_for, mapped_class, status_for


def _error_classes() -> list[type[errors.MeshdexError]]:
    found = set()
    for module in (errors, node_errors):
        for _, cls in inspect.getmembers(module, inspect.isclass):
            if issubclass(cls, errors.MeshdexError) and cls is not errors.MeshdexError:
                found.add(cls)
    return sorted(found, key=lambda cls: cls.__name__)


@pytest.mark.parametrize("cls", _error_classes(), ids=lambda cls: cls.__name__)
def test_every_meshdex_error_has_a_status_code(cls):
    assert mapped_class(cls) is not None, f"add {cls.__name__} to STATUS_CODES"
    code, message = status_for(cls("what went wrong", hint="do this"))
    assert code not in (grpc.StatusCode.OK, grpc.StatusCode.UNKNOWN)
    assert message == "what went wrong hint: do this"


EXPECTED = [
    (errors.InvalidArgument, "INVALID_ARGUMENT"),
    (errors.NotFound, "NOT_FOUND"),
    (node_errors.CollectionNotFound, "NOT_FOUND"),
    (errors.AlreadyExists, "ALREADY_EXISTS"),
    (errors.FailedPrecondition, "FAILED_PRECONDITION"),
    (errors.IndexNotBuilt, "FAILED_PRECONDITION"),
    (node_errors.StoreLocked, "FAILED_PRECONDITION"),
    (errors.ResourceExhausted, "RESOURCE_EXHAUSTED"),
    (errors.Unauthenticated, "UNAUTHENTICATED"),
    (errors.PermissionDenied, "PERMISSION_DENIED"),
    (errors.DeadlineExceeded, "DEADLINE_EXCEEDED"),
    (errors.EmbedderError, "UNAVAILABLE"),
    (errors.BundleCorrupt, "DATA_LOSS"),
    (node_errors.StoreCorrupt, "DATA_LOSS"),
]


@pytest.mark.parametrize(("cls", "code"), EXPECTED, ids=lambda v: getattr(v, "__name__", v))
def test_status_codes_follow_the_table(cls, code):
    assert status_for(cls("x"))[0].name == code


@pytest.mark.parametrize(("code", "cls"), sorted(ERROR_CLASSES.items(), key=lambda i: i[0].name),
                         ids=lambda v: getattr(v, "name", getattr(v, "__name__", "")))
def test_client_turns_status_codes_back_into_the_error_family(code, cls):
    error = error_for(code, "message from the server")
    assert type(error) is cls and str(error) == "message from the server"
    assert status_for(error)[0] == code


@pytest.mark.parametrize(("code", "hint"), [(grpc.StatusCode.UNAVAILABLE, "meshdex serve"),
                                            (grpc.StatusCode.CANCELLED, "shutting down")])
def test_transport_failures_are_recoverable_errors_with_a_hint(code, hint):
    error = error_for(code, "failed to connect")
    assert error.recoverable and hint in str(error)
