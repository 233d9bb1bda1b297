"""meshdex: a private, multi-device semantic index.

Sub-packages: ``meshdex.index`` (one index: chunking, embedders, graph, search, bundle),
``meshdex.node`` (one device: store, gRPC server, CLI, client), ``meshdex.sync`` (between
devices) and ``meshdex.proto`` (the wire contract).

Importing the package sets gRPC's TLS policy (TLS 1.3 only, ``meshdex.sync.tls_policy``) and
core's log level: both must happen before ``grpc`` is imported, so they happen here, first.
"""

from meshdex.sync.tls_policy import quiet_grpc_core, require_tls_1_3

require_tls_1_3()
quiet_grpc_core()

__version__ = "0.1.0"
