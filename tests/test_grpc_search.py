"""Build and Search over gRPC with the real packaged model, against the same node in-process."""

from __future__ import annotations

import threading
import time

import pytest
from grpc_support import started_node
from meshdex.index.errors import DeadlineExceeded, InvalidArgument
from meshdex.node.records import DocumentInput

pytestmark = pytest.mark.model

TOPICS = {
    "cooking": ["Simmer the tomato sauce slowly with garlic and basil.",
                "Knead the bread dough until it is smooth and elastic.",
                "Roast the vegetables in a hot oven until they caramelise."],
    "astronomy": ["The telescope revealed the rings of Saturn in sharp detail.",
                  "A comet's tail always points away from the Sun.",
                  "Jupiter's moons were first observed by Galileo."],
    "python": ["A list comprehension builds a new list from an iterable.",
               "Use a with statement so the file is closed even on errors.",
               "Dictionaries map hashable keys to values."],
    "sailing": ["Reef the mainsail before the wind gets too strong.",
                "Tacking turns the bow of the boat through the wind.",
                "A bowline knot makes a fixed loop at the end of a rope."],
}


def _documents() -> list[DocumentInput]:
    docs = []
    for topic, sentences in TOPICS.items():
        for i, sentence in enumerate(sentences):
            docs.append(DocumentInput(
                id=f"{topic}-{i}", text=sentence, source=f"{topic}.txt",
                metadata={"topic": topic, "year": 2018 + i}))
    return docs


@pytest.fixture(scope="module")
def server(tmp_path_factory, real_embedder):  # real_embedder: load the model once per session
    data_dir = tmp_path_factory.mktemp("search-node")
    with started_node(data_dir) as server:
        with server.client("write") as client:
            client.create_collection("notes")
            client.upsert_documents("notes", _documents())
            stages = []
            report = client.build("notes", progress=lambda *update: stages.append(update))
        server.build_report = report
        server.build_stages = stages
        yield server


@pytest.fixture
def client(server):
    with server.client("read") as client:
        yield client


def test_build_streams_progress_and_returns_the_report(server):
    report = server.build_report
    assert (report.collection, report.action, report.passages) == ("notes", "built", 12)
    assert report.generation >= 1 and report.bundle_bytes > 0
    assert server.build_stages, "no progress messages were streamed"
    assert all(done <= total for _, done, total in server.build_stages)


def test_search_over_grpc_equals_search_in_process(server, client):
    query = "how do I keep a file from staying open after an exception?"
    remote = client.search("notes", query, top_k=3)
    local = server.node.search("notes", query, top_k=3)
    assert [(h.document_id, h.passage) for h in remote.hits] == [
        (h.document_id, h.passage) for h in local.hits]
    assert [h.score for h in remote.hits] == pytest.approx([h.score for h in local.hits],
                                                           abs=1e-5)
    top = remote.hits[0]
    assert top.document_id == "python-1" and top.source == "python.txt"
    assert top.metadata == {"topic": "python", "year": 2019}
    assert remote.stats.model_calls >= 1 and remote.stats.total_seconds > 0


@pytest.mark.parametrize("search_filter", [
    "topic=astronomy",
    '{"field": "topic", "op": "eq", "value": "astronomy"}',
    {"and": [{"field": "topic", "op": "eq", "value": "astronomy"}]},
])
def test_filters_apply_during_the_search(client, search_filter):
    result = client.search("notes", "boats and wind", top_k=3, filter=search_filter)
    assert [hit.metadata["topic"] for hit in result.hits] == ["astronomy"] * 3


def test_search_knobs_travel_and_unknown_knobs_are_refused(client):
    assert len(client.search("notes", "bread", top_k=2, params={"ef": 16}).hits) == 2
    with pytest.raises(InvalidArgument, match="no_such_knob"):
        client.search("notes", "bread", params={"no_such_knob": 1})
    with pytest.raises(InvalidArgument, match="filter"):
        client.search("notes", "bread", filter="year>>2020")


def test_a_search_whose_deadline_passes_is_deadline_exceeded(client):
    with pytest.raises(DeadlineExceeded):
        client.search("notes", "telescope", deadline=time.monotonic() + 0.001)


@pytest.mark.parametrize(("rebuild", "action"), [(True, "built"), (False, "delta")])
def test_searches_keep_succeeding_during_a_rebuild_swap(server, rebuild, action):
    """Searchers run from before the build starts until after it returned, so searches are in
    flight while the new generation is swapped in; every one must answer, and answer right."""
    generation_before = server.node.index_stats("notes").generation
    failures: list[Exception] = []
    answered: list[tuple[float, float, str]] = []  # (started, ended, top document) per search
    stop = threading.Event()

    def search_until_stopped() -> None:
        with server.client("read") as searcher:
            while not stop.is_set():
                started = time.monotonic()
                try:
                    hits = searcher.search("notes", "rings of Saturn", top_k=1).hits
                    answered.append((started, time.monotonic(), hits[0].document_id))
                except Exception as error:  # any failure at all is the finding
                    failures.append(error)

    def wait_for(condition, what: str) -> None:
        deadline = time.monotonic() + 60
        while not condition():
            assert time.monotonic() < deadline and not failures, (what, failures[:3])
            time.sleep(0.005)

    threads = [threading.Thread(target=search_until_stopped) for _ in range(2)]
    for thread in threads:
        thread.start()
    try:
        wait_for(lambda: len(answered) >= 2, "searches answered before the build")
        with server.client("write") as writer:
            garden = DocumentInput(id=f"garden-{action}", text=(
                f"Water the tomato seedlings every morning in dry weather ({action})."))
            writer.upsert_documents("notes", [garden])
            build_started = time.monotonic()
            report = writer.build("notes", rebuild=rebuild)
            build_ended = time.monotonic()
        wait_for(lambda: any(started > build_ended for started, _, _ in answered),
                 "a search started after the build answered")
    finally:
        stop.set()
        for thread in threads:
            thread.join(30)
    assert report.action == action and report.generation > generation_before
    assert not failures, failures[:3]
    assert any(started < build_ended and ended > build_started
               for started, ended, _ in answered), "no search was in flight during the build"
    assert {top for _, _, top in answered} == {"astronomy-0"}


@pytest.mark.parametrize("recall_target", [0.5, 1.0])
def test_recall_target_travels_as_a_field_and_the_stopping_point_comes_back(
        server, client, recall_target):
    from meshdex.node import wire
    from meshdex.proto.meshdex.v1 import node_pb2 as pb

    query = "which planet has rings?"
    response = client._call("Search", pb.SearchRequest(collection="notes", query=query, top_k=3,
                                                       recall_target=recall_target))
    remote = wire.search_result_from_wire(response)
    local = server.node.search("notes", query, top_k=3,
                               params={"recall_target": recall_target})
    assert remote.stats.rerank_stop == local.stats.rerank_stop != ""
    assert remote.stats.reranked == local.stats.reranked >= 3
    with pytest.raises(InvalidArgument, match="recall_target"):
        client.search("notes", query, params={"recall_target": 1.5})


def test_a_search_through_the_node_says_when_the_index_is_behind(server):
    server.node.create_collection("later")
    server.node.upsert_documents("later", [DocumentInput(id="a", text="sailing upwind")])
    server.node.build("later")
    with server.client("write") as client:
        assert not client.search("later", "sailing").index_behind
        client.upsert_documents("later", [DocumentInput(id="b", text="tacking a boat")])
        assert client.search("later", "sailing").index_behind
        server.node.build("later")
        assert not client.search("later", "sailing").index_behind
