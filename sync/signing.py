"""Signing the bundles this device builds, and verifying the signature of a received one.

A bundle's manifest is signed over ``BundleManifest.signing_payload()`` (every section's name,
length and SHA-256, so with ``open_bundle(verify="full")`` the signature covers every byte)
with this device's ECDSA P-256 key (SHA-256, DER signature). A verifier accepts a signature
only from a device whose certificate it holds: a paired peer's from the trust store, or this
device's own. Unsigned bundles and bundles from any other signer are refused: a bundle's codes
decide what searches return, so they are trusted exactly as far as the device that made them.
"""

from __future__ import annotations

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from meshdex.index.bundle_manifest import BundleManifest
from meshdex.sync.errors import BundleNotTrusted
from meshdex.sync.identity import DeviceIdentity, certificate_from_pem
from meshdex.sync.trust import TrustStore

__all__ = ["DeviceSigner", "verify_bundle_signature"]


class DeviceSigner:
    """Signs manifests with this device's key (the ``bundle_format.Signer`` protocol)."""

    def __init__(self, identity: DeviceIdentity) -> None:
        self._device_id = str(identity.device_id)
        key = serialization.load_pem_private_key(identity.key_pem, password=None)
        if not isinstance(key, ec.EllipticCurvePrivateKey):
            raise BundleNotTrusted("the device key is not an ECDSA key")
        self._key = key

    @property
    def device_id(self) -> str:
        return self._device_id

    def sign(self, payload: bytes) -> bytes:
        return self._key.sign(payload, ec.ECDSA(hashes.SHA256()))


def _signer_certificate(signer_id: str, *, trust: TrustStore, identity: DeviceIdentity) -> bytes:
    if signer_id == str(identity.device_id):
        return identity.cert_pem
    peer = trust.find(signer_id)
    if peer is None:
        raise BundleNotTrusted(
            f"bundle signed by device {signer_id}, which is not paired with this device",
            peer=signer_id, op="verify bundle",
            hint="only bundles built by paired devices are installed; pair it first")
    return peer.cert_pem.encode()


def verify_bundle_signature(manifest: BundleManifest, *, trust: TrustStore,
                            identity: DeviceIdentity) -> str:
    """The signer's device id if ``manifest`` is signed by this device or a paired one;
    ``BundleNotTrusted`` saying why otherwise. Check the sections against the manifest
    (``open_bundle(verify="full")``) too: the signature covers their hashes, not the bytes."""
    if not manifest.signature or not manifest.signer_device_id:
        raise BundleNotTrusted(
            f"bundle {manifest.bundle_id} of {manifest.collection!r} is unsigned",
            peer=manifest.device_id or None, op="verify bundle",
            hint="bundles are installed only when signed by the paired device that built them")
    signer_id = manifest.signer_device_id
    pem = _signer_certificate(signer_id, trust=trust, identity=identity)
    public_key = certificate_from_pem(pem, what="signer certificate").public_key()
    if not isinstance(public_key, ec.EllipticCurvePublicKey):
        raise BundleNotTrusted("the signer's certificate holds no ECDSA key", peer=signer_id,
                               op="verify bundle")
    try:
        public_key.verify(manifest.signature, manifest.signing_payload(),
                          ec.ECDSA(hashes.SHA256()))
    except InvalidSignature:
        raise BundleNotTrusted(
            f"the signature of bundle {manifest.bundle_id} does not match its manifest: it "
            "was changed after signing, or not signed by its signer", peer=signer_id,
            op="verify bundle") from None
    return signer_id
