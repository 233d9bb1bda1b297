"""The ``Node`` facade: validation per item, batching, collections, status."""

from __future__ import annotations

from pathlib import Path

import pytest
from meshdex.index.chunking import ChunkingParams
from meshdex.index.embedders import EmbedderSpec
from meshdex.index.errors import InvalidArgument
from meshdex.node import service
from meshdex.node.errors import CollectionNotFound, DocumentNotFound
from meshdex.node.records import DocumentInput, Outcome
from meshdex.node.service import Node
from meshdex.node.validation import MAX_DOCUMENT_TEXT_BYTES, MAX_METADATA_BYTES
from meshdex.sync.identity import existing_device_id, load_identity


@pytest.fixture
def node(tmp_path: Path):
    with Node.open(tmp_path) as opened:
        opened.create_collection("default")
        yield opened


@pytest.mark.parametrize(
    ("bad", "reason"),
    [
        (DocumentInput(id="", text="t"), "document id must not be empty"),
        (DocumentInput(id="  ", text="t"), "document id must not be empty"),
        (DocumentInput(id="a\nb", text="t"), "control characters"),
        (DocumentInput(id="é" * 300, text="t"), "600 bytes; the limit is 512"),
        (DocumentInput(id="x", text=""), "'x': text is empty"),
        (DocumentInput(id="x", text="\ud800 lone surrogate"), "not valid Unicode"),
        (DocumentInput(id="x", text="a" * (MAX_DOCUMENT_TEXT_BYTES + 1)), "the limit is"),
        (DocumentInput(id="x", text="t", metadata=[1]), "metadata must be a JSON object"),  # type: ignore[arg-type]
        (DocumentInput(id="x", text="t", metadata={1: "a"}), "key 1 is not a string"),
        (DocumentInput(id="x", text="t", metadata={"k": float("inf")}), "not plain JSON"),
        (DocumentInput(id="x", text="t", metadata={"k": object()}), "not plain JSON"),
        (
            DocumentInput(id="x", text="t", metadata={"k": "v" * MAX_METADATA_BYTES}),
            "the limit is 65536",
        ),
    ],
)
def test_invalid_documents_are_rejected_per_item_and_the_rest_go_in(
    node: Node, bad: DocumentInput, reason: str
) -> None:
    good = [DocumentInput(id="before", text="one"), DocumentInput(id="after", text="two")]
    report = node.upsert_documents("default", [good[0], bad, good[1]])
    assert [item.outcome for item in report.items] == [
        Outcome.ADDED,
        Outcome.REJECTED,
        Outcome.ADDED,
    ]
    assert reason in (report.items[1].reason or "")
    assert report.items[1].position == 1
    assert node.get_document("default", "after").text == "two"


def test_upsert_into_a_missing_collection_needs_create_missing(node: Node) -> None:
    with pytest.raises(CollectionNotFound, match="'fresh'"):
        node.upsert_documents("fresh", [DocumentInput(id="a", text="t")])
    report = node.upsert_documents("fresh", [DocumentInput(id="a", text="t")], create_missing=True)
    assert report.created_collection
    assert node.get_collection("fresh").embedder == EmbedderSpec()
    assert node.get_collection("fresh").chunking == ChunkingParams()


def test_large_inputs_commit_in_batches_and_report_progress(
    node: Node, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(service, "BATCH_DOCUMENTS", 7)
    seen: list[int] = []
    docs = (DocumentInput(id=f"d{i:03}", text=f"text {i}") for i in range(30))
    report = node.upsert_documents("default", docs, progress=seen.append)
    assert report.count(Outcome.ADDED) == 30
    assert seen == [7, 7, 7, 7, 2]
    assert node.status().last_seq == 30


def test_delete_and_get(node: Node) -> None:
    node.upsert_documents("default", [DocumentInput(id="a", text="t", metadata={"k": 1})])
    assert node.get_document("default", "a").metadata == {"k": 1}
    report = node.delete_documents("default", ["a", "b"])
    assert (report.deleted, report.not_found) == (["a"], ["b"])
    with pytest.raises(DocumentNotFound):
        node.get_document("default", "a")
    with pytest.raises(InvalidArgument, match="control characters"):
        node.delete_documents("default", ["bad\x00id"])


@pytest.mark.parametrize("name", ["", "-lead", "has space", "a/b", "x" * 129, "ü"])
def test_bad_collection_names_are_refused(node: Node, name: str) -> None:
    with pytest.raises(InvalidArgument, match="invalid collection name"):
        node.create_collection(name)


def test_status_counts_everything(node: Node) -> None:
    node.create_collection("other", chunking=ChunkingParams(max_chars=10, overlap_chars=0))
    node.upsert_documents("other", [DocumentInput(id="a", text="alpha beta gamma delta")])
    node.upsert_documents("default", [DocumentInput(id="a", text="t")])
    node.delete_documents("default", ["a"])
    status = node.status()
    assert status.store_id == node.device_id and status.last_seq == 3
    assert status.device_id == ""  # no identity yet: status reads it, never creates it
    assert existing_device_id(node.data_dir) is None
    identity = load_identity(node.data_dir)  # what `meshdex id` does
    assert node.status().to_dict()["device_id"] == str(identity.device_id)
    identity.cert_path.write_text("not a certificate")  # status still answers, without it
    assert node.status().device_id == "" and node.status().last_seq == 3
    counts = {
        c.name: (c.document_count, c.passage_count, c.tombstone_count) for c in status.collections
    }
    assert counts == {"default": (0, 0, 1), "other": (1, 3, 0)}
    assert status.to_dict()["collections"][1]["chunking"] == {"max_chars": 10, "overlap_chars": 0}
    node.drop_collection("other")
    assert [c.name for c in node.list_collections()] == ["default"]
