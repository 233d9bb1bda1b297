"""Document texts, stored once, zstd-compressed in small blocks of neighbouring documents with
a dictionary trained on the collection.

``blocks``        collection u32 + block u64 -> 0x01, varint dictionary id (0: none), then a
                  zstd frame of: u32 member count n; n u32 id lengths, n u32 text lengths
                  (little-endian); the document ids (UTF-8) back to back, then the texts. A
                  value that starts with zstd's magic number instead is a block written by
                  format 2 (no dictionary; a varint count, then per member a varint id length,
                  id and varint text length, then the texts).
``block_stats``   collection u32 + block u64 -> varints: text bytes of all members, of live ones
``dictionaries``  collection u32 + u32 0 -> varints: current dictionary id, text bytes ever
                  appended, text bytes appended when the current dictionary was trained;
                  collection u32 + u32 id -> the zstd dictionary (never changed once written)

Why small blocks with a dictionary (``bench/results/store.md``, "block options"): a passage
read decompresses and parses its whole block, and a search reads ~40 passages from as many
blocks. Format 2's 128 KiB blocks kept 0.29 of the text on the docs cut into ~500-byte
passages but took ~20 ms for those 40 reads; blocks of one LMDB page of compressed text
(~14 KiB of text) with a 64 KiB dictionary keep about the same ratio and read in a few ms.
A block is filled until its frame would pass ``BLOCK_FRAME_BUDGET_BYTES``, the payload of one
LMDB overflow page: a value of 4081 bytes would take two pages (every frame is one LMDB value;
cut into leaf-sized chunks it took twice the space, measured, as LMDB splits full leaves in the
middle).

The first dictionary is trained once the collection has been given
``DICTIONARY_TRAIN_AT_BYTES`` of text, and a new one when it has grown
``DICTIONARY_RETRAIN_GROWTH`` times since; each block names the dictionary it was written
with, so older blocks stay readable. Compaction (``TextBlocks.compact``) rewrites the blocks
on an older dictionary, those with dead text and the part-filled ones, and deletes the
dictionaries no block uses any more. Between compactions, a block whose live text falls to
``REPACK_AT_LIVE_FRACTION`` of what it holds is rewritten with its live members only.
"""

from __future__ import annotations

import itertools
import logging
import struct
import threading
from collections import OrderedDict
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from typing import Any

import lmdb
import zstandard
from meshdex.node.store.codec import U32, U64, RecordReader, corrupt, put_varint
from meshdex.node.store.collections import CollectionStats
from meshdex.node.store.env import delete_prefix, scan_prefix

logger = logging.getLogger(__name__)

LMDB_OVERFLOW_PAGE_HEADER_BYTES = 16
BLOCK_FRAME_BUDGET_BYTES = 4096 - LMDB_OVERFLOW_PAGE_HEADER_BYTES
# a block whose frame already fills this share of the budget takes no more members
BLOCK_FULL_FRACTION = 0.85
# compressed / raw, assumed for the first block a write fills (then learnt from each frame)
INITIAL_RATIO_ESTIMATE = 0.33
# times a frame that came out over the budget gives members back and is compressed again
PACK_RETRIES = 3
ZSTD_LEVEL = 9
DICTIONARY_BYTES = 64 * 1024
DICTIONARY_TRAIN_AT_BYTES = 1024 * 1024
DICTIONARY_RETRAIN_GROWTH = 4
DICTIONARY_SAMPLE_BYTES = 4 * 1024 * 1024
DICTIONARY_SAMPLE_PIECE_BYTES = 4096
REPACK_AT_LIVE_FRACTION = 0.6
# compaction rewrites a block whose live text is below this share of what it holds
COMPACT_BELOW_LIVE_FRACTION = 0.9
# compaction packs the live members it gathered once they pass this many text bytes
COMPACT_PACK_BATCH_BYTES = 1024 * 1024
# blocks compaction rewrites per write transaction (each ~14 KiB of text, a few pages)
COMPACT_BLOCKS_PER_TRANSACTION = 2048
BLOCK_CACHE_BLOCKS = 64
DECODED_BLOCKS_KEPT = 128  # a few MB of text at most, shared by every reader of a store

_TAGGED = 0x01
_COUNT = struct.Struct("<I")
_FORMAT_2_MAGIC = b"\x28\xb5\x2f\xfd"  # a bare zstd frame
_STATE_ID = 0
_DEAD_TEXT, _OLD_DICTIONARY, _PART_FILLED = "dead text", "older dictionary", "part-filled"

Member = tuple[str, bytes]  # (document id, UTF-8 text)


@dataclass(frozen=True)
class TextRef:
    """Where a document's text lies: block number and member slot."""

    block: int
    slot: int


class _SharedDecompressor:
    """One ``ZstdDecompressor`` reused under a lock: making one for a dictionary costs about
    five times decompressing a 4 KiB block with it, and instances are not thread-safe."""

    def __init__(self, dictionary: zstandard.ZstdCompressionDict | None = None) -> None:
        self._decompressor = (zstandard.ZstdDecompressor(dict_data=dictionary)
                              if dictionary is not None else zstandard.ZstdDecompressor())
        self._lock = threading.Lock()

    def decompress(self, frame: bytes) -> bytes:
        with self._lock:
            return self._decompressor.decompress(frame)


_PLAIN = _SharedDecompressor()


@dataclass(frozen=True, kw_only=True)
class Dictionary:
    """A collection's zstd dictionary and its id (0 is never a dictionary)."""

    id: int
    zstd: zstandard.ZstdCompressionDict
    decompressor: _SharedDecompressor = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "decompressor", _SharedDecompressor(self.zstd))


def _payload(members: list[Member]) -> bytes:
    ids = [doc_id.encode() for doc_id, _ in members]
    lengths = [len(doc_id) for doc_id in ids] + [len(text) for _, text in members]
    table = struct.pack(f"<I{len(lengths)}I", len(members), *lengths)
    return table + b"".join(ids) + b"".join(text for _, text in members)


def _member_ends(key: bytes, payload: bytes) -> list[int]:
    """Where each id and then each text of a format-3 payload ends: fixed-width tables, so one
    ``struct`` call reads them (a varint table parsed in Python took three quarters of a block
    read)."""
    try:
        (count,) = _COUNT.unpack_from(payload)
        lengths = struct.unpack_from(f"<{2 * count}I", payload, _COUNT.size)
    except struct.error as error:
        raise corrupt("text block", key, error) from error
    ends = list(itertools.accumulate(lengths, initial=_COUNT.size + 8 * count))
    if ends[-1] != len(payload):
        raise corrupt("text block", key, f"{len(payload) - ends[-1]} bytes unaccounted for")
    return ends


def _format_2_members(key: bytes, payload: bytes) -> list[Member]:
    """The members of a format-2 payload (varint table)."""
    reader = RecordReader(payload, what="text block", key=key)
    table = [(reader.text(), reader.varint()) for _ in range(reader.varint())]
    members = [(doc_id, reader.fixed(size)) for doc_id, size in table]
    reader.end()
    return members


def frame_dictionary_id(key: bytes, data: bytes) -> tuple[int, bytes]:
    """(dictionary id, zstd frame) of a stored block value, either format."""
    dictionary_id, frame, _ = _split_value(key, data)
    return dictionary_id, frame


def _split_value(key: bytes, data: bytes) -> tuple[int, bytes, bool]:
    """(dictionary id, zstd frame, whether it is a bare format-2 frame) of a stored value."""
    data = bytes(data)
    if data.startswith(_FORMAT_2_MAGIC):
        return 0, data, True
    reader = RecordReader(data, what="text block", key=key)
    if reader.byte() != _TAGGED:
        raise reader.corrupt("neither a tagged block nor a zstd frame")
    dictionary_id = reader.varint()
    return dictionary_id, reader.rest(), False


class Block:
    """The members of one block: (document id, UTF-8 text), by slot.

    A decoded block keeps its payload and cuts a member out when asked: a search reads one
    member of each block it touches, and cutting out all ~30 members of a block of ~500-byte
    passages took 53 us, nearly the 66 us of decompressing it."""

    def __init__(self, *, members: list[Member]) -> None:
        self._members: list[Member] | None = members
        self._count = len(members)
        self._key, self._payload, self._ends = b"", b"", [0]

    @classmethod
    def _of_payload(cls, key: bytes, payload: bytes) -> Block:
        """A decoded format-3 payload, its members cut out when asked."""
        ends = _member_ends(key, payload)
        block = cls.__new__(cls)
        block._members, block._count = None, (len(ends) - 1) // 2
        block._key, block._payload, block._ends = key, payload, ends
        return block

    def __len__(self) -> int:
        return self._count

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Block) and self.members == other.members

    __hash__ = None  # type: ignore[assignment]

    def __repr__(self) -> str:
        return f"Block(members={self.members!r})"

    def member(self, slot: int) -> Member:
        """The member at ``slot`` (0 <= slot < len(self))."""
        if self._members is not None:
            return self._members[slot]
        ends, count = self._ends, self._count
        try:
            doc_id = self._payload[ends[slot] : ends[slot + 1]].decode()
        except UnicodeDecodeError as error:
            raise corrupt("text block", self._key, error) from error
        return doc_id, self._payload[ends[count + slot] : ends[count + slot + 1]]

    @property
    def members(self) -> list[Member]:
        if self._members is None:
            self._members = [self.member(slot) for slot in range(self._count)]
        return self._members

    def encode(self, dictionary: Dictionary | None = None) -> bytes:
        """The stored value: tag, dictionary id, zstd frame (with a content checksum)."""
        head = bytearray([_TAGGED])
        put_varint(head, dictionary.id if dictionary is not None else 0)
        compressor = (
            zstandard.ZstdCompressor(level=ZSTD_LEVEL, dict_data=dictionary.zstd,
                                     write_checksum=True)
            if dictionary is not None
            else zstandard.ZstdCompressor(level=ZSTD_LEVEL, write_checksum=True))
        return bytes(head) + compressor.compress(_payload(self.members))

    @classmethod
    def decode(
        cls, key: bytes, data: bytes, dictionary: Callable[[int], Dictionary | None]
    ) -> Block:
        """``dictionary(id)`` gives the block's dictionary (None for id 0)."""
        dictionary_id, frame, format_2 = _split_value(key, data)
        return cls.of_frame(key, frame, dictionary(dictionary_id), format_2=format_2)

    @classmethod
    def of_frame(
        cls, key: bytes, frame: bytes, dictionary: Dictionary | None, *, format_2: bool
    ) -> Block:
        """The block in a stored value's zstd ``frame`` (``_split_value``)."""
        decompressor = dictionary.decompressor if dictionary is not None else _PLAIN
        try:
            payload = decompressor.decompress(frame)
        except zstandard.ZstdError as error:
            raise corrupt("text block", key, error) from error
        if format_2:
            return cls(members=_format_2_members(key, payload))
        return cls._of_payload(key, payload)

    @property
    def text_bytes(self) -> int:
        if self._members is None:
            return self._ends[-1] - self._ends[self._count]
        return sum(len(text) for _, text in self._members)


class _DecodedBlocks:
    """The last ``DECODED_BLOCKS_KEPT`` blocks decoded by any read, each kept with the stored
    bytes and the dictionary it was decoded from: a later read whose transaction holds the
    same bytes under the same dictionary reuses it (a compare instead of a decompress and a
    parse), so it is never stale across writes. Reading documents one call at a time (a sync
    session shipping 10,000 of them) decoded each shared block once per member."""

    def __init__(self) -> None:
        self._blocks: OrderedDict[bytes, tuple[bytes, Dictionary | None, Block]] = OrderedDict()
        self._lock = threading.Lock()

    def get(self, key: bytes, raw: bytes, dictionary: Dictionary | None) -> Block | None:
        with self._lock:
            kept = self._blocks.get(key)
            if kept is None or kept[1] is not dictionary or kept[0] != raw:
                return None
            self._blocks.move_to_end(key)
            return kept[2]

    def put(self, key: bytes, raw: bytes, dictionary: Dictionary | None, block: Block) -> None:
        with self._lock:
            self._blocks[key] = (raw, dictionary, block)
            self._blocks.move_to_end(key)
            while len(self._blocks) > DECODED_BLOCKS_KEPT:
                self._blocks.popitem(last=False)


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


@dataclass(kw_only=True)
class _DictionaryState:
    current: int = 0
    appended_bytes: int = 0
    trained_at_bytes: int = 0

    def encode(self) -> bytes:
        out = bytearray()
        for value in (self.current, self.appended_bytes, self.trained_at_bytes):
            put_varint(out, value)
        return bytes(out)

    @classmethod
    def decode(cls, key: bytes, data: bytes) -> _DictionaryState:
        reader = RecordReader(data, what="dictionary state", key=key)
        state = cls(current=reader.varint(), appended_bytes=reader.varint(),
                    trained_at_bytes=reader.varint())
        reader.end()
        return state

    def due(self) -> bool:
        """Whether enough text arrived for a (new) dictionary: ``DICTIONARY_TRAIN_AT_BYTES``
        for the first, then ``DICTIONARY_RETRAIN_GROWTH`` times what the last training (or
        attempt) saw."""
        threshold = (self.trained_at_bytes * DICTIONARY_RETRAIN_GROWTH if self.trained_at_bytes
                     else DICTIONARY_TRAIN_AT_BYTES)
        return self.appended_bytes >= max(threshold, DICTIONARY_TRAIN_AT_BYTES)


def train_dictionary(texts: Iterable[bytes]) -> zstandard.ZstdCompressionDict | None:
    """A dictionary trained on pieces of ``texts`` (up to ``DICTIONARY_SAMPLE_BYTES``), or
    None if zstd finds too little to learn from."""
    pieces, total = [], 0
    for text in texts:
        for start in range(0, len(text), DICTIONARY_SAMPLE_PIECE_BYTES):
            piece = text[start : start + DICTIONARY_SAMPLE_PIECE_BYTES]
            pieces.append(piece)
            total += len(piece)
            if total >= DICTIONARY_SAMPLE_BYTES:
                break
        if total >= DICTIONARY_SAMPLE_BYTES:
            break
    try:
        return zstandard.train_dictionary(DICTIONARY_BYTES, pieces, k=1024, d=8, threads=1)
    except zstandard.ZstdError as error:
        logger.info("no zstd dictionary from %d sample bytes: %s", total, error)
        return None


class BlockPacker:
    """Cuts members into blocks whose frames fit ``budget_bytes``.

    The cut is decided before compressing, from the ratio the last frame reached; a frame
    that comes out too big gives its last members back and is compressed once more."""

    def __init__(
        self, dictionary: Dictionary | None, *, budget_bytes: int = BLOCK_FRAME_BUDGET_BYTES
    ) -> None:
        self.dictionary, self.budget_bytes = dictionary, budget_bytes
        self.ratio = INITIAL_RATIO_ESTIMATE

    def encode(self, members: list[Member]) -> bytes:
        return Block(members=members).encode(self.dictionary)

    def pack(self, members: list[Member], *, keep: int = 0) -> list[tuple[list[Member], bytes]]:
        """(members, stored value) per block, in order; the first ``keep`` members stay in
        the first block whatever its size (they are already stored there)."""
        out: list[tuple[list[Member], bytes]] = []
        pending = list(reversed(members))
        while pending:
            group: list[Member] = []
            raw = 0
            while pending:
                size = len(pending[-1][1])
                if group and len(group) >= keep and (raw + size) * self.ratio > (
                        self.budget_bytes):
                    break
                group.append(pending.pop())
                raw += size
            value = self.encode(group)
            self._learn(value, raw)
            for _ in range(PACK_RETRIES):
                if len(value) <= self.budget_bytes or len(group) <= max(1, keep):
                    break
                reached = len(value) / raw
                while len(group) > max(1, keep) and raw * reached > self.budget_bytes:
                    member = group.pop()
                    pending.append(member)
                    raw -= len(member[1])
                value = self.encode(group)
                self._learn(value, raw)
            out.append((group, value))
            keep = 0
        return out

    def _learn(self, value: bytes, raw: int) -> None:
        if raw:
            self.ratio = (self.ratio + len(value) / raw) / 2


class TextBlocks:
    """Reads and writes text blocks inside the caller's transaction."""

    def __init__(self, *, blocks_db: Any, stats_db: Any, dictionaries_db: Any) -> None:
        self._db, self._stats, self._dictionaries = blocks_db, stats_db, dictionaries_db
        # (collection prefix, id) -> (stored bytes, dictionary): checked against the stored
        # bytes on every use, so a dictionary from a transaction that aborted is never used
        self._loaded: dict[tuple[bytes, int], tuple[bytes, Dictionary]] = {}
        self._decoded = _DecodedBlocks()

    # ------------------------------------------------------------------------- reading

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
        dictionary_id, frame, format_2 = _split_value(key, raw)
        dictionary = self.dictionary(txn, prefix, dictionary_id, block_key=key)
        decoded = self._decoded.get(key, raw, dictionary)
        if decoded is None:
            decoded = Block.of_frame(key, frame, dictionary, format_2=format_2)
            self._decoded.put(key, raw, dictionary, decoded)
        if cache is not None:
            cache.put(key, decoded)
        return decoded

    def text(
        self, txn: lmdb.Transaction, prefix: bytes, ref: TextRef, cache: BlockCache | None = None
    ) -> str:
        """The text at ``ref``; ``StoreCorrupt`` if the slot is not there."""
        block = self.load(txn, prefix, ref.block, cache)
        if ref.slot >= len(block):
            raise corrupt("text block", prefix + U64.pack(ref.block), f"no slot {ref.slot}")
        raw = block.member(ref.slot)[1]
        try:
            return raw.decode("utf-8")
        except UnicodeDecodeError as error:
            raise corrupt("text block", prefix + U64.pack(ref.block), error) from error

    def dictionary(
        self, txn: lmdb.Transaction, prefix: bytes, dictionary_id: int, *, block_key: bytes = b""
    ) -> Dictionary | None:
        """The collection's dictionary ``dictionary_id`` (None for 0); ``StoreCorrupt``
        naming ``block_key`` if it is not there."""
        if dictionary_id == 0:
            return None
        key = prefix + U32.pack(dictionary_id)
        raw = txn.get(key, db=self._dictionaries)
        if raw is None:
            raise corrupt("text block", block_key or key,
                          f"its dictionary {dictionary_id} is not there")
        loaded = self._loaded.get((prefix, dictionary_id))
        if loaded is not None and loaded[0] == raw:
            return loaded[1]
        found = Dictionary(id=dictionary_id, zstd=zstandard.ZstdCompressionDict(raw))
        self._loaded[(prefix, dictionary_id)] = (raw, found)
        return found

    def dictionary_ids(self, txn: lmdb.Transaction, prefix: bytes) -> list[int]:
        """Ids of the collection's stored dictionaries, ascending."""
        return [U32.unpack(suffix)[0] for suffix, _ in scan_prefix(txn, self._dictionaries, prefix)
                if U32.unpack(suffix)[0] != _STATE_ID]

    def block_numbers(self, txn: lmdb.Transaction, prefix: bytes) -> Iterator[int]:
        for suffix, _ in scan_prefix(txn, self._stats, prefix):
            yield U64.unpack(suffix)[0]

    # ------------------------------------------------------------------------- writing

    def append(
        self,
        txn: lmdb.Transaction,
        prefix: bytes,
        stats: CollectionStats,
        items: list[Member],
    ) -> list[TextRef]:
        """Store texts (document id, UTF-8) in the newest block and new ones after it."""
        if not items:
            return []
        state = self._state(txn, prefix)
        state.appended_bytes += sum(len(text) for _, text in items)
        if state.due():
            self._train(txn, prefix, state, [text for _, text in items])
        self._put_state(txn, prefix, state)
        packer = BlockPacker(self.dictionary(txn, prefix, state.current))
        members: list[Member] = []
        block, live = stats.next_block - 1, 0
        key = prefix + U64.pack(block)
        raw_block = txn.get(key, db=self._db) if block >= 1 else None
        if raw_block is not None and len(raw_block) < BLOCK_FRAME_BUDGET_BYTES * (
                BLOCK_FULL_FRACTION):
            members = list(self.load(txn, prefix, block).members)
            live = self._block_stats(key, txn.get(key, db=self._stats))[1]
        refs: list[TextRef] = []
        for number, (group, value) in enumerate(packer.pack(members + items, keep=len(members))):
            kept = len(members) if number == 0 else 0
            if number > 0 or not members:
                block, stats.next_block = stats.next_block, stats.next_block + 1
                live = 0
            added = group[kept:]
            refs.extend(TextRef(block, slot) for slot in range(kept, len(group)))
            self._put(txn, prefix + U64.pack(block), value, group,
                      live + sum(len(text) for _, text in added))
        return refs

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
        packer: BlockPacker | None = None
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
                kept = self._live_members(txn, prefix, block, is_live)
                for slot, (doc_id, _) in enumerate(kept):
                    moved(doc_id, TextRef(block, slot))
                if packer is None:
                    packer = BlockPacker(self.dictionary(
                        txn, prefix, self._state(txn, prefix).current))
                text_bytes = sum(len(text) for _, text in kept)
                self._put(txn, key, packer.encode(kept), kept, text_bytes)
            else:
                self._put_stats(txn, key, held, live)

    def compact(
        self,
        txn: lmdb.Transaction,
        prefix: bytes,
        stats: CollectionStats,
        *,
        is_live: Callable[[str, TextRef], bool],
        moved: Callable[[str, TextRef], None],
        before_block: int,
    ) -> bool:
        """Rewrite, into new blocks at the end, the blocks with dead text, those on an
        older dictionary (training one first if the collection has none and enough text)
        and the part-filled ones, ``COMPACT_BLOCKS_PER_TRANSACTION`` at most; once none is
        left, delete the dictionaries no block uses. True when nothing is left to rewrite
        (call again in a new transaction until then: one transaction rewriting a large
        collection would outgrow LMDB's limit of dirty pages). Only blocks numbered below
        ``before_block`` (the collection's next block when the pass began) are considered, so
        a pass rewrites each block once: blocks that stay part-filled however they are packed
        (large, incompressible members) would otherwise be rewritten batch after batch."""
        state = self._state(txn, prefix)
        if state.current == 0:
            held_total = sum(self._block_stats(prefix + U64.pack(n), raw)[0]
                             for n, raw in self._all_stats(txn, prefix))
            state.appended_bytes = max(state.appended_bytes, held_total)
            if state.due():
                self._train(txn, prefix, state, [])
                self._put_state(txn, prefix, state)
        reasons = {number: reason for number, raw in self._all_stats(txn, prefix)
                   if number < before_block
                   and (reason := self._rewrite_reason(txn, prefix, number, raw, state.current))}
        if list(reasons.values()) == [_PART_FILLED]:  # one part-filled block: nothing to merge
            reasons = {}
        candidates = list(reasons)[:COMPACT_BLOCKS_PER_TRANSACTION]
        done = len(candidates) == len(reasons)
        packer = BlockPacker(self.dictionary(txn, prefix, state.current))
        pending: list[Member] = []
        pending_bytes = 0
        for position, number in enumerate(candidates):
            found = self._live_members(txn, prefix, number, is_live)
            pending += found
            pending_bytes += sum(len(text) for _, text in found)
            key = prefix + U64.pack(number)
            txn.delete(key, db=self._db)
            txn.delete(key, db=self._stats)
            last = position == len(candidates) - 1
            if last or pending_bytes >= COMPACT_PACK_BATCH_BYTES:
                groups = packer.pack(pending)
                if not last and groups:  # the last group may take members from the next blocks
                    pending = groups.pop()[0]
                    pending_bytes = sum(len(text) for _, text in pending)
                for group, value in groups:
                    block, stats.next_block = stats.next_block, stats.next_block + 1
                    for slot, (doc_id, _) in enumerate(group):
                        moved(doc_id, TextRef(block, slot))
                    self._put(txn, prefix + U64.pack(block), value, group,
                              sum(len(text) for _, text in group))
                if last:
                    pending = []
        if done:
            for dictionary_id in self.dictionary_ids(txn, prefix):
                if dictionary_id != state.current:
                    txn.delete(prefix + U32.pack(dictionary_id), db=self._dictionaries)
        return done

    def drop_collection(self, txn: lmdb.Transaction, prefix: bytes) -> None:
        delete_prefix(txn, self._db, prefix)
        delete_prefix(txn, self._stats, prefix)
        delete_prefix(txn, self._dictionaries, prefix)

    # ------------------------------------------------------------------------- helpers

    def _rewrite_reason(
        self, txn: lmdb.Transaction, prefix: bytes, number: int, raw_stats: bytes, current: int
    ) -> str | None:
        """Why compaction should rewrite the block, or None."""
        key = prefix + U64.pack(number)
        held, live = self._block_stats(key, raw_stats)
        if live < held * COMPACT_BELOW_LIVE_FRACTION:
            return _DEAD_TEXT
        raw = txn.get(key, db=self._db)
        if raw is None:
            raise corrupt("text block", key, "its stats are there but the block is not")
        if frame_dictionary_id(key, raw)[0] != current:
            return _OLD_DICTIONARY
        if len(raw) < BLOCK_FRAME_BUDGET_BYTES * BLOCK_FULL_FRACTION:
            return _PART_FILLED
        return None

    def _live_members(
        self, txn: lmdb.Transaction, prefix: bytes, block: int,
        is_live: Callable[[str, TextRef], bool],
    ) -> list[Member]:
        return [(doc_id, text)
                for slot, (doc_id, text) in enumerate(self.load(txn, prefix, block).members)
                if is_live(doc_id, TextRef(block, slot))]

    def _all_stats(self, txn: lmdb.Transaction, prefix: bytes) -> list[tuple[int, bytes]]:
        return [(U64.unpack(suffix)[0], raw)
                for suffix, raw in scan_prefix(txn, self._stats, prefix)]

    def _train(
        self, txn: lmdb.Transaction, prefix: bytes, state: _DictionaryState, fresh: list[bytes]
    ) -> None:
        """Train a dictionary on ``fresh`` texts and the newest blocks' and make it current;
        if zstd cannot, try again once the collection has grown as much once more."""
        state.trained_at_bytes = state.appended_bytes
        trained = train_dictionary(itertools.chain(fresh, self._newest_texts(txn, prefix)))
        if trained is None:
            return
        ids = self.dictionary_ids(txn, prefix)
        state.current = (ids[-1] if ids else 0) + 1
        txn.put(prefix + U32.pack(state.current), trained.as_bytes(), db=self._dictionaries)
        logger.info("trained text dictionary %d of collection %s on %d bytes of text",
                    state.current, prefix.hex(), state.appended_bytes)

    def _newest_texts(self, txn: lmdb.Transaction, prefix: bytes) -> Iterator[bytes]:
        """Member texts of the collection's blocks, newest block first."""
        cursor = txn.cursor(db=self._db)
        if not cursor.set_range(prefix + b"\xff" * 8):
            if not cursor.last():
                return
        elif not cursor.prev():
            return
        numbers = []
        while bytes(cursor.key()).startswith(prefix):
            numbers.append(U64.unpack(bytes(cursor.key())[len(prefix):])[0])
            if not cursor.prev():
                break
        for number in numbers:
            for _, text in self.load(txn, prefix, number).members:
                yield text

    def _state(self, txn: lmdb.Transaction, prefix: bytes) -> _DictionaryState:
        key = prefix + U32.pack(_STATE_ID)
        raw = txn.get(key, db=self._dictionaries)
        return _DictionaryState.decode(key, raw) if raw is not None else _DictionaryState()

    def _put_state(self, txn: lmdb.Transaction, prefix: bytes, state: _DictionaryState) -> None:
        txn.put(prefix + U32.pack(_STATE_ID), state.encode(), db=self._dictionaries)

    def _put(
        self, txn: lmdb.Transaction, key: bytes, value: bytes, members: list[Member], live: int
    ) -> None:
        txn.put(key, value, db=self._db)
        self._put_stats(txn, key, sum(len(text) for _, text in members), live)

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
