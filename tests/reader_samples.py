"""Small real samples of every source kind, written by the test itself (no binary fixtures).

Each ``make_*`` writes a valid sample under ``root`` and returns the path to give a reader;
each ``break_*`` writes a malformed variant of the same kind. A PDF is written with pypdf, an
mbox with the stdlib ``mailbox``, a history database with ``sqlite3`` in Chrome's schema.
"""

from __future__ import annotations

import json
import mailbox
import sqlite3
from email.message import EmailMessage
from pathlib import Path

from pypdf import PdfWriter
from pypdf.generic import DecodedStreamObject, DictionaryObject, NameObject

# Chrome stores times as microseconds since 1601-01-01.
CHROME_2024_03_01_US = (1_709_251_200 + 11_644_473_600) * 1_000_000


def write_pdf(path: Path, pages: list[str], *, title: str | None = None,
              password: str | None = None) -> Path:
    """A PDF with one line of Helvetica text per page ("" makes a page without text)."""
    writer = PdfWriter()
    font = writer._add_object(DictionaryObject({
        NameObject("/Type"): NameObject("/Font"),
        NameObject("/Subtype"): NameObject("/Type1"),
        NameObject("/BaseFont"): NameObject("/Helvetica"),
    }))
    for text in pages:
        page = writer.add_blank_page(width=612, height=792)
        if text:
            stream = DecodedStreamObject()
            stream.set_data(f"BT /F1 12 Tf 72 720 Td ({text}) Tj ET".encode("latin-1"))
            page[NameObject("/Contents")] = writer._add_object(stream)
            page[NameObject("/Resources")] = DictionaryObject({
                NameObject("/Font"): DictionaryObject({NameObject("/F1"): font}),
            })
    if title:
        writer.add_metadata({"/Title": title})
    if password:
        writer.encrypt(password, algorithm="AES-128")
    with path.open("wb") as handle:
        writer.write(handle)
    return path


def make_pdf(root: Path) -> Path:
    return write_pdf(root / "report.pdf", ["Quarterly report zebrafish", "",
                                           "Appendix on lanterns"], title="Q3 Report")


def break_pdf(root: Path) -> Path:
    path = root / "broken.pdf"
    path.write_bytes(b"%PDF-1.7\nthis is not really a pdf\n%%EOF\n")
    return path


def email_message(*, subject: str, body: str, message_id: str, sender: str = "ann@example.org",
                  html: str | None = None, references: str | None = None,
                  attachment: tuple[str, bytes] | None = None) -> EmailMessage:
    message = EmailMessage()
    message["From"] = sender
    message["To"] = "bob@example.org"
    message["Subject"] = subject
    message["Date"] = "Fri, 01 Mar 2024 10:00:00 +0100"
    message["Message-ID"] = f"<{message_id}>"
    if references:
        message["References"] = f"<{references}>"
    message.set_content(body)
    if html is not None:
        message.add_alternative(html, subtype="html")
    if attachment is not None:
        name, data = attachment
        message.add_attachment(data, maintype="application", subtype="octet-stream",
                               filename=name)
    return message


def make_mbox(root: Path) -> Path:
    path = root / "inbox.mbox"
    box = mailbox.mbox(path)
    box.add(email_message(subject="Lunch on Friday", body="Shall we try the noodle place?",
                          message_id="m1@example.org",
                          html="<p>HTML twin of the <b>noodle</b> mail</p>"))
    box.add(email_message(subject="Re: Lunch on Friday", body="Yes, at noon.",
                          message_id="m2@example.org", references="m1@example.org",
                          attachment=("menu.pdf", b"%PDF-1.4 menu")))
    box.add(email_message(subject="Lunch on Friday", body="Shall we try the noodle place?",
                          message_id="m1@example.org"))  # the same message again
    box.flush()
    box.close()
    return path


def make_maildir(root: Path) -> Path:
    path = root / "Maildir"
    box = mailbox.Maildir(path, create=True)
    box.add(email_message(subject="Invoice", body="Please pay by Friday.", message_id="inv@x"))
    box.close()
    return path


def break_mbox(root: Path) -> Path:
    path = root / "broken.mbox"
    path.write_text("this file never was a mailbox\n")
    return path


def make_history(root: Path) -> Path:
    path = root / "History"
    connection = sqlite3.connect(path)
    connection.executescript(
        "CREATE TABLE urls (id INTEGER PRIMARY KEY, url LONGVARCHAR, title LONGVARCHAR, "
        "visit_count INTEGER DEFAULT 0 NOT NULL, typed_count INTEGER DEFAULT 0 NOT NULL, "
        "last_visit_time INTEGER NOT NULL, hidden INTEGER DEFAULT 0 NOT NULL);"
    )
    connection.executemany(
        "INSERT INTO urls (url, title, visit_count, last_visit_time, hidden) VALUES (?,?,?,?,?)",
        [("https://docs.python.org/3/library/argparse.html", "argparse — Parser", 7,
          CHROME_2024_03_01_US, 0),
         ("https://example.org/hidden", "Hidden", 1, CHROME_2024_03_01_US, 1),
         ("https://news.example.org/", "", 2, CHROME_2024_03_01_US, 0)],
    )
    connection.commit()
    connection.close()
    return path


def break_history(root: Path) -> Path:
    path = root / "places.sqlite"
    path.write_bytes(b"SQLite format 2\0 but truncated garbage" * 4)
    return path


def make_chatgpt(root: Path) -> Path:
    path = root / "conversations.json"
    mapping = {
        "root": {"id": "root", "message": None, "parent": None, "children": ["s"]},
        "s": {"id": "s", "parent": "root", "children": ["u"],
              "message": {"author": {"role": "system"}, "content": {"parts": ["be kind"]}}},
        "u": {"id": "u", "parent": "s", "children": ["a"],
              "message": {"author": {"role": "user"},
                          "content": {"parts": ["How do I repot a cactus?"]}}},
        "a": {"id": "a", "parent": "u", "children": [],
              "message": {"author": {"role": "assistant"},
                          "content": {"parts": ["Wear gloves and use gritty soil."]}}},
    }
    conversations = [
        {"id": "c-1", "title": "Cactus care", "create_time": 1_709_251_200.5,
         "update_time": 1_709_254_800, "current_node": "a", "mapping": mapping},
        {"id": "c-2", "title": "Broken", "mapping": "not a mapping"},
    ]
    path.write_text(json.dumps(conversations))
    return path


def break_chatgpt(root: Path) -> Path:
    folder = root / "bad-export"
    folder.mkdir()
    path = folder / "conversations.json"
    path.write_text('[{"id": "c-1", "mapping": {')
    return path


def make_slack(root: Path) -> Path:
    export = root / "slack-export"
    (export / "general").mkdir(parents=True)
    (export / "random").mkdir()
    (export / "users.json").write_text(json.dumps([
        {"id": "U1", "name": "ann", "profile": {"real_name": "Ann Lee"}},
        {"id": "U2", "name": "bob"},
    ]))
    (export / "general" / "2024-03-01.json").write_text(json.dumps([
        {"type": "message", "user": "U2", "text": "deploy is done", "ts": "1709290000.000200"},
        {"type": "message", "user": "U1", "text": "who broke the build?",
         "ts": "1709280000.000100"},
    ]))
    (export / "random" / "2024-03-02.json").write_text("{not json")
    return export


def break_slack(root: Path) -> Path:
    path = root / "slack.zip"
    path.write_bytes(b"PK\3\4 zipped, not unzipped")
    return path


PYTHON_SAMPLE = '''"""A tiny command-line tool."""

import argparse

VERSION = "1.0"


def parse_args(argv=None):
    parser = argparse.ArgumentParser()
    parser.add_argument("--verbose", action="store_true")
    return parser.parse_args(argv)


@dataclass
class Config:
    name: str

    def load(self):
        return self.name

    def save(self):
        pass
'''


EDITED_PYTHON = PYTHON_SAMPLE.replace("def parse_args(argv=None):", "def parse_argv(argv=None):")
EDITED_PYTHON = EDITED_PYTHON[:EDITED_PYTHON.index("@dataclass")]  # class Config is gone


def make_python(root: Path) -> Path:
    path = root / "tool.py"
    path.write_text(PYTHON_SAMPLE)
    return path


def break_python(root: Path) -> Path:
    path = root / "broken.py"
    path.write_text("def ok():\n    return 1\n\ndef broken(:\n    pass\n")
    return path


# kind -> (valid sample, malformed variant, whether walking a folder finds the sample)
SAMPLES = {
    "pdf": (make_pdf, break_pdf, True),
    "email": (make_mbox, break_mbox, True),
    "browser": (make_history, break_history, True),
    "chatgpt": (make_chatgpt, break_chatgpt, True),
    "slack": (make_slack, break_slack, False),
    "code": (make_python, break_python, True),
}
