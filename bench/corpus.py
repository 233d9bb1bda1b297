"""The benchmark corpus: Python 3.11's own documentation, cut into passages, with two query sets.

Source: the reStructuredText sources in Debian's ``python3.11-doc`` package
(``usr/share/doc/python3.11/html/_sources/**/*.rst.txt``), fetched once with
``apt-get download`` and unpacked under ``bench/.cache`` (gitignored). Passages are cut with
the product's own ``chunk_text`` and default ``ChunkingParams`` and deduplicated by passage
key, exactly as the store would hold them.

Query sets:
- ``faq``: every section heading of ``faq/*.rst.txt`` that is a question (176 questions);
- ``glossary``: "What is <term>?" for every term of ``glossary.rst.txt`` that has a letter in it.
"""

from __future__ import annotations

import hashlib
import logging
import re
import subprocess
import tempfile
from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path

import numpy as np
from meshdex.index.chunking import ChunkingParams, chunk_text, passage_key, passage_label

log = logging.getLogger(__name__)

CACHE_DIR = Path(__file__).resolve().parent / ".cache"
DEB_PACKAGE = "python3.11-doc"
SOURCES_SUBPATH = Path("usr/share/doc/python3.11/html/_sources")

# An rST section underline: one punctuation character repeated (=====, -----, ~~~~~, ...).
_UNDERLINE = re.compile(r"([=\-~^\"'`#*+.:_])\1+")
_GLOSSARY_TERM = re.compile(r"^ {3}(\S.*)$")
# Inline markup to strip from headings and terms: :role:`text`, ``code``, *emphasis*.
_ROLE = re.compile(r":[\w:-]+:`([^`]*)`")
_LITERAL = re.compile(r"``([^`]*)``")
_EMPHASIS = re.compile(r"\*+([^*]+)\*+")


@dataclass(frozen=True, kw_only=True)
class Passage:
    """One passage as the store keeps it: content key, index label, text, first source file."""

    key: bytes
    label: int
    text: str
    source: str


@dataclass(frozen=True, kw_only=True)
class Corpus:
    """Passages in a fixed order (files sorted by path, passages in file order) and query sets."""

    passages: list[Passage]
    query_sets: dict[str, list[str]]
    chunking: ChunkingParams
    files: int
    digest: str = field(default="")

    @cached_property
    def texts(self) -> list[str]:
        return [passage.text for passage in self.passages]

    @cached_property
    def labels(self) -> np.ndarray:
        return np.array([passage.label for passage in self.passages], dtype=np.uint64)

    @cached_property
    def raw_passage_bytes(self) -> int:
        """UTF-8 bytes of all passage texts: the denominator of every index-size ratio."""
        return sum(len(text.encode()) for text in self.texts)

    @cached_property
    def _position_of_label(self) -> dict[int, int]:
        return {passage.label: position for position, passage in enumerate(self.passages)}

    def positions(self, labels: np.ndarray) -> np.ndarray:
        """Corpus positions (the ids of the ground truth) of index labels, in the same order."""
        return np.array([self._position_of_label[int(label)] for label in labels], dtype=np.int64)

    def __len__(self) -> int:
        return len(self.passages)


def ensure_sources(cache_dir: Path = CACHE_DIR) -> Path:
    """The unpacked ``_sources`` folder, downloading and unpacking the .deb on first use."""
    sources = cache_dir / "python3.11-doc" / SOURCES_SUBPATH
    if sources.is_dir():
        return sources
    cache_dir.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=cache_dir) as scratch:
        log.info("downloading %s with apt-get", DEB_PACKAGE)
        subprocess.run(["apt-get", "download", DEB_PACKAGE], cwd=scratch, check=True,
                       capture_output=True)
        (deb,) = Path(scratch).glob(f"{DEB_PACKAGE}_*.deb")
        unpacked = Path(scratch) / "unpacked"
        subprocess.run(["dpkg-deb", "-x", str(deb), str(unpacked)], check=True)
        unpacked.rename(cache_dir / "python3.11-doc")
    return sources


def _plain(text: str) -> str:
    """A heading or term without rST inline markup."""
    for pattern in (_ROLE, _LITERAL, _EMPHASIS):
        text = pattern.sub(r"\1", text)
    return " ".join(text.split())


def faq_questions(sources: Path) -> list[str]:
    """Every FAQ section heading that asks a question, in file and line order."""
    questions: list[str] = []
    for path in sorted((sources / "faq").glob("*.rst.txt")):
        lines = path.read_text(encoding="utf-8").splitlines()
        for title, underline in zip(lines, lines[1:], strict=False):
            title, underline = title.strip(), underline.strip()
            if (title.endswith("?") and _UNDERLINE.fullmatch(underline)
                    and len(underline) >= len(title)):
                questions.append(_plain(title))
    return list(dict.fromkeys(questions))


def glossary_queries(sources: Path) -> list[str]:
    """"What is <term>?" for each glossary term containing a letter (skips ``>>>``, ``...``)."""
    lines = (sources / "glossary.rst.txt").read_text(encoding="utf-8").splitlines()
    terms = [_plain(match.group(1)) for line in lines if (match := _GLOSSARY_TERM.match(line))]
    return list(dict.fromkeys(f"What is {term}?" for term in terms
                              if re.search(r"[A-Za-z]", term)))


def corpus_digest(passages: list[Passage], chunking: ChunkingParams) -> str:
    """SHA-256 over the chunking params and the ordered passage keys: names a corpus exactly."""
    digest = hashlib.sha256(repr(sorted(chunking.to_dict().items())).encode())
    for passage in passages:
        digest.update(passage.key)
    return digest.hexdigest()


def load_corpus(cache_dir: Path = CACHE_DIR, chunking: ChunkingParams | None = None) -> Corpus:
    """Read every ``*.rst.txt`` source, chunk it, and deduplicate passages by key."""
    chunking = chunking or ChunkingParams()
    sources = ensure_sources(cache_dir)
    paths = sorted(sources.rglob("*.rst.txt"), key=lambda path: path.as_posix())
    passages: dict[bytes, Passage] = {}
    for path in paths:
        source = path.relative_to(sources).as_posix()
        for text in chunk_text(path.read_text(encoding="utf-8"), chunking):
            key = passage_key(text)
            if key not in passages:
                passages[key] = Passage(key=key, label=passage_label(key), text=text,
                                        source=source)
    ordered = list(passages.values())
    if len({passage.label for passage in ordered}) != len(ordered):
        raise RuntimeError("two passages share a 64-bit label; the id map would be ambiguous")
    return Corpus(
        passages=ordered,
        query_sets={"faq": faq_questions(sources), "glossary": glossary_queries(sources)},
        chunking=chunking,
        files=len(paths),
        digest=corpus_digest(ordered, chunking),
    )


def main() -> None:
    """Print the corpus's size and a few queries of each set."""
    corpus = load_corpus()
    print(f"{corpus.files} files, {len(corpus)} passages, "
          f"{corpus.raw_passage_bytes / 1e6:.1f} MB of passage text, digest {corpus.digest[:16]}")
    for name, queries in corpus.query_sets.items():
        print(f"query set {name}: {len(queries)} queries, e.g. {queries[:3]}")


if __name__ == "__main__":
    main()
