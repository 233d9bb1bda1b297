"""One device: the LMDB document store, the gRPC query server, config, the CLI and a client."""
