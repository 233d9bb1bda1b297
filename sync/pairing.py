"""Invites: one-time ``mdxi_`` tokens, their redemption proof, and the limits around them.

A token carries the inviter's device id (pinned: the joiner trusts only the certificate that
hashes to it), its pairing and sync addresses, an invite id and a 32-byte secret. The joiner
never sends the secret: it asks for a fresh server nonce (``PairChallenge``) and sends
``HMAC-SHA256(secret, PROOF_CONTEXT | inviter cert SHA-256 | joiner cert SHA-256 | nonce)``.
The proof binds the joiner's certificate and the inviter's, so it cannot be replayed (the
nonce is single-use), reflected, or moved to another certificate. Invites live in
``DATA_DIR/sync/invites.json`` (0600; the inviter must keep the secret to check proofs) and
are marked used in the same locked write that records the new peer's acceptance.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import secrets
import threading
import time
from collections import deque
from collections.abc import Callable
from dataclasses import asdict, dataclass

from meshdex.node.paths import write_private_file
from meshdex.sync.device_id import DeviceId
from meshdex.sync.errors import InvalidInvite, InviteRefused, PairingRateLimited
from meshdex.sync.files import locked, sync_dir
from meshdex.sync.trust import READ_ONLY, READ_WRITE

TOKEN_PREFIX = "mdxi_"
TOKEN_VERSION = 1
SECRET_BYTES = 32
INVITE_ID_BYTES = 8
INVITES_FILE_NAME = "invites.json"
PROOF_CONTEXT = b"meshdex-pair-v1"
DEFAULT_INVITE_TTL_S = 600.0
MAX_INVITE_TTL_S = 7 * 24 * 3600.0
NONCE_TTL_S = 60.0
MAX_TOKEN_CHARS = 4096
# Failed redemptions allowed per client host within the window before all its attempts are
# refused for the rest of the window: enough for typos, far too few to guess a 256-bit secret
# (the limit is about not letting a LAN neighbour hammer the port).
MAX_FAILED_PAIRINGS = 5
FAILED_PAIRING_WINDOW_S = 60.0


@dataclass(frozen=True, kw_only=True)
class InviteToken:
    """What an ``mdxi_`` token says."""

    device_id: DeviceId
    invite_id: str
    secret: bytes
    pair_addresses: tuple[str, ...]
    sync_addresses: tuple[str, ...]

    def encode(self) -> str:
        body = {"v": TOKEN_VERSION, "d": str(self.device_id), "i": self.invite_id,
                "s": base64.urlsafe_b64encode(self.secret).decode().rstrip("="),
                "p": list(self.pair_addresses), "a": list(self.sync_addresses)}
        raw = json.dumps(body, separators=(",", ":")).encode()
        return TOKEN_PREFIX + base64.urlsafe_b64encode(raw).decode().rstrip("=")

    @classmethod
    def decode(cls, text: str) -> InviteToken:
        """Parse a token; anything else (truncated, mistyped, a bearer token) is
        ``InvalidInvite``."""
        text = text.strip()
        if not text.startswith(TOKEN_PREFIX) or len(text) > MAX_TOKEN_CHARS:
            raise InvalidInvite("not a meshdex invite: it should start with mdxi_",
                                hint="copy the whole token `meshdex invite` printed")
        payload = text[len(TOKEN_PREFIX):]
        try:
            body = json.loads(base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4)))
            secret = base64.urlsafe_b64decode(body["s"] + "=" * (-len(body["s"]) % 4))
            token = cls(device_id=DeviceId.parse(body["d"]), invite_id=str(body["i"]),
                        secret=secret, pair_addresses=tuple(map(str, body["p"])),
                        sync_addresses=tuple(map(str, body["a"])))
            version = body["v"]
        except (ValueError, KeyError, TypeError):
            raise InvalidInvite("the invite token is damaged (cut short or mistyped?)",
                                hint="copy the whole token `meshdex invite` printed") from None
        if version != TOKEN_VERSION or len(secret) != SECRET_BYTES or not token.pair_addresses:
            raise InvalidInvite(f"unsupported invite (version {version})")
        return token


def pairing_proof(secret: bytes, *, inviter_cert_der: bytes, joiner_cert_der: bytes,
                  nonce: bytes) -> bytes:
    """The joiner's proof of the secret, bound to both certificates and the server's nonce."""
    message = (PROOF_CONTEXT + hashlib.sha256(inviter_cert_der).digest()
               + hashlib.sha256(joiner_cert_der).digest() + nonce)
    return hmac.new(secret, message, hashlib.sha256).digest()


@dataclass(frozen=True, kw_only=True)
class Invite:
    """A stored invite (the inviter side)."""

    invite_id: str
    secret_hex: str
    collections: tuple[str, ...]
    joiner_mode: str  # what the joiner may do here
    created_at: float
    expires_at: float
    used_at: float | None = None

    @property
    def secret(self) -> bytes:
        return bytes.fromhex(self.secret_hex)


class InviteBook:
    """The invites of one data directory."""

    def __init__(self, data_dir) -> None:
        self.path = sync_dir(data_dir) / INVITES_FILE_NAME

    def _load(self) -> dict[str, Invite]:
        if not self.path.exists():
            return {}
        data = json.loads(self.path.read_text(encoding="utf-8"))
        return {i["invite_id"]: Invite(**{**i, "collections": tuple(i["collections"])})
                for i in data["invites"]}

    def _save(self, invites: dict[str, Invite]) -> None:
        now = time.time()
        kept = [asdict(i) for i in invites.values() if i.expires_at > now - 86400]
        write_private_file(self.path, json.dumps({"invites": kept}, indent=1).encode())

    def create(self, *, collections: tuple[str, ...], read_only: bool, ttl_s: float) -> Invite:
        """A new unused invite expiring after ``ttl_s`` seconds."""
        now = time.time()
        invite = Invite(invite_id=secrets.token_hex(INVITE_ID_BYTES),
                        secret_hex=secrets.token_bytes(SECRET_BYTES).hex(),
                        collections=tuple(collections),
                        joiner_mode=READ_ONLY if read_only else READ_WRITE,
                        created_at=now, expires_at=now + ttl_s)
        with locked(self.path):
            invites = self._load()
            invites[invite.invite_id] = invite
            self._save(invites)
        return invite

    def usable(self, invite_id: str) -> Invite:
        """The invite if it can still be redeemed; else ``InviteRefused`` saying why."""
        invite = self._load().get(invite_id)
        return _check_usable(invite)

    def redeem(self, invite_id: str, check: Callable[[Invite], None]) -> Invite:
        """Run ``check(invite)`` (which raises to refuse and records the peer to accept) and
        mark the invite used, all under the file lock: an invite is redeemed at most once."""
        with locked(self.path):
            invites = self._load()
            invite = _check_usable(invites.get(invite_id))
            check(invite)
            invites[invite_id] = Invite(**{**asdict(invite), "used_at": time.time()})
            self._save(invites)
        return invite


def _check_usable(invite: Invite | None) -> Invite:
    if invite is None:
        raise InviteRefused("this device issued no such invite",
                            hint="ask for a new invite with `meshdex invite` on that device")
    if invite.used_at is not None:
        raise InviteRefused("this invite was already used",
                            hint="invites are one-time; run `meshdex invite` again")
    if invite.expires_at < time.time():
        raise InviteRefused("this invite has expired",
                            hint="run `meshdex invite` again (see --ttl)")
    return invite


class FailureLimiter:
    """Counts failed pairing attempts per client host in a sliding window. Thread-safe."""

    def __init__(self, *, limit: int = MAX_FAILED_PAIRINGS,
                 window_s: float = FAILED_PAIRING_WINDOW_S,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.limit, self.window_s, self._clock = limit, window_s, clock
        self._failures: dict[str, deque[float]] = {}
        self._lock = threading.Lock()

    def _recent(self, host: str) -> deque[float]:
        failures = self._failures.setdefault(host, deque())
        cutoff = self._clock() - self.window_s
        while failures and failures[0] < cutoff:
            failures.popleft()
        return failures

    def check(self, host: str) -> None:
        """``PairingRateLimited`` while ``host`` has ``limit`` recent failures."""
        with self._lock:
            if len(self._recent(host)) >= self.limit:
                raise PairingRateLimited(
                    f"too many failed pairing attempts from {host}",
                    hint=f"wait {self.window_s:.0f} s and check the invite token")

    def failed(self, host: str) -> None:
        with self._lock:
            self._recent(host).append(self._clock())


class NonceBook:
    """Single-use pairing nonces, each bound to one invite and valid ``NONCE_TTL_S``."""

    def __init__(self) -> None:
        self._nonces: dict[bytes, tuple[str, float]] = {}
        self._lock = threading.Lock()

    def issue(self, invite_id: str) -> bytes:
        nonce = secrets.token_bytes(32)
        now = time.monotonic()
        with self._lock:
            self._nonces = {n: v for n, v in self._nonces.items() if v[1] > now}
            self._nonces[nonce] = (invite_id, now + NONCE_TTL_S)
        return nonce

    def take(self, nonce: bytes, invite_id: str) -> None:
        """Consume a nonce; ``InviteRefused`` if unknown, expired, used or for another invite."""
        with self._lock:
            entry = self._nonces.pop(nonce, None)
        if entry is None or entry[0] != invite_id or entry[1] < time.monotonic():
            raise InviteRefused("pairing challenge unknown, used or expired",
                                hint="run `meshdex join` again")
