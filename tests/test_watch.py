"""``meshdex watch``: real files in a temp folder, real watchdog events, real LMDB and model.

The collection must converge to the folder's state (asserted document for document) after
creates, edits, renames, deletes and a burst of 200 writes, re-embedding only what changed
(counted on the real model's ``texts_embedded``), and after ``kill -9`` mid-burst a restart
must converge too. Every kind of source ``meshdex add`` reads, watch must read into the same
documents.
"""

from __future__ import annotations

import logging
import mailbox
import os
import re
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest
from click.testing import CliRunner
from meshdex.index.errors import InvalidArgument, MeshdexError
from meshdex.node.auth import TokenStore
from meshdex.node.cli.main import EXIT_PARTIAL_FAILURE, cli
from meshdex.node.client import MeshdexClient
from meshdex.node.config import load_config
from meshdex.node.service import Node
from meshdex.node.watch import FolderSync, SyncReport, WatchedFolder, Watcher, watch_entries
from reader_samples import (
    EDITED_PYTHON,
    email_message,
    make_chatgpt,
    make_history,
    make_maildir,
    make_mbox,
    make_pdf,
    make_python,
    make_slack,
)

pytestmark = pytest.mark.model

CONVERGE_TIMEOUT_S = 60.0


def folder_state(folder: Path, ignored: tuple[str, ...] = ()) -> dict[str, str]:
    """What the collection should hold: id -> text for every readable .md/.txt file."""
    state = {}
    for path in sorted(folder.rglob("*")):
        relative = path.relative_to(folder).as_posix()
        if (path.is_file() and path.suffix in (".md", ".txt")
                and not any(part.startswith(".") for part in path.relative_to(folder).parts)
                and not relative.startswith(ignored)):
            data = path.read_bytes()
            if b"\0" not in data:
                state[f"{folder.name}/{relative}"] = data.decode()
    return state


def collection_state(node: Node, collection: str = "notes") -> dict[str, str]:
    if not node.store.has_collection(collection):
        return {}
    return {doc.id: doc.text for doc in node.store.iter_documents(collection)}


def wait_until(condition, timeout_s: float = CONVERGE_TIMEOUT_S, what: str = "") -> None:
    deadline = time.monotonic() + timeout_s
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.1)


class Running:
    """An in-process watcher on ``folder`` and the passes it has made."""

    def __init__(self, node: Node, folder: Path, **options) -> None:
        self.node, self.folder = node, folder
        self.passes: list[SyncReport] = []
        self.watcher = Watcher(FolderSync(node, "notes", [WatchedFolder.of(folder)]),
                               on_pass=self.passes.append, **options)
        self.watcher.start()

    def converged(self) -> bool:
        """The documents equal the folder and the pass that made them so has finished (its
        build included)."""
        if self.watcher.failure is not None:
            raise self.watcher.failure
        return (collection_state(self.node) == folder_state(self.folder, ("drafts/",))
                and self.watcher.idle)

    def top_hit(self, query: str) -> tuple[str, str]:
        [hit] = self.node.search("notes", query, top_k=1).hits
        return hit.document_id, hit.passage

    def wait(self, what: str) -> None:
        wait_until(self.converged, what=what)


@pytest.fixture
def folder(tmp_path: Path) -> Path:
    notes = tmp_path / "notes"
    (notes / "sub").mkdir(parents=True)
    (notes / "a.md").write_text("Apples are crisp and sweet in autumn.")
    (notes / "b.txt").write_text("Bananas ripen faster in a paper bag.")
    (notes / "sub" / "c.md").write_text("Cherries need a cold winter to fruit well.")
    (notes / ".gitignore").write_text("drafts/\n")
    (notes / "drafts").mkdir()
    (notes / "drafts" / "secret.md").write_text("An unfinished draft that must stay out.")
    return notes


def test_collection_follows_creates_edits_renames_deletes_and_a_burst(
        tmp_path: Path, folder: Path, collection_embedder, caplog) -> None:
    caplog.set_level(logging.WARNING, logger="meshdex.node.watch")
    with Node.open(tmp_path / "data") as node:
        running = Running(node, folder, debounce_s=0.3)
        try:
            running.wait("the first catch-up")
            assert "notes/drafts/secret.md" not in collection_state(node)

            (folder / "d.md").write_text("Dates are sweet fruit of the date palm.")
            running.wait("a created file")

            embedded = collection_embedder.texts_embedded
            (folder / "a.md").write_text("Apples keep for months in a cool cellar.")
            running.wait("an edited file")
            assert collection_embedder.texts_embedded - embedded == 1  # that file's one passage
            assert running.top_hit("apples in a cool cellar") == (
                "notes/a.md", "Apples keep for months in a cool cellar.")

            (folder / "b.txt").rename(folder / "sub" / "bananas.txt")
            running.wait("a renamed file")
            assert "notes/b.txt" not in collection_state(node)
            assert running.top_hit("bananas in a paper bag")[0] == "notes/sub/bananas.txt"

            (folder / "sub" / "c.md").unlink()
            (folder / "image.txt").write_bytes(b"\x89PNG\0\0binary")
            running.wait("a deleted file and a binary one")
            assert sum("image.txt" in message and "binary" in message
                       for message in caplog.messages) == 1

            passes_before = len(running.passes)
            (folder / "burst").mkdir()
            for number in range(200):
                (folder / "burst" / f"n{number:03}.md").write_text(
                    f"Burst note number {number} about topic {number % 7}.")
            running.wait("a burst of 200 writes")
            assert len(running.passes) - passes_before <= 5  # debounced, not one per write
            assert running.top_hit("Burst note number 123")[0] == "notes/burst/n123.md"

            embedded = collection_embedder.texts_embedded
            for number in range(0, 200, 4):  # rewritten with the same text: events, no change
                path = folder / "burst" / f"n{number:03}.md"
                path.write_text(path.read_text())
            (folder / "burst" / "n001.md").write_text("Burst note one, now about walnuts.")
            running.wait("50 files rewritten unchanged and one edit")
            assert collection_embedder.texts_embedded - embedded == 1
            assert sum("image.txt" in message for message in caplog.messages) == 1
        finally:
            running.watcher.stop()


def test_once_catches_up_and_a_second_run_reads_nothing_new(
        tmp_path: Path, folder: Path, collection_embedder) -> None:
    data = tmp_path / "data"

    def once():
        result = CliRunner().invoke(cli, ["--data-dir", str(data), "watch", str(folder), "-c",
                                          "notes", "--once"])
        assert result.exit_code == 0, result.output
        return result.output

    assert "notes: +3 ~0 -0 (0 unchanged)" in once()
    embedded = collection_embedder.texts_embedded
    second = once()
    assert "notes: +0 ~0 -0 (3 unchanged)" in second and "index" not in second
    assert collection_embedder.texts_embedded == embedded
    (folder / "a.md").unlink()
    assert "notes: +0 ~0 -1 (2 unchanged); index" in once()
    with Node.open(data, readonly=True) as node:
        assert collection_state(node) == folder_state(folder, ("drafts/",))


def test_once_builds_an_index_a_stopped_pass_left_unbuilt(
        tmp_path: Path, folder: Path, collection_embedder) -> None:
    """Documents written without their build (a pass stopped by Ctrl-C between the two, or
    --no-build): the next --once finds every file unchanged and still builds."""
    data = tmp_path / "data"

    def once(*extra: str) -> str:
        result = CliRunner().invoke(cli, ["--data-dir", str(data), "watch", str(folder), "-c",
                                          "notes", "--once", *extra])
        assert result.exit_code == 0, result.output
        return result.output

    assert "index" not in once("--no-build")
    caught_up = once()
    assert "notes: +0 ~0 -0 (3 unchanged); index" in caught_up, caught_up
    with Node.open(data, readonly=True) as node:
        [summary] = node.indexes.summaries()
        assert (summary.passages, summary.stale) == (3, False)
    assert "index" not in once()  # built and unchanged: nothing to build


IGNORES = [
    # extra patterns, files written -> ids kept
    ((), ["x.md", "drafts/y.md", ".hidden.md", "z.txt"], {"x.md", "z.txt"}),
    (("*.txt",), ["x.md", "z.txt", "deep/w.txt"], {"x.md"}),
    (("/top.md", "!keep/"), ["top.md", "keep/top.md", "other/top.md"],
     {"keep/top.md", "other/top.md"}),
    (("build/", "*.md", "!important.md"), ["build/a.txt", "a.md", "important.md", "b.txt"],
     {"important.md", "b.txt"}),
]


@pytest.mark.parametrize(("patterns", "files", "kept"), IGNORES)
def test_gitignore_style_patterns_are_honoured(tmp_path: Path, patterns, files, kept) -> None:
    root = tmp_path / "f"
    root.mkdir()
    (root / ".gitignore").write_text("drafts/\n")
    for name in files:
        (root / name).parent.mkdir(parents=True, exist_ok=True)
        (root / name).write_text(f"text of {name}")
    with Node.open(tmp_path / "data") as node:
        sync = FolderSync(node, "notes", [WatchedFolder.of(root, ignore=patterns)], build=False)
        sync.catch_up()
        assert set(collection_state(node)) == {f"f/{name}" for name in kept}


def test_restart_after_kill_9_mid_burst_converges(tmp_path: Path, folder: Path) -> None:
    data = tmp_path / "data"
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "XDG_CONFIG_HOME": str(tmp_path / "cfg")}
    command = [sys.executable, "-m", "meshdex", "--data-dir", str(data), "watch", str(folder),
               "-c", "notes", "--debounce-s", "0.1"]

    def start() -> tuple[subprocess.Popen, list[str]]:
        process = subprocess.Popen(command, stderr=subprocess.PIPE, text=True, env=env)
        lines: list[str] = []
        for line in process.stderr:
            lines.append(line)
            if line.startswith("watching "):
                break
        else:
            raise AssertionError("watch exited:\n" + "".join(lines))
        threading.Thread(target=lambda: lines.extend(process.stderr), daemon=True).start()
        return process, lines

    process, lines = start()
    caught_up = len(lines)  # the catch-up's line and "watching" are before this
    burst = folder / "burst"
    burst.mkdir()
    for number in range(100):
        (burst / f"n{number:03}.md").write_text(f"First half note {number}.")
    wait_until(lambda: any(line.startswith("notes: +") and "+0 " not in line
                           for line in lines[caught_up:]), what="a pass during the burst")
    for number in range(100, 200):
        (burst / f"n{number:03}.md").write_text(f"Second half note {number}.")
        if number == 120:
            process.send_signal(signal.SIGKILL)
    process.wait(10)
    (folder / "a.md").unlink()  # and a change while nothing is watching

    process, lines = start()  # catch-up happens before "watching" is printed
    process.send_signal(signal.SIGTERM)
    assert process.wait(60) == 0, "".join(lines)
    with Node.open(data, readonly=True) as node:
        assert collection_state(node) == folder_state(folder, ("drafts/",))
        [index] = node.status().indexes
        assert not index.stale


INTERRUPTED_NOTES = 120  # distinct texts of 150 words: a build of a few seconds


def test_a_second_ctrl_c_during_a_pass_exits_130_and_loses_nothing(tmp_path: Path) -> None:
    """The second Ctrl-C closed the store under the running pass and the interpreter
    aborted ("terminate called without an active exception", exit -6). Both land during the
    pass's build: after it wrote the documents, while it embeds them."""
    data, notes = tmp_path / "data", tmp_path / "notes"
    notes.mkdir()
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "XDG_CONFIG_HOME": str(tmp_path / "cfg")}
    process = subprocess.Popen(
        [sys.executable, "-m", "meshdex", "--data-dir", str(data), "watch", str(notes), "-c",
         "notes", "--debounce-s", "0.1"], stderr=subprocess.PIPE, text=True, env=env,
        # as a terminal starts it: a suite run in the background ignores SIGINT, and so would
        # a Python started from it
        preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))
    lines: list[str] = []
    for line in process.stderr:
        lines.append(line)
        if line.startswith("watching "):
            break
    threading.Thread(target=lambda: lines.extend(process.stderr), daemon=True).start()
    words = ["river", "stone", "cloud", "lorem", "ipsum"]
    for number in range(INTERRUPTED_NOTES):
        (notes / f"n{number:03}.md").write_text(
            " ".join(f"{words[(number + i) % 5]}{number}x{i % 17}" for i in range(150)))

    def written() -> int:  # the pass writes the documents, then builds (seconds of embedding)
        try:
            with Node.open(data, readonly=True) as node:
                return len(collection_state(node))
        except MeshdexError:
            return 0

    wait_until(lambda: written() == INTERRUPTED_NOTES, what="the pass to write the documents")
    process.send_signal(signal.SIGINT)
    wait_until(lambda: any("stopping after the pass in progress" in line for line in lines),
               what=f"the first Ctrl-C during the pass; stderr: {''.join(lines)!r}, "
                    f"exit {process.poll()}")
    process.send_signal(signal.SIGINT)
    assert process.wait(60) == 130, "".join(lines)
    time.sleep(0.2)
    assert "terminate called" not in "".join(lines)
    run_cli(data, "watch", str(notes), "-c", "notes", "--once")
    with Node.open(data, readonly=True) as node:
        assert collection_state(node) == folder_state(notes)


def test_serve_keeps_the_configured_watch_folders_in_step(tmp_path: Path, folder: Path) -> None:
    data = tmp_path / "data"
    _, token = TokenStore(data).create("read")
    config = tmp_path / "config.toml"
    config.write_text(f'[node]\nwatch = ["notes={folder}"]\n')
    process = subprocess.Popen(
        [sys.executable, "-m", "meshdex", "--data-dir", str(data), "serve", "--config",
         str(config), "--listen", "127.0.0.1:0"],
        stderr=subprocess.PIPE, text=True, env={**os.environ, "HF_HUB_OFFLINE": "1"})
    try:
        address = None
        for line in process.stderr:
            match = re.search(r"listening on (\S+)", line)
            if match:
                address = match.group(1)
                break
        assert address, "serve exited before listening"
        threading.Thread(target=lambda: process.stderr.read(), daemon=True).start()
        with MeshdexClient(address, token=token) as client:
            assert {c.name: c.document_count for c in client.list_collections()} == {"notes": 3}
            (folder / "new.md").write_text("Elderberries make a dark purple syrup.")

            def found() -> bool:
                hits = client.search("notes", "elderberry syrup", top_k=1).hits
                return bool(hits) and hits[0].document_id == "notes/new.md"

            wait_until(found, what="the served index to pick up a new file")
    finally:
        process.send_signal(signal.SIGTERM)
        assert process.wait(60) == 0


@pytest.mark.parametrize(("toml", "environ", "expected"), [
    ('watch = ["notes=/a", "work=/b"]', {}, ("notes=/a", "work=/b")),
    ("", {"MESHDEX_WATCH": "notes=/a, work=/b"}, ("notes=/a", "work=/b")),
    ("watch = []", {}, ()),
    ('watch = "notes=/a"', {}, ("notes=/a",)),
])
def test_watch_setting_reads_lists_and_comma_separated_env(tmp_path, toml, environ,
                                                           expected) -> None:
    path = tmp_path / "config.toml"
    path.write_text(f"[node]\n{toml}\n")
    loaded = load_config(config_path=path, environ=environ)
    assert loaded.config.watch == expected
    folders = watch_entries(loaded.config.watch)
    assert {name: [str(path) for path in paths] for name, paths in folders.items()} == {
        entry.split("=")[0]: [entry.split("=")[1]] for entry in expected}


@pytest.mark.parametrize(("toml", "message"), [
    ("watch = [1, 2]", "watch from"),
    ('watch = ["no-equals-sign"]', "COLLECTION=FOLDER"),
])
def test_bad_watch_settings_are_named(tmp_path, toml, message) -> None:
    path = tmp_path / "config.toml"
    path.write_text(f"[node]\n{toml}\n")
    with pytest.raises(InvalidArgument, match=message):
        load_config(config_path=path, environ={}).config.validate()


# ------------------------------------------------------------ read as `meshdex add` reads


def run_cli(data: Path, *args: str, ok: tuple[int, ...] = (0,)) -> str:
    result = CliRunner().invoke(cli, ["--data-dir", str(data), *args])
    assert result.exit_code in ok, result.output
    return result.output


def stored(data: Path, collection: str = "notes") -> dict[str, tuple]:
    """id -> (text, metadata, source) of every live document."""
    with Node.open(data, readonly=True) as node:
        return {doc.id: (doc.text, doc.metadata, doc.source)
                for doc in node.store.iter_documents(collection)}


def write_eml(root: Path) -> Path:
    path = root / "invoice.eml"
    path.write_bytes(bytes(email_message(subject="Invoice", body="Please pay.",
                                         message_id="inv@x")))
    return path


# sample writer, the options both commands get; without --source the folder holding the
# sample is given, with it the sample itself (a folder source)
ADD_AND_WATCH = [
    pytest.param(make_python, (), id="python"),
    pytest.param(make_pdf, (), id="pdf"),
    pytest.param(make_mbox, (), id="mbox"),
    pytest.param(write_eml, (), id="eml"),
    pytest.param(make_history, (), id="history"),
    pytest.param(make_chatgpt, (), id="chatgpt"),
    pytest.param(make_slack, ("--source", "slack"), id="slack"),
    pytest.param(make_maildir, ("--source", "email"), id="maildir"),
]


@pytest.mark.parametrize(("make", "options"), ADD_AND_WATCH)
def test_watch_reads_each_source_into_the_documents_add_makes(tmp_path: Path, make,
                                                               options) -> None:
    folder = tmp_path / "box"
    folder.mkdir()
    sample = make(folder)
    given = str(sample if options else folder)
    added, watched = tmp_path / "added", tmp_path / "watched"
    run_cli(added, "add", given, "-c", "notes", *options, ok=(0, EXIT_PARTIAL_FAILURE))
    run_cli(watched, "watch", given, "-c", "notes", "--once", "--no-build", *options)
    assert stored(watched) == stored(added) != {}
    # watching what was added changes nothing, nor does a pass no event named anything for
    output = run_cli(added, "watch", given, "-c", "notes", "--once", "--no-build", *options)
    assert "notes: +0 ~0 -0 (" in output
    with Node.open(watched) as node:
        root = WatchedFolder.of(Path(given), source_kind=options[1] if options else None)
        FolderSync(node, "notes", [root], build=False).sync([])
    assert stored(watched) == stored(added)


def test_an_added_python_file_stays_split_by_function_while_watched(tmp_path: Path) -> None:
    data, project = tmp_path / "data", tmp_path / "project"
    project.mkdir()
    path = make_python(project)
    run_cli(data, "add", str(project), "-c", "notes")
    added = stored(data)
    assert sorted(added) == ["project/tool.py", "project/tool.py#Config",
                             "project/tool.py#parse_args"]
    os.utime(path)  # touched: an event, the same content
    output = run_cli(data, "watch", str(project), "-c", "notes", "--once", "--no-build")
    assert "notes: +0 ~0 -0 (3 unchanged)" in output
    assert stored(data) == added
    with Node.open(data) as node:
        sync = FolderSync(node, "notes", [WatchedFolder.of(project)], build=False)
        path.write_text(EDITED_PYTHON)  # parse_args renamed, class Config deleted
        report = sync.sync([path])
        assert (report.counts["added"], report.counts["deleted"]) == (1, 2)
        expected = ["project/tool.py", "project/tool.py#parse_argv"]
        assert sorted(collection_state(node)) == expected
        path.write_text(EDITED_PYTHON + "\ndef half_typed(:\n")  # saved mid-edit
        report = sync.sync([path])
        assert [reason for _, reason in report.errors] == ["not valid Python: invalid syntax"]
        assert sorted(collection_state(node)) == expected  # kept until the file parses
        path.write_text("# a line above every function\n" + EDITED_PYTHON)
        sync.sync([path])
        [function] = [doc for doc in node.store.iter_documents("notes")
                      if doc.id.endswith("#parse_argv")]
        assert function.metadata["line_start"] == 9  # the same text, one line further down


def test_a_message_appended_to_a_watched_mbox_becomes_a_document(
        tmp_path: Path, collection_embedder) -> None:
    folder = tmp_path / "mail"
    folder.mkdir()
    path = make_mbox(folder)
    with Node.open(tmp_path / "data") as node:
        running = Running(node, folder, debounce_s=0.2)

        def holds(*ids: str) -> bool:
            if running.watcher.failure is not None:
                raise running.watcher.failure
            return set(ids) <= set(collection_state(node)) and running.watcher.idle

        try:
            wait_until(lambda: holds("mail:m1@example.org", "mail:m2@example.org"),
                       what="the mailbox's messages")
            passes_before = len(running.passes)
            box = mailbox.mbox(path)
            box.add(email_message(subject="Dinner plans", body="Pizza at eight on Saturday?",
                                  message_id="m3@example.org"))
            box.flush()
            box.close()
            wait_until(lambda: holds("mail:m3@example.org"), what="the appended message")
            assert sum(report.counts["added"]
                       for report in running.passes[passes_before:]) == 1
            assert running.top_hit("pizza on saturday")[0] == "mail:m3@example.org"
        finally:
            running.watcher.stop()


def test_mail_delivered_into_a_watched_maildir_becomes_a_document(tmp_path: Path) -> None:
    maildir = make_maildir(tmp_path)
    with Node.open(tmp_path / "data") as node:
        sync = FolderSync(node, "mail", [WatchedFolder.of(maildir, source_kind="email")],
                          build=False)
        sync.catch_up()
        key = mailbox.Maildir(maildir).add(email_message(
            subject="Receipt", body="Thanks for paying.", message_id="receipt@x"))
        report = sync.sync([maildir / "new" / key])
        assert report.counts["added"] == 1
        assert sorted(collection_state(node, "mail")) == ["mail:inv@x", "mail:receipt@x"]
