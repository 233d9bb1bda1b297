"""A BM25 keyword index over the same passages as the semantic one (tantivy).

Semantic search misses what people often type verbatim: an exact name, an error code, an
identifier. This index answers those, and ``meshdex.index.fusion`` merges its ranking with the
semantic one.

Why tantivy and not bm25s (``bench/results/keyword.md``, Python docs, 11,657 passages): the
index is 13% of the raw text against 70% for bm25s' stored score matrix (the issue's bound is
30%), builds about as fast (1.8 s against 1.7 s) and answers in 0.17 ms p50 (bm25s: 0.08 ms);
tantivy also deletes and adds documents in place, which a delta build needs. Three fields; the
two text ones index which passages hold a term and nothing more (``index_option="basic"``: BM25
then counts a term once per passage). Term frequencies made the index 30% larger for nothing
measurable (format 3, Python docs, exact fp32 semantic side): 2.51 MB against 1.93 MB; hybrid
hit@3 0.925 / 0.976 / 0.939 (FAQ, identifiers, held-out identifiers) with them, 0.920 / 0.976 /
0.959 without; in passages of a few hundred characters a term rarely recurs.

- ``text``: runs of word characters, lower-cased, so ``parse_args``, ``EINVAL`` and ``0x1f``
  stay one token; every query searches it;
- ``defines``: the names the passage defines (``meshdex.index.identifiers``), whole and in
  parts; only identifier queries search it, boosted, so the passage defining ``copyfileobj``
  outranks the ones that mention it (identifier queries, hit@3 of the defining passage: 0.29
  without it, 0.98 with it, ``bench/results/keyword.md``);
- ``label``: the passage's uint64 label (as in the semantic index), a fast field (a column,
  read for each hit) and not indexed. Indexed, every passage added a term of its own for
  deletes to find it by: 23% of the index on the docs cut into ~500-byte passages (26,441:
  2.65 MB, 0.24x the text, against 2.05 MB, 0.19x; Python docs 1.93 MB against 1.63 MB) for
  the same hit@3. Without it a delete finds a label by a range of one value, which scans the
  column (tantivy-py refuses ``term_query`` and ``term_set_query`` on a field not indexed):
  at 26,441 passages 0.14 ms per removed label against 0.006 ms by term, so removing 1% takes
  0.07 s (was 0.015 s) and 25% 0.95 s (was 0.04 s; a fresh build: 1.8 s), and the cost grows
  with removed labels x passages, so past ``REBUILD_REMOVED_LABELS``
  (``meshdex.node.keyword_indexes``) a delta is a rebuild; one boolean query of 500 ranges
  scans as often and took as long (``bench/results/keyword_labels.md``, load 2.5). A delta's
  added passages still cost more than its deletes (Python docs, 1% replaced: 0.19 s).

Looked at and left as they are (same 26,441 passages): the document store, 107 KB though no
field is stored (4 B per passage; tantivy-py has no docstore setting, this build of tantivy has
no zstd, and uncompressed 1 MiB blocks, set in ``meta.json``, are larger: 132 KB); the
``defines`` fieldnorms, 26 KB (tantivy-py has no switch for them, and BM25 uses them); the
label column, 212 KB (a random 64-bit hash per passage does not compress; sorting the index by
label left it the same size).

Compound identifiers whole (``os.path.join`` as one token) were measured too and left out: they
favour the passages that quote the full dotted name (release notes) over the definition, which
names only ``join``: hit@3 fell from 0.29 to 0.22.

The index is a directory written once: ``build`` and ``updated`` write a new directory under
a temporary name, commit (tantivy fsyncs its files) and rename it into place, so a reader never
sees a half-written index.
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
import uuid
import weakref
from collections.abc import Callable, Iterable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import tantivy
from meshdex.index.errors import FailedPrecondition
from meshdex.index.fsync import fsync_path
from meshdex.index.identifiers import (
    WORD_PATTERN,
    defined_names,
    query_code_terms,
    words,
)

# Bumped whenever the schema or the tokens change: an index of another format is rebuilt.
# 4: the label is a fast field only, no longer indexed.
KEYWORD_FORMAT_VERSION = 4
TEXT_FIELD = "text"
DEFINES_FIELD = "defines"
LABEL_FIELD = "label"
WORDS_TOKENIZER = "meshdex_words"
TOKENS_TOKENIZER = "meshdex_tokens"  # the defines field arrives tokenised, space-separated
# Chosen on the development identifier queries (bench/bench_keyword.py): a defining passage
# must outrank the many that only mention a name, whose word matches add up.
DEFINES_BOOST = 4.0
WRITER_HEAP_BYTES = 64 * 1024 * 1024
FIRST_FETCH_FACTOR = 4  # fetch this many times k before filtering, doubling while short


@dataclass(frozen=True, kw_only=True)
class KeywordHit:
    """One keyword match: the passage label and its BM25 score (higher is better)."""

    label: int
    score: float


def query_terms(text: str) -> list[str]:
    """The distinct terms of a query, in order, tokenised as the index tokenises passages."""
    return list(dict.fromkeys(words(text)))


class KeywordIndexFailed(FailedPrecondition):
    """tantivy could not open, write or search a keyword index (damaged, wrong format, or a
    bug in tantivy); the index is derived data, so rebuilding it from the passages fixes it."""

    def __init__(self, message: str, *, op: str, path: Path | None) -> None:
        super().__init__(message, op=op, path=path,
                         hint="remove the keyword index folder: the next keyword or hybrid "
                              "search rebuilds it from the stored passages")


def _is_tantivy_panic(error: BaseException) -> bool:
    # pyo3's PanicException derives from BaseException and cannot be imported by name.
    return type(error).__name__ == "PanicException" and type(error).__module__ == "pyo3_runtime"


@contextmanager
def tantivy_errors(op: str, path: Path | None) -> Iterator[None]:
    """Turn what tantivy raises (``ValueError``, ``OSError``, a Rust panic) into
    ``KeywordIndexFailed``, so no dependency exception (least of all a ``BaseException``)
    passes the edge; ``OSError`` from our own file handling is left alone by the callers."""
    try:
        yield
    except (ValueError, OSError) as error:
        raise KeywordIndexFailed(f"keyword index {op} failed: {error}", op=op,
                                 path=path) from error
    except BaseException as error:
        if not _is_tantivy_panic(error):
            raise
        raise KeywordIndexFailed(f"keyword index {op} failed inside tantivy: {error}", op=op,
                                 path=path) from error


def schema(*, label_indexed: bool = False) -> tantivy.Schema:
    """The index's schema; ``label_indexed`` gives format 3's (the benchmark's baseline)."""
    builder = tantivy.SchemaBuilder()
    builder.add_text_field(TEXT_FIELD, stored=False, tokenizer_name=WORDS_TOKENIZER,
                           index_option="basic")
    builder.add_text_field(DEFINES_FIELD, stored=False, tokenizer_name=TOKENS_TOKENIZER,
                           index_option="basic")
    builder.add_unsigned_field(LABEL_FIELD, stored=False, indexed=label_indexed, fast=True)
    return builder.build()


def _open_tantivy(path: Path | None) -> tantivy.Index:
    return with_tokenizers(tantivy.Index(schema(), path=str(path) if path is not None else None))


def with_tokenizers(index: tantivy.Index) -> tantivy.Index:
    """``index`` with the tokenizers the schema names registered (tantivy keeps only their
    names on disk, so every opening registers them)."""
    index.register_tokenizer(WORDS_TOKENIZER, tantivy.TextAnalyzerBuilder(
        tantivy.Tokenizer.regex(WORD_PATTERN)).filter(tantivy.Filter.lowercase()).build())
    index.register_tokenizer(TOKENS_TOKENIZER, tantivy.TextAnalyzerBuilder(
        tantivy.Tokenizer.whitespace()).build())
    return index


def passage_document(text: str, label: int) -> tantivy.Document:
    """The tantivy document of one passage: its words, the names it defines, its label."""
    document = tantivy.Document()
    document.add_text(TEXT_FIELD, text)
    document.add_text(DEFINES_FIELD, " ".join(defined_names(text)))
    document.add_unsigned(LABEL_FIELD, int(label))
    return document


def _label_query(schema: tantivy.Schema, label: int) -> tantivy.Query:
    """The documents of ``label``: a range of one value, the only query tantivy-py answers on a
    field that is fast but not indexed (``term_query`` and ``term_set_query`` refuse it)."""
    return tantivy.Query.range_query(schema, LABEL_FIELD, tantivy.FieldType.Unsigned, label, label)


def deleted_documents(path: Path) -> tuple[int, int]:
    """(documents, of which deleted) in the index at ``path``, from tantivy's ``meta.json``:
    a deleted document keeps its postings until its segment is merged. (0, 0) if unreadable."""
    try:
        meta = json.loads((path / "meta.json").read_text(encoding="utf-8"))
        segments = meta["segments"]
        total = sum(int(segment["max_doc"]) for segment in segments)
        deleted = sum(int((segment.get("deletes") or {}).get("num_deleted_docs", 0))
                      for segment in segments)
    except (OSError, ValueError, KeyError, TypeError, AttributeError):
        return 0, 0
    return total, deleted


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
        """The index written at ``path``; ``FileNotFoundError`` if there is none,
        ``KeywordIndexFailed`` if tantivy cannot read what is there."""
        if not (path / "meta.json").is_file():
            raise FileNotFoundError(f"no keyword index at {path}")
        with tantivy_errors("open", path):
            return cls(_open_tantivy(path), path)

    @classmethod
    def open_copy(cls, path: Path) -> KeywordIndex:
        """The index at ``path`` opened from a private temporary copy, removed when the index
        is collected: tantivy takes a lock file to read, which a read-only data directory
        cannot hold, and copying is much cheaper than indexing every passage again."""
        scratch = Path(tempfile.mkdtemp(prefix="meshdex-keyword-"))
        copy = scratch / path.name
        try:
            shutil.copytree(path, copy)
            index = cls.open(copy)
        except BaseException:
            shutil.rmtree(scratch, ignore_errors=True)
            raise
        weakref.finalize(index, shutil.rmtree, scratch, True)
        return index

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
            with tantivy_errors("write", path):
                index = _open_tantivy(scratch)
                writer = index.writer(heap_size=WRITER_HEAP_BYTES, num_threads=1)
                schema = index.schema
                for label in removed:
                    writer.delete_documents_by_query(_label_query(schema, int(label)))
                for text, label in added:
                    writer.add_document(passage_document(text, label))
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
        self, query: str, k: int, *, accept: Callable[[int], bool] | None = None,
        identifier_aware: bool = True,
    ) -> list[KeywordHit]:
        """The ``k`` best passages by BM25 that ``accept`` lets through, best first.

        A query with no word characters matches nothing (an empty list, not an error).
        ``identifier_aware=False`` leaves the defines field out (words only), which is how the
        benchmark measures what it adds.
        """
        terms = query_terms(query)
        total = len(self)
        if not terms or k < 1 or total == 0:  # tantivy panics on a search limit of 0
            return []
        tantivy_query = self._query(terms, query_code_terms(query) if identifier_aware else [])
        limit = min(total, k * FIRST_FETCH_FACTOR)
        while True:
            with tantivy_errors("search", self.path):
                found = self._searcher.search(tantivy_query, limit, count=False).hits
                labels = self._searcher.fast_field_values(LABEL_FIELD,
                                                          [addr for _, addr in found])
            hits = [KeywordHit(label=int(label), score=float(score))
                    for (score, _), label in zip(found, labels, strict=True)
                    if label is not None and (accept is None or accept(int(label)))]
            if len(hits) >= k or len(found) < limit or limit >= total:
                return hits[:k]
            limit = min(total, limit * 2)

    def _query(self, terms: list[str], code_terms: list[str]) -> tantivy.Query:
        """Any of the words; an identifier query's names also among the defined ones, boosted."""
        def term(field: str, value: str) -> tantivy.Query:
            return tantivy.Query.term_query(self._schema, field, value)

        clauses = [(tantivy.Occur.Should, term(TEXT_FIELD, value)) for value in terms]
        clauses += [(tantivy.Occur.Should,
                     tantivy.Query.boost_query(term(DEFINES_FIELD, value), DEFINES_BOOST))
                    for value in code_terms]
        return tantivy.Query.boolean_query(clauses)
