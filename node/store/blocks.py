"""Document texts, stored once, zstd-compressed in blocks of neighbouring documents.

``blocks``       collection u32 + block u64 -> zstd frame of: varint member count; per member
                 varint id length, document id, varint text length; then the members' UTF-8
                 texts back to back
``block_stats``  collection u32 + block u64 -> varints: text bytes of all members, of live ones

Why blocks and not one zstd record per document with a trained dictionary: on the Python docs
cut into ~500-byte passages (``bench/results/store.md``) zstd-9 per record keeps 0.60 of the
text, with a 64 KiB dictionary trained on the collection 0.42, in 64 KiB blocks 0.295 and in
128 KiB blocks 0.281; on whole documents (22 KB on average) 0.30, 0.27, 0.29 and 0.28. The
price is the read: a passage decompresses its whole block (about 0.3 ms idle, a few ms on a
loaded machine), still under 1% of the model's recompute of the same passages. Writes append
to the collection's newest block until it holds ``BLOCK_TARGET_BYTES``; a block whose live
text falls to ``REPACK_AT_LIVE_FRACTION`` of what it holds is rewritten with its live members
only, so deletes give their space back. A frame is one LMDB value (in overflow pages, half a
page of slack per block on average): cut into chunks that fit leaf pages it took twice the
space (measured), as LMDB splits a full leaf in the middle and sequentially written pages stay
half empty.
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import lmdb
import zstandard
from meshdex.node.store.codec import U64, RecordReader, corrupt, put_bytes, put_varint
from meshdex.node.store.collections import CollectionStats
from meshdex.node.store.env import delete_prefix

BLOCK_TARGET_BYTES = 128 * 1024
ZSTD_LEVEL = 9
REPACK_AT_LIVE_FRACTION = 0.6
BLOCK_CACHE_BLOCKS = 8


@dataclass(frozen=True)
class TextRef:
    """Where a document's text lies: block number and member slot."""

    block: int
    slot: int


@dataclass(frozen=True, kw_only=True)
class Block:
    """The decoded members of one block: (document id, UTF-8 text), by slot."""

    members: list[tuple[str, bytes]]

    def encode(self) -> bytes:
        table = bytearray()
        put_varint(table, len(self.members))
        for doc_id, text in self.members:
            put_bytes(table, doc_id.encode())
            put_varint(table, len(text))
        payload = bytes(table) + b"".join(text for _, text in self.members)
        return zstandard.ZstdCompressor(level=ZSTD_LEVEL, write_checksum=True).compress(payload)

    @classmethod
    def decode(cls, key: bytes, data: bytes) -> Block:
        try:
            payload = zstandard.ZstdDecompressor().decompress(bytes(data))
        except zstandard.ZstdError as error:
            raise corrupt("text block", key, error) from error
        reader = RecordReader(payload, what="text block", key=key)
        table = [(reader.text(), reader.varint()) for _ in range(reader.varint())]
        members = []
        for doc_id, size in table:
            members.append((doc_id, reader.fixed(size)))
        reader.end()
        return cls(members=members)

    @property
    def text_bytes(self) -> int:
        return sum(len(text) for _, text in self.members)


class BlockCache:
    """The last few decoded blocks by key, for one read operation (never across writes)."""

    def __init__(self) -> None:
        self._blocks: OrderedDict[bytes, Block] = OrderedDict()

    def get(self, key: bytes) -> Block | None:
        block = self._blocks.get(key)
        if block is not None:
            self._blocks.move_to_end(key)
        return block

    def put(self, key: bytes, block: Block) -> None:
        self._blocks[key] = block
        if len(self._blocks) > BLOCK_CACHE_BLOCKS:
            self._blocks.popitem(last=False)


class TextBlocks:
    """Reads and writes text blocks inside the caller's transaction."""

    def __init__(self, *, blocks_db: Any, stats_db: Any) -> None:
        self._db, self._stats = blocks_db, stats_db

    def load(
        self, txn: lmdb.Transaction, prefix: bytes, block: int, cache: BlockCache | None = None
    ) -> Block:
        key = prefix + U64.pack(block)
        found = cache.get(key) if cache is not None else None
        if found is not None:
            return found
        raw = txn.get(key, db=self._db)
        if raw is None:
            raise corrupt("text block", key, "a document refers to a block that is not there")
        decoded = Block.decode(key, raw)
        if cache is not None:
            cache.put(key, decoded)
        return decoded

    def text(
        self, txn: lmdb.Transaction, prefix: bytes, ref: TextRef, cache: BlockCache | None = None
    ) -> str:
        """The text at ``ref``; ``StoreCorrupt`` if the slot is not there."""
        block = self.load(txn, prefix, ref.block, cache)
        if ref.slot >= len(block.members):
            raise corrupt("text block", prefix + U64.pack(ref.block), f"no slot {ref.slot}")
        raw = block.members[ref.slot][1]
        try:
            return raw.decode("utf-8")
        except UnicodeDecodeError as error:
            raise corrupt("text block", prefix + U64.pack(ref.block), error) from error

    def append(
        self,
        txn: lmdb.Transaction,
        prefix: bytes,
        stats: CollectionStats,
        items: list[tuple[str, bytes]],
    ) -> list[TextRef]:
        """Store texts (document id, UTF-8) in the newest block and new ones after it."""
        refs: list[TextRef] = []
        if not items:
            return refs
        members: list[tuple[str, bytes]] = []
        block = stats.next_block - 1
        raw_stats = txn.get(prefix + U64.pack(block), db=self._stats) if block >= 1 else None
        if raw_stats is not None:
            held, _ = self._block_stats(prefix + U64.pack(block), raw_stats)
            if held < BLOCK_TARGET_BYTES:
                members = list(self.load(txn, prefix, block).members)
        if not members:
            block, stats.next_block = stats.next_block, stats.next_block + 1
        added = 0
        for doc_id, text in items:
            if members and sum(len(t) for _, t in members) >= BLOCK_TARGET_BYTES:
                self._put(txn, prefix, block, members, added)
                members, added = [], 0
                block, stats.next_block = stats.next_block, stats.next_block + 1
            refs.append(TextRef(block, len(members)))
            members.append((doc_id, text))
            added += len(text)
        self._put(txn, prefix, block, members, added)
        return refs

    def _put(
        self,
        txn: lmdb.Transaction,
        prefix: bytes,
        block: int,
        members: list[tuple[str, bytes]],
        added_live: int,
    ) -> None:
        key = prefix + U64.pack(block)
        raw_stats = txn.get(key, db=self._stats)
        live = self._block_stats(key, raw_stats)[1] if raw_stats is not None else 0
        encoded = Block(members=members)
        txn.put(key, encoded.encode(), db=self._db)
        self._put_stats(txn, key, encoded.text_bytes, live + added_live)

    def release(
        self,
        txn: lmdb.Transaction,
        prefix: bytes,
        released: dict[int, int],
        *,
        is_live: Callable[[str, TextRef], bool],
        moved: Callable[[str, TextRef], None],
    ) -> None:
        """Note texts no longer referenced (block -> bytes); empty blocks are deleted and
        mostly-dead ones rewritten with their live members (``moved`` tells the caller where
        each now lies; ``is_live`` says whether a document still refers to a slot)."""
        for block, size in sorted(released.items()):
            key = prefix + U64.pack(block)
            raw_stats = txn.get(key, db=self._stats)
            if raw_stats is None:
                raise corrupt("block stats", key, "a document refers to a block that is not there")
            held, live = self._block_stats(key, raw_stats)
            live = max(0, live - size)
            if live == 0:
                txn.delete(key, db=self._db)
                txn.delete(key, db=self._stats)
            elif live <= held * REPACK_AT_LIVE_FRACTION:
                kept = [
                    (doc_id, text)
                    for slot, (doc_id, text) in enumerate(self.load(txn, prefix, block).members)
                    if is_live(doc_id, TextRef(block, slot))
                ]
                for slot, (doc_id, _) in enumerate(kept):
                    moved(doc_id, TextRef(block, slot))
                repacked = Block(members=kept)
                txn.put(key, repacked.encode(), db=self._db)
                self._put_stats(txn, key, repacked.text_bytes, repacked.text_bytes)
            else:
                self._put_stats(txn, key, held, live)

    def drop_collection(self, txn: lmdb.Transaction, prefix: bytes) -> None:
        delete_prefix(txn, self._db, prefix)
        delete_prefix(txn, self._stats, prefix)

    def _put_stats(self, txn: lmdb.Transaction, key: bytes, held: int, live: int) -> None:
        out = bytearray()
        put_varint(out, held)
        put_varint(out, live)
        txn.put(key, bytes(out), db=self._stats)

    @staticmethod
    def _block_stats(key: bytes, raw: bytes) -> tuple[int, int]:
        reader = RecordReader(raw, what="block stats", key=key)
        held, live = reader.varint(), reader.varint()
        reader.end()
        return held, live
