"""The version-1 store (``node/store.py`` at commit e045a51, the last before format 2), loaded
from git history: the baseline of ``bench_store.py`` and the writer of the migration tests.

Nothing is copied into the tree: the module's source is read with ``git show`` into a
temporary file and imported under its own name, so it is exactly the code that wrote
version-1 stores. It needs the repository's git history.
"""

from __future__ import annotations

import importlib.util
import subprocess
import sys
import tempfile
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from types import ModuleType

import numpy as np
from meshdex.node.records import CollectionState, DocumentInfo

V1_COMMIT = "e045a51"
V1_PATH = "node/store.py"
MODULE_NAME = "meshdex_store_v1"
REPO_ROOT = Path(__file__).resolve().parents[1]


def load_v1_store() -> ModuleType:
    """The version-1 store module (its ``Store`` writes format-1 stores)."""
    if MODULE_NAME in sys.modules:
        return sys.modules[MODULE_NAME]
    source = subprocess.run(
        ["git", "-C", str(REPO_ROOT), "show", f"{V1_COMMIT}:{V1_PATH}"],
        check=True, capture_output=True, text=True,
    ).stdout
    folder = Path(tempfile.mkdtemp(prefix="meshdex-store-v1-"))
    path = folder / f"{MODULE_NAME}.py"
    path.write_text(source, encoding="utf-8")
    spec = importlib.util.spec_from_file_location(MODULE_NAME, path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[MODULE_NAME] = module
    spec.loader.exec_module(module)
    return module


class V1SearchAdapter:
    """A version-1 store under the methods format 2 changed or added for builds and search
    (label lookups are per collection; ``passage_snapshot``, ``passage_holders``,
    ``passage_reads``), so today's index code can read it as version 1's did."""

    def __init__(self, store: object) -> None:
        self._store = store

    def __getattr__(self, name: str) -> object:
        return getattr(self._store, name)

    def passage_key_for_label(self, collection: str, label: int) -> bytes | None:
        return self._store.passage_key_for_label(label)  # type: ignore[attr-defined]

    def passage_snapshot(
        self, collection: str
    ) -> tuple[list[tuple[bytes, str]], CollectionState]:
        """Version 1 read these in two transactions (nothing writes meanwhile here)."""
        return list(self._store.iter_passages(collection)), self._store.state(collection)  # type: ignore[attr-defined]

    def passage_holders(self, collection: str, label: int) -> list[DocumentInfo]:
        """What version 1's search read per candidate: the key, the ids, each document."""
        key = self.passage_key_for_label(collection, label)
        ids = self._store.passage_documents(collection, key) if key else []  # type: ignore[attr-defined]
        documents = [self._store.get_document(collection, i) for i in ids]  # type: ignore[attr-defined]
        return [DocumentInfo(id=d.id, source=d.source, metadata=d.metadata, hlc=d.hlc)
                for d in documents]

    @contextmanager
    def passage_reads(self, collection: str) -> Iterator[V1PassageReads]:
        yield V1PassageReads(self, collection)


class V1PassageReads:
    """A search's reads as version 1 made them: each candidate check and each batch of texts
    in a transaction of its own (the texts read kept for the hits, as its search did)."""

    def __init__(self, store: V1SearchAdapter, collection: str) -> None:
        self._store, self._collection = store, collection
        self._texts: dict[int, str] = {}

    def holders(self, label: int) -> list[DocumentInfo]:
        return self._store.passage_holders(self._collection, label)

    def texts(self, labels: Sequence[int]) -> list[str]:
        texts = self._store.passage_texts(  # type: ignore[attr-defined]
            self._collection, np.array(labels, dtype=np.uint64))
        self._texts.update(zip(labels, texts, strict=True))
        return texts

    def text(self, label: int) -> str | None:
        return self._texts[label] if label in self._texts else self.texts([label])[0]
