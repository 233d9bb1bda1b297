"""A BM25 keyword index over the same passages as the semantic one (tantivy).

Semantic search misses what people often type verbatim: an exact name, an error code, an
identifier. This index answers those, and ``meshdex.index.fusion`` merges its ranking with the
semantic one.

Why tantivy and not bm25s (``bench/results/keyword.md``, Python docs, 11,657 passages): the
index is 19% of the raw text against 70% for bm25s' stored score matrix (the issue's bound is
30%), builds in 1.2 s against 1.7 s, and answers as fast (0.23 ms p50 both); tantivy also
deletes and adds documents in place, which a delta build needs (1% of passages: 0.03 s).
Tokens are runs of word characters, lower-cased, so an
identifier (``parse_args``, ``EINVAL``, ``0x1f``) stays one token; only term frequencies are
kept (no positions), which is all BM25 needs.

The index is a directory written once: ``build`` and ``updated`` write a new directory under
a temporary name, commit (tantivy fsyncs its files) and rename it into place, so a reader never
sees a half-written index.
"""

from __future__ import annotations

import os
import re
import shutil
import uuid
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path

import tantivy
from meshdex.index.fsync import fsync_path

TOKEN_PATTERN = r"\w+"
TEXT_FIELD = "text"
LABEL_FIELD = "label"
TOKENIZER_NAME = "meshdex_words"
WRITER_HEAP_BYTES = 64 * 1024 * 1024
FIRST_FETCH_FACTOR = 4  # fetch this many times k before filtering, doubling while short
_TOKEN = re.compile(TOKEN_PATTERN)


@dataclass(frozen=True, kw_only=True)
class KeywordHit:
    """One keyword match: the passage label and its BM25 score (higher is better)."""

    label: int
    score: float


def query_terms(text: str) -> list[str]:
    """The distinct terms of a query, in order, tokenised as the index tokenises passages."""
    return list(dict.fromkeys(token.lower() for token in _TOKEN.findall(text)))


def _schema() -> tantivy.Schema:
    builder = tantivy.SchemaBuilder()
    builder.add_text_field(TEXT_FIELD, stored=False, tokenizer_name=TOKENIZER_NAME,
                           index_option="freq")
    builder.add_unsigned_field(LABEL_FIELD, stored=False, indexed=True, fast=True)
    return builder.build()


def _open_tantivy(path: Path | None) -> tantivy.Index:
    index = tantivy.Index(_schema(), path=str(path) if path is not None else None)
    analyzer = (tantivy.TextAnalyzerBuilder(tantivy.Tokenizer.regex(TOKEN_PATTERN))
                .filter(tantivy.Filter.lowercase()).build())
    index.register_tokenizer(TOKENIZER_NAME, analyzer)
    return index


class KeywordIndex:
    """BM25 over passages, keyed by the same uint64 labels as the semantic index."""

    def __init__(self, index: tantivy.Index, path: Path | None) -> None:
        self._index = index
        self.path = path
        self._schema = index.schema
        index.reload()
        self._searcher = index.searcher()

    @classmethod
    def build(cls, path: Path | None, texts: Sequence[str], labels: Iterable[int]) -> KeywordIndex:
        """A new index of ``texts`` at ``path`` (must not exist), or in memory for None."""
        return cls._written(path, None, added=zip(texts, labels, strict=True), removed=())

    @classmethod
    def open(cls, path: Path) -> KeywordIndex:
        """The index written at ``path``; ``OSError``/``ValueError`` if it is not one."""
        if not (path / "meta.json").is_file():
            raise FileNotFoundError(f"no keyword index at {path}")
        return cls(_open_tantivy(path), path)

    def updated(
        self,
        path: Path | None,
        *,
        added: Iterable[tuple[str, int]],
        removed: Iterable[int],
    ) -> KeywordIndex:
        """A copy of this index at ``path`` with ``removed`` labels gone and ``added`` in.

        This index is left as it was (searches holding it carry on).
        """
        if self.path is None:
            raise ValueError("an in-memory keyword index cannot be copied; rebuild it")
        return self._written(path, self.path, added=added, removed=removed)

    @classmethod
    def _written(
        cls,
        path: Path | None,
        start_from: Path | None,
        *,
        added: Iterable[tuple[str, int]],
        removed: Iterable[int],
    ) -> KeywordIndex:
        scratch = None
        if path is not None:
            scratch = path.with_name(f"{path.name}.tmp-{uuid.uuid4().hex}")
            if start_from is not None:
                shutil.copytree(start_from, scratch)
            else:
                scratch.mkdir(parents=True)
        try:
            index = _open_tantivy(scratch)
            writer = index.writer(heap_size=WRITER_HEAP_BYTES, num_threads=1)
            schema = index.schema
            for label in removed:
                # by query: tantivy-py's delete_documents_by_term ignores unsigned fields
                writer.delete_documents_by_query(
                    tantivy.Query.term_query(schema, LABEL_FIELD, int(label)))
            for text, label in added:
                document = tantivy.Document()
                document.add_text(TEXT_FIELD, text)
                document.add_unsigned(LABEL_FIELD, int(label))
                writer.add_document(document)
            writer.commit()
            writer.wait_merging_threads()
            if path is None or scratch is None:
                return cls(index, None)
            del writer, index  # release tantivy's handles before the directory moves
            os.rename(scratch, path)
            fsync_path(path.parent)
        except BaseException:
            if scratch is not None:
                shutil.rmtree(scratch, ignore_errors=True)
            raise
        return cls.open(path)

    def __len__(self) -> int:
        return int(self._searcher.num_docs)

    def search(
        self, query: str, k: int, *, accept: Callable[[int], bool] | None = None
    ) -> list[KeywordHit]:
        """The ``k`` best passages by BM25 that ``accept`` lets through, best first.

        A query with no word characters matches nothing (an empty list, not an error).
        """
        terms = query_terms(query)
        total = len(self)
        if not terms or k < 1 or total == 0:  # tantivy panics on a search limit of 0
            return []
        clauses = [(tantivy.Occur.Should, tantivy.Query.term_query(self._schema, TEXT_FIELD, term))
                   for term in terms]
        tantivy_query = tantivy.Query.boolean_query(clauses)
        limit = min(total, k * FIRST_FETCH_FACTOR)
        while True:
            found = self._searcher.search(tantivy_query, limit, count=False).hits
            labels = self._searcher.fast_field_values(LABEL_FIELD, [addr for _, addr in found])
            hits = [KeywordHit(label=int(label), score=float(score))
                    for (score, _), label in zip(found, labels, strict=True)
                    if label is not None and (accept is None or accept(int(label)))]
            if len(hits) >= k or len(found) < limit or limit >= total:
                return hits[:k]
            limit = min(total, limit * 2)


