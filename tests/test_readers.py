"""Readers for PDF, email, browser history, chat exports and Python code: one contract for all,
then what each reader promises about its own kind, each on a sample the test writes."""

from __future__ import annotations

import json
import mailbox
import sqlite3
from pathlib import Path

import pytest
from click.testing import CliRunner
from fakes import HashingEmbedder
from grpc_support import started_node
from meshdex.index.errors import InvalidArgument
from meshdex.node.cli.main import EXIT_PARTIAL_FAILURE, cli
from meshdex.node.indexing import IndexManager
from meshdex.node.ingest import FileTask, IngestItem, collect_files, ingest, read_task
from meshdex.node.readers import READERS
from meshdex.node.readers.pdf import PAGE_WITHOUT_TEXT
from meshdex.node.records import DocumentInput, SourceScope
from meshdex.node.service import Node
from meshdex.node.validation import check_document
from reader_samples import (
    EDITED_PYTHON,
    SAMPLES,
    email_message,
    make_chatgpt,
    make_history,
    make_mbox,
    make_pdf,
    make_python,
    make_slack,
    write_pdf,
)

KINDS = sorted(READERS)


@pytest.fixture
def node(tmp_path: Path):
    with Node.open(tmp_path / "data") as opened:
        yield opened


def read(kind: str, path: Path) -> list[IngestItem]:
    return list(read_task(FileTask(path=path, doc_id=path.name, relative=path.name,
                                   reader=READERS[kind])))


def docs_of(items: list[IngestItem]) -> dict[str, IngestItem]:
    return {item.doc.id: item for item in items if item.doc is not None}


# ---------------------------------------------------------------------------- contract


def test_every_reader_has_a_sample_and_a_malformed_variant() -> None:
    assert sorted(SAMPLES) == KINDS


@pytest.mark.parametrize("kind", KINDS)
def test_reader_turns_its_sample_into_valid_stable_documents(kind: str, tmp_path: Path) -> None:
    make, _, _ = SAMPLES[kind]
    path = make(tmp_path)
    first, second = read(kind, path), read(kind, path)
    docs = [item.doc for item in first if item.doc is not None]
    assert docs, f"{kind} read nothing from its sample"
    for doc in docs:
        check_document(doc)  # what the node would accept: id, text, JSON metadata
        assert doc.text.strip() and doc.metadata["type"]
        json.dumps(doc.metadata)
    assert len({doc.id for doc in docs}) == len(docs)
    assert [(i.doc.id, i.doc.text) for i in second if i.doc] == [(d.id, d.text) for d in docs]


@pytest.mark.parametrize("kind", KINDS)
def test_reader_reports_a_malformed_source_without_raising(kind: str, tmp_path: Path) -> None:
    _, make_broken, _ = SAMPLES[kind]
    items = read(kind, make_broken(tmp_path))
    assert [item.doc for item in items if item.doc] == []
    errors = [item for item in items if item.error]
    assert errors and all(item.origin.startswith(str(tmp_path)) for item in errors)


@pytest.mark.parametrize("kind", KINDS)
def test_a_bad_source_is_reported_and_the_good_one_still_goes_in(
    kind: str, node: Node, tmp_path: Path
) -> None:
    make, make_broken, found_by_walk = SAMPLES[kind]
    (tmp_path / "good").mkdir()
    (tmp_path / "bad").mkdir()
    good, bad = make(tmp_path / "good"), make_broken(tmp_path / "bad")
    if found_by_walk:
        tasks, decided = collect_files([tmp_path / "good", tmp_path / "bad"],
                                       readers=list(READERS.values()))
        assert {task.reader.kind for task in tasks} == {kind}
    else:
        tasks, decided = collect_files([good, bad], source=READERS[kind])
    items = [*decided, *(item for task in tasks for item in read_task(task))]
    summary = ingest(node, "default", items)
    expected = len(docs_of(read(kind, good)))
    assert summary.counts["added"] == expected
    assert node.get_collection("default").document_count == expected
    assert any(origin.startswith(str(bad)) for origin, _ in summary.errors)


# -------------------------------------------------------------------------------- PDF


def test_pdf_pages_are_documents_and_a_page_without_text_is_reported(tmp_path: Path) -> None:
    items = read("pdf", make_pdf(tmp_path))
    docs = docs_of(items)
    assert sorted(docs) == ["report.pdf#page=1", "report.pdf#page=3"]
    first = docs["report.pdf#page=1"].doc
    assert "zebrafish" in first.text
    assert (first.metadata["page"], first.metadata["pages"], first.metadata["title"]) == (
        1, 3, "Q3 Report")
    assert [(i.origin, i.skipped) for i in items if i.skipped] == [
        (f"{tmp_path / 'report.pdf'}#page=2", PAGE_WITHOUT_TEXT)]


@pytest.mark.parametrize(
    ("pages", "password", "message"),
    [
        (["secret plans"], "hunter2", "encrypted PDF: needs a password"),
        (["", ""], None, "no extractable text on any of 2 page(s)"),
    ],
    ids=["encrypted", "scan-only"],
)
def test_pdf_that_cannot_give_text_is_refused_with_the_reason(
    tmp_path: Path, pages: list[str], password: str | None, message: str
) -> None:
    path = write_pdf(tmp_path / "x.pdf", pages, password=password)
    [item] = read("pdf", path)
    assert item.error is not None and item.error.startswith(message)


def test_pdf_with_only_an_owner_password_is_read(tmp_path: Path) -> None:
    from pypdf import PdfReader, PdfWriter

    plain = write_pdf(tmp_path / "plain.pdf", ["restricted but readable"])
    writer = PdfWriter(clone_from=PdfReader(plain))
    writer.encrypt(user_password="", owner_password="owner", algorithm="AES-128")
    with (tmp_path / "owner.pdf").open("wb") as handle:
        writer.write(handle)
    [item] = read("pdf", tmp_path / "owner.pdf")
    assert item.doc is not None and "restricted but readable" in item.doc.text


# ------------------------------------------------------------------------------ email


def test_mbox_messages_carry_headers_thread_and_attachments(tmp_path: Path) -> None:
    items = read("email", make_mbox(tmp_path))
    docs = docs_of(items)
    assert sorted(docs) == ["mail:m1@example.org", "mail:m2@example.org"]
    assert [item.skipped for item in items if item.skipped] == ["duplicate message-id"]
    first, reply = docs["mail:m1@example.org"].doc, docs["mail:m2@example.org"].doc
    assert "noodle place" in first.text and "HTML twin" not in first.text  # plain preferred
    assert first.metadata["date"] == "2024-03-01T09:00:00Z"
    assert (first.metadata["from"], first.metadata["subject"]) == (
        "ann@example.org", "Lunch on Friday")
    assert reply.metadata["thread"] == first.metadata["thread"] == "m1@example.org"
    assert reply.metadata["attachments"] == ["menu.pdf"]
    assert "%PDF" not in reply.text  # listed, not inlined


def test_maildir_and_eml_copies_of_a_message_collapse_into_one_document(
    node: Node, tmp_path: Path
) -> None:
    maildir = mailbox.Maildir(tmp_path / "Mail", create=True)
    maildir.add(email_message(subject="Invoice", body="Please pay.", message_id="inv@x"))
    only_html = email_message(subject="News", body="", message_id="news@x")
    only_html.set_content("<h1>Spring</h1><p>Tulips are <i>out</i>.</p>", subtype="html")
    maildir.add(only_html)
    eml = tmp_path / "invoice.eml"
    eml.write_bytes(bytes(email_message(subject="Invoice", body="Please pay.",
                                        message_id="inv@x")))
    tasks, decided = collect_files([tmp_path / "Mail"], source=READERS["email"])
    items = [item for task in tasks for item in read_task(task)] + read("email", eml)
    docs = docs_of(items)
    assert docs["mail:news@x"].doc.text.endswith("Spring\n\nTulips are out.")
    summary = ingest(node, "mail", items)
    assert node.get_collection("mail").document_count == 2
    assert summary.errors == []


def test_a_message_without_headers_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "note.eml"
    path.write_text("just some words, no headers at all\n")
    [item] = read("email", path)
    assert item.error is not None and item.error.startswith("not an email message")


# ---------------------------------------------------------------------------- history


def test_chrome_history_is_one_document_per_visible_url_read_from_a_copy(tmp_path: Path) -> None:
    path = make_history(tmp_path)
    before = (path.read_bytes(), path.stat().st_mtime_ns)
    lock = sqlite3.connect(path)  # the browser is running and holds a write lock
    lock.execute("BEGIN EXCLUSIVE")
    try:
        docs = [item.doc for item in read("browser", path) if item.doc]
    finally:
        lock.rollback()
        lock.close()
    assert [doc.metadata["url"] for doc in docs] == [
        "https://docs.python.org/3/library/argparse.html", "https://news.example.org/"]
    argparse_doc = docs[0]
    assert argparse_doc.text == "argparse — Parser\nhttps://docs.python.org/3/library/argparse.html"
    assert (argparse_doc.metadata["visit_count"], argparse_doc.metadata["last_visit"],
            argparse_doc.metadata["browser"]) == (7, "2024-03-01T00:00:00Z", "chrome")
    assert (path.read_bytes(), path.stat().st_mtime_ns) == before


def test_firefox_places_are_read(tmp_path: Path) -> None:
    path = tmp_path / "places.sqlite"
    connection = sqlite3.connect(path)
    connection.executescript(
        "CREATE TABLE moz_places (id INTEGER PRIMARY KEY, url LONGVARCHAR, title LONGVARCHAR, "
        "visit_count INTEGER DEFAULT 0, hidden INTEGER DEFAULT 0 NOT NULL, "
        "last_visit_date INTEGER);"
        "INSERT INTO moz_places (url, title, visit_count, last_visit_date) VALUES "
        "('https://mozilla.org/', 'Mozilla', 3, 1709251200000000),"
        "('https://never-visited.example/', 'Bookmark only', 0, NULL);"
    )
    connection.commit()
    connection.close()
    [doc] = [item.doc for item in read("browser", path) if item.doc]
    assert (doc.metadata["browser"], doc.metadata["title"], doc.metadata["last_visit"]) == (
        "firefox", "Mozilla", "2024-03-01T00:00:00Z")


def test_a_sqlite_file_of_another_program_is_not_taken_for_history(tmp_path: Path) -> None:
    path = tmp_path / "History"
    connection = sqlite3.connect(path)
    connection.execute("CREATE TABLE notes (id INTEGER)")
    connection.close()
    [item] = read("browser", path)
    assert item.error is not None and item.error.startswith("not a browser history database")


# ------------------------------------------------------------------------------- chats


def test_chatgpt_conversation_is_the_shown_branch_without_system_turns(tmp_path: Path) -> None:
    items = read("chatgpt", make_chatgpt(tmp_path))
    [doc] = [item.doc for item in items if item.doc]
    assert doc.id == "conversations.json#c-1"
    assert doc.text == ("Cactus care\n\nuser: How do I repot a cactus?\n\n"
                        "assistant: Wear gloves and use gritty soil.")
    assert (doc.metadata["participants"], doc.metadata["created"], doc.metadata["messages"]) == (
        ["assistant", "user"], "2024-03-01T00:00:00Z", 2)
    assert [item.origin for item in items if item.error] == [
        f"{tmp_path / 'conversations.json'}:conversation 2"]


def test_slack_channel_day_orders_messages_and_names_people(tmp_path: Path) -> None:
    export = make_slack(tmp_path)
    items = read("slack", export)
    [doc] = [item.doc for item in items if item.doc]
    assert doc.id == "slack-export/general/2024-03-01"
    assert doc.text == "#general 2024-03-01\n\nAnn Lee: who broke the build?\nbob: deploy is done"
    assert (doc.metadata["channel"], doc.metadata["participants"]) == (
        "general", ["Ann Lee", "bob"])
    assert [item.origin for item in items if item.error] == [
        str(export / "random" / "2024-03-02.json")]


# -------------------------------------------------------------------------------- code


def test_python_is_split_at_functions_and_classes_with_symbols(tmp_path: Path) -> None:
    docs = docs_of(read("code", make_python(tmp_path)))
    assert sorted(docs) == ["tool.py", "tool.py#Config", "tool.py#parse_args"]
    parse_args = docs["tool.py#parse_args"].doc
    assert parse_args.text.startswith("def parse_args(argv=None):")
    assert (parse_args.metadata["symbol"], parse_args.metadata["kind"],
            parse_args.metadata["line_start"], parse_args.metadata["line_end"]) == (
        "parse_args", "function", 8, 11)
    config = docs["tool.py#Config"].doc
    assert config.text.startswith("@dataclass\nclass Config:")
    assert config.metadata["methods"] == ["load", "save"]
    module = docs["tool.py"].doc
    assert "import argparse" in module.text and "def " not in module.text


def test_filter_on_symbol_finds_only_that_function(node: Node, tmp_path: Path) -> None:
    embedder = HashingEmbedder()
    node.indexes = IndexManager(node.store, embedder_factory=lambda info: embedder)
    ingest(node, "code", read("code", make_python(tmp_path)))
    node.build("code")
    results = node.search("code", "parser arguments", top_k=5, filter="symbol=parse_args")
    assert [hit.document_id for hit in results.hits] == ["tool.py#parse_args"]


# --------------------------------------------------------------------------------- CLI


def test_dry_run_lists_what_would_be_read_and_changes_nothing(tmp_path: Path) -> None:
    folder = tmp_path / "stuff"
    folder.mkdir()
    make_pdf(folder)
    (folder / "notes.txt").write_text("plain notes")
    data = tmp_path / "data"
    result = CliRunner().invoke(cli, ["--data-dir", str(data), "add", str(folder), "--dry-run",
                                      "--json"])
    assert result.exit_code == 0, result.output
    listed = json.loads(result.output)
    assert [(entry["action"], entry.get("id")) for entry in listed] == [
        ("add", "stuff/notes.txt"), ("add", "stuff/report.pdf#page=1"),
        ("skip", None), ("add", "stuff/report.pdf#page=3")]
    assert not data.exists()


def test_add_with_source_reads_a_folder_source_and_reports_its_bad_day(tmp_path: Path) -> None:
    export = make_slack(tmp_path)
    data = tmp_path / "data"
    result = CliRunner().invoke(cli, ["--data-dir", str(data), "add", str(export),
                                      "--source", "slack", "-c", "team"])
    assert result.exit_code == EXIT_PARTIAL_FAILURE, result.output
    assert "team: added 1" in result.output
    assert "2024-03-02.json: invalid JSON" in result.output


# ------------------------------------------------------------------- re-reading a source


def live_ids(data: Path, collection: str) -> list[str]:
    with Node.open(data, readonly=True) as opened:
        return sorted(doc.id for doc in opened.store.iter_documents(collection))


def add(data_args: list[str], *paths: Path) -> str:
    result = CliRunner().invoke(cli, [*data_args, "add", *map(str, paths), "-c", "code"])
    assert result.exit_code == 0, result.output
    return result.output


def test_re_adding_an_edited_python_file_removes_the_symbols_it_no_longer_has(
    tmp_path: Path,
) -> None:
    data_args = ["--data-dir", str(tmp_path / "data")]
    path = make_python(tmp_path)
    (tmp_path / "toolbox.py").write_text("def keep_me():\n    return 1\n")
    add(data_args, path, tmp_path / "toolbox.py")
    assert live_ids(tmp_path / "data", "code") == [
        "tool.py", "tool.py#Config", "tool.py#parse_args", "toolbox.py#keep_me"]
    path.write_text(EDITED_PYTHON)
    output = add(data_args, path)
    assert "removed 2 no longer in their files" in output
    # toolbox.py was not read again and shares the "tool" prefix without the separator
    assert live_ids(tmp_path / "data", "code") == [
        "tool.py", "tool.py#parse_argv", "toolbox.py#keep_me"]


def test_a_pdf_that_lost_pages_loses_their_documents(tmp_path: Path) -> None:
    data_args = ["--data-dir", str(tmp_path / "data")]
    path = make_pdf(tmp_path)
    add(data_args, path)
    assert live_ids(tmp_path / "data", "code") == ["report.pdf#page=1", "report.pdf#page=3"]
    write_pdf(path, ["Quarterly report zebrafish, revised"])
    add(data_args, path)
    assert live_ids(tmp_path / "data", "code") == ["report.pdf#page=1"]


def test_a_re_read_that_fails_keeps_the_documents_the_file_had(tmp_path: Path) -> None:
    data_args = ["--data-dir", str(tmp_path / "data")]
    path = make_python(tmp_path)
    add(data_args, path)
    before = live_ids(tmp_path / "data", "code")
    path.write_text(EDITED_PYTHON + "\ndef broken(:\n    pass\n")
    result = CliRunner().invoke(cli, [*data_args, "add", str(path), "-c", "code"])
    assert result.exit_code == EXIT_PARTIAL_FAILURE, result.output
    assert "removed" not in result.output
    assert live_ids(tmp_path / "data", "code") == before


def test_messages_gone_from_a_mailbox_stay(tmp_path: Path) -> None:
    data_args = ["--data-dir", str(tmp_path / "data")]
    path = make_mbox(tmp_path)
    add(data_args, path)
    before = live_ids(tmp_path / "data", "code")
    box = mailbox.mbox(path)
    box.remove(next(iter(box.keys())))
    box.flush()
    add(data_args, path)
    assert live_ids(tmp_path / "data", "code") == before


def test_stale_documents_are_removed_through_a_remote_node_too(tmp_path: Path) -> None:
    path = make_python(tmp_path)
    with started_node(tmp_path / "served") as server:
        data_args = ["--node", server.address, "--token", server.tokens["write"]]
        add(data_args, path)
        path.write_text(EDITED_PYTHON)
        assert "removed 2 no longer in their files" in add(data_args, path)
        assert sorted(doc.id for doc in server.node.store.iter_documents("code")) == [
            "tool.py", "tool.py#parse_argv"]


def test_a_source_scope_touches_only_what_it_owns(node: Node) -> None:
    node.upsert_documents("c", [DocumentInput(id=doc_id, text=f"text of {doc_id}")
                                for doc_id in ("a.py", "a.py#f", "a.py#g", "a.pyc", "b.py#f")],
                          create_missing=True)
    report = node.delete_documents(
        "c", ["b.py#f"], sources=[SourceScope(owner_id="a.py", separator="#",
                                              keep=frozenset({"a.py#g"}))])
    assert sorted(report.deleted) == ["a.py", "a.py#f", "b.py#f"]
    assert sorted(doc.id for doc in node.store.iter_documents("c")) == ["a.py#g", "a.pyc"]
    with pytest.raises(InvalidArgument):
        node.delete_documents("c", [], sources=[SourceScope(owner_id="a.py", separator="",
                                                            keep=frozenset())])
