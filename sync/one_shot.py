"""``meshdex sync`` without ``meshdex serve``: one session with each peer, then the index.

The sessions run on the engine a serving node runs (``service.sync_engine``): the peer's
bundles are offered, decided on by ``index_policy`` and fetched. A serving node builds what
no installed bundle covers in the background (``service.DebouncedBuilder``); this command
has no background, so it does so before it returns, per policy: ``fetch`` indexes received
documents by a peer's bundle only and says which collection it leaves unindexed, and why;
``auto`` builds here what no covering bundle brought; ``build`` builds here. A collection
whose embedder sends text to a network service is built only with
``sync_allow_network_embedders``, as after a serving node's session.
"""

from __future__ import annotations

import logging

from meshdex.index.errors import MeshdexError
from meshdex.node.config import NodeConfig
from meshdex.node.indexing import BuildProgress
from meshdex.node.service import Node
from meshdex.sync.client import CollectionReport, IndexOutcome, SessionReport, run_session
from meshdex.sync.engine import SyncEngine
from meshdex.sync.identity import DeviceIdentity
from meshdex.sync.remote_build import network_embedder_refusal
from meshdex.sync.service import sync_engine
from meshdex.sync.trust import Peer, TrustStore

logger = logging.getLogger(__name__)

NOT_BUILT = "not_built"
INDEX_FAILED = "failed"


def sync_once(node: Node, config: NodeConfig, *, identity: DeviceIdentity, trust: TrustStore,
              peers: list[Peer], progress: BuildProgress | None = None) -> list[SessionReport]:
    """A session with each of ``peers``, then each collection they touched indexed per
    ``config.index_policy`` (``progress``: the builds'); what became of a collection's index
    is in its last report's ``index``: "failed" where indexing failed after the sessions,
which leaves the sessions' outcome (``error``) as it was: the documents did arrive."""
    due: dict[str, None] = {}  # collections the sessions asked to build here, in order
    engine = sync_engine(node, config, identity=identity, trust=trust,
                         build=due.setdefault, await_bundle=due.setdefault)
    reports = [run_session(engine, identity, trust, peer) for peer in peers]
    received: dict[str, int] = {}
    last: dict[str, tuple[str, CollectionReport]] = {}
    for report in reports:
        for item in report.collections:
            received[item.collection] = received.get(item.collection, 0) + item.received
            last[item.collection] = (report.name, item)
    for name, (peer_name, item) in last.items():
        try:
            item.index = _settle(engine, config, name, due=name in due,
                                 received=received[name], progress=progress,
                                 offered=_offered(peer_name, item))
        except MeshdexError as error:
            logger.info("indexing %r after sync failed: %s", name, error)
            item.index = IndexOutcome(action=INDEX_FAILED, reason=str(error),
                                      error_kind=type(error).__name__)
    return reports


def _offered(peer_name: str, item: CollectionReport) -> str:
    if item.decision is None:
        return f"{peer_name} offered no bundle of it"
    return f"{peer_name}'s bundle was not installed ({item.decision})"


def _settle(engine: SyncEngine, config: NodeConfig, name: str, *, due: bool, received: int,
            progress: BuildProgress | None, offered: str) -> IndexOutcome | None:
    """Build ``name`` here if a session asked to and no installed bundle covers it; say why
    not where documents were received and stay unindexed. None: nothing to say."""
    node, bundles = engine.node, engine.bundles
    assert bundles is not None
    if not node.store.has_collection(name) or bundles.indexed(name):
        return None
    if not due:
        if not received:
            return None
        return IndexOutcome(action=NOT_BUILT, reason=(
            f"index_policy {config.index_policy} and {offered}: the documents received are "
            f"not in its index here until a peer's bundle covers them (`meshdex build -c "
            f"{name}` indexes them here)"))
    refusal = network_embedder_refusal(node.get_collection(name),
                                       allow_network=config.sync_allow_network_embedders)
    if refusal is not None:
        return IndexOutcome(action=NOT_BUILT, reason=refusal)
    logger.info("building %r after sync (index_policy %s)", name, config.index_policy)
    built = node.build(name, progress=progress)
    return IndexOutcome(action=built.action, generation=built.generation,
                        reason=f"index_policy {config.index_policy} and {offered}; {built.reason}",
                        passages=built.passages, seconds=round(built.seconds, 3))

