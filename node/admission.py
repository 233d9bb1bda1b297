"""Admission of authenticated meshdex calls: call slots, a per-caller cap, and idle limits.

gRPC's own ``maximum_concurrent_rpcs`` counts a call from the moment it arrives, before any
interceptor has seen its token, so twenty token-less calls that never sent their request held
every slot and legitimate calls got RESOURCE_EXHAUSTED. The node therefore sets no gRPC-level
limit: ``AuthInterceptor`` refuses a call from its metadata alone, and only then does
``AdmissionInterceptor`` give it a slot:

- at most ``max_calls`` meshdex calls run at once and at most ``max_calls_per_caller`` for one
  token; the next fails fast with RESOURCE_EXHAUSTED instead of queueing;
- every handler is served as request-streaming, so the node, not gRPC, waits for request
  messages: a call that sends none for ``idle_timeout_s`` ends with DEADLINE_EXCEEDED and frees
  its slot;
- ``on_saturation(True)`` is called when the last slot is taken and ``(False)`` when one frees,
  so the server can report saturation through health.
"""

from __future__ import annotations

import logging
import queue
import threading
from collections import Counter
from collections.abc import Callable, Iterator
from typing import Any

import grpc
from meshdex.index.errors import DeadlineExceeded, InvalidArgument, ResourceExhausted
from meshdex.node.auth import SERVICE_NAME, current_caller

logger = logging.getLogger(__name__)

# Request messages read ahead of the handler; small, so gRPC flow control still paces a client.
READ_AHEAD_MESSAGES = 2
# How often a reader blocked on a full buffer checks whether the call has ended.
READER_POLL_S = 0.5


class CallSlots:
    """Counts running calls, overall and per caller; thread-safe."""

    def __init__(self, *, max_calls: int, max_calls_per_caller: int,
                 on_saturation: Callable[[bool], None] | None = None) -> None:
        self.max_calls = max_calls
        self.max_calls_per_caller = max_calls_per_caller
        self._on_saturation = on_saturation
        self._lock = threading.Lock()
        self._by_caller: Counter[str] = Counter()
        self._running = 0

    @property
    def running(self) -> int:
        return self._running

    def acquire(self, caller: str) -> None:
        """Take a slot for ``caller``, or raise ``ResourceExhausted`` saying which limit."""
        with self._lock:
            if self._running >= self.max_calls:
                raise ResourceExhausted(
                    f"node is busy: {self.max_calls} calls already in progress",
                    hint="retry with backoff, or raise max_concurrent_rpcs in the node's config",
                )
            if self._by_caller[caller] >= self.max_calls_per_caller:
                raise ResourceExhausted(
                    f"token {caller} already has {self.max_calls_per_caller} calls in progress",
                    hint="finish or cancel one first, or raise max_calls_per_token",
                )
            self._running += 1
            self._by_caller[caller] += 1
            saturated = self._running == self.max_calls
        if saturated:
            self._notify(True)

    def release(self, caller: str) -> None:
        with self._lock:
            was_saturated = self._running == self.max_calls
            self._running -= 1
            self._by_caller[caller] -= 1
            if not self._by_caller[caller]:
                del self._by_caller[caller]
        if was_saturated:
            self._notify(False)

    def _notify(self, saturated: bool) -> None:
        if self._on_saturation is not None:
            logger.warning("node %s", "saturated: every call slot is taken" if saturated
                           else "has a free call slot again")
            self._on_saturation(saturated)


class IdleLimitedRequests(Iterator[Any]):
    """A request iterator that raises ``DeadlineExceeded`` when no message came for
    ``idle_timeout_s``. gRPC's own iterator blocks without a limit, so a reader thread pulls
    from it and hands messages over through a small buffer."""

    _MESSAGE, _END, _FAILED = range(3)

    def __init__(self, requests: Iterator[Any], *, idle_timeout_s: float) -> None:
        self.idle_timeout_s = idle_timeout_s
        self._buffer: queue.Queue[tuple[int, Any]] = queue.Queue(maxsize=READ_AHEAD_MESSAGES)
        self._closed = threading.Event()
        threading.Thread(target=self._read, args=(requests,), daemon=True,
                         name="meshdex-requests").start()

    def _read(self, requests: Iterator[Any]) -> None:
        try:
            for request in requests:
                if not self._hand_over((self._MESSAGE, request)):
                    return
        except Exception as error:  # grpc.RpcError when the client cancels: the handler's to see
            self._hand_over((self._FAILED, error))
            return
        self._hand_over((self._END, None))

    def _hand_over(self, item: tuple[int, Any]) -> bool:
        while not self._closed.is_set():
            try:
                self._buffer.put(item, timeout=READER_POLL_S)
                return True
            except queue.Full:
                continue
        return False

    def __next__(self) -> Any:
        try:
            kind, value = self._buffer.get(timeout=self.idle_timeout_s)
        except queue.Empty:
            self.close()
            raise DeadlineExceeded(
                f"no request message for {self.idle_timeout_s:g} s; the call was ended",
                hint="send the next message sooner, or raise call_idle_timeout_s on the node",
            ) from None
        if kind == self._END:
            raise StopIteration
        if kind == self._FAILED:
            raise value
        return value

    def single(self) -> Any:
        """The one request of a unary-request method."""
        try:
            return next(self)
        except StopIteration:
            raise InvalidArgument("the call ended without its request message") from None

    def close(self) -> None:
        """Let the reader thread go (it ends when gRPC's iterator does)."""
        self._closed.set()


class AdmissionInterceptor(grpc.ServerInterceptor):
    """Gives each authenticated meshdex call a slot in ``slots`` and idle-limits its requests.

    Must come after ``AuthInterceptor``, which sets ``current_caller`` before this runs.
    """

    def __init__(self, slots: CallSlots, *, idle_timeout_s: float) -> None:
        self.slots = slots
        self.idle_timeout_s = idle_timeout_s

    def intercept_service(
        self,
        continuation: Callable[[grpc.HandlerCallDetails], grpc.RpcMethodHandler | None],
        handler_call_details: grpc.HandlerCallDetails,
    ) -> grpc.RpcMethodHandler | None:
        handler = continuation(handler_call_details)
        if handler is None or not handler_call_details.method.startswith(f"/{SERVICE_NAME}/"):
            return handler
        return self._request_streaming(handler)

    def _request_streaming(self, handler: grpc.RpcMethodHandler) -> grpc.RpcMethodHandler:
        if handler.request_streaming:
            behaviour = handler.stream_stream or handler.stream_unary
        else:
            behaviour = handler.unary_stream or handler.unary_unary

        def admitted(requests: Iterator[Any], context: grpc.ServicerContext) -> Any:
            caller = current_caller.get()
            self.slots.acquire(caller)
            limited = IdleLimitedRequests(requests, idle_timeout_s=self.idle_timeout_s)
            try:
                result = behaviour(limited if handler.request_streaming else limited.single(),
                                   context)
            except BaseException:
                self._finish(caller, limited)
                raise
            if handler.response_streaming:
                return self._finish_after(result, caller, limited)
            self._finish(caller, limited)
            return result

        factory = (grpc.stream_stream_rpc_method_handler if handler.response_streaming
                   else grpc.stream_unary_rpc_method_handler)
        return factory(admitted, request_deserializer=handler.request_deserializer,
                       response_serializer=handler.response_serializer)

    def _finish(self, caller: str, requests: IdleLimitedRequests) -> None:
        requests.close()
        self.slots.release(caller)

    def _finish_after(self, responses: Iterator[Any], caller: str,
                      requests: IdleLimitedRequests) -> Iterator[Any]:
        try:
            yield from responses
        finally:
            self._finish(caller, requests)
