"""The document store of one device: collections, documents, passages and the change log in
LMDB, everything on disk smaller than the text it holds.

One LMDB environment per data directory (``DATA_DIR/store``). Each part is a module with one
job and its own sub-databases (layouts in each module's docstring)::

    env          the environment: opening, transactions, map growth, prefix scans
    codec        varints, packed stamps, ``StoreCorrupt`` naming the record's key
    devices      device ids interned as small numbers
    collections  collection configuration (compact JSON) and counters
    blocks       document texts, stored once, zstd-compressed in small blocks of
                 neighbours with a dictionary trained on the collection
    documents    binary document records; passages as spans of the text
    passages     passage index and label map: label -> documents holding the passage
    passage_reads  a search's reads of candidates and texts, from one snapshot
    session      one write transaction's seq, stamps, counters, watermarks
    changelog    the change log, LWW merge of remote writes, peer cursors, conflicts
    swap         crash-safe replacement of the store directory
    migration    version-1 stores migrated in place
    store        the ``Store`` facade

``meta`` holds the format version (3), this device's id, the last seq, the clock, and the
counters for collection ids and device indexes.
"""

from meshdex.node.store.documents import content_hash
from meshdex.node.store.env import STORE_FORMAT_VERSION
from meshdex.node.store.store import CompactionReport, Store

__all__ = ["STORE_FORMAT_VERSION", "CompactionReport", "Store", "content_hash"]
