"""Deleted documents give their index space back without re-embedding the rest.

A flat index (every collection below ``graph_min_nodes``) drops a deleted passage's row for
good, both when a delta build finds too many of them and when ``meshdex compact`` runs; the
keyword index is rewritten without them. The counting embedder shows nothing is embedded.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner
from fakes import HashingEmbedder
from grpc_support import started_node
from meshdex.index.engine import Index
from meshdex.index.errors import FailedPrecondition
from meshdex.index.keyword import deleted_documents
from meshdex.index.params import BuildParams
from meshdex.node.cli.main import cli
from meshdex.node.indexing import IndexManager
from meshdex.node.records import DocumentInput
from meshdex.node.service import Node
from meshdex.node.store import Store

COLLECTION = "notes"
TOPICS = ["tide pools", "glacier melt", "desert bloom", "river delta", "volcanic soil",
          "coral reef", "alpine meadow", "salt marsh", "boreal forest", "kelp canopy"]


def _docs(count: int, start: int = 0) -> list[DocumentInput]:
    return [DocumentInput(id=f"doc-{i:03d}",
                          text=f"Field note {i} on {TOPICS[i % len(TOPICS)]}: marker{i} seen.")
            for i in range(start, start + count)]


@pytest.fixture
def built(tmp_path: Path):
    """A node with 60 documents built by a counting embedder, and that embedder."""
    embedder = HashingEmbedder()
    store = Store.open(tmp_path)
    node = Node(store, indexes=IndexManager(store, embedder_factory=lambda _info: embedder))
    node.create_collection(COLLECTION)
    node.upsert_documents(COLLECTION, _docs(60))
    node.build(COLLECTION)
    yield node, embedder
    node.close()


def _search_ids(node: Node, query: str, mode: str = "semantic") -> list[str]:
    return [hit.document_id for hit in node.search(COLLECTION, query, top_k=60, mode=mode).hits]


def test_a_flat_index_without_its_tombstones_answers_every_query_as_before(
        fake_embedder: HashingEmbedder) -> None:
    texts = [doc.text for doc in _docs(80)]
    index = Index.build(texts, np.arange(1, 81, dtype=np.uint64), embedder=fake_embedder)
    index.remove(np.arange(1, 81, 3, dtype=np.uint64))
    dropped = index.without_tombstones()
    assert (dropped.node_count, len(dropped)) == (len(index), len(index)) == (53, 53)

    def texts_of(labels: np.ndarray) -> list[str]:
        return [texts[int(label) - 1] for label in labels]

    for query in ("glacier melt", "marker7 coral reef", "salt marsh notes"):
        before = index.search(query, k=10, embedder=fake_embedder, texts=texts_of)
        after = dropped.search(query, k=10, embedder=fake_embedder, texts=texts_of)
        assert _ranked(after) == _ranked(before)


def _ranked(result) -> list[tuple[float, int]]:
    """Hits as (score, label), ties put in label order: dropping rows renumbers the nodes, and
    equal scores come out in node order."""
    return sorted((-round(hit.score, 5), hit.label) for hit in result.hits)


def test_a_graph_index_refuses_to_drop_tombstones_without_a_rebuild(
        fake_embedder: HashingEmbedder) -> None:
    texts = [doc.text for doc in _docs(40)]
    index = Index.build(texts, np.arange(40, dtype=np.uint64), embedder=fake_embedder,
                        params=BuildParams(graph_min_nodes=0))
    index.remove(np.arange(10, dtype=np.uint64))
    with pytest.raises(FailedPrecondition, match="rebuild"):
        index.without_tombstones()


def test_a_build_after_deleting_many_documents_embeds_nothing_and_shrinks_the_bundle(
        built) -> None:
    node, embedder = built
    size = node.index_stats(COLLECTION).index_bytes
    embedded = embedder.texts_embedded
    node.delete_documents(COLLECTION, [f"doc-{i:03d}" for i in range(0, 60, 2)])
    report = node.build(COLLECTION)
    assert (report.action, report.removed) == ("delta", 30)
    assert "dropped 30 deleted passages for good" in report.reason
    assert embedder.texts_embedded == embedded, "a delete-only build re-embedded passages"
    assert node.index_stats(COLLECTION).index_bytes < size
    assert node.index_stats(COLLECTION).passages == 30
    found = _search_ids(node, "marker3 tide pools glacier melt")
    assert found and all(int(doc_id[-3:]) % 2 for doc_id in found)


def test_compact_drops_deleted_passages_from_the_bundle_and_keyword_index(built) -> None:
    node, embedder = built
    embedded = embedder.texts_embedded
    before = node.indexes.bytes_on_disk(COLLECTION)
    node.delete_documents(COLLECTION, [f"doc-{i:03d}" for i in range(45)])
    report = node.compact()
    [index] = report.indexes
    assert (index.collection, index.dropped_passages) == (COLLECTION, 45)
    assert index.before_bytes == before and index.after_bytes < before
    assert embedder.texts_embedded == embedded
    assert node.index_stats(COLLECTION).passages == 15
    keyword_dir = next((node.indexes.keywords.root / COLLECTION).iterdir())
    assert deleted_documents(keyword_dir) == (15, 0), "keyword index not rewritten"
    assert _search_ids(node, "marker7", mode="keyword") == []
    assert _search_ids(node, "marker50", mode="keyword") == ["doc-050"]
    assert node.build(COLLECTION).action == "unchanged"


def test_compact_of_a_few_deleted_passages_gives_their_keyword_index_space_back(built) -> None:
    """Below the fraction at which a delta rewrites the keyword index, tantivy only marks the
    deleted passages: compact rewrites it anyway, so the indexes shrink (they grew: a marks
    file more, the postings kept)."""
    node, _ = built
    before = node.indexes.bytes_on_disk(COLLECTION)
    node.delete_documents(COLLECTION, ["doc-000", "doc-001"])
    [index] = node.compact().indexes
    assert index.dropped_passages == 2
    keyword_dir = next((node.indexes.keywords.root / COLLECTION).iterdir())
    assert deleted_documents(keyword_dir) == (58, 0), "keyword index not rewritten"
    assert index.before_bytes == before and index.after_bytes < before


def test_compact_leaves_unbuilt_documents_for_the_next_build(built) -> None:
    node, embedder = built
    node.upsert_documents(COLLECTION, _docs(1, start=60))
    node.delete_documents(COLLECTION, [f"doc-{i:03d}" for i in range(30)])
    assert node.compact().indexes[0].dropped_passages == 30
    embedded = embedder.texts_embedded
    report = node.build(COLLECTION)
    assert (report.action, report.added, report.removed) == ("delta", 1, 0)
    assert embedder.texts_embedded == embedded + 1
    assert _search_ids(node, "marker60", mode="keyword") == ["doc-060"]


def test_compact_with_nothing_deleted_keeps_the_bundle(built) -> None:
    node, _ = built
    generation = node.index_stats(COLLECTION).generation
    assert node.compact().indexes[0].dropped_passages == 0
    assert node.index_stats(COLLECTION).generation == generation


def test_cli_compact_with_the_real_model_reports_the_dropped_passages(tmp_path: Path) -> None:
    docs = tmp_path / "notes.jsonl"
    docs.write_text("".join(json.dumps({"id": d.id, "text": d.text}) + "\n" for d in _docs(12)))
    runner = CliRunner()
    base = ["--data-dir", str(tmp_path / "data")]

    def meshdex(*args: str) -> str:
        result = runner.invoke(cli, [*base, *args])
        assert result.exit_code == 0, result.output
        return result.output

    meshdex("add", "--jsonl", str(docs), "-c", COLLECTION)
    meshdex("build", "-c", COLLECTION)
    meshdex("rm", "-c", COLLECTION, *[f"doc-{i:03d}" for i in range(8)])
    out = meshdex("compact")
    assert f"collection {COLLECTION}: dropped 8 deleted passages from its indexes" in out
    assert "compacted the store: " in out
    hits = json.loads(meshdex("search", "-c", COLLECTION, "kelp canopy", "--json",
                              "--mode", "semantic"))["hits"]
    assert [hit["document_id"] for hit in hits][:1] == ["doc-009"]
    assert {hit["document_id"] for hit in hits} <= {f"doc-{i:03d}" for i in range(8, 12)}


def test_cli_compact_goes_on_past_a_damaged_index_and_names_it(tmp_path: Path) -> None:
    """One collection's damaged bundle stopped ``meshdex compact`` for every collection and
    for the store; now the others are compacted, the damaged one is named with the way back,
    and the exit code says the compaction was partial (11), in --json too."""
    docs = tmp_path / "notes.jsonl"
    docs.write_text("".join(json.dumps({"id": d.id, "text": d.text}) + "\n" for d in _docs(12)))
    base = ["--data-dir", str(tmp_path / "data")]
    runner = CliRunner()

    def meshdex(*args: str, code: int = 0):
        result = runner.invoke(cli, [*base, *args])
        assert result.exit_code == code, result.output
        return result

    for collection in ("healthy", "broken"):
        meshdex("add", "--jsonl", str(docs), "-c", collection)
        meshdex("build", "-c", collection)
        meshdex("rm", "-c", collection, *[f"doc-{i:03d}" for i in range(8)])
    with Node.open(tmp_path / "data", readonly=True) as node:
        bundle = node.indexes.bundle_path("broken")
    damaged = bytearray(bundle.read_bytes())
    damaged[len(damaged) // 2] ^= 0xFF
    bundle.write_bytes(bytes(damaged))

    result = meshdex("compact", code=11)
    assert "collection healthy: dropped 8 deleted passages from its indexes" in result.stdout
    assert "compacted the store: " in result.stdout
    assert "error: collection broken: its indexes were left as they are" in result.stderr
    assert "meshdex build --rebuild --collection broken" in result.stderr
    assert bundle.read_bytes() == bytes(damaged)

    report = json.loads(meshdex("compact", "--json", code=11).stdout)
    by_name = {index["collection"]: index for index in report["indexes"]}
    assert by_name["healthy"]["damaged"] == "" and by_name["broken"]["damaged"]

    with started_node(tmp_path / "data") as server:  # through a node: the same report and code
        remote = runner.invoke(cli, ["--node", server.address, "--token",
                                     server.tokens["admin"], "compact"])
    assert remote.exit_code == 11, remote.output
    assert "error: collection broken: its indexes were left as they are" in remote.stderr

    meshdex("build", "--rebuild", "-c", "broken")
    result = meshdex("compact")
    assert "error" not in result.stderr
