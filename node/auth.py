"""Bearer tokens for the node: creation, hashed storage, revocation, and the checking interceptor.

A token looks like ``mdx_<id>_<secret>``: ``id`` (8 hex characters) names it in ``token list``
and ``token revoke``; ``secret`` is 32 random bytes. Only the SHA-256 of the whole token is kept
(tokens are random, so a slow hash adds nothing), in ``<data_dir>/tokens.json`` with 0600
permissions, written atomically. It is a file rather than an LMDB sub-database so tokens can be
created and revoked while ``meshdex serve`` holds the store's writer lock; the server re-reads
the file when it changes, so a revocation takes effect on the next call.

Scopes nest: ``read`` < ``write`` < ``admin`` (see ``METHOD_SCOPES``).
"""

from __future__ import annotations

import contextvars
import hashlib
import hmac
import json
import logging
import os
import secrets
import threading
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import grpc
from meshdex.index.errors import InvalidArgument, NotFound, PermissionDenied, Unauthenticated
from meshdex.node.config import is_loopback_address
from meshdex.node.grpc_errors import refusal_handler, wrap_handler
from meshdex.node.paths import make_private

logger = logging.getLogger(__name__)

TOKENS_FILE_NAME = "tokens.json"
TOKEN_PREFIX = "mdx"
TOKEN_SECRET_BYTES = 32
TOKEN_FILE_MODE = 0o600
SCOPES = ("read", "write", "admin")  # each includes the ones before it
SERVICE_NAME = "meshdex.v1.MeshdexNode"
OWNER_CALLER = "local"  # the caller name of this device's own commands (any scope)

# The scope each RPC of the client service needs. A method missing here is refused, so a new
# RPC cannot be served unauthenticated by accident (tests check the table covers the proto).
METHOD_SCOPES: dict[str, str] = {
    "ListCollections": "read",
    "GetDocument": "read",
    "ListDocuments": "read",
    "Search": "read",
    "Status": "read",
    "CreateCollection": "write",
    "Upsert": "write",
    "UpsertDocuments": "write",
    "DeleteDocuments": "write",
    "Build": "write",
    "Pin": "write",
    "Unpin": "write",
    "DropCollection": "admin",
    "Compact": "admin",
}

# Peer-sync management through the node (meshdex.sync.admin_service), same tokens.
SYNC_ADMIN_SERVICE_NAME = "meshdex.v1.MeshdexSyncAdmin"
SYNC_ADMIN_METHOD_SCOPES: dict[str, str] = {
    "Identity": "read",
    "ListPeers": "read",
    "ListConflicts": "read",
    "SyncNow": "write",
    "BuildOn": "write",
    "CreateInvite": "admin",
    "Join": "admin",
    "AddPeer": "admin",
    "RemovePeer": "admin",
    "ForgetUnpaired": "admin",
    "ShareCollections": "admin",
    "UnshareCollections": "admin",
}
SERVICE_SCOPES: dict[str, dict[str, str]] = {
    SERVICE_NAME: METHOD_SCOPES,
    SYNC_ADMIN_SERVICE_NAME: SYNC_ADMIN_METHOD_SCOPES,
}

Metadata = Sequence[tuple[str, str | bytes]]  # gRPC invocation metadata

# Who is calling, for the servicer and logs: the token's id, or "loopback" when allowed in
# without one.
current_caller: contextvars.ContextVar[str] = contextvars.ContextVar("current_caller",
                                                                     default="")


@dataclass(frozen=True, kw_only=True)
class TokenRecord:
    """One stored token: never the token itself, only its hash."""

    token_id: str
    scope: str
    sha256: str
    created_at: str
    label: str = ""


def scope_allows(granted: str, needed: str) -> bool:
    """Whether a token of scope ``granted`` may call something needing ``needed``."""
    return SCOPES.index(granted) >= SCOPES.index(needed)


def _hash(token: str) -> str:
    return hashlib.sha256(token.encode("utf-8")).hexdigest()


class TokenStore:
    """The token file of one data directory. Thread-safe; reloads when the file changes."""

    def __init__(self, data_dir: Path) -> None:
        self.path = Path(data_dir) / TOKENS_FILE_NAME
        self._lock = threading.Lock()
        self._records: dict[str, TokenRecord] = {}
        self._loaded_stamp: tuple[int, int] | None = None

    def _stamp(self) -> tuple[int, int] | None:
        try:
            stat = self.path.stat()
        except FileNotFoundError:
            return None
        return stat.st_mtime_ns, stat.st_size

    def _load(self) -> dict[str, TokenRecord]:
        """Current records, re-read only when the file's mtime or size changed."""
        stamp = self._stamp()
        if stamp != self._loaded_stamp:
            if stamp is None:
                self._records = {}
            else:
                data = json.loads(self.path.read_text(encoding="utf-8"))
                self._records = {r["token_id"]: TokenRecord(**r) for r in data["tokens"]}
            self._loaded_stamp = stamp
        return self._records

    def _save(self, records: dict[str, TokenRecord]) -> None:
        """Write atomically with 0600 permissions: temp file, fsync, rename, fsync dir."""
        make_private(self.path.parent)
        tmp = self.path.with_name(f".{TOKENS_FILE_NAME}.{os.getpid()}.tmp")
        payload = json.dumps({"tokens": [asdict(r) for r in records.values()]}, indent=1)
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, TOKEN_FILE_MODE)
        try:
            os.fchmod(fd, TOKEN_FILE_MODE)
            os.write(fd, payload.encode("utf-8"))
            os.fsync(fd)
        finally:
            os.close(fd)
        os.replace(tmp, self.path)
        dir_fd = os.open(self.path.parent, os.O_RDONLY)
        try:
            os.fsync(dir_fd)
        finally:
            os.close(dir_fd)
        self._loaded_stamp = None

    def create(self, scope: str, *, label: str = "") -> tuple[TokenRecord, str]:
        """Make a token; returns its record and the token text (shown once, never stored)."""
        if scope not in SCOPES:
            raise InvalidArgument(f"unknown scope {scope!r}; choose one of {', '.join(SCOPES)}")
        with self._lock:
            records = dict(self._load())
            token_id = secrets.token_hex(4)
            while token_id in records:
                token_id = secrets.token_hex(4)
            token = f"{TOKEN_PREFIX}_{token_id}_{secrets.token_urlsafe(TOKEN_SECRET_BYTES)}"
            record = TokenRecord(token_id=token_id, scope=scope, sha256=_hash(token),
                                 created_at=datetime.now(UTC).isoformat(timespec="seconds"),
                                 label=label)
            records[token_id] = record
            self._save(records)
        return record, token

    def list(self) -> list[TokenRecord]:
        """Every live token, oldest first."""
        with self._lock:
            return sorted(self._load().values(), key=lambda r: (r.created_at, r.token_id))

    def revoke(self, token_id: str) -> TokenRecord:
        """Remove a token, named by its id or given whole (a leaked token pasted as it is);
        NotFound if no token has that id. The secret is never repeated in the error."""
        parts = token_id.split("_", 2)
        if len(parts) == 3 and parts[0] == TOKEN_PREFIX:
            token_id = parts[1]
        with self._lock:
            records = dict(self._load())
            if token_id not in records:
                raise NotFound(f"no token with id {token_id!r}", hint="see `meshdex token list`")
            record = records.pop(token_id)
            self._save(records)
        return record

    def is_empty(self) -> bool:
        with self._lock:
            return not self._load()

    def check(self, token: str) -> TokenRecord:
        """The record of a presented token; Unauthenticated if it is unknown or revoked."""
        parts = token.split("_", 2)
        if len(parts) != 3 or parts[0] != TOKEN_PREFIX:
            raise Unauthenticated("malformed bearer token",
                                  hint="tokens look like mdx_<id>_<secret>")
        with self._lock:
            record = self._load().get(parts[1])
        if record is None or not hmac.compare_digest(record.sha256, _hash(token)):
            raise Unauthenticated("unknown or revoked token",
                                  hint="create one with `meshdex token create --scope read`")
        return record


def bearer_token(metadata: Metadata | None) -> str | None:
    """The token from an ``authorization: Bearer <token>`` header, if any."""
    for key, value in metadata or ():
        if key.lower() == "authorization":
            text = value.decode() if isinstance(value, bytes) else value
            scheme, _, token = text.partition(" ")
            if scheme.lower() != "bearer" or not token.strip():
                raise Unauthenticated("authorization header must be `Bearer <token>`")
            return token.strip()
    return None


def _peer_is_loopback(peer: str) -> bool:
    """``ipv4:127.0.0.1:5000``, ``ipv6:[::1]:5000`` and ``unix:...`` peers are local."""
    kind, _, address = peer.partition(":")
    if kind == "unix":
        return True
    if kind in ("ipv4", "ipv6"):
        return is_loopback_address(address)
    return False


class Authorizer:
    """Decides whether one call may proceed; raises Unauthenticated/PermissionDenied if not."""

    def __init__(self, tokens: TokenStore, *, allow_unauthenticated_loopback: bool,
                 owner_token: str | None = None) -> None:
        self.tokens = tokens
        self.allow_unauthenticated_loopback = allow_unauthenticated_loopback
        # The serving process's own admin token for this device's commands
        # (``meshdex.node.local_endpoint``); not in the token file.
        self._owner_token_hash = _hash(owner_token) if owner_token else None

    def authorize_metadata(self, method: str, metadata: Metadata | None) -> str | None:
        """The caller's name for a call of ``method`` (``/pkg.Service/Name``), decided from its
        metadata alone; None when no token came and only a loopback peer may proceed (the
        peer is known once the call runs: ``authorize_peer``)."""
        service, _, name = method.lstrip("/").partition("/")
        needed = SERVICE_SCOPES.get(service, {}).get(name)
        if needed is None:
            raise PermissionDenied(f"method {method} is not served")
        token = bearer_token(metadata)
        if token is None:
            if self.allow_unauthenticated_loopback and self.tokens.is_empty():
                return None
            raise Unauthenticated(
                f"{name} needs a bearer token with scope {needed!r}",
                hint=f"create one on the node with `meshdex token create --scope {needed}` "
                "and pass it with --token",
            )
        if self._owner_token_hash is not None and hmac.compare_digest(
                self._owner_token_hash, _hash(token)):
            return OWNER_CALLER
        record = self.tokens.check(token)
        if not scope_allows(record.scope, needed):
            raise PermissionDenied(
                f"token {record.token_id} has scope {record.scope!r}; {name} needs {needed!r}",
                hint=f"use a token created with --scope {needed}",
            )
        return record.token_id

    def authorize_peer(self, method: str, peer: str) -> str:
        """The caller's name for a token-less call that ``authorize_metadata`` let through."""
        if _peer_is_loopback(peer):
            return "loopback"
        name = method.rpartition("/")[2]
        raise Unauthenticated(
            f"{name} needs a bearer token when called from beyond loopback",
            hint="create one on the node with `meshdex token create` and pass it with --token",
        )


class AuthInterceptor(grpc.ServerInterceptor):
    """Checks the bearer token's scope for every call of the meshdex service from the call's
    metadata, before the call runs or gets a slot (``AdmissionInterceptor`` comes after this
    one); a refused call is answered by a handler that fails at once, mapped by
    ``ErrorMappingInterceptor`` (installed outside this one). The check runs on gRPC's serving
    thread, so it is kept to a hash and a file stat.

    Other services on the server (health, reflection) are open: probes and ``grpcurl
    describe`` need no token and reveal no data.
    """

    def __init__(self, authorizer: Authorizer) -> None:
        self.authorizer = authorizer

    def intercept_service(
        self,
        continuation: Callable[[grpc.HandlerCallDetails], grpc.RpcMethodHandler | None],
        handler_call_details: grpc.HandlerCallDetails,
    ) -> grpc.RpcMethodHandler | None:
        handler = continuation(handler_call_details)
        method = handler_call_details.method
        if handler is None or method.lstrip("/").partition("/")[0] not in SERVICE_SCOPES:
            return handler
        try:
            caller = self.authorizer.authorize_metadata(
                method, handler_call_details.invocation_metadata)
        except (Unauthenticated, PermissionDenied) as error:
            logger.warning("refused %s: %s", method, error)
            return refusal_handler(handler, error)

        def checked(behaviour: Callable[..., Any], request: Any,
                    context: grpc.ServicerContext) -> Any:
            name = caller
            if name is None:
                try:
                    name = self.authorizer.authorize_peer(method, context.peer())
                except Unauthenticated as error:
                    logger.warning("refused %s from %s: %s", method, context.peer(), error)
                    raise
            current_caller.set(name)
            return behaviour(request, context)

        return wrap_handler(handler, checked)
