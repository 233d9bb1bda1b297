"""Deeply nested JSON is refused per item, never a crash (issue 8, item 3): JSONL metadata
through a real ``meshdex add`` process, gRPC ``metadata_json`` and JSON filters on a real node.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys

import grpc
import pytest
from grpc_support import started_node
from meshdex.index.errors import InvalidArgument
from meshdex.index.json_limits import MAX_JSON_DEPTH
from meshdex.node.service import Node
from meshdex.proto.meshdex.v1 import node_pb2 as pb
from meshdex.proto.meshdex.v1 import node_pb2_grpc

CRASH_DEPTH = 10_000  # past Python's recursion limit


def nested(depth: int) -> str:
    """A JSON object ``depth`` levels deep: {"a": {"a": ... {} ...}}."""
    return '{"a": ' * (depth - 1) + "{}" + "}" * (depth - 1)


@pytest.mark.parametrize(("depth", "accepted"), [
    (3, True),
    (MAX_JSON_DEPTH, True),
    (MAX_JSON_DEPTH + 1, False),
    (CRASH_DEPTH, False),
])
def test_add_rejects_only_the_too_deep_jsonl_line(tmp_path, depth, accepted):
    source = tmp_path / "docs.jsonl"
    source.write_text("\n".join([
        json.dumps({"id": "first", "text": "the first document"}),
        '{"id": "deep", "text": "nested metadata", "metadata": ' + nested(depth) + "}",
        json.dumps({"id": "last", "text": "the last document"}),
    ]) + "\n")
    data_dir = tmp_path / "data"
    result = subprocess.run(
        [sys.executable, "-m", "meshdex", "--data-dir", str(data_dir), "add", "--jsonl",
         str(source)],
        capture_output=True, text=True, timeout=120, env={**os.environ, "HF_HUB_OFFLINE": "1"},
    )
    output = result.stdout + result.stderr
    assert "Traceback" not in output
    with Node.open(data_dir) as node:
        stored = sorted(doc.id for doc in node.store.iter_documents("default"))
    if accepted:
        assert result.returncode == 0, output
        assert stored == ["deep", "first", "last"]
    else:
        assert result.returncode == 11, output  # partial: the rest went in
        assert f"docs.jsonl:2: the line nests deeper than {MAX_JSON_DEPTH + 1} levels" in output
        assert stored == ["first", "last"]


@pytest.fixture
def server(tmp_path):
    with started_node(tmp_path) as server:
        server.node.create_collection("docs")
        yield server


@pytest.mark.parametrize("depth", [MAX_JSON_DEPTH + 1, CRASH_DEPTH])
def test_upsert_rejects_deep_metadata_json_and_keeps_the_rest(server, depth):
    request = pb.UpsertRequest(collection="docs", documents=[
        pb.DocumentInput(id="first", text="the first document"),
        pb.DocumentInput(id="deep", text="nested", metadata_json=nested(depth)),
        pb.DocumentInput(id="last", text="the last document"),
    ])
    with server.channel() as channel:
        response = node_pb2_grpc.MeshdexNodeStub(channel).Upsert(
            request, metadata=server.metadata("write"), timeout=30)
    outcomes = {item.id: (item.outcome, item.reason) for item in response.items}
    assert outcomes["deep"][1] == f"metadata_json nests deeper than {MAX_JSON_DEPTH} levels"
    assert outcomes["first"][0] == outcomes["last"][0] == pb.ItemOutcome.ADDED
    assert sorted(doc.id for doc in server.node.store.iter_documents("docs")) == ["first", "last"]


@pytest.mark.parametrize("depth", [MAX_JSON_DEPTH + 1, CRASH_DEPTH])
def test_a_deep_json_filter_is_invalid_argument(server, depth):
    deep_filter = '{"or": [' * depth + '{"k": 1}' + "]}" * depth
    with server.client("read") as client, pytest.raises(InvalidArgument, match="nests deeper"):
        client.search("docs", "anything", filter=deep_filter)
    with server.channel() as channel:  # and the wire says INVALID_ARGUMENT, not UNKNOWN
        with pytest.raises(grpc.RpcError) as raised:
            node_pb2_grpc.MeshdexNodeStub(channel).Search(
                pb.SearchRequest(collection="docs", query="anything", filter=deep_filter),
                metadata=server.metadata("read"), timeout=30)
    assert raised.value.code() == grpc.StatusCode.INVALID_ARGUMENT
