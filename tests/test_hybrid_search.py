"""Keyword (BM25) and hybrid search beside semantic: the planted rare token, the semantic answer
when no word matches, and the keyword index kept in step with builds, filters and deletes."""

from __future__ import annotations

import json
import os
import re
import shutil
from pathlib import Path

import pytest
import tantivy
from click.testing import CliRunner
from fakes import HashingEmbedder
from grpc_support import started_node
from meshdex.index.errors import InvalidArgument, MeshdexError
from meshdex.index.fusion import (
    DEFAULT_SEARCH_MODE,
    confident_keyword_labels,
    hybrid_ranking,
    reciprocal_rank_fusion,
)
from meshdex.index.keyword import (
    LABEL_FIELD,
    KeywordIndex,
    KeywordIndexFailed,
    deleted_documents,
    passage_document,
    query_terms,
    tantivy_errors,
    with_tokenizers,
)
from meshdex.node import keyword_indexes
from meshdex.node.cli.main import cli
from meshdex.node.indexing import IndexManager
from meshdex.node.keyword_indexes import KEYWORD_DIR_NAME
from meshdex.node.records import DocumentInput
from meshdex.node.service import Node

PLANTED = DocumentInput(id="planted", text=(
    "Notes from the garden committee. We planted tulips along the east fence, agreed to buy "
    "two new watering cans, and moved the compost bins behind the shed. Reference QZ-7731 was "
    "used for the seed order. Next meeting is in April."))
TYRE = DocumentInput(id="tyre", text=(
    "How to change a flat tyre on your car: loosen the wheel nuts, jack up the vehicle, swap "
    "the wheel, tighten the nuts."))
TICKETS = [DocumentInput(id=f"ticket-{n}", text=f"Ticket QZ-77{n:02d}: the printer on floor "
                         f"{n % 5} reports a paper jam and needs service.")
           for n in range(40) if n != 31]


@pytest.fixture(scope="module")
def planted_node(tmp_path_factory, real_embedder):  # the real model, loaded once per session
    with Node.open(tmp_path_factory.mktemp("hybrid")) as node:
        node.upsert_documents("c", [*TICKETS, PLANTED, TYRE], create_missing=True)
        node.build("c")
        yield node


def ranks(node: Node, query: str, mode: str, top_k: int = 10) -> list[str]:
    return [hit.document_id for hit in node.search("c", query, top_k=top_k, mode=mode).hits]


def test_hybrid_finds_a_rare_token_that_semantic_search_ranks_outside_the_top_10(planted_node):
    assert "planted" not in ranks(planted_node, "QZ-7731", "semantic")
    assert ranks(planted_node, "QZ-7731", "keyword")[0] == "planted"
    assert "planted" in ranks(planted_node, "QZ-7731", "hybrid", top_k=3)


def test_hybrid_gives_the_semantic_answer_when_no_keyword_matches(planted_node):
    query = "replacing punctured automobile rims"  # no word of it is in any passage
    assert ranks(planted_node, query, "keyword") == []
    assert ranks(planted_node, query, "hybrid", top_k=3) == ranks(planted_node, query,
                                                                   "semantic", top_k=3)
    assert ranks(planted_node, query, "hybrid")[0] == "tyre"


def test_the_default_mode_is_the_measured_one(planted_node):
    default = planted_node.search("c", "QZ-7731", top_k=3)
    assert [hit.document_id for hit in default.hits] == ranks(planted_node, "QZ-7731",
                                                              DEFAULT_SEARCH_MODE, top_k=3)


def test_every_hit_says_what_each_ranking_scored_it_the_same_over_grpc(planted_node, tmp_path):
    """A hybrid score is a fused rank (a few sixtieths for every top hit): a person needs the
    cosine and the BM25 behind it, which each mode's hits carry where that ranking scored them."""
    semantic = planted_node.search("c", "QZ-7731 seed order", top_k=5, mode="semantic").hits
    keyword = planted_node.search("c", "QZ-7731 seed order", top_k=5, mode="keyword").hits
    hybrid = planted_node.search("c", "QZ-7731 seed order", top_k=5, mode="hybrid").hits
    assert all(hit.similarity == hit.score and hit.bm25 is None for hit in semantic)
    assert all(hit.bm25 == hit.score and hit.similarity is None for hit in keyword)
    cosine = {hit.document_id: hit.similarity for hit in semantic}
    bm25 = {hit.document_id: hit.bm25 for hit in keyword}
    assert hybrid[0].document_id == "planted" and hybrid[0].score < 0.1
    for hit in hybrid:
        assert hit.similarity == cosine.get(hit.document_id)
        assert hit.bm25 == bm25.get(hit.document_id)
        assert hit.similarity is not None or hit.bm25 is not None
    assert hybrid[0].similarity > 0.2 and hybrid[0].bm25 > 1.0
    with started_node(tmp_path / "served", node=planted_node) as server, \
            server.client("read") as client:
        remote = client.search("c", "QZ-7731 seed order", top_k=5, mode="hybrid").hits
    assert [(hit.document_id, hit.similarity is None, hit.bm25 is None) for hit in remote] == [
        (hit.document_id, hit.similarity is None, hit.bm25 is None) for hit in hybrid]
    assert remote[0].similarity == pytest.approx(hybrid[0].similarity, abs=1e-6)
    assert remote[0].bm25 == pytest.approx(hybrid[0].bm25, rel=1e-6)


# ------------------------------------------------------------------ mechanics (fake model)


@pytest.fixture
def node(tmp_path: Path):
    embedder = HashingEmbedder()
    with Node.open(tmp_path / "data") as opened:
        opened.indexes = IndexManager(opened.store, embedder_factory=lambda info: embedder)
        opened.upsert_documents("c", [
            DocumentInput(id="a", text="the kettle boils water for tea", metadata={"room": "k"}),
            DocumentInput(id="b", text="error EADDRINUSE means the port is taken",
                          metadata={"room": "office"}),
            DocumentInput(id="c", text="EADDRINUSE again: another server holds port 7710",
                          metadata={"room": "k"}),
        ], create_missing=True)
        opened.build("c")
        yield opened


def keyword_dirs(node: Node) -> list[str]:
    folder = node.data_dir / "indexes" / KEYWORD_DIR_NAME / "c"
    return sorted(os.listdir(folder))


def test_keyword_search_applies_filters_and_never_returns_deleted_documents(node: Node):
    assert sorted(ranks(node, "eaddrinuse", "keyword")) == ["b", "c"]
    assert ranks(node, "EADDRINUSE", "keyword") == ranks(node, "eaddrinuse", "keyword")
    hits = node.search("c", "EADDRINUSE", mode="keyword", filter="room=k").hits
    assert [hit.document_id for hit in hits] == ["c"]
    node.delete_documents("c", ["c"])  # not rebuilt yet: the index still holds its passage
    assert ranks(node, "EADDRINUSE", "keyword") == ["b"]


def test_delta_build_updates_the_keyword_index_in_step_with_the_bundle(node: Node):
    before = keyword_dirs(node)
    node.upsert_documents("c", [DocumentInput(id="d", text="the zebrafish tank needs a heater")])
    node.delete_documents("c", ["a"])
    report = node.build("c")
    assert report.action == "delta"
    assert ranks(node, "zebrafish", "keyword") == ["d"]
    assert ranks(node, "kettle", "keyword") == []
    after = keyword_dirs(node)
    assert after == [node.indexes.manifest("c").bundle_id] and after != before


def test_a_bundle_without_its_keyword_index_gets_one_built_on_first_search(node: Node):
    folder = node.data_dir / "indexes" / KEYWORD_DIR_NAME
    for path in sorted(folder.rglob("*"), reverse=True):  # as a bundle received from a peer
        path.rmdir() if path.is_dir() else path.unlink()
    reopened = IndexManager(node.store, embedder_factory=lambda info: HashingEmbedder())
    node.indexes = reopened
    assert sorted(ranks(node, "port", "keyword")) == ["b", "c"]
    assert keyword_dirs(node) == [reopened.manifest("c").bundle_id]


def test_an_unknown_mode_is_invalid_argument(node: Node):
    with pytest.raises(InvalidArgument, match="unknown search mode 'fuzzy'"):
        node.search("c", "tea", mode="fuzzy")


def test_cli_search_takes_a_mode(tmp_path: Path):
    data = tmp_path / "data"
    docs = tmp_path / "docs"
    docs.mkdir()
    (docs / "a.txt").write_text("error EADDRINUSE means the port is taken")
    (docs / "b.txt").write_text("the kettle boils water for tea")
    runner = CliRunner()
    assert runner.invoke(cli, ["--data-dir", str(data), "add", str(docs)]).exit_code == 0
    with Node.open(data) as opened:  # the fake model keeps this test fast
        opened.indexes = IndexManager(opened.store,
                                      embedder_factory=lambda info: HashingEmbedder())
        opened.build("default")
    result = runner.invoke(cli, ["--data-dir", str(data), "search", "EADDRINUSE", "--mode",
                                 "keyword", "--json"])
    assert result.exit_code == 0, result.output
    [hit] = json.loads(result.output)["hits"]
    assert (hit["document_id"], hit["similarity"]) == ("docs/a.txt", None) and hit["bm25"] > 0
    shown = runner.invoke(cli, ["--data-dir", str(data), "search", "EADDRINUSE", "--mode",
                                "keyword"])
    assert shown.exit_code == 0, shown.output
    assert re.search(r"1\. docs/a\.txt  \(bm25 \d+\.\d\d\)\n", shown.output)
    # no model, no re-ranking: the cost line says what ran, not "stopped after 0 ()"
    assert re.search(r"\n  \(keyword \(bm25\), \d+ ms\)\n", shown.output), shown.output
    bad = runner.invoke(cli, ["--data-dir", str(data), "search", "x", "--mode", "fuzzy"])
    assert bad.exit_code == 2 and "fuzzy" in bad.output


def test_grpc_search_request_carries_the_mode(node: Node, tmp_path: Path):
    with started_node(tmp_path / "served", node=node) as server, server.client("read") as client:
        remote = client.search("c", "EADDRINUSE", mode="keyword")
        assert [hit.document_id for hit in remote.hits] == ranks(node, "EADDRINUSE", "keyword")
        with pytest.raises(InvalidArgument, match="unknown search mode"):
            client.search("c", "tea", mode="fuzzy")


# ----------------------------------------------------------------------- index pieces


def test_keyword_index_update_writes_a_new_directory_and_leaves_the_old_one(tmp_path: Path):
    first = KeywordIndex.build(tmp_path / "one", ["alpha beta", "beta gamma"], [1, 2])
    second = first.updated(tmp_path / "two", added=[("gamma delta", 3)], removed=[1])
    assert [hit.label for hit in first.search("alpha", 5)] == [1]
    assert [hit.label for hit in second.search("alpha", 5)] == []
    assert sorted(hit.label for hit in second.search("gamma", 5)) == [2, 3]
    assert sorted(os.listdir(tmp_path)) == ["one", "two"]  # no scratch left behind
    assert [hit.label for hit in KeywordIndex.open(tmp_path / "two").search("delta", 5)] == [3]


def test_removing_a_label_removes_that_passage_and_not_its_numeric_neighbours(tmp_path: Path):
    top = 2**64 - 1  # labels are the first 8 bytes of a SHA-256: the whole uint64 range
    labels = [0, 1, 2, 7, top - 1, top]
    first = KeywordIndex.build(tmp_path / "one", ["shared word"] * len(labels), labels)
    second = first.updated(tmp_path / "two", added=[], removed=[1, top, 5])  # 5: not there
    assert sorted(hit.label for hit in second.search("shared", 10)) == [0, 2, 7, top - 1]


def test_an_empty_keyword_index_matches_nothing(tmp_path: Path):
    # a bundle whose passages this store does not hold yet indexes no keyword passages
    assert KeywordIndex.build(tmp_path / "empty", [], []).search("anything", 5) == []


@pytest.mark.parametrize(("query", "terms"), [
    ("parse_args", ["parse_args"]),
    ("os.path.join", ["os", "path", "join"]),
    ("Error E4471 error", ["error", "e4471"]),
    ("?!", []),
])
def test_query_terms_keep_identifiers_whole(query: str, terms: list[str]):
    assert query_terms(query) == terms


@pytest.mark.parametrize(("rankings", "fused"), [
    ([[1, 2, 3], [3, 1]], [1, 3, 2]),  # in both lists beats one list
    ([[1, 2], []], [1, 2]),            # no keyword hits: the semantic order
    ([[], [5, 6]], [5, 6]),
    ([[1, 2], [2, 1]], [1, 2]),        # a tie keeps the first seen
])
def test_reciprocal_rank_fusion(rankings, fused):
    assert [label for label, _ in reciprocal_rank_fusion(rankings, 3)] == fused


def test_only_keyword_hits_near_the_best_score_are_fused():
    assert confident_keyword_labels([(7, 10.0), (8, 6.0), (9, 4.9)], 0.5) == [7, 8]
    assert confident_keyword_labels([], 0.5) == []


# ------------------------------------------------------------- identifier queries (issue 14)

DEFINITION = DocumentInput(id="definition", text=(
    ".. function:: copyfileobj(fsrc, fdst[, length])\n\n"
    "   Copy the contents of the file-like object *fsrc* to the file-like object *fdst*."))
MENTIONS = [DocumentInput(id=f"mention-{n}", text=(
    f"Note {n}: on Windows shutil.copyfile uses a bigger buffer and a memoryview-based "
    "variant of shutil.copyfileobj is used. If the fast copy fails, shutil falls back on "
    "shutil.copyfileobj, and copyfileobj reads in chunks.")) for n in range(3)]


@pytest.fixture(scope="module")
def code_docs_node(tmp_path_factory, real_embedder):
    with Node.open(tmp_path_factory.mktemp("identifiers")) as node:
        node.upsert_documents("c", [DEFINITION, *MENTIONS, TYRE], create_missing=True)
        node.build("c")
        yield node


def test_an_identifier_query_finds_the_passage_defining_it_over_those_naming_it_more(
        code_docs_node):
    assert ranks(code_docs_node, "shutil.copyfileobj", "keyword")[0] == "definition"
    assert ranks(code_docs_node, "shutil.copyfileobj", "hybrid")[0] == "definition"


def test_a_question_in_words_ranks_by_words_alone(code_docs_node):
    # not an identifier query: the defined names play no part, the mentions' words win
    query = "which variant of copyfileobj does shutil use on windows"
    assert ranks(code_docs_node, query, "keyword")[0].startswith("mention-")


@pytest.mark.parametrize(("query", "first"), [
    ("parse_args", 9),                    # identifier: the keyword side's best hit comes first
    ("how do I parse the arguments", 1),  # words: a tie at the top, the semantic order wins
])
def test_hybrid_ranking_weighs_the_keyword_side_up_for_identifier_queries(query, first):
    semantic = [1, 2, 3]
    keyword = [(9, 10.0), (2, 4.0)]  # 2 scores under half the best: not confident, not fused
    assert hybrid_ranking(query, semantic, keyword, 3)[0][0] == first


def test_a_tantivy_panic_becomes_a_meshdex_error():
    searcher = tantivy.Index(tantivy.SchemaBuilder().add_text_field("t").build()).searcher()
    with pytest.raises(KeywordIndexFailed, match="inside tantivy") as raised:
        with tantivy_errors("search", None):
            searcher.search(tantivy.Query.all_query(), 0)  # tantivy asserts the limit is > 0
    assert isinstance(raised.value, MeshdexError)


def test_tantivy_errors_lets_interrupts_through():
    with pytest.raises(KeyboardInterrupt), tantivy_errors("search", None):
        raise KeyboardInterrupt


def write_format_3_index(path: Path, texts: list[str], labels: list[int]) -> None:
    """A keyword index as format 3 wrote it: the label indexed as well as fast."""
    builder = tantivy.SchemaBuilder()
    builder.add_text_field("text", stored=False, tokenizer_name="meshdex_words",
                           index_option="basic")
    builder.add_text_field("defines", stored=False, tokenizer_name="meshdex_tokens",
                           index_option="basic")
    builder.add_unsigned_field(LABEL_FIELD, stored=False, indexed=True, fast=True)
    path.mkdir(parents=True)
    index = with_tokenizers(tantivy.Index(builder.build(), path=str(path)))
    writer = index.writer(heap_size=16 * 1024 * 1024, num_threads=1)
    for text, label in zip(texts, labels, strict=True):
        writer.add_document(passage_document(text, label))
    writer.commit()
    writer.wait_merging_threads()


def stale_format_3_index(node: Node, path: Path) -> None:
    """A format-3 index at ``path`` whose only word, "stale", is labelled as b's and c's
    passages: read as if it were current, a search for "stale" would find b and c."""
    current = node.data_dir / "indexes" / KEYWORD_DIR_NAME / "c" / node.indexes.manifest(
        "c").bundle_id
    labels = [hit.label for hit in KeywordIndex.open(current).search("port", 5)]
    assert len(labels) == 2
    write_format_3_index(path, ["stale"] * 2, labels)


def replace_file(path: Path, data: bytes) -> None:
    """Damage ``path`` on disk as a crash or another program would leave it: a new file in
    its place. Overwriting it in place would truncate the pages this process's open index
    still maps, and tantivy's threads reading them die of SIGBUS (a CI run did)."""
    fresh = path.with_name(path.name + ".damaged")
    fresh.write_bytes(data)
    os.replace(fresh, path)


@pytest.mark.parametrize("damage", ["meta.json", "segment", "format 3"])
def test_a_damaged_keyword_index_is_rebuilt_on_the_next_search(node: Node, damage: str):
    (bundle_dir,) = (node.data_dir / "indexes" / KEYWORD_DIR_NAME / "c").iterdir()
    if damage == "meta.json":
        replace_file(bundle_dir / "meta.json", b"{not json")
    elif damage == "segment":
        for segment in bundle_dir.glob("*.idx"):
            replace_file(segment, b"\0" * 16)
    else:  # an index of the previous format where this one's belongs
        stale_format_3_index(node, bundle_dir.with_name("stale"))
        for path in bundle_dir.iterdir():
            path.unlink()
        bundle_dir.rmdir()
        bundle_dir.with_name("stale").rename(bundle_dir)
    node.indexes = IndexManager(node.store, embedder_factory=lambda info: HashingEmbedder())
    assert sorted(ranks(node, "port", "keyword")) == ["b", "c"]
    assert ranks(node, "stale", "keyword") == []
    assert KeywordIndex.open(bundle_dir).search("port", 5)  # rebuilt on disk, not in memory


def test_a_keyword_index_of_an_older_format_is_removed_and_never_read(node: Node):
    bundle_id = node.indexes.manifest("c").bundle_id
    older = node.data_dir / "indexes" / "keyword-v3" / "c" / bundle_id
    stale_format_3_index(node, older)
    shutil.rmtree(node.data_dir / "indexes" / KEYWORD_DIR_NAME)  # as a format-3 data directory
    node.indexes = IndexManager(node.store, embedder_factory=lambda info: HashingEmbedder())
    assert ranks(node, "stale", "keyword") == []
    assert sorted(ranks(node, "port", "keyword")) == ["b", "c"]
    assert not older.parent.parent.exists()
    unversioned = node.data_dir / "indexes" / "keyword" / "c" / bundle_id  # before formats
    unversioned.mkdir(parents=True)
    (unversioned / "meta.json").write_text("{}")
    node.upsert_documents("c", [DocumentInput(id="e", text="a new passage about owls")])
    node.build("c")
    assert not unversioned.parent.parent.exists()
    assert ranks(node, "owls", "keyword") == ["e"]


def test_a_delta_removing_more_labels_than_deletes_pay_for_rebuilds_the_keyword_index(
        node: Node, monkeypatch: pytest.MonkeyPatch):
    monkeypatch.setattr(keyword_indexes, "REBUILD_REMOVED_LABELS", 1)
    node.upsert_documents("c", [DocumentInput(id=f"n{i}", text=f"note {i} about ports")
                                for i in range(10)])
    node.build("c")
    node.delete_documents("c", ["n1", "n2"])  # 2 of 13 passages: under the deleted fraction
    assert node.build("c").action == "delta"
    (bundle_dir,) = (node.data_dir / "indexes" / KEYWORD_DIR_NAME / "c").iterdir()
    assert deleted_documents(bundle_dir) == (11, 0), "the delta deleted instead of rebuilding"
    assert "n1" not in ranks(node, "note", "keyword", top_k=20)


def test_a_delta_removing_few_labels_deletes_them_in_place(node: Node):
    node.upsert_documents("c", [DocumentInput(id=f"n{i}", text=f"note {i} about ports")
                                for i in range(10)])
    node.build("c")
    node.delete_documents("c", ["n1", "n2"])
    assert node.build("c").action == "delta"
    (bundle_dir,) = (node.data_dir / "indexes" / KEYWORD_DIR_NAME / "c").iterdir()
    assert deleted_documents(bundle_dir) == (13, 2)
    assert "n1" not in ranks(node, "note", "keyword", top_k=20)
