"""meshdex: a private, multi-device semantic index.

Sub-packages: ``meshdex.index`` (one index: chunking, embedders, graph, search, bundle),
``meshdex.node`` (one device: store, gRPC server, CLI, client), ``meshdex.sync`` (between
devices) and ``meshdex.proto`` (the wire contract).
"""

__version__ = "0.1.0"
