"""The ASGI layers in front of the SDK's streamable HTTP app, outermost first.

``BrowserGate`` keeps web pages from driving the server (Host and Origin checks, CORS);
``BearerTokenGate`` wants a meshdex bearer token; ``JsonRpcBodyCheck`` answers a body that is
no single valid JSON-RPC message (``check_message``) before the SDK's validation dump does.
``serve_http`` in ``meshdex.node.mcp_server`` stacks them.
"""

from __future__ import annotations

from typing import Any
from urllib.parse import urlsplit

from mcp.server.transport_security import DEFAULT_MAX_REQUEST_BODY_SIZE
from meshdex.index.errors import InvalidArgument, MeshdexError, PermissionDenied, Unauthenticated
from meshdex.node.auth import TokenStore, bearer_token, scope_allows
from meshdex.node.config import is_loopback_host
from meshdex.node.mcp_jsonrpc import check_message
from starlette.datastructures import Headers
from starlette.responses import JSONResponse, Response

# What a browser client may send and read (the MCP streamable HTTP transport's headers).
CORS_ALLOW_METHODS = "GET, POST, DELETE"
CORS_ALLOW_HEADERS = ("Authorization, Content-Type, Accept, Mcp-Session-Id, "
                      "Mcp-Protocol-Version, Last-Event-ID")
CORS_EXPOSE_HEADERS = "Mcp-Session-Id, WWW-Authenticate"
CORS_MAX_AGE_S = 600  # how long a browser may keep a preflight's answer


class BrowserGate:
    """ASGI middleware: only pages served from this machine may use a loopback server, and no
    page at all one that listens beyond loopback.

    The MCP transport's security warning says a server must check ``Origin`` (a page anywhere
    on the web can make a browser send requests to 127.0.0.1) and that a local server should
    listen on loopback only; DNS rebinding points a site's own name at 127.0.0.1, so a loopback
    server also wants ``Host`` to be a loopback name (else 421). A request from a web page (it
    has ``Origin``) is refused with 403 unless that origin is loopback (``http://localhost:5173``,
    ``https://127.0.0.1:6274``: an inspector or editor running on this machine) and the server
    listens on loopback; a LAN server (TLS) serves programs, which send no ``Origin``.

    A CORS preflight (``OPTIONS`` with ``Origin`` and ``Access-Control-Request-Method``) from
    an allowed origin is answered here, before the token gate: browsers never send credentials
    on a preflight, so asking it for a token (401) failed every browser client. Every answer to
    an allowed origin carries ``Access-Control-Allow-Origin`` with that origin (never ``*``).
    """

    def __init__(self, app: Any, *, loopback: bool) -> None:
        self.app = app
        self.loopback = loopback

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        headers = Headers(scope=scope)
        host, origin = headers.get("host"), headers.get("origin")
        if self.loopback and not _names_loopback(host and f"//{host}"):
            await JSONResponse({"error": f"Host {host!r} is not a loopback name; this MCP "
                                "server only answers requests addressed to this machine"},
                               status_code=421)(scope, receive, send)
            return
        if origin is None:
            await self.app(scope, receive, send)
            return
        if not (self.loopback and _names_loopback(origin)):
            await JSONResponse({"error": f"requests from web pages at {origin} are refused: "
                                "only pages served from this machine's loopback "
                                "(http://localhost:PORT) may use this MCP server, and only "
                                "while it listens on loopback"},
                               status_code=403)(scope, receive, send)
            return
        cors = {"Access-Control-Allow-Origin": origin, "Vary": "Origin"}
        if scope["method"] == "OPTIONS" and "access-control-request-method" in headers:
            await Response(status_code=204, headers={
                **cors, "Access-Control-Allow-Methods": CORS_ALLOW_METHODS,
                "Access-Control-Allow-Headers": CORS_ALLOW_HEADERS,
                "Access-Control-Max-Age": str(CORS_MAX_AGE_S)})(scope, receive, send)
            return
        cors["Access-Control-Expose-Headers"] = CORS_EXPOSE_HEADERS
        added = [(name.lower().encode("latin-1"), value.encode("latin-1"))
                 for name, value in cors.items()]

        async def send_with_cors(message: dict[str, Any]) -> None:
            if message["type"] == "http.response.start":
                message = {**message, "headers": [*message.get("headers", ()), *added]}
            await send(message)

        await self.app(scope, receive, send_with_cors)


def _names_loopback(url: str | None) -> bool:
    """True when ``url`` (an origin, or ``//`` and a Host value) is http(s) or scheme-less,
    names a loopback host, and has no user, path or malformed port."""
    if not url:
        return False
    try:
        parts = urlsplit(url)
        parts.port  # noqa: B018 - raises ValueError for a port that is not a number
    except ValueError:
        return False
    return (parts.scheme in ("", "http", "https") and not parts.path and not parts.username
            and parts.hostname is not None and is_loopback_host(parts.hostname))


class BearerTokenGate:
    """ASGI middleware: every HTTP request needs ``Authorization: Bearer <meshdex token>`` with
    at least ``scope`` (write when the write tools are on, else read).

    Refusals follow RFC 6750 section 3.1: no header, 401 with a bare ``Bearer`` challenge; a
    header that is not ``Bearer <token>`` (``Basic …``, no token), 400 ``invalid_request``; a
    token unknown or revoked, 401 ``invalid_token``; a token whose scope is too small, 403
    ``insufficient_scope`` with the scope needed, so a client can tell which token to get.
    """

    def __init__(self, app: Any, *, tokens: TokenStore, scope: str) -> None:
        self.app = app
        self.tokens = tokens
        self.scope = scope

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        refusal = self._refusal(list(Headers(scope=scope).items()))
        if refusal is None:
            await self.app(scope, receive, send)
            return
        status, challenge, error = refusal
        await JSONResponse({"error": str(error)}, status_code=status,
                           headers={"WWW-Authenticate": challenge})(scope, receive, send)

    def _refusal(self, headers: list[tuple[str, str]]) -> tuple[int, str, MeshdexError] | None:
        """HTTP status, ``WWW-Authenticate`` value and error for a request refused; ``None``
        for one let through."""
        try:
            token = bearer_token(headers)
        except Unauthenticated as error:
            return 400, 'Bearer error="invalid_request"', InvalidArgument(
                error.message, hint="this MCP server takes no other scheme: send "
                "`Authorization: Bearer <token>`")
        if token is None:
            return 401, "Bearer", Unauthenticated(
                f"this MCP server needs a bearer token with scope {self.scope!r}",
                hint=f"create one with `meshdex token create --scope {self.scope}` and send "
                "`Authorization: Bearer <token>`")
        try:
            record = self.tokens.check(token)
        except Unauthenticated as error:
            return 401, 'Bearer error="invalid_token"', error
        if not scope_allows(record.scope, self.scope):
            return 403, f'Bearer error="insufficient_scope", scope="{self.scope}"', \
                PermissionDenied(f"token {record.token_id} has scope {record.scope!r}; this "
                                 f"MCP server needs {self.scope!r}")
        return None


class JsonRpcBodyCheck:
    """ASGI middleware: a POSTed JSON body is checked (``check_message``) before the SDK reads
    it. A refused one is answered 400 with its JSON-RPC error (the SDK's answer to a batch or a
    request with id null was -32602 and pydantic's validation dump, or 202 and no answer at
    all); a notification MCP cannot take gets 202, as every notification does. A body over the
    SDK's own limit is refused 413 as the SDK would."""

    def __init__(self, app: Any) -> None:
        self.app = app

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        if (scope["type"] != "http" or scope["method"] != "POST" or not Headers(scope=scope)
                .get("content-type", "").lower().startswith("application/json")):
            await self.app(scope, receive, send)  # the SDK answers a wrong content type
            return
        body = bytearray()
        while True:
            message = await receive()
            if message["type"] != "http.request":
                return  # the client went away
            body += message.get("body", b"")
            if len(body) > DEFAULT_MAX_REQUEST_BODY_SIZE:
                await Response("Request body too large", status_code=413)(scope, receive, send)
                return
            if not message.get("more_body", False):
                break
        checked = check_message(bytes(body))
        if checked.refusal is not None:
            await Response(checked.refusal.model_dump_json(by_alias=True, exclude_unset=True),
                           status_code=400, media_type="application/json")(scope, receive, send)
            return
        if checked.message is None:
            await Response(status_code=202)(scope, receive, send)
            return
        whole = {"type": "http.request", "body": bytes(body), "more_body": False}

        async def replay() -> dict[str, Any]:
            nonlocal whole
            if whole is None:
                return await receive()
            message, whole = whole, None
            return message

        await self.app(scope, replay, send)
