"""What to do with a peer's bundle, and doing it: fetch and install, build here, or refuse.

``index_policy`` says what this device prefers: ``fetch`` (install peers' bundles; never embed
passages for them), ``build`` (always index here), ``auto`` (fetch when the peer's bundle is
compatible and covers every document this device holds, else build). With ``auto``, received
documents are built only once the session's bundle exchange is over (``settle``) and no
covering bundle was installed, so a laptop never embeds what the peer's bundle brings; while a
bundle is being fetched (``fetching``) builds of its collection wait. Whatever the policy, the
offer must pass, in order: the signature of a paired device (or this one); no rollback (a
bundle from the same signer with a generation not above the one installed from it is refused,
its own repeat is a no-op); and ``decide_compatibility``, which refuses, or sends to a local
rebuild anything built with another model hash, fingerprint, chunking or unknown build params.
The offer is decided again under the collection's build lock after the download, against the
store as it is then; every decision but "nothing new" goes to the decision log with its reason.
"""

from __future__ import annotations

import json
import logging
import threading
from collections.abc import Callable
from dataclasses import dataclass, replace
from pathlib import Path

from meshdex.index.bundle_io import open_bundle
from meshdex.index.bundle_manifest import BundleManifest
from meshdex.index.compat import (
    REBUILDING_REASON,
    Decision,
    DecisionKind,
    compare_store_states,
    decide_by_model,
    decide_compatibility,
)
from meshdex.index.errors import BundleCorrupt, BundleError, EmbedderError
from meshdex.node.bundle_transfer import local_state
from meshdex.node.indexing import store_state_of
from meshdex.node.paths import write_private_file
from meshdex.node.records import CollectionInfo
from meshdex.node.service import Node
from meshdex.sync.blocks import WHOLE_BUNDLE_BYTES
from meshdex.sync.bundle_fetch import FetchBlocks, fetch_bundle, has_partial
from meshdex.sync.bundle_shelf import BundleOffer
from meshdex.sync.errors import BundleNotTrusted
from meshdex.sync.files import locked, sync_dir
from meshdex.sync.identity import DeviceIdentity
from meshdex.sync.signing import verify_bundle_signature
from meshdex.sync.trust import TrustStore

logger = logging.getLogger(__name__)

RECEIVED_FILE_NAME = "received_bundles.json"
TRIGGER = "sync"
FETCH, BUILD, SKIP, REFUSE = "fetch", "build", "skip", "refuse"


@dataclass(frozen=True, kw_only=True)
class BundleOutcome:
    """What became of one offer, for ``meshdex sync --json``."""

    decision: str  # a DecisionKind value, "build", "unchanged" or "refuse"
    reason: str
    bundle_bytes_fetched: int = 0
    bundle_bytes_total: int = 0
    blocks_fetched: int = 0
    blocks_reused: int = 0


@dataclass(frozen=True, kw_only=True)
class _Verdict:
    action: str  # FETCH | BUILD | SKIP | REFUSE
    decision: str
    reasons: tuple[str, ...]
    compat: Decision | None = None


class ReceivedBundles:
    """Per collection and signer, the newest bundle installed from that signer: what makes an
    older generation or a replayed manifest refusable. ``DATA_DIR/sync/received_bundles.json``."""

    def __init__(self, data_dir: Path) -> None:
        self.path = sync_dir(data_dir) / RECEIVED_FILE_NAME
        self._lock = threading.Lock()

    def _read(self) -> dict[str, dict[str, dict[str, object]]]:
        try:
            data = json.loads(self.path.read_text(encoding="utf-8"))
        except FileNotFoundError:
            return {}
        return data if isinstance(data, dict) else {}

    def last(self, collection: str, signer: str) -> tuple[int, str] | None:
        """(generation, bundle id) last installed from ``signer``, or None."""
        with self._lock:
            entry = self._read().get(collection, {}).get(signer)
        if not isinstance(entry, dict):
            return None
        return int(entry["generation"]), str(entry["bundle_id"])

    def record(self, collection: str, signer: str, manifest: BundleManifest) -> None:
        with self._lock, locked(self.path):
            data = self._read()
            data.setdefault(collection, {})[signer] = {"generation": manifest.generation,
                                                       "bundle_id": manifest.bundle_id}
            write_private_file(self.path, json.dumps(data, indent=1, sort_keys=True).encode())


class BundleReceiver:
    """Decides on and installs peers' bundles for one node."""

    def __init__(self, *, node: Node, identity: DeviceIdentity, trust: TrustStore, policy: str,
                 request_build: Callable[[str], None] | None = None) -> None:
        self.node, self.identity, self.trust = node, identity, trust
        self.policy = policy  # one of node.config.INDEX_POLICIES (validated there)
        self.request_build = request_build
        self.received = ReceivedBundles(node.data_dir)
        self._fetching: dict[str, int] = {}
        self._fetching_lock = threading.Lock()

    def fetching(self, collection: str) -> bool:
        """Whether a bundle of ``collection`` is being fetched right now."""
        with self._fetching_lock:
            return self._fetching.get(collection, 0) > 0

    def indexed(self, collection: str) -> bool:
        """Whether the installed index holds every document the store holds (no build due)."""
        installed = self.node.indexes.manifest(collection)
        if installed is None:
            return False
        current = store_state_of(self.node.store, collection)
        return not compare_store_states(installed.store_state, current)[0]

    def settle(self, collection: str) -> None:
        """The session's bundle exchange for ``collection`` is over (an offer weighed, or none
        made): with ``auto``, build what no installed bundle covers now, rather than after the
        grace the arrival of the documents set. ``fetch`` never builds peers' documents."""
        if self.policy == "auto" and self.request_build is not None \
                and self.node.store.has_collection(collection) and not self.indexed(collection):
            self.request_build(collection)

    def whole_bundle_max_bytes(self, collection: str) -> int:
        """How big a bundle of ``collection`` the peer may send whole with its offer:
        ``blocks.WHOLE_BUNDLE_BYTES`` while this device holds no block of it (no bundle of the
        collection, no partial download) and may fetch it (``index_policy`` is not
        ``build``), else 0. If the offer is then not fetched, those bytes moved for nothing."""
        holds_none = (not self.node.indexes.bundle_path(collection).exists()
                      and not has_partial(self.node.data_dir, collection))
        return WHOLE_BUNDLE_BYTES if self.policy != "build" and holds_none else 0

    def receive(self, peer_name: str, offer: BundleOffer, fetch: FetchBlocks,
                whole: bytes | None = None) -> BundleOutcome:
        """Decide on ``offer`` and carry the decision out (``whole``: the bundle's bytes if
        they came with the offer, see ``fetch_bundle``). Transport failures raise (the partial
        download stays for a resume; the installed bundle is untouched)."""
        manifest = offer.manifest
        verdict = self._decide(manifest, peer_name)
        if verdict.action != FETCH:
            return self._conclude(manifest, verdict)
        with self._fetching_lock:
            self._fetching[manifest.collection] = self._fetching.get(manifest.collection, 0) + 1
        try:
            return self._fetch_and_install(peer_name, offer, fetch, whole)
        finally:
            with self._fetching_lock:
                self._fetching[manifest.collection] -= 1

    def _fetch_and_install(self, peer_name: str, offer: BundleOffer, fetch: FetchBlocks,
                           whole: bytes | None) -> BundleOutcome:
        manifest = offer.manifest
        fetched = fetch_bundle(data_dir=self.node.data_dir, offer=offer,
                               local_bundle=self.node.indexes.bundle_path(manifest.collection),
                               fetch=fetch, whole=whole)
        totals = {"bundle_bytes_fetched": fetched.bytes_fetched,
                  "bundle_bytes_total": offer.block_map.size_bytes,
                  "blocks_fetched": fetched.blocks_fetched,
                  "blocks_reused": fetched.blocks_reused}
        try:
            verdict = self._install(fetched.path, manifest, peer_name)
        except (BundleCorrupt, BundleError) as error:
            fetched.path.unlink(missing_ok=True)  # it verified block by block: not resumable
            verdict = _Verdict(action=REFUSE, decision=REFUSE, reasons=(
                f"the assembled bundle from {peer_name} did not verify: {error.message}",))
        else:
            fetched.path.unlink(missing_ok=True)
        transfer = (f"fetched {fetched.blocks_fetched} of {len(offer.block_map.hashes)} blocks "
                    f"({fetched.bytes_fetched} of {offer.block_map.size_bytes} bytes), "
                    f"{fetched.blocks_reused} held already")
        verdict = replace(verdict, reasons=(*verdict.reasons, transfer))
        return self._conclude(manifest, verdict, **totals)

    def _install(self, path: Path, offered: BundleManifest, peer_name: str) -> _Verdict:
        with open_bundle(path, verify="full") as bundle:
            if bundle.manifest.bundle_id != offered.bundle_id:
                raise BundleError(f"the file is bundle {bundle.manifest.bundle_id}, not the "
                                  f"offered {offered.bundle_id}")
            collection = offered.collection
            with self.node.indexes.exclusive(collection):
                verdict = self._decide(bundle.manifest, peer_name)  # the store may have moved
                if verdict.action != FETCH:
                    return verdict
                assert verdict.compat is not None
                self.node.indexes.install(collection, bundle,
                                          drop_cache=verdict.compat.drop_cache)
                self.received.record(collection, bundle.manifest.signer_device_id,
                                     bundle.manifest)
                if verdict.compat.kind is DecisionKind.APPLY_LOCAL_DELTA:
                    self.node.indexes.build(collection)
        return verdict

    def _decide(self, manifest: BundleManifest, peer_name: str) -> _Verdict:
        collection = manifest.collection
        try:
            signer = verify_bundle_signature(manifest, trust=self.trust, identity=self.identity)
        except BundleNotTrusted as error:
            return _Verdict(action=REFUSE, decision=REFUSE, reasons=(error.message,))
        last = self.received.last(collection, signer)
        if last is not None:
            generation, bundle_id = last
            if manifest.bundle_id == bundle_id:
                return _Verdict(action=SKIP, decision="unchanged",
                                reasons=("this bundle is installed already",))
            if manifest.generation <= generation:
                return _Verdict(action=REFUSE, decision=REFUSE, reasons=(
                    f"generation {manifest.generation} from {signer} is not newer than "
                    f"generation {generation} installed from it before (no rollback)",))
        info = self.node.get_collection(collection)
        installed = self.node.indexes.manifest(collection)
        try:
            local = local_state(self.node, info)
        except EmbedderError as error:
            return self._decide_by_model(manifest, info, installed, error)
        compat = decide_compatibility(manifest, local)
        own_current = (installed is not None and installed.fingerprint == local.fingerprint
                       and not compare_store_states(installed.store_state,
                                                    local.store_state)[0])
        if compat.kind is DecisionKind.REFUSE:
            return _Verdict(action=REFUSE, decision=REFUSE, reasons=compat.reasons,
                            compat=compat)
        if compat.kind is DecisionKind.REBUILD_LOCALLY:
            return _rebuild_verdict(compat, own_current=own_current)
        if own_current and not compare_store_states(manifest.store_state,
                                                    installed.store_state)[1]:
            return _Verdict(action=SKIP, decision="unchanged", reasons=(
                "this device's index already holds every document the peer's bundle holds",))
        if self.policy == "build":
            return _Verdict(action=BUILD, decision="build", compat=compat,
                            reasons=("index_policy is build: indexing here",))
        if self.policy == "auto" and compat.kind is DecisionKind.APPLY_LOCAL_DELTA:
            return _Verdict(action=BUILD, decision="build", compat=compat, reasons=(
                "index_policy auto: the peer's bundle lacks documents this device holds",
                *compat.reasons))
        return _Verdict(action=FETCH, decision=compat.kind.value, compat=compat,
                        reasons=(f"fetched from {peer_name} (index_policy {self.policy})",
                                 *compat.reasons))

    def _decide_by_model(self, manifest: BundleManifest, info: CollectionInfo,
                         installed: BundleManifest | None, error: EmbedderError) -> _Verdict:
        """The collection's embedder did not answer for its fingerprint: a bundle of another
        model is still rebuilt locally (the sync goes on); any other waits for the next one."""
        model_id = info.embedder.model_id
        compat = decide_by_model(manifest, model_id)
        if compat is None:
            return _Verdict(action=REFUSE, decision=REFUSE, reasons=(
                f"cannot compare the bundle with this collection's embedder: {error.message}; "
                "it is weighed again at the next sync",))
        current = store_state_of(self.node.store, info.name)
        own_current = (installed is not None and installed.fingerprint.model_id == model_id
                       and not compare_store_states(installed.store_state, current)[0])
        return _rebuild_verdict(compat, own_current=own_current)

    def _conclude(self, manifest: BundleManifest, verdict: _Verdict,
                  **totals: int) -> BundleOutcome:
        if verdict.action != SKIP:
            self.node.indexes.decisions.append(
                collection=manifest.collection, trigger=TRIGGER, decision=verdict.decision,
                reasons=verdict.reasons, generation=manifest.generation)
        if verdict.action == BUILD and self.request_build is not None:
            self.request_build(manifest.collection)
        return BundleOutcome(decision=verdict.decision, reason="; ".join(verdict.reasons),
                             **totals)


def _rebuild_verdict(compat: Decision, *, own_current: bool) -> _Verdict:
    """A bundle this device cannot use: keep its own current index, else build here."""
    reasons = tuple(reason for reason in compat.reasons if reason != REBUILDING_REASON)
    if own_current:
        return _Verdict(action=SKIP, decision="unchanged", reasons=(
            "this device's own index is current and stays; the peer's bundle is not usable "
            "here: " + "; ".join(reasons),))
    return _Verdict(action=BUILD, decision=compat.kind.value, compat=compat, reasons=(
        *reasons, "not installing it: building locally from this device's documents"))
