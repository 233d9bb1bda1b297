"""A real TCP proxy between two nodes that can damage what flows from the server to the
client: flip one byte, cut the stream short (a clean close), or drop the connection (a
reset), once ``after_bytes`` of server data have passed and ``FAULT_DELAY_S`` later. Under
TLS a flipped byte fails the record's authentication, so every fault ends the connection;
what a test checks is what the receiving node makes of that. Each connection counts its own
bytes; ``arm`` sets the fault for the next connections, ``disarm`` lets traffic through
untouched.

``flip_blocks`` damages chosen blocks inside a received run (``FetchBlocks`` message) instead,
below TLS's reach: what a peer that serves wrong bytes looks like.
"""

from __future__ import annotations

import socket
import struct
import threading
import time
from collections.abc import Collection
from dataclasses import dataclass

from meshdex.sync.blocks import BlockMap, run_blocks

CHUNK_BYTES = 16 * 1024
FAULT_DELAY_S = 0.5
PASS, FLIP, TRUNCATE, DROP = "pass", "flip", "truncate", "drop"


@dataclass
class Fault:
    kind: str = PASS
    after_bytes: int = 0


def flip_blocks(block_map: BlockMap, first_block: int, data: bytes,
                blocks: Collection[int]) -> bytes:
    """The run ``data`` starting at ``first_block`` with the first byte of each of ``blocks``
    (those the run covers) flipped."""
    damaged = bytearray(data)
    run_offset = block_map.span(first_block)[0]
    for index in run_blocks(block_map, first_block, len(data)):
        if index in blocks:
            damaged[block_map.span(index)[0] - run_offset] ^= 1
    return bytes(damaged)


class TamperProxy:
    """Listens on loopback and forwards every connection to ``upstream`` (HOST:PORT)."""

    def __init__(self, upstream: str) -> None:
        host, _, port = upstream.rpartition(":")
        self.upstream = (host.strip("[]"), int(port))
        self.fault = Fault()
        self.faults_applied = 0
        self._listener = socket.create_server(("127.0.0.1", 0))
        self._lock = threading.Lock()
        self._closed = False
        self._thread = threading.Thread(target=self._accept, daemon=True)
        self._thread.start()

    @property
    def address(self) -> str:
        return f"127.0.0.1:{self._listener.getsockname()[1]}"

    def arm(self, kind: str, after_bytes: int) -> None:
        self.fault = Fault(kind=kind, after_bytes=after_bytes)

    def disarm(self) -> None:
        self.fault = Fault()

    def _accept(self) -> None:
        while True:
            try:
                client, _ = self._listener.accept()
            except OSError:
                return  # closed
            try:
                server = socket.create_connection(self.upstream, timeout=10)
            except OSError:
                client.close()
                continue
            server.settimeout(None)
            fault = self.fault
            threading.Thread(target=self._pipe, args=(client, server, Fault()),
                             daemon=True).start()
            threading.Thread(target=self._pipe, args=(server, client, fault),
                             daemon=True).start()

    def _pipe(self, source: socket.socket, target: socket.socket, fault: Fault) -> None:
        passed = 0
        try:
            while chunk := source.recv(CHUNK_BYTES):
                if fault.kind != PASS and passed + len(chunk) > fault.after_bytes:
                    cut = max(fault.after_bytes - passed, 0)
                    with self._lock:
                        self.faults_applied += 1
                    target.sendall(chunk[:cut])
                    passed += cut
                    # what came before the fault reaches the receiver's application first
                    # (gRPC drops messages it still buffers when the connection fails)
                    time.sleep(FAULT_DELAY_S)
                    if fault.kind == FLIP:
                        chunk = bytes([chunk[cut] ^ 0x40]) + chunk[cut + 1:]
                        fault = Fault()  # one flipped byte per connection
                    else:
                        self._end(source, target, reset=fault.kind == DROP)
                        return
                target.sendall(chunk)
                passed += len(chunk)
        except OSError:
            pass
        self._end(source, target, reset=False)

    @staticmethod
    def _end(source: socket.socket, target: socket.socket, *, reset: bool) -> None:
        for sock in (source, target):
            try:
                if reset:  # RST instead of FIN: the connection is dropped, not closed
                    sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER,
                                    struct.pack("ii", 1, 0))
                    # wakes the other direction's thread from recv (sending nothing), so the
                    # socket is really released, with its RST, when closed
                    sock.shutdown(socket.SHUT_RD)
                else:
                    sock.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass
            sock.close()

    def close(self) -> None:
        self._listener.close()
