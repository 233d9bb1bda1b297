"""This device's key pair and self-signed certificate, created on first use.

``DATA_DIR/sync/device.key`` (PKCS#8 PEM, mode 0600) and ``device.crt`` (PEM, 0600) in a 0700
directory. ECDSA P-256: every TLS 1.3 stack, BoringSSL in grpcio included, speaks it. The
certificate is its own trust anchor (``CA:TRUE``, path length 0) with one fixed DNS name,
``PEER_TLS_NAME``: peers pin the certificate itself, never a name or an address, so a client
dials any address and tells gRPC to expect that name (``grpc.ssl_target_name_override``).

The device id is the SHA-256 of the certificate's DER (``DeviceId``). Two processes creating
the identity at once agree on one: the key file is published with an exclusive link, and the
loser reads the winner's files.
"""

from __future__ import annotations

import datetime
import secrets
import time
from dataclasses import dataclass, field
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID
from meshdex.node.paths import write_private_file
from meshdex.sync.device_id import DeviceId
from meshdex.sync.errors import PeerIdentityMismatch, TrustStoreCorrupt
from meshdex.sync.files import SYNC_DIR_NAME, sync_dir

KEY_FILE_NAME = "device.key"
CERT_FILE_NAME = "device.crt"
PEER_TLS_NAME = "meshdex-peer"  # the one SAN of every device certificate
CERT_VALIDITY_DAYS = 20 * 365
CERT_WAIT_S = 5.0  # how long a process that lost the creation race waits for the certificate


@dataclass(frozen=True, kw_only=True)
class DeviceIdentity:
    """The key pair and certificate of this device. ``repr`` never shows the key."""

    device_id: DeviceId
    cert_pem: bytes
    key_pem: bytes = field(repr=False)
    cert_path: Path
    key_path: Path


def certificate_from_pem(pem: bytes | str, *, what: str = "certificate") -> x509.Certificate:
    """Parse one PEM certificate; ``PeerIdentityMismatch`` if it is not one."""
    data = pem.encode() if isinstance(pem, str) else pem
    try:
        return x509.load_pem_x509_certificate(data)
    except ValueError:
        raise PeerIdentityMismatch(f"the {what} is not a PEM X.509 certificate") from None


def _device_id_of(cert: x509.Certificate) -> DeviceId:
    return DeviceId.from_certificate_der(cert.public_bytes(serialization.Encoding.DER))


def device_id_of_pem(pem: bytes | str) -> DeviceId:
    """The device id a PEM certificate stands for."""
    return _device_id_of(certificate_from_pem(pem))


def _new_identity() -> tuple[bytes, bytes]:
    key = ec.generate_private_key(ec.SECP256R1())
    # A unique subject: TLS stacks look trust anchors up by subject name, so certificates
    # sharing one would shadow each other in a peer's trust list.
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME,
                                         f"meshdex device {secrets.token_hex(16)}")])
    now = datetime.datetime.now(datetime.UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(days=1))
        .not_valid_after(now + datetime.timedelta(days=CERT_VALIDITY_DAYS))
        .add_extension(x509.SubjectAlternativeName([x509.DNSName(PEER_TLS_NAME)]),
                       critical=False)
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        .sign(key, hashes.SHA256())
    )
    key_pem = key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                serialization.NoEncryption())
    return key_pem, cert.public_bytes(serialization.Encoding.PEM)


def _own_certificate(cert_path: Path, pem: bytes) -> x509.Certificate:
    """This device's certificate; ``TrustStoreCorrupt`` (not a peer's mismatch) if damaged."""
    try:
        return certificate_from_pem(pem, what="device certificate")
    except PeerIdentityMismatch as error:
        raise TrustStoreCorrupt(error.message, path=cert_path,
                                hint="restore it from a backup, or remove device.crt and "
                                     "device.key for a new identity (peers pair again)") from None


def _read(key_path: Path, cert_path: Path) -> DeviceIdentity:
    key_pem, cert_pem = key_path.read_bytes(), cert_path.read_bytes()
    try:
        key = serialization.load_pem_private_key(key_pem, password=None)
    except ValueError:
        raise TrustStoreCorrupt(
            "the device key file cannot be read", path=key_path,
            hint="restore it from a backup; a new key is a new device") from None
    cert = _own_certificate(cert_path, cert_pem)
    if cert.public_key().public_numbers() != key.public_key().public_numbers():
        raise TrustStoreCorrupt("the device certificate does not belong to the device key",
                                path=cert_path)
    return DeviceIdentity(
        device_id=_device_id_of(cert),
        cert_pem=cert_pem, key_pem=key_pem, cert_path=cert_path, key_path=key_path,
    )


def existing_device_id(data_dir: Path) -> DeviceId | None:
    """This data directory's device id without creating an identity: None before its first
    use (``TrustStoreCorrupt`` for a certificate that cannot be read)."""
    cert_path = Path(data_dir) / SYNC_DIR_NAME / CERT_FILE_NAME  # sync_dir() would create it
    try:
        pem = cert_path.read_bytes()
    except FileNotFoundError:
        return None
    return _device_id_of(_own_certificate(cert_path, pem))


def load_identity(data_dir: Path) -> DeviceIdentity:
    """This data directory's identity, created (key, then certificate) on first use."""
    directory = sync_dir(data_dir)
    key_path, cert_path = directory / KEY_FILE_NAME, directory / CERT_FILE_NAME
    if not key_path.exists():
        key_pem, cert_pem = _new_identity()
        if write_private_file(key_path, key_pem, exclusive=True):
            write_private_file(cert_path, cert_pem)
    deadline = time.monotonic() + CERT_WAIT_S
    while not cert_path.exists():
        if time.monotonic() > deadline:
            raise TrustStoreCorrupt("device key exists without its certificate", path=cert_path,
                                    hint="remove device.key to create a new identity")
        time.sleep(0.05)
    return _read(key_path, cert_path)
