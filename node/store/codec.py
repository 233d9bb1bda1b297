"""Binary encodings shared by the store's records: varints, fixed-width keys, packed stamps,
and a reader that names the record it fails on.

Every record is a few struct fields and varints instead of JSON with hex strings: a document
record of a short passage is about 30 bytes, a change-log entry about 25. A record that does
not decode raises ``StoreCorrupt`` naming its sub-database and key, never a bare traceback.
"""

from __future__ import annotations

import struct

from meshdex.node.errors import StoreCorrupt
from meshdex.node.hlc import HLCTimestamp

U32 = struct.Struct(">I")
U64 = struct.Struct(">Q")


def corrupt(what: str, key: bytes, reason: object) -> StoreCorrupt:
    """The error for a stored record that cannot be decoded, naming where it lies."""
    return StoreCorrupt(
        f"the stored {what} at key {bytes(key)!r} cannot be decoded: {reason}",
        hint="restore the data directory from a backup, or re-add the documents",
    )


def put_varint(out: bytearray, value: int) -> None:
    """Append ``value`` (>= 0) as a little-endian base-128 varint (1 byte below 128)."""
    while value >= 0x80:
        out.append((value & 0x7F) | 0x80)
        value >>= 7
    out.append(value)


def put_bytes(out: bytearray, data: bytes) -> None:
    """Append ``data`` behind its varint length."""
    put_varint(out, len(data))
    out += data


def put_stamp(out: bytearray, hlc: HLCTimestamp, device_index: int) -> None:
    """A stamp as three varints: milliseconds (6 bytes today), counter, stamping device index."""
    put_varint(out, hlc.physical_ms)
    put_varint(out, hlc.logical)
    put_varint(out, device_index)


class RecordReader:
    """Reads the fields of one stored record in order; any overrun or bad value raises
    ``StoreCorrupt`` naming ``what`` and ``key``."""

    def __init__(self, data: bytes, *, what: str, key: bytes) -> None:
        self.data = bytes(data)
        self.pos = 0
        self.what, self.key = what, bytes(key)

    def corrupt(self, reason: object) -> StoreCorrupt:
        return corrupt(self.what, self.key, reason)

    def byte(self) -> int:
        if self.pos >= len(self.data):
            raise self.corrupt("record ends early")
        self.pos += 1
        return self.data[self.pos - 1]

    def varint(self) -> int:
        # Inlined rather than calling ``byte``: records are mostly varints, and a search
        # decodes a few thousand of them.
        data, pos = self.data, self.pos
        value = shift = 0
        while pos < len(data):
            byte = data[pos]
            pos += 1
            value |= (byte & 0x7F) << shift
            if byte < 0x80:
                self.pos = pos
                return value
            shift += 7
            if shift > 70:
                raise self.corrupt("varint longer than 64 bits")
        raise self.corrupt("record ends early")

    def fixed(self, size: int) -> bytes:
        end = self.pos + size
        if end > len(self.data):
            raise self.corrupt("record ends early")
        chunk, self.pos = self.data[self.pos : end], end
        return chunk

    def bytes(self) -> bytes:
        return self.fixed(self.varint())

    def text(self) -> str:
        raw = self.bytes()
        try:
            return raw.decode("utf-8")
        except UnicodeDecodeError as error:
            raise self.corrupt(error) from error

    def stamp(self) -> tuple[int, int, int]:
        """(physical_ms, logical, device index) as ``put_stamp`` wrote them."""
        return self.varint(), self.varint(), self.varint()

    def rest(self) -> bytes:
        chunk, self.pos = self.data[self.pos :], len(self.data)
        return chunk

    def end(self) -> None:
        """Check that nothing is left over (a longer record is not this version's)."""
        if self.pos != len(self.data):
            raise self.corrupt(f"{len(self.data) - self.pos} unexpected trailing bytes")
