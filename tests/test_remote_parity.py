"""The same command gives the same result and exit code embedded and through ``--node``
(issue 8, item 7): each error class is produced both ways, and ``build --rebuild --param`` works
remotely. Real CLI (click runner), real node server, real store, the real model for the build.
"""

from __future__ import annotations

import json

import pytest
from click.testing import CliRunner
from grpc_support import started_node
from meshdex.index.embedders import EmbedderSpec
from meshdex.index.errors import (
    AlreadyExists,
    BundleError,
    EmbedderError,
    FailedPrecondition,
    InvalidArgument,
    MeshdexError,
    NotFound,
)
from meshdex.node.cli.main import EXIT_CODES, cli, exit_code_for
from meshdex.node.grpc_errors import STATUS_CODES, mapped_class
from meshdex.node.records import DocumentInput
from meshdex.node.service import Node

DEAD_EMBEDDER_URL = "http://127.0.0.1:9"  # the discard port: nothing answers

# (error class the command must fail with, the command)
ERROR_CASES = [
    (InvalidArgument, ["search", "-c", "docs", "   "]),
    # the wire's top_k is unsigned, 0 meaning the default: checked before the request is built
    (InvalidArgument, ["search", "-c", "docs", "rivers", "-k", "0"]),
    (InvalidArgument, ["search", "-c", "docs", "rivers", "-k", "-3"]),
    (InvalidArgument, ["search", "-c", "docs", "caf\udce9"]),  # a Latin-1 byte in argv
    (NotFound, ["search", "-c", "nosuch", "a missing collection"]),
    (AlreadyExists, ["init", "-c", "docs"]),
    (FailedPrecondition, ["search", "-c", "docs", "no index yet"]),
    (FailedPrecondition, ["pin", "-c", "docs", "--filter", "lang=en"]),  # no index yet
    (NotFound, ["pin", "-c", "nosuch", "--filter", "lang=en"]),
    (InvalidArgument, ["pin", "-c", "docs", "--filter", "lang=="]),
    (InvalidArgument, ["unpin", "-c", "docs"]),  # neither --filter nor --all
    (InvalidArgument, ["unpin", "-c", "docs", "--all", "--filter", "lang=en"]),
    (FailedPrecondition, ["unpin", "-c", "docs", "--all"]),  # no index yet
    (EmbedderError, ["build", "-c", "web"]),
    (BundleError, ["search", "-c", "broken", "a damaged index"]),
]


def _prepare(data_dir) -> None:
    with Node.open(data_dir) as node:
        for name in ("docs", "broken"):
            node.create_collection(name)
            node.upsert_documents(name, [DocumentInput(id=f"{name}-{i}",
                                                       text=f"{name} passage {i} about rivers",
                                                       metadata={"lang": "en" if i else "de"})
                                         for i in range(3)])
        node.create_collection("tagged")
        node.upsert_documents("tagged", [
            DocumentInput(id=f"{lang}-{kind}", text=f"a {kind} of clear water",
                          metadata={"lang": lang, "kind": kind})
            for lang in ("en", "de") for kind in ("river", "lake", "sea")
            if (lang, kind) != ("de", "lake")
        ])
        node.create_collection("web", embedder=EmbedderSpec(kind="http", model_id="m",
                                                            url=DEAD_EMBEDDER_URL))
        node.upsert_documents("web", [DocumentInput(id="w", text="sent to a dead embedder")])
        broken = node.indexes.bundle_path("broken")
        broken.parent.mkdir(parents=True, exist_ok=True)
        broken.write_bytes(b"not a bundle at all")


@pytest.fixture(scope="module")
def both_ways(tmp_path_factory):
    """A CLI runner per mode over identically prepared data directories."""
    embedded_dir = tmp_path_factory.mktemp("embedded")
    remote_dir = tmp_path_factory.mktemp("remote")
    _prepare(embedded_dir)
    _prepare(remote_dir)
    runner = CliRunner()
    with started_node(remote_dir) as server:
        def embedded(*args: str):
            return runner.invoke(cli, ["--data-dir", str(embedded_dir), *args])

        def remote(*args: str):
            return runner.invoke(cli, ["--node", server.address, "--token",
                                       server.tokens["admin"], *args])

        yield {"embedded": embedded, "remote": remote}


@pytest.mark.parametrize(("error_class", "command"), ERROR_CASES,
                         ids=[f"{cls.__name__}-{i}" for i, (cls, _) in enumerate(ERROR_CASES)])
def test_each_error_class_exits_the_same_both_ways(both_ways, error_class, command):
    results = {mode: run(*command) for mode, run in both_ways.items()}
    for mode, result in results.items():
        assert result.exit_code == EXIT_CODES[error_class], (mode, result.output)
        assert "Traceback" not in result.output
        assert result.output.startswith("error: ") or "\nerror: " in result.output, mode


# A malformed --filter was a search with no results and no error; the node parses it too.
BAD_FILTERS = [
    ("lang=en and", "cannot parse filter 'lang=en and': it ends with 'and'"),
    ("year>abc", "filter clause 'year>abc': an ordering comparison takes a number"),
    ("lang=", "cannot parse filter clause 'lang=': no value after '='"),
    ("year=>2020", "cannot parse filter clause 'year=>2020': unknown operator '=>'"),
]


@pytest.mark.parametrize(("spec", "message"), BAD_FILTERS, ids=[spec for spec, _ in BAD_FILTERS])
def test_a_malformed_filter_exits_2_in_one_line_both_ways(both_ways, spec, message):
    for mode, run in both_ways.items():
        result = run("search", "-c", "docs", "rivers", "--filter", spec)
        assert result.exit_code == EXIT_CODES[InvalidArgument], (mode, result.output)
        assert result.output.startswith(f"error: {message}"), (mode, result.output)
        assert result.output.count("\n") == 1, (mode, result.output)


def test_uppercase_connectives_filter_both_ways(both_ways):
    """``AND`` was folded into the value (lang = "en AND kind=river"): no results, no error."""
    for mode, run in both_ways.items():
        assert run("build", "-c", "tagged").exit_code == 0, mode
        result = run("search", "-c", "tagged", "water", "--json",
                     "--filter", "lang=en AND kind=river OR kind=lake")
        assert result.exit_code == 0, (mode, result.output)
        hits = json.loads(result.output)["hits"]
        assert sorted(hit["document_id"] for hit in hits) == ["en-lake", "en-river"], mode


def test_build_rebuild_with_params_works_through_a_node(both_ways, real_embedder):
    for mode, run in both_ways.items():
        result = run("build", "-c", "docs", "--rebuild", "--param", "storage_mode=full",
                     "--json")
        assert result.exit_code == 0, (mode, result.output)
        report = json.loads(result.output)
        assert (report["action"], report["reason"], report["passages"]) == (
            "built", "rebuild requested", 3), mode


def test_pin_works_through_a_node(both_ways, real_embedder):
    """`meshdex pin` beside `meshdex serve` goes through the node (it holds the caches) and
    reports what the embedded pin does; it used to refuse with 'only available embedded'."""
    reports = {}
    for mode, run in both_ways.items():
        assert run("build", "-c", "docs").exit_code == 0, mode
        result = run("pin", "-c", "docs", "--filter", "lang=en", "--json")
        assert result.exit_code == 0, (mode, result.output)
        reports[mode] = json.loads(result.output)
    assert reports["remote"] == reports["embedded"]
    assert (reports["remote"]["documents"], reports["remote"]["pinned_total"]) == (2, 2)


def test_unpin_works_through_a_node(both_ways, real_embedder):
    reports = {}
    for mode, run in both_ways.items():
        assert run("build", "-c", "docs").exit_code == 0, mode
        assert run("pin", "-c", "docs", "--filter", "lang=en").exit_code == 0, mode
        by_filter = run("unpin", "-c", "docs", "--filter", "id=docs-1", "--json")
        everything = run("unpin", "-c", "docs", "--all")
        assert (by_filter.exit_code, everything.exit_code) == (0, 0), (mode, by_filter.output)
        reports[mode] = json.loads(by_filter.output), everything.output
    assert reports["remote"] == reports["embedded"]
    by_filter, everything = reports["remote"]
    assert (by_filter["documents"], by_filter["unpinned"], by_filter["pinned_total"]) == (1, 1, 1)
    assert everything.startswith("docs: 1 passage unpinned; 0 pinned in all (0 of ")


class _FailingNode:
    """A node double whose ``status`` raises the error under test (the mapping is the mechanics
    under test; the commands above cover it against the real node)."""

    def __init__(self, error: Exception) -> None:
        self.error = error

    def status(self):
        raise self.error


EVERY_ERROR_CLASS = sorted({*EXIT_CODES, *STATUS_CODES}, key=lambda cls: cls.__name__)


@pytest.mark.parametrize("error_class", EVERY_ERROR_CLASS, ids=lambda cls: cls.__name__)
def test_every_error_class_crosses_the_wire_as_itself(tmp_path, error_class):
    error = error_class("the node said no")
    with started_node(tmp_path, node=_FailingNode(error)) as server, server.client() as client:
        with pytest.raises(MeshdexError) as raised:
            client.status()
    assert exit_code_for(raised.value) == exit_code_for(error)
    assert type(raised.value) is (mapped_class(error_class) or MeshdexError)
