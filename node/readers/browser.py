"""Browser history: Chrome/Chromium ``History`` and Firefox ``places.sqlite`` databases.

A running browser holds its database locked and keeps recent writes in a ``-wal`` file, so the
database (and its WAL, if any) is copied to a private temporary folder and only the copy is
opened (read-write, so SQLite can fold the WAL into it; the original is never touched).
One document per URL: its title and address as text; title, url, visit_count and last_visit
(ISO 8601 UTC) as metadata. Page text is not fetched: nothing leaves the device.
"""

from __future__ import annotations

import shutil
import sqlite3
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from meshdex.node.ingest import MAX_FILE_BYTES, SKIPPED_TOO_LARGE, FileTask, IngestItem
from meshdex.node.readers._common import iso_utc, os_error_reason, short_hash
from meshdex.node.records import DocumentInput

CHROME_HISTORY_NAME = "History"
FIREFOX_PLACES_NAME = "places.sqlite"
SQLITE_SIDE_FILE_SUFFIXES = ("-wal", "-journal")
# Chrome counts microseconds since 1601-01-01 (the Windows epoch); Firefox since 1970.
CHROME_EPOCH_OFFSET_S = 11_644_473_600
MICROSECONDS_PER_S = 1_000_000


@dataclass(frozen=True, kw_only=True)
class _Schema:
    browser: str
    table: str
    query: str  # url, title, visit count, last visit in microseconds
    epoch_offset_s: int


_SCHEMAS = (
    _Schema(browser="chrome", table="urls", epoch_offset_s=CHROME_EPOCH_OFFSET_S,
            query="SELECT url, title, visit_count, last_visit_time FROM urls "
                  "WHERE hidden = 0 ORDER BY id"),
    _Schema(browser="firefox", table="moz_places", epoch_offset_s=0,
            query="SELECT url, title, visit_count, last_visit_date FROM moz_places "
                  "WHERE hidden = 0 AND visit_count > 0 ORDER BY id"),
)


class BrowserHistoryReader:
    """Visited URLs of a Chrome or Firefox history database."""

    kind = "browser"
    sub_document_separator = "#"
    keeps_dropped = True  # browsers expire old history: what was indexed stays

    def claims(self, path: Path) -> bool:
        return path.name in (CHROME_HISTORY_NAME, FIREFOX_PLACES_NAME)

    def read(self, task: FileTask) -> Iterator[IngestItem]:
        origin = str(task.path)
        try:
            if task.path.stat().st_size > MAX_FILE_BYTES:
                yield IngestItem(origin=origin, skipped=SKIPPED_TOO_LARGE)
                return
            with tempfile.TemporaryDirectory(prefix="meshdex-history-") as scratch:
                copy = _copy_database(task.path, Path(scratch))
                rows, schema = _history_rows(copy)
        except OSError as error:
            yield IngestItem(origin=origin, error=os_error_reason(error))
            return
        except sqlite3.DatabaseError as error:
            yield IngestItem(origin=origin, error=f"not a readable history database: {error}")
            return
        if schema is None:
            yield IngestItem(origin=origin, error="not a browser history database (no Chrome "
                             "'urls' or Firefox 'moz_places' table)")
            return
        for url, title, visits, last_visit_us in rows:
            where = f"{origin}:{url}"
            if not isinstance(url, str) or not url:
                yield IngestItem(origin=where, error="history row without a URL")
                continue
            title = title if isinstance(title, str) and title.strip() else None
            metadata: dict[str, object] = {
                "path": task.relative, "type": "browser-history", "browser": schema.browser,
                "url": url, "visit_count": int(visits or 0),
            }
            if title:
                metadata["title"] = title
            if isinstance(last_visit_us, int) and last_visit_us > 0:
                seconds = last_visit_us / MICROSECONDS_PER_S - schema.epoch_offset_s
                if seconds > 0:
                    metadata["last_visit"] = iso_utc(seconds)
            text = f"{title}\n{url}" if title else url
            doc = DocumentInput(id=f"{task.doc_id}#{short_hash(url)}", text=text,
                                metadata=metadata, source=url)
            yield IngestItem(origin=where, doc=doc)


def _copy_database(path: Path, scratch: Path) -> Path:
    copy = scratch / path.name
    shutil.copyfile(path, copy)
    for suffix in SQLITE_SIDE_FILE_SUFFIXES:
        side = path.with_name(path.name + suffix)
        if side.is_file():
            shutil.copyfile(side, scratch / side.name)
    return copy


def _history_rows(copy: Path) -> tuple[list[tuple[object, ...]], _Schema | None]:
    connection = sqlite3.connect(copy)
    try:
        tables = {name for (name,) in connection.execute(
            "SELECT name FROM sqlite_master WHERE type = 'table'")}
        for schema in _SCHEMAS:
            if schema.table in tables:
                return connection.execute(schema.query).fetchall(), schema
        return [], None
    finally:
        connection.close()
