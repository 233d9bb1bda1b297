"""Every bundle a device builds is signed with its device key; a receiver accepts only
signatures of paired devices (or its own) over an untouched manifest."""

from __future__ import annotations

import dataclasses

import pytest
from meshdex.index.bundle_io import open_bundle
from meshdex.index.errors import BundleCorrupt
from meshdex.sync.errors import BundleNotTrusted
from meshdex.sync.signing import verify_bundle_signature

from tests.fakes import HashingEmbedder
from tests.sync_support import pair, start_sync_node, stop_sync_node

DOCS = {f"d{i}": f"note {i} about topic {i % 7} and the colour {i % 5}" for i in range(40)}


@pytest.fixture
def nodes(tmp_path):
    started = {name: start_sync_node(tmp_path, name, embedder=HashingEmbedder(),
                                     sync_interval_s=3600)
               for name in ("a", "b", "d")}
    pair(started["a"], started["b"])
    for node in started.values():
        node.add("notes", DOCS)
        node.node.build("notes")
    yield started
    for node in started.values():
        stop_sync_node(node)


def _manifest(node):
    with open_bundle(node.node.indexes.bundle_path("notes")) as bundle:
        return bundle.manifest


def _verify(receiver, manifest):
    service = receiver.service
    return verify_bundle_signature(manifest, trust=service.trust, identity=service.identity)


def test_a_built_bundle_is_signed_by_its_device_and_verifies_at_a_paired_peer(nodes) -> None:
    manifest = _manifest(nodes["a"])
    assert manifest.signer_device_id == nodes["a"].device_id
    assert _verify(nodes["b"], manifest) == nodes["a"].device_id
    assert _verify(nodes["a"], manifest) == nodes["a"].device_id  # its own


TAMPERING = {
    "generation raised": lambda m: dataclasses.replace(m, generation=m.generation + 5),
    "store state changed": lambda m: dataclasses.replace(
        m, store_state=dataclasses.replace(m.store_state, seq_watermarks={"x": 99})),
    "section hash swapped": lambda m: dataclasses.replace(m, sections=tuple(
        dataclasses.replace(e, sha256=bytes(32)) if i == 0 else e
        for i, e in enumerate(m.sections))),
    "signer claimed by another device": None,  # filled in the test: B's id on A's signature
}


@pytest.mark.parametrize("case", sorted(TAMPERING))
def test_a_tampered_manifest_is_refused(nodes, case) -> None:
    manifest = _manifest(nodes["a"])
    if TAMPERING[case] is None:
        tampered = dataclasses.replace(manifest, signer_device_id=nodes["b"].device_id)
    else:
        tampered = TAMPERING[case](manifest)
    with pytest.raises(BundleNotTrusted, match="does not match its manifest"):
        _verify(nodes["b"], tampered)


def test_a_tampered_section_fails_the_full_check_the_signature_relies_on(nodes) -> None:
    path = nodes["a"].node.indexes.bundle_path("notes")
    copy = path.with_name("copy.leann")
    data = bytearray(path.read_bytes())
    with open_bundle(path) as bundle:
        entry = next(e for e in bundle.manifest.sections if e.length)
    data[entry.offset] ^= 0xFF
    copy.write_bytes(bytes(data))
    with pytest.raises(BundleCorrupt, match=entry.name):
        open_bundle(copy, verify="full")


def test_an_unsigned_bundle_is_refused(nodes) -> None:
    unsigned = dataclasses.replace(_manifest(nodes["a"]), signer_device_id="", signature=b"")
    with pytest.raises(BundleNotTrusted, match="is unsigned"):
        _verify(nodes["b"], unsigned)


def test_a_bundle_signed_by_an_unpaired_device_is_refused(nodes) -> None:
    foreign = _manifest(nodes["d"])
    with pytest.raises(BundleNotTrusted, match="not paired with this device") as caught:
        _verify(nodes["b"], foreign)
    assert caught.value.peer == nodes["d"].device_id
