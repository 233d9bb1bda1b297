"""PDF files (``pypdf``): one document per page with text, page numbers in metadata.

A page without extractable text (a scan) is counted as a skip, and a PDF with no text at all
is an error, so an OCR-less scan never disappears silently. Encrypted PDFs that need a
password are refused: meshdex has nowhere safe to take the password from.
"""

from __future__ import annotations

import io
from collections.abc import Iterator
from pathlib import Path

from meshdex.node.ingest import SKIPPED_TOO_LARGE, FileTask, IngestItem
from meshdex.node.readers._common import SourceTooLarge, os_error_reason, read_bounded
from meshdex.node.records import DocumentInput

PDF_SUFFIX = ".pdf"
PAGE_WITHOUT_TEXT = "pdf page without text (scanned?)"
# pypdf signals a malformed file with its own errors and, deep in the parser, with plain
# Python ones; every one of them means "this file cannot be read" (``PdfNotReadable``), never
# a crash.
PARSER_ERRORS: tuple[type[Exception], ...] = (
    ValueError,
    KeyError,
    TypeError,
    AttributeError,
    IndexError,
    RecursionError,
)


class PdfReader:
    """Text per page of a PDF file."""

    kind = "pdf"
    sub_document_separator = "#"
    keeps_dropped = False

    def claims(self, path: Path) -> bool:
        return path.suffix.lower() == PDF_SUFFIX

    def read(self, task: FileTask) -> Iterator[IngestItem]:
        origin = str(task.path)
        try:
            data = read_bounded(task.path)
        except SourceTooLarge:
            yield IngestItem(origin=origin, skipped=SKIPPED_TOO_LARGE)
            return
        except OSError as error:
            yield IngestItem(origin=origin, error=os_error_reason(error))
            return
        try:
            pages = _page_texts(data)
        except _Encrypted:
            yield IngestItem(origin=origin, error="encrypted PDF: needs a password; decrypt it "
                             "first (e.g. qpdf --decrypt) and add the copy")
            return
        except PdfNotReadable as error:
            yield IngestItem(origin=origin, error=f"not a readable PDF: {error}")
            return
        title, texts = pages
        if not any(text.strip() for text in texts):
            yield IngestItem(origin=origin, error=f"no extractable text on any of {len(texts)} "
                             "page(s) (a scan? run OCR first)")
            return
        for number, text in enumerate(texts, start=1):
            page_origin = f"{origin}#page={number}"
            if not text.strip():
                yield IngestItem(origin=page_origin, skipped=PAGE_WITHOUT_TEXT)
                continue
            metadata: dict[str, object] = {
                "path": task.relative, "type": "pdf", "page": number, "pages": len(texts),
            }
            if title:
                metadata["title"] = title
            doc = DocumentInput(id=f"{task.doc_id}#page={number}", text=text,
                                metadata=metadata, source=origin)
            yield IngestItem(origin=page_origin, doc=doc)


class _Encrypted(Exception):
    pass


class PdfNotReadable(Exception):
    """A malformed file, whatever pypdf raised for it (pypdf is imported only when a PDF is
    read: it took ~0.1 s of every command's start)."""


def _page_texts(data: bytes) -> tuple[str | None, list[str]]:
    import pypdf
    from pypdf.errors import PyPdfError

    try:
        reader = pypdf.PdfReader(io.BytesIO(data))
        # An owner-password-only PDF (print/copy restrictions) opens with the empty user
        # password.
        if reader.is_encrypted and reader.decrypt("") == pypdf.PasswordType.NOT_DECRYPTED:
            raise _Encrypted
        texts = [page.extract_text() or "" for page in reader.pages]
        info = reader.metadata
        title = (info.title or "").strip() if info is not None else ""
    except (PyPdfError, *PARSER_ERRORS) as error:
        raise PdfNotReadable(str(error)) from error
    return title or None, texts
