"""TLS 1.3 only, for every gRPC connection this process makes or accepts.

grpcio's Python API has no minimum TLS version (``ssl_server_credentials`` and
``ssl_channel_credentials`` take none; grpc/grpc#37305, #43045 and #43080 are the open
requests), and gRPC core's default range is TLS 1.2 to 1.3. What core does read is its cipher
list for TLS 1.2 and below, from ``GRPC_SSL_CIPHER_SUITES``, once, when ``grpc`` is imported.
BoringSSL (inside grpcio) does not apply that list to TLS 1.3, whose suites are fixed. So the
list names only pre-shared-key suites: gRPC never holds a pre-shared key, a TLS 1.2 handshake
finds no cipher both sides can use ("no shared cipher", client and server alike), and TLS 1.3
is all that is left.

gRPC core also logs every refused handshake at INFO, one line per refusal
("Handshake failed ... NO_SHARED_CIPHER"), and sync's own start-up check makes one, so every
``meshdex serve`` began with an alarming line. ``quiet_grpc_core`` sets core's verbosity to
errors unless ``GRPC_VERBOSITY`` is set (not empty). A refused device learns why on its own side
(meshdex's sync errors name the peer and the reason); ``GRPC_VERBOSITY=INFO`` shows the
refusals on the listening side again.

``require_tls_1_3`` and ``quiet_grpc_core`` run when the ``meshdex`` package is imported,
which is before ``grpc`` in ``python -m meshdex``. A program that imports ``grpc`` first gets
core's defaults; ``meshdex.sync.transport.check_tls_1_3_only`` catches that when sync
starts.
"""

from __future__ import annotations

import os

GRPC_CIPHER_SUITES_ENV = "GRPC_SSL_CIPHER_SUITES"
# A valid suite (core rejects a list that matches none) that gRPC can never negotiate.
TLS_1_2_CIPHER_SUITES = "PSK-AES128-CBC-SHA"
GRPC_VERBOSITY_ENV = "GRPC_VERBOSITY"


def require_tls_1_3() -> None:
    """Leave TLS 1.2 no usable cipher in gRPC core (takes effect only before ``import grpc``)."""
    os.environ[GRPC_CIPHER_SUITES_ENV] = TLS_1_2_CIPHER_SUITES


def quiet_grpc_core() -> None:
    """Keep gRPC core's INFO lines (each refused handshake) off stderr, unless a user asked for
    them with ``GRPC_VERBOSITY`` (takes effect only before ``import grpc``)."""
    if not os.environ.get(GRPC_VERBOSITY_ENV):
        os.environ[GRPC_VERBOSITY_ENV] = "ERROR"
