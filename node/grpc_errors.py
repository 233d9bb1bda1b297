"""The one table between meshdex errors and gRPC status codes, and the interceptor applying it.

The server turns a ``MeshdexError`` raised anywhere below a servicer into a status code and the
error's message (``status_for``); the client turns a status back into the matching error class
(``error_for``). Those two functions are the only places the translation happens. The most
specific class in an error's MRO wins, so a new subclass inherits its parent's code; a new
*direct* subclass of ``MeshdexError`` must be added here (a test fails until it is).

A status code alone cannot say everything: UNAVAILABLE is both "the model failed" and "the node
is down", DATA_LOSS both a damaged store and a damaged bundle. So the server also names the
table entry that decided the code in the ``meshdex-error`` trailing metadata, and the client
raises that class: a remote command then fails with the embedded one's exit code.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterator
from typing import Any

import grpc
from meshdex.index import errors
from meshdex.node.errors import ClockSkew, StoreCorrupt
from meshdex.sync.errors import SyncError

logger = logging.getLogger(__name__)

STATUS_CODES: dict[type[errors.MeshdexError], grpc.StatusCode] = {
    errors.InvalidArgument: grpc.StatusCode.INVALID_ARGUMENT,
    errors.NotFound: grpc.StatusCode.NOT_FOUND,
    errors.AlreadyExists: grpc.StatusCode.ALREADY_EXISTS,
    errors.FailedPrecondition: grpc.StatusCode.FAILED_PRECONDITION,
    errors.ResourceExhausted: grpc.StatusCode.RESOURCE_EXHAUSTED,
    errors.Unauthenticated: grpc.StatusCode.UNAUTHENTICATED,
    errors.PermissionDenied: grpc.StatusCode.PERMISSION_DENIED,
    errors.DeadlineExceeded: grpc.StatusCode.DEADLINE_EXCEEDED,
    errors.EmbedderError: grpc.StatusCode.UNAVAILABLE,
    errors.BundleError: grpc.StatusCode.FAILED_PRECONDITION,
    errors.BundleCorrupt: grpc.StatusCode.DATA_LOSS,
    StoreCorrupt: grpc.StatusCode.DATA_LOSS,
    ClockSkew: grpc.StatusCode.INVALID_ARGUMENT,  # named: a sync session goes on past it
    SyncError: grpc.StatusCode.UNAVAILABLE,  # sync kinds (PermissionDenied, ...) map as those
}

ERROR_CLASS_METADATA_KEY = "meshdex-error"
MAX_STATUS_MESSAGE_CHARS = 2000
# The classes a client can be told by name: exactly the table's entries.
ERROR_CLASSES_BY_NAME: dict[str, type[errors.MeshdexError]] = {
    cls.__name__: cls for cls in STATUS_CODES
}

# Client side, when the node named no class: the class a failed call is raised as.
# UNAVAILABLE is left out on purpose: without a name it means the node is down, a recoverable
# root ``MeshdexError``.
ERROR_CLASSES: dict[grpc.StatusCode, type[errors.MeshdexError]] = {
    grpc.StatusCode.INVALID_ARGUMENT: errors.InvalidArgument,
    grpc.StatusCode.NOT_FOUND: errors.NotFound,
    grpc.StatusCode.ALREADY_EXISTS: errors.AlreadyExists,
    grpc.StatusCode.FAILED_PRECONDITION: errors.FailedPrecondition,
    grpc.StatusCode.RESOURCE_EXHAUSTED: errors.ResourceExhausted,
    grpc.StatusCode.UNAUTHENTICATED: errors.Unauthenticated,
    grpc.StatusCode.PERMISSION_DENIED: errors.PermissionDenied,
    grpc.StatusCode.DEADLINE_EXCEEDED: errors.DeadlineExceeded,
    grpc.StatusCode.DATA_LOSS: errors.BundleCorrupt,
}


def mapped_class(error_type: type[errors.MeshdexError]) -> type[errors.MeshdexError] | None:
    """The table entry that decides ``error_type``'s code, or None if only the root matches."""
    for cls in error_type.__mro__:
        if cls in STATUS_CODES:
            return cls
    return None


def status_for(error: errors.MeshdexError) -> tuple[grpc.StatusCode, str]:
    """The status code and message a client receives for ``error``, the message cut to
    ``MAX_STATUS_MESSAGE_CHARS``: a status too big for the transport arrives as an unrelated
    RESOURCE_EXHAUSTED "Stream removed" instead of the error."""
    cls = mapped_class(type(error))
    code = STATUS_CODES[cls] if cls is not None else grpc.StatusCode.UNKNOWN
    message = str(error)
    if len(message) > MAX_STATUS_MESSAGE_CHARS:
        message = f"{message[:MAX_STATUS_MESSAGE_CHARS]}... (message cut)"
    return code, message


def error_from_rpc(error: grpc.RpcError) -> errors.MeshdexError:
    """The meshdex error a client raises for a failed call (``error`` is a ``grpc.Call``)."""
    named = ""
    for key, value in error.trailing_metadata() or ():
        if key == ERROR_CLASS_METADATA_KEY:
            named = value.decode() if isinstance(value, bytes) else value
    return error_for(error.code(), error.details() or "", error_class=named)


def error_for(code: grpc.StatusCode, message: str, *,
              error_class: str = "") -> errors.MeshdexError:
    """The meshdex error a client raises for a call that failed with ``code``; ``error_class``
    is the class the node named, if any (trusted only if it is a table entry of that code)."""
    named = ERROR_CLASSES_BY_NAME.get(error_class)
    if named is not None and STATUS_CODES[named] == code:
        return named(message)
    cls = ERROR_CLASSES.get(code)
    if cls is not None:
        return cls(message)
    if code == grpc.StatusCode.UNAVAILABLE:
        return errors.MeshdexError(
            f"node unavailable: {message}",
            hint="check that `meshdex serve` runs at that address and its model loads",
            recoverable=True,
        )
    if code == grpc.StatusCode.CANCELLED:
        return errors.MeshdexError(
            f"call cancelled: {message}",
            hint="the node may be shutting down; retry against it or another node",
            recoverable=True,
        )
    return errors.MeshdexError(f"node error ({code.name}): {message}")


def wrap_handler(
    handler: grpc.RpcMethodHandler,
    around: Callable[[Callable[..., Any], Any, grpc.ServicerContext], Any],
) -> grpc.RpcMethodHandler:
    """A copy of ``handler`` whose behaviour runs through ``around(behaviour, request, context)``.

    Works for all four RPC shapes; for server-streaming RPCs ``around`` receives a behaviour
    returning an iterator and must return one.
    """
    kinds = (
        ("unary_unary", grpc.unary_unary_rpc_method_handler),
        ("unary_stream", grpc.unary_stream_rpc_method_handler),
        ("stream_unary", grpc.stream_unary_rpc_method_handler),
        ("stream_stream", grpc.stream_stream_rpc_method_handler),
    )
    for attr, factory in kinds:
        behaviour = getattr(handler, attr)
        if behaviour is not None:
            return factory(
                lambda request, context, _b=behaviour: around(_b, request, context),
                request_deserializer=handler.request_deserializer,
                response_serializer=handler.response_serializer,
            )
    return handler


def refusal_handler(handler: grpc.RpcMethodHandler,
                    error: errors.MeshdexError) -> grpc.RpcMethodHandler:
    """A handler of ``handler``'s response shape that fails with ``error`` at once.

    It is request-streaming whatever the method is, so gRPC runs it without first waiting for a
    request message: a refused caller cannot hold a server thread by never sending one.
    """

    def refuse(_requests: Any, _context: grpc.ServicerContext) -> Any:
        raise error

    factory = (grpc.stream_stream_rpc_method_handler if handler.response_streaming
               else grpc.stream_unary_rpc_method_handler)
    return factory(refuse, request_deserializer=handler.request_deserializer,
                   response_serializer=handler.response_serializer)


def _abort(context: grpc.ServicerContext, error: errors.MeshdexError) -> None:
    code, message = status_for(error)
    logger.info("call failed with %s: %s", code.name, message)
    cls = mapped_class(type(error))
    if cls is not None:
        context.set_trailing_metadata(((ERROR_CLASS_METADATA_KEY, cls.__name__),))
    context.abort(code, message)


def _guard(behaviour: Callable[..., Any], request: Any, context: grpc.ServicerContext) -> Any:
    try:
        result = behaviour(request, context)
    except errors.MeshdexError as error:
        _abort(context, error)
    if isinstance(result, Iterator):
        return _guard_stream(result, context)
    return result


def _guard_stream(responses: Iterator[Any], context: grpc.ServicerContext) -> Iterator[Any]:
    try:
        yield from responses
    except errors.MeshdexError as error:
        _abort(context, error)


class ErrorMappingInterceptor(grpc.ServerInterceptor):
    """Turns every ``MeshdexError`` a handler raises into its status code and message."""

    def intercept_service(
        self,
        continuation: Callable[[grpc.HandlerCallDetails], grpc.RpcMethodHandler | None],
        handler_call_details: grpc.HandlerCallDetails,
    ) -> grpc.RpcMethodHandler | None:
        handler = continuation(handler_call_details)
        if handler is None:
            return None
        return wrap_handler(handler, _guard)
