"""Issue 8, item 8: ``add`` of nothing addable fails, and an error quotes at most a couple of
hundred characters of the offending input, so a 100 KB bad filter is INVALID_ARGUMENT over a
real node instead of a transport error."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys

import grpc
import pytest
from grpc_support import started_node
from meshdex.index.json_limits import MAX_QUOTED_CHARS
from meshdex.node.records import DocumentInput
from meshdex.proto.meshdex.v1 import node_pb2 as pb
from meshdex.proto.meshdex.v1 import node_pb2_grpc

HUGE_CHARS = 100 * 1024


def _add(data_dir, *paths) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "meshdex", "--data-dir", str(data_dir), "add", *map(str, paths)],
        capture_output=True, text=True, timeout=120, env={**os.environ, "HF_HUB_OFFLINE": "1"})


def test_add_with_everything_skipped_exits_non_zero(tmp_path):
    binary = tmp_path / "ls"
    shutil.copyfile("/bin/ls", binary)
    result = _add(tmp_path / "data", binary)
    assert result.returncode == 2, result.stdout + result.stderr
    assert "skipped 1: unsupported type 1" in result.stdout
    assert "error: nothing was added: every input was skipped" in result.stderr

    note = tmp_path / "note.md"
    note.write_text("a note that can be added")
    result = _add(tmp_path / "data", binary, note)  # something went in: success
    assert result.returncode == 0, result.stderr


def _collections(data_dir) -> str:
    return subprocess.run(
        [sys.executable, "-m", "meshdex", "--data-dir", str(data_dir), "list"],
        capture_output=True, text=True, timeout=120, check=True).stdout


def test_an_add_of_which_nothing_goes_in_leaves_no_empty_collection(tmp_path):
    """A mistyped path (or a file of nothing but bad documents) used to create the collection
    anyway, which `list` then showed with 0 documents and `search` called unbuilt."""
    data_dir = tmp_path / "data"
    result = _add(data_dir, tmp_path / "no-such-folder", "-c", "typo")
    assert result.returncode == 11
    assert "no-such-folder: no such file or directory" in result.stderr
    assert "typo" not in _collections(data_dir)
    assert "created collection" not in result.stdout

    note = tmp_path / "note.md"
    note.write_text("a note that can be added")
    result = _add(data_dir, tmp_path / "no-such-folder", note, "-c", "typo")
    assert result.returncode == 11  # one path missing, the other went in
    assert "created collection 'typo'" in result.stdout
    assert "typo: 1 documents" in _collections(data_dir)


def test_stats_and_pin_of_a_missing_collection_say_it_does_not_exist(tmp_path):
    """Not 'has no index yet: run meshdex build --collection nope', which fails too."""
    note = tmp_path / "note.md"
    note.write_text("a note in a collection of another name")
    assert _add(tmp_path / "data", note, "-c", "notes").returncode == 0
    for args in (("stats", "-c", "nope"), ("pin", "-c", "nope", "--filter", "lang=en")):
        result = subprocess.run(
            [sys.executable, "-m", "meshdex", "--data-dir", str(tmp_path / "data"), *args],
            capture_output=True, text=True, timeout=120, env={**os.environ, "HF_HUB_OFFLINE": "1"})
        assert result.returncode == 3, result.stderr
        assert "no collection named 'nope'" in result.stderr
        assert "meshdex build" not in result.stderr


@pytest.fixture
def server(tmp_path):
    with started_node(tmp_path) as server:
        server.node.create_collection("docs")
        server.node.upsert_documents("docs", [DocumentInput(id="a", text="some text")])
        yield server


HUGE_REQUESTS = {
    "a 100 KB bad shorthand filter": ("Search", pb.SearchRequest(
        collection="docs", query="text", filter="lang=en and nonsense" + "x" * HUGE_CHARS)),
    "a 100 KB bad JSON filter op": ("Search", pb.SearchRequest(
        collection="docs", query="text",
        filter='{"field": "lang", "op": "' + "x" * HUGE_CHARS + '", "value": 1}')),
    "a 100 KB collection name": ("Search", pb.SearchRequest(
        collection="bad name " * (HUGE_CHARS // 9), query="text")),
}


@pytest.mark.parametrize("case", list(HUGE_REQUESTS))
def test_a_huge_bad_input_is_invalid_argument_quoting_a_little(server, case):
    method, request = HUGE_REQUESTS[case]
    with server.channel() as channel, pytest.raises(grpc.RpcError) as raised:
        getattr(node_pb2_grpc.MeshdexNodeStub(channel), method)(
            request, metadata=server.metadata("read"), timeout=30)
    assert raised.value.code() == grpc.StatusCode.INVALID_ARGUMENT, raised.value.details()
    assert len(raised.value.details()) < MAX_QUOTED_CHARS + 400
    assert "more characters)" in raised.value.details()
