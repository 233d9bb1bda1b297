"""Email (stdlib ``mailbox`` / ``email``): mbox files, Maildir folders and ``.eml`` files.

One document per message, its id taken from the Message-ID (``mail:<id>``) so the same message
met twice — in two mailboxes, or twice in one — is one document. The text is the subject and
addresses followed by the plain-text body (HTML converted to text only when there is no plain
part); attachments are listed in metadata, never inlined. Metadata: from, to, cc, date (ISO
8601 UTC), subject, message_id, thread (the first message-id of References, else
In-Reply-To, else its own), attachments.
"""

from __future__ import annotations

import email.errors
import email.policy
import email.utils
import mailbox
from collections.abc import Iterator
from datetime import UTC
from email.message import EmailMessage
from email.parser import BytesParser
from pathlib import Path
from typing import Any

from meshdex.node.ingest import SKIPPED_TOO_LARGE, FileTask, IngestItem, extract_html
from meshdex.node.readers._common import (
    SourceTooLarge,
    os_error_reason,
    read_bounded,
    short_hash,
)
from meshdex.node.records import DocumentInput

EML_SUFFIX = ".eml"
MBOX_SUFFIX = ".mbox"
MBOX_FROM_LINE = b"From "
MAILDIR_FOLDERS = ("cur", "new")
MAIL_ID_PREFIX = "mail:"
DUPLICATE_MESSAGE = "duplicate message-id"
# What the email package raises on a message it cannot make sense of (bad charsets, broken
# headers, impossible dates); each means "this one message is bad", never a crash.
MESSAGE_MALFORMED_ERRORS: tuple[type[Exception], ...] = (
    email.errors.MessageError,
    LookupError,
    ValueError,
    TypeError,
    AttributeError,
    IndexError,
)

_PARSER = BytesParser(policy=email.policy.default)


class MailReader:
    """Messages of an mbox file, a Maildir folder or one ``.eml`` file."""

    kind = "email"
    sub_document_separator = None  # a message id names it in every mailbox
    keeps_dropped = True  # a message moved to another folder is still the same message

    def claims(self, path: Path) -> bool:
        return path.suffix.lower() in (EML_SUFFIX, MBOX_SUFFIX)

    def read(self, task: FileTask) -> Iterator[IngestItem]:
        seen: set[str] = set()
        for origin, raw in _raw_messages(task.path):
            if isinstance(raw, IngestItem):
                yield raw
                continue
            item = _message_item(origin, raw, task.relative)
            if item.doc is not None:
                if item.doc.id in seen:
                    item = IngestItem(origin=origin, skipped=DUPLICATE_MESSAGE)
                else:
                    seen.add(item.doc.id)
            yield item


def _raw_messages(path: Path) -> Iterator[tuple[str, bytes | IngestItem]]:
    """``(origin, message bytes)`` for each message, or ``(origin, error item)``."""
    origin = str(path)
    if path.is_dir():
        if not all((path / folder).is_dir() for folder in MAILDIR_FOLDERS):
            yield origin, IngestItem(origin=origin, error="not a Maildir (no cur/ and new/)")
            return
        yield from _mailbox_messages(mailbox.Maildir(path, factory=None, create=False), origin)
        return
    try:
        with path.open("rb") as handle:
            head = handle.read(len(MBOX_FROM_LINE))
    except OSError as error:
        yield origin, IngestItem(origin=origin, error=os_error_reason(error))
        return
    if path.suffix.lower() == MBOX_SUFFIX or (head == MBOX_FROM_LINE
                                               and path.suffix.lower() != EML_SUFFIX):
        if head != MBOX_FROM_LINE:
            yield origin, IngestItem(origin=origin, error="not an mbox file (it must start with "
                                     "a 'From ' line)")
            return
        yield from _mailbox_messages(mailbox.mbox(path, factory=None, create=False), origin)
        return
    try:
        yield origin, read_bounded(path)
    except SourceTooLarge:
        yield origin, IngestItem(origin=origin, skipped=SKIPPED_TOO_LARGE)
    except OSError as error:
        yield origin, IngestItem(origin=origin, error=os_error_reason(error))


def _mailbox_messages(
    box: mailbox.Mailbox, origin: str
) -> Iterator[tuple[str, bytes | IngestItem]]:
    try:
        keys = sorted(box.keys(), key=str)
    except OSError as error:
        yield origin, IngestItem(origin=origin, error=os_error_reason(error))
        return
    for number, key in enumerate(keys, start=1):
        where = f"{origin}:message {number}"
        try:
            yield where, box.get_bytes(key)
        except (OSError, KeyError) as error:
            yield where, IngestItem(origin=where, error=f"cannot read message: {error}")


def _message_item(origin: str, raw: bytes, relative: str) -> IngestItem:
    try:
        message = _PARSER.parsebytes(raw)
        if not isinstance(message, EmailMessage) or not any(
            message.get(name) for name in ("from", "to", "subject", "date", "message-id")
        ):
            return IngestItem(origin=origin, error="not an email message (no From, To, "
                              "Subject, Date or Message-ID header)")
        return _document(origin, message, raw, relative)
    except MESSAGE_MALFORMED_ERRORS as error:
        return IngestItem(origin=origin, error=f"malformed message: {error}")


def _document(origin: str, message: EmailMessage, raw: bytes, relative: str) -> IngestItem:
    message_id = _bare_id(str(message.get("message-id", "")))
    metadata: dict[str, Any] = {"path": relative, "type": "email"}
    for field in ("from", "to", "cc", "subject"):
        value = message.get(field)
        if value:
            metadata[field] = str(value)
    if message_id:
        metadata["message_id"] = message_id
    date = _iso_date(str(message.get("date", "")))
    if date:
        metadata["date"] = date
    thread = _thread(message) or message_id
    if thread:
        metadata["thread"] = thread
    attachments = [part.get_filename() or part.get_content_type()
                   for part in message.iter_attachments()]
    if attachments:
        metadata["attachments"] = attachments
    heading = "\n".join(f"{name.title()}: {metadata[name]}"
                        for name in ("subject", "from", "to") if name in metadata)
    text = f"{heading}\n\n{_body(message)}".strip()
    doc_id = MAIL_ID_PREFIX + (message_id or f"sha256:{short_hash(raw.decode('latin-1'))}")
    return IngestItem(origin=origin, doc=DocumentInput(id=doc_id, text=text, metadata=metadata,
                                                       source=origin))


def _bare_id(value: str) -> str:
    return value.strip().strip("<>").strip()


def _thread(message: EmailMessage) -> str | None:
    references = str(message.get("references", "")).split()
    if references:
        return _bare_id(references[0])
    reply_to = _bare_id(str(message.get("in-reply-to", "")))
    return reply_to or None


def _iso_date(value: str) -> str | None:
    if not value.strip():
        return None
    try:
        parsed = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError, IndexError):
        return None
    if parsed.tzinfo is None:
        parsed = parsed.replace(tzinfo=UTC)
    return parsed.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def _body(message: EmailMessage) -> str:
    part = message.get_body(preferencelist=("plain", "html"))
    if part is None:
        return ""
    try:
        content = part.get_content()
    except LookupError:  # an unknown charset: keep what decodes
        payload = part.get_payload(decode=True) or b""
        content = payload.decode("utf-8", errors="replace")
    if not isinstance(content, str):
        return ""
    if part.get_content_subtype() == "html":
        return extract_html(content)[0]
    return content.strip()
