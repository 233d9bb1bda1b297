"""A node's index lifecycle: build, delta after changes, rebuild when needed, search, filters.

Mechanics run with the deterministic ``HashingEmbedder``; one test runs the real packaged
model end to end through the CLI.
"""

from __future__ import annotations

import json
import re
import subprocess
import sys

import pytest
from fakes import HashingEmbedder
from meshdex.index.errors import IndexNotBuilt, InvalidArgument
from meshdex.index.params import BuildParams
from meshdex.node.indexing import IndexManager
from meshdex.node.records import DocumentInput
from meshdex.node.service import Node
from topic_corpus import topic_documents


@pytest.fixture
def node(tmp_path):
    embedder = HashingEmbedder()
    with Node.open(tmp_path / "data") as opened:
        opened.indexes = IndexManager(opened.store, embedder_factory=lambda info: embedder)
        opened.create_collection("c")
        yield opened


def test_search_before_build_says_to_build(node):
    node.upsert_documents("c", topic_documents(per_topic=2, words=12))
    with pytest.raises(IndexNotBuilt, match="meshdex build"):
        node.search("c", "rocket orbit")


def test_build_then_search_finds_the_topic(node):
    node.upsert_documents("c", topic_documents(per_topic=20, words=12))
    report = node.build("c")
    assert (report.action, report.generation, report.passages) == ("built", 1, 80)
    results = node.search("c", "rocket orbit planet", top_k=5)
    assert len(results.hits) == 5
    assert {hit.metadata["topic"] for hit in results.hits} == {"space"}
    assert results.stats.passages_recomputed + results.stats.cache_hits >= 5


def test_unchanged_build_does_nothing(node):
    node.upsert_documents("c", topic_documents(per_topic=5, words=12))
    node.build("c")
    again = node.build("c")
    assert (again.action, again.generation) == ("unchanged", 1)


def test_small_change_is_applied_as_delta_and_deleted_passages_never_return(node):
    node.upsert_documents("c", topic_documents(per_topic=25, words=12))
    node.build("c")
    node.delete_documents("c", ["space-0", "space-1"])
    node.upsert_documents("c", [DocumentInput(id="new", text="comet comet telescope zebra",
                                              metadata={"topic": "space"}, source=None)])
    report = node.build("c")
    assert (report.action, report.generation) == ("delta", 2)
    assert (report.added, report.removed) == (1, 2)
    ids = [hit.document_id for hit in node.search("c", "comet telescope zebra", top_k=10).hits]
    assert "new" in ids[:3]
    assert not {"space-0", "space-1"} & set(ids)


def test_deleted_documents_are_not_returned_even_before_the_next_build(node):
    node.upsert_documents("c", topic_documents(per_topic=10, words=12))
    node.build("c")
    node.delete_documents("c", [f"music-{i}" for i in range(10)])
    hits = node.search("c", "guitar chord melody", top_k=5).hits
    assert len(hits) == 5
    assert all(hit.metadata["topic"] != "music" for hit in hits)


def test_large_change_rebuilds_and_says_why(node):
    node.upsert_documents("c", topic_documents(per_topic=5, words=12))
    node.build("c")
    node.upsert_documents("c", topic_documents(per_topic=20, words=12))
    report = node.build("c")
    assert report.action == "built"
    assert "new passages exceed" in report.reason


def test_changed_params_force_a_rebuild(node):
    node.upsert_documents("c", topic_documents(per_topic=5, words=12))
    node.build("c")
    default = BuildParams()
    report = node.build("c", params=BuildParams(pruned_degree=default.pruned_degree - 1))
    assert report.action == "built" and report.reason == "build params changed"


@pytest.mark.parametrize(
    ("spec", "topics"),
    [
        ("topic=music", {"music"}),
        ("topic in [fruit, cooking]", {"fruit", "cooking"}),
        ({"field": "n", "op": "gte", "value": 8}, {"fruit", "space", "cooking", "music"}),
    ],
)
def test_filter_applies_during_search_and_still_returns_k(node, spec, topics):
    node.upsert_documents("c", topic_documents(per_topic=10, words=12))
    node.build("c")
    hits = node.search("c", "rocket orbit planet", top_k=6, filter=spec).hits
    assert len(hits) == 6
    assert {hit.metadata["topic"] for hit in hits} <= topics
    if isinstance(spec, dict):
        assert all(hit.metadata["n"] >= 8 for hit in hits)


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"query": "  "}, "non-empty"),
        ({"query": "x" * 9000}, "limit"),
        ({"query": "ok", "top_k": 0}, "top_k"),
        ({"query": "ok", "top_k": 5000}, "top_k"),
        ({"query": "ok", "filter": "topic=="}, "cannot parse filter"),
        ({"query": "ok", "params": {"nonsense": 1}}, "nonsense"),
    ],
)
def test_bad_search_requests_are_refused_clearly(node, kwargs, message):
    node.upsert_documents("c", topic_documents(per_topic=2, words=12))
    node.build("c")
    query = kwargs.pop("query")
    with pytest.raises(InvalidArgument, match=message):
        node.search("c", query, **kwargs)


def test_empty_collection_cannot_be_built(node):
    with pytest.raises(InvalidArgument, match="no passages"):
        node.build("c")


def test_stats_report_sections_against_raw_text(node):
    node.upsert_documents("c", topic_documents(per_topic=10, words=12))
    node.build("c")
    stats = node.index_stats("c").to_dict()
    assert stats["passages"] == 40
    assert stats["raw_passage_bytes"] > 0
    assert {"codes", "codebook", "id_map"} <= set(stats["section_bytes"])
    assert stats["index_bytes"] == sum(stats["section_bytes"].values())


def test_stats_show_the_keyword_index_learned_cache_and_pins_beside_the_index(node):
    node.upsert_documents("c", topic_documents(per_topic=10, words=12))
    node.build("c")
    node.pin("c", "topic=space")
    node.search("c", "rocket orbit", params={"recall_target": 1.0})
    beside = node.index_stats("c").beside
    assert beside.keyword_index_bytes == node.indexes.keywords.bytes_on_disk("c") > 0
    assert beside.pinned_passages == 10 and 0 < beside.pinned_bytes < beside.pin_budget_bytes
    assert beside.learned_passages > 0 and beside.learned_bytes <= beside.learned_budget_bytes


def test_a_search_says_when_the_collection_changed_since_its_build(node):
    node.upsert_documents("c", topic_documents(per_topic=2, words=12))
    node.build("c")
    assert not node.search("c", "topic words").index_behind
    node.upsert_documents("c", [DocumentInput(id="late", text="a document added after it")])
    assert node.search("c", "topic words").index_behind
    command = [sys.executable, "-m", "meshdex", "--data-dir", str(node.data_dir), "search",
               "-c", "c", "topic words", "--mode", "keyword"]  # built with the fake model
    shown = subprocess.run(command, capture_output=True, text=True, timeout=120)
    assert shown.returncode == 0, shown.stderr
    assert ("note: 'c' changed since its index was built, and what changed is not searched "
            "yet: run `meshdex build -c c`") in shown.stderr
    as_json = subprocess.run([*command, "--json"], capture_output=True, text=True, timeout=120)
    assert json.loads(as_json.stdout)["index_behind"] is True
    node.build("c")
    assert not node.search("c", "topic words").index_behind


def test_stats_of_an_index_of_no_text_give_no_share_of_it(node):
    """Every document deleted and the index rebuilt: 0 bytes of text, so no percentage (it
    read '1236000.00% of the text', the index size over one byte)."""
    node.upsert_documents("c", topic_documents(per_topic=1, words=12))
    node.build("c")
    node.delete_documents("c", [doc.id for doc in topic_documents(per_topic=1, words=12)])
    node.build("c")
    stats = node.index_stats("c").to_dict()
    assert (stats["passages"], stats["raw_passage_bytes"]) == (0, 0)
    assert stats["index_bytes"] > 0 and stats["index_to_raw_ratio"] is None
    shown = subprocess.run([sys.executable, "-m", "meshdex", "--data-dir", str(node.data_dir),
                            "stats", "-c", "c"], capture_output=True, text=True, timeout=120)
    assert shown.returncode == 0, shown.stderr
    assert "bytes (no text indexed)" in shown.stdout


@pytest.mark.model
def test_cli_demo_indexes_the_sample_and_answers_with_the_real_model(tmp_path):
    """The README's first command, minus the venv: real model, real store, real bundle."""
    data_dir = tmp_path / "data"
    command = [sys.executable, "-m", "meshdex", "--data-dir", str(data_dir)]
    first = subprocess.run([*command, "demo", "--query", "How do I create a virtual environment?",
                            "--top-k", "2"], capture_output=True, text=True, timeout=900)
    assert first.returncode == 0, first.stderr
    assert "sample: built generation 1 " in first.stdout
    assert "— full build: no index yet" in first.stdout
    top = first.stdout.split("1. ", 1)[1].splitlines()[0]
    assert "venv.rst" in top
    assert re.search(r"\(cosine 0\.\d{3}( · bm25 \d+\.\d\d)?\)$", top), top
    found = subprocess.run(
        [*command, "search", "--collection", "sample", "--json", "--top-k", "1",
         "raise an exception inside try"],
        capture_output=True, text=True, timeout=300,
    )
    assert found.returncode == 0, found.stderr
    answer = json.loads(found.stdout)
    assert answer["hits"][0]["document_id"] == "python-tutorial/errors.rst"
    second = subprocess.run([*command, "demo", "--top-k", "1"], capture_output=True, text=True,
                            timeout=900)
    assert second.returncode == 0, second.stderr
    assert "unchanged generation 1" in second.stdout


def test_searches_keep_succeeding_while_builds_swap_generations(node):
    import threading

    node.upsert_documents("c", topic_documents(per_topic=15, words=12))
    node.build("c")
    failures: list[BaseException] = []
    answered = 0
    stop = threading.Event()

    def search_loop() -> None:
        nonlocal answered
        while not stop.is_set():
            try:
                hits = node.search("c", "oven bake flour", top_k=3).hits
                assert len(hits) == 3
                answered += 1
            except BaseException as error:  # noqa: BLE001 - reported below
                failures.append(error)
                return

    searcher = threading.Thread(target=search_loop)
    searcher.start()
    try:
        for round_number in range(4):
            node.upsert_documents("c", [DocumentInput(
                id=f"extra-{round_number}", text=f"dough knead butter extra {round_number}",
                metadata={"topic": "cooking"}, source=None)])
            node.build("c", rebuild=round_number % 2 == 1)
    finally:
        stop.set()
        searcher.join(timeout=30)
    assert not failures, failures
    assert answered > 0
    assert node.indexes.manifest("c").generation == 5


def test_status_shows_each_index_its_freshness_and_the_decisions_taken(node):
    node.upsert_documents("c", topic_documents(per_topic=5, words=12))
    node.build("c")
    node.build("c")
    status = node.status()
    assert [(s.collection, s.generation, s.passages, s.stale) for s in status.indexes] == [
        ("c", 1, 20, False)
    ]
    assert [(r.trigger, r.decision) for r in status.decisions] == [
        ("build", "unchanged"), ("build", "built")
    ]
    assert status.decisions[1].reasons == ("no index yet",)
    node.upsert_documents("c", [DocumentInput(id="late", text="a late note about comets",
                                              metadata={}, source=None)])
    assert node.status().indexes[0].stale


def test_a_decision_repeated_unchanged_is_logged_once(node):
    node.upsert_documents("c", topic_documents(per_topic=2, words=12))
    node.build("c")
    for _ in range(5):
        node.build("c")  # what a scheduler or a sync session every interval would find
    assert [r.decision for r in node.status().decisions] == ["unchanged", "built"]
    node.upsert_documents("c", [DocumentInput(id="late", text="a late note", metadata={},
                                              source=None)])
    node.build("c")
    node.build("c")
    assert [r.decision for r in node.status().decisions] == [
        "unchanged", "delta", "unchanged", "built"]


def test_a_torn_decision_entry_is_skipped_not_fatal(node):
    node.upsert_documents("c", topic_documents(per_topic=2, words=12))
    node.build("c")
    with node.indexes.decisions.path.open("a") as log:
        log.write('{"at_ms": 1, "collec')  # a crash mid-append
    assert [r.decision for r in node.status().decisions] == ["built"]


def test_a_collection_growing_past_graph_min_nodes_gets_its_graph(node):
    node.upsert_documents("c", topic_documents(per_topic=10, words=12))
    first = node.build("c", params=BuildParams(graph_min_nodes=42))
    assert not node.indexes._load("c", required=True).index.has_graph
    node.upsert_documents("c", [DocumentInput(id=f"more-{i}", text=f"comet orbit more {i}",
                                              metadata={}, source=None) for i in range(3)])
    report = node.build("c")
    assert (first.action, report.action) == ("built", "built")
    assert "graph_min_nodes=42" in report.reason
    assert node.indexes._load("c", required=True).index.has_graph


def test_a_dropped_collection_takes_its_index_with_it(node, tmp_path):
    node.upsert_documents("c", topic_documents(per_topic=10, words=12))
    node.build("c")
    node.search("c", "rocket orbit")
    node.drop_collection("c")
    node.create_collection("c")
    node.upsert_documents("c", [DocumentInput(id="new", text="guitar chord melody", source=None)])
    with pytest.raises(IndexNotBuilt, match="meshdex build"):
        node.search("c", "rocket orbit")
    indexes = tmp_path / "data" / "indexes"
    leftovers = [p for p in indexes.glob("c.*")] + [p for p in indexes.glob("keyword*/c")]
    assert not leftovers
