"""The inviter's side of pairing: challenges and redemptions, with limits and no half-states.

A redemption is refused as a whole (nothing recorded, invite still usable unless it expired)
unless every check passes: the host is under its failure limit, the nonce is one this
process issued for that invite and unused, the invite is unused and unexpired, the proof
matches the secret over both certificates, and the joiner is a new device. The joiner names
itself (its host name unless `join --name`); a name another paired device has is made unique
with its short id (``TrustStore.free_name``), so peer commands given a name never find two.
The peer record and the invite's ``used`` mark are written under the invites file lock.
The joiner's sync addresses are recorded as they reach it from here (``sync/addresses.py``):
from another machine, its loopback address is this one's, and was dialled as the joiner.
"""

from __future__ import annotations

import hmac
import logging
from collections.abc import Callable

from cryptography.hazmat.primitives.serialization import Encoding
from meshdex.index.errors import MeshdexError
from meshdex.sync.addresses import reachable_addresses
from meshdex.sync.errors import InviteRefused, PeerExists, PeerIdentityMismatch
from meshdex.sync.identity import DeviceIdentity, certificate_from_pem, device_id_of_pem
from meshdex.sync.pairing import FailureLimiter, Invite, InviteBook, NonceBook, pairing_proof
from meshdex.sync.trust import TrustStore, make_peer
from meshdex.sync.wire import PairGrant, PairProof

logger = logging.getLogger(__name__)


class PairingDesk:
    """Answers ``PairChallenge`` and ``Pair`` for one device.

    ``sync_addresses`` is asked at each pairing, not once: a node listening on every address
    follows this machine's LAN address while it runs, and a grant naming the address it had
    at start sent the new device to where it no longer is.
    """

    def __init__(self, *, identity: DeviceIdentity, trust: TrustStore, invites: InviteBook,
                 name: str, sync_addresses: Callable[[], tuple[str, ...]],
                 limiter: FailureLimiter | None = None) -> None:
        self.identity, self.trust, self.invites = identity, trust, invites
        self.name, self.sync_addresses = name, sync_addresses
        self.limiter = limiter or FailureLimiter()
        self.nonces = NonceBook()
        self._own_der = certificate_from_pem(identity.cert_pem).public_bytes(Encoding.DER)

    def challenge(self, invite_id: str, *, host: str) -> bytes:
        self.limiter.check(host)
        try:
            self.invites.usable(invite_id)
        except MeshdexError:
            self.limiter.failed(host)
            raise
        return self.nonces.issue(invite_id)

    def redeem(self, proof: PairProof, *, host: str) -> PairGrant:
        """Accept the joiner calling from ``host`` (its IP address) or refuse it whole."""
        self.limiter.check(host)
        try:
            self.nonces.take(proof.nonce, proof.invite_id)
            joiner = certificate_from_pem(proof.joiner_cert_pem, what="joiner certificate")
            joiner_der = joiner.public_bytes(Encoding.DER)
            if joiner_der == self._own_der:
                raise PeerIdentityMismatch("a device cannot pair with itself")

            joiner_id = device_id_of_pem(proof.joiner_cert_pem)

            def accept(invite: Invite) -> None:
                expected = pairing_proof(invite.secret, inviter_cert_der=self._own_der,
                                         joiner_cert_der=joiner_der, nonce=proof.nonce)
                if not hmac.compare_digest(expected, proof.proof):
                    raise InviteRefused("the invite's secret does not match",
                                        hint="copy the whole token again")
                name = self.trust.free_name(proof.joiner_name, joiner_id)
                if name != proof.joiner_name:
                    logger.warning("another paired device is called %r: the one joining is "
                                   "%r here", proof.joiner_name, name)
                self.trust.add(make_peer(
                    cert_pem=proof.joiner_cert_pem, name=name,
                    addresses=reachable_addresses(proof.joiner_addresses, seen_at=host),
                    collections=invite.collections,
                    mode=invite.joiner_mode))

            invite = self.invites.redeem(proof.invite_id, accept)
        except (InviteRefused, PeerIdentityMismatch, PeerExists):
            self.limiter.failed(host)
            logger.warning("refused a pairing attempt from %s", host)
            raise
        # A warning, so that a serving node's log (WARNING by default) shows every device
        # given access here.
        logger.warning("paired with a new device, %s (%s), calling from %s: sharing %s (%s)",
                       self.trust.get(joiner_id).name, joiner_id.short, host,
                       ", ".join(invite.collections), invite.joiner_mode)
        return PairGrant(inviter_name=self.name, inviter_addresses=self.sync_addresses(),
                         collections=invite.collections,
                         joiner_read_only=invite.joiner_mode == "read-only")
