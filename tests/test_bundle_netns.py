"""Index bundles between hosts in network namespaces, each a real ``meshdex serve`` process
(real mutual TLS, the packaged model, passages counted by ``counting_meshdex.py``):

- B (``index_policy = fetch``) installs A's bundle without embedding a passage and answers
  searches exactly as A does; after 1% of A's documents change and A builds a delta, B fetches
  only the blocks that changed (the transfer figures are in B's decision log);
- C (documents cut the same way, but the model at fp32 where A's default is bf16: another
  embedding fingerprint) refuses A's codes, rebuilds from its own documents and says so; every
  index C ever holds or serves is its own fp32 one.
"""

from __future__ import annotations

import json
import re
import signal
import sys
from pathlib import Path

import pytest
from counting_meshdex import LOG_ENV, embedded_passages
from meshdex.index.bundle_io import open_bundle
from meshdex.index.errors import NotFound
from meshdex.node.indexing import BUNDLE_SUFFIX
from meshdex.node.paths import INDEX_DIR_NAME
from netns import Lan, netns_available
from sync_support import wait_for, write_jsonl
from test_sync_netns import HostProcess

pytestmark = [pytest.mark.netns, pytest.mark.model,
              pytest.mark.skipif(not netns_available(),
                                 reason="needs root and iproute2 (`.ci/run` installs it)")]

COUNTING_CLI = str(Path(__file__).with_name("counting_meshdex.py"))
DOCUMENT_COUNT = 1000
CHANGED_COUNT = DOCUMENT_COUNT // 100
QUERIES = ("which harbour has the red lighthouse", "orchard with pear trees", "note 1234")
TRANSFER = re.compile(r"fetched (\d+) of (\d+) blocks \((\d+) of (\d+) bytes\), (\d+) held")
COLOURS = ("red", "green", "blue", "amber", "violet", "grey", "white")
PLACES = ("harbour", "orchard", "library", "station", "market", "garden", "bridge", "mill")


def _text(i: int, edition: str = "") -> str:
    return (f"note {i}{edition}: the {COLOURS[i % 7]} {PLACES[i % 8]} by the "
            f"{PLACES[(i // 8) % 8]} keeps {i % 13} {('lights', 'trees', 'books')[i % 3]}")


class CountingHost(HostProcess):
    """A host whose every meshdex process counts the passages it embeds in one log file."""

    def __init__(self, lan: Lan, host: str, data_dir: Path, **config: str) -> None:
        super().__init__(lan, host, data_dir)
        self.launcher = (sys.executable, COUNTING_CLI)
        self.embed_log = data_dir.with_name(f"{host}.embedded")
        self.config = config

    @property
    def env(self) -> dict[str, str]:
        return {**super().env, LOG_ENV: str(self.embed_log),
                **{f"MESHDEX_{key.upper()}": value for key, value in self.config.items()}}

    @property
    def embedded(self) -> int:
        return embedded_passages(self.embed_log)

    def remote(self, *args: str) -> dict:
        return json.loads(self.meshdex("--node", self.node_address, *args, "--json").stdout)

    def hits(self, query: str) -> list[tuple[str, float]]:
        return [(hit["document_id"], round(hit["score"], 4))
                for hit in self.remote("search", query, "-k", "5")["hits"]]

    def decisions(self) -> list[dict]:
        return self.remote("status")["decisions"]

    def bundle_manifest(self):
        path = self.data_dir / INDEX_DIR_NAME / f"default{BUNDLE_SUFFIX}"
        try:
            with open_bundle(path, verify="none") as bundle:
                return bundle.manifest
        except NotFound:
            return None


@pytest.fixture
def lan(tmp_path: Path):
    network = Lan(("a", "b", "c")).up()
    hosts = {"a": CountingHost(network, "a", tmp_path / "a"),
             "b": CountingHost(network, "b", tmp_path / "b", index_policy="fetch",
                               sync_interval_s="3600"),
             "c": CountingHost(network, "c", tmp_path / "c")}
    yield network, hosts
    for host in hosts.values():
        host.stop(signal.SIGKILL)
    network.close()


def _pair(inviter: CountingHost, joiner: CountingHost) -> None:
    token = inviter.meshdex("invite").stdout.strip()
    assert "paired with" in joiner.meshdex("join", token).stdout


def _sync_decision(host: CountingHost, generation: int) -> dict | None:
    return next((d for d in host.decisions() if d["trigger"] == "sync"
                 and d["generation"] == generation and d["decision"] != "refuse"), None)


def test_fetch_installs_without_embedding_deltas_move_few_blocks_other_fingerprint_rebuilds(
        lan, tmp_path) -> None:
    _, hosts = lan
    a, b, c = hosts["a"], hosts["b"], hosts["c"]
    a.meshdex("add", "--jsonl", write_jsonl(tmp_path / "a.jsonl", {
        f"n{i:05d}": _text(i) for i in range(DOCUMENT_COUNT)}))
    a.meshdex("build")
    c.meshdex("init", "--precision", "fp32")
    for host in hosts.values():
        host.start()
    _pair(a, b)
    _pair(a, c)

    first = wait_for(lambda: _sync_decision(b, 1), timeout_s=300, what="b installing a's bundle")
    assert first["decision"] == "use", first
    assert b.embedded == 0  # installed, not built: no passage embedded on B
    assert b.bundle_manifest().generation == 1
    for query in QUERIES:
        assert b.hits(query) == a.hits(query)

    a.meshdex("--node", a.node_address, "add", "--jsonl", write_jsonl(tmp_path / "change.jsonl", {
        f"n{i:05d}": _text(i, " (revised)") for i in range(0, DOCUMENT_COUNT, 100)}))
    # A's own sessions may have built the delta already: with index_policy auto, B's bundle
    # lacking A's new writes makes A build them itself.
    assert a.remote("build")["action"] in ("delta", "unchanged")
    before = b.embedded
    b.meshdex("--node", b.node_address, "sync")
    second = wait_for(lambda: _sync_decision(b, 2), timeout_s=120, what="a's delta on b")
    assert second["decision"] == "use", second
    assert b.embedded == before  # the revised documents came indexed, too
    fetched, total, fetched_bytes, total_bytes, held = map(
        int, TRANSFER.search(" ".join(second["reasons"])).groups())
    assert fetched + held == total and fetched_bytes < total_bytes
    assert fetched <= held  # 1% of the documents changed: most blocks are reused
    for query in (*QUERIES, "note 100 (revised)"):
        assert b.hits(query) == a.hits(query)

    def c_decided():
        manifest = c.bundle_manifest()  # whatever C holds is its own fp32 index
        assert manifest is None or (manifest.fingerprint.precision == "fp32"
                                    and manifest.signer_device_id != a.meshdex("id").stdout
                                    .strip()), manifest
        return manifest is not None and any(d["decision"] == "rebuild_locally"
                                            for d in c.decisions())

    wait_for(c_decided, timeout_s=600, what="c's own fp32 build")
    [refusal, *_] = [d for d in c.decisions() if d["decision"] == "rebuild_locally"]
    assert "precision" in " ".join(refusal["reasons"]), refusal
    assert "building locally" in " ".join(refusal["reasons"])
    assert c.embedded >= DOCUMENT_COUNT
    [(top, _), *_] = c.hits(QUERIES[0])  # C answers from its own index, about as A does
    assert top in [document for document, _ in a.hits(QUERIES[0])]
