"""The .leann container: round trips, and every kind of damage is refused with BundleCorrupt.

Damage tests cover every truncation length and every single flipped byte of a small bundle
(header, manifest, padding and each section), so no byte of the file can change unnoticed.
"""

from __future__ import annotations

import hashlib
import tempfile
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
from bundle_samples import FINGERPRINT, make_manifest, small_sections
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from meshdex.index import bundle_format
from meshdex.index.bundle_documents import decode_documents, encode_documents
from meshdex.index.bundle_format import (
    ALIGNMENT_BYTES,
    HEADER_BYTES,
    MAGIC,
    SECTION_NAMES,
    encode_bundle,
    verify_buffer,
)
from meshdex.index.bundle_io import copy_bundle, open_bundle, write_bundle
from meshdex.index.bundle_manifest import (
    BundleManifest,
    CacheManifest,
    check_manifest,
    manifest_from_bytes,
    manifest_to_bytes,
)
from meshdex.index.engine import Index
from meshdex.index.errors import (
    BundleCorrupt,
    BundleError,
    BundleVersionError,
    InvalidArgument,
    NotFound,
)
from meshdex.index.params import BuildParams
from meshdex.proto.meshdex.v1 import bundle_pb2


@pytest.fixture
def bundle_path(tmp_path: Path) -> Path:
    path = tmp_path / "notes.leann"
    write_bundle(path, make_manifest(), small_sections())
    return path


def _encoded_bytes(manifest: BundleManifest, sections: dict[str, bytes], **kwargs) -> bytes:
    return b"".join(bytes(chunk) for chunk in encode_bundle(manifest, sections, **kwargs).chunks)


def _assert_refused(path: Path, verify: str = "full") -> BundleCorrupt:
    with pytest.raises(BundleCorrupt) as caught:
        open_bundle(path, verify=verify).close()
    assert "\n" not in str(caught.value)
    return caught.value


# --- round trips -------------------------------------------------------------------------


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    sections=st.dictionaries(
        st.sampled_from(SECTION_NAMES), st.binary(max_size=9000), max_size=len(SECTION_NAMES)
    ),
    watermarks=st.dictionaries(st.text(min_size=1, max_size=12), st.integers(0, 2**64 - 1)),
    generation=st.integers(1, 2**64 - 1),
)
def test_round_trip_returns_every_section_and_the_manifest(sections, watermarks, generation):
    manifest = make_manifest(
        generation=generation,
        parent_generation=generation - 1 or None,
        store_state=replace(make_manifest().store_state, seq_watermarks=watermarks),
    )
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "b.leann"
        written = write_bundle(path, manifest, sections)
        with open_bundle(path) as bundle:
            assert bundle.manifest == written
            assert replace(written, sections=()) == manifest
            assert set(bundle.section_names) == set(sections)
            for name, data in sections.items():
                view = bundle.section(name)
                assert view.readonly and bytes(view) == data
                assert bundle.manifest.section_entry(name).offset % ALIGNMENT_BYTES == 0


def test_sections_are_in_fixed_order_and_page_aligned(bundle_path: Path):
    with open_bundle(bundle_path) as bundle:
        names = bundle.section_names
        assert list(names) == sorted(names, key=SECTION_NAMES.index)
        offsets = [bundle.manifest.section_entry(n).offset for n in names]
        assert all(offset % ALIGNMENT_BYTES == 0 for offset in offsets)
        assert offsets == sorted(offsets)


def test_numpy_reads_sections_in_place_and_views_outlive_close(tmp_path: Path):
    vectors = np.arange(64 * 384, dtype=np.float32).reshape(64, 384)
    path = tmp_path / "v.leann"
    write_bundle(path, make_manifest(), {"full_embeddings": vectors.tobytes()})
    bundle = open_bundle(path)
    array = np.frombuffer(bundle.section("full_embeddings"), dtype=np.float32).reshape(64, 384)
    bundle.close()
    np.testing.assert_array_equal(array, vectors)
    with pytest.raises(BundleError, match="closed"):
        bundle.section("full_embeddings")


def test_open_readers_keep_their_generation_while_a_new_one_is_written(tmp_path: Path):
    path = tmp_path / "notes.leann"
    write_bundle(path, make_manifest(generation=1), {"codes": b"\x01" * 5000})
    with open_bundle(path) as old:
        write_bundle(
            path, make_manifest(generation=2, parent_generation=1), {"codes": b"\x02" * 7000}
        )
        assert bytes(old.section("codes")) == b"\x01" * 5000
        old.verify()
        with open_bundle(path) as new:
            assert new.manifest.generation == 2
            assert bytes(new.section("codes")) == b"\x02" * 7000


class DeviceSigner:
    """A device's Ed25519 key, as sync will hold it."""

    device_id = "laptop"

    def __init__(self) -> None:
        self.key = Ed25519PrivateKey.generate()

    def sign(self, payload: bytes) -> bytes:
        return self.key.sign(payload)


def _signed(tmp_path: Path, signer: DeviceSigner | None = None) -> Path:
    path = tmp_path / "signed.leann"
    write_bundle(path, make_manifest(), small_sections(), signer=signer or DeviceSigner())
    return path


def test_signature_by_creating_device_covers_every_section(tmp_path: Path):
    signer = DeviceSigner()
    key = signer.key
    with open_bundle(_signed(tmp_path, signer)) as bundle:
        manifest = bundle.manifest
        assert manifest.signer_device_id == "laptop"
        key.public_key().verify(manifest.signature, manifest.signing_payload())
        forged = replace(
            manifest,
            sections=(replace(manifest.sections[0], sha256=hashlib.sha256(b"x").digest()),
                      *manifest.sections[1:]),
        )
        with pytest.raises(InvalidSignature):
            key.public_key().verify(manifest.signature, forged.signing_payload())


# --- damage: truncation, flipped bytes, appended bytes -----------------------------------


def _assert_buffer_refused(data: bytes) -> None:
    with pytest.raises(BundleCorrupt) as caught:
        verify_buffer(memoryview(data))
    assert "\n" not in str(caught.value)


def test_every_truncation_length_is_refused(bundle_path: Path):
    data = bundle_path.read_bytes()
    assert verify_buffer(memoryview(data)).collection == "notes"
    for length in range(len(data)):
        _assert_buffer_refused(data[:length])


def _boundaries(path: Path) -> list[int]:
    with open_bundle(path) as bundle:
        manifest_end = HEADER_BYTES + len(manifest_to_bytes(bundle.manifest))
        points = {0, 8, 12, 16, HEADER_BYTES, manifest_end}
        for entry in bundle.manifest.sections:
            points |= {entry.offset, entry.offset + entry.length}
    return sorted({p + d for p in points for d in (-1, 0, 1) if 0 <= p + d})


@pytest.mark.parametrize("verify", ["full", "lazy", "none"])
def test_truncation_at_each_boundary_is_named(bundle_path: Path, verify: str):
    data = bundle_path.read_bytes()
    for length in [b for b in _boundaries(bundle_path) if b < len(data)]:
        bundle_path.write_bytes(data[:length])
        error = _assert_refused(bundle_path, verify=verify)
        assert any(word in str(error) for word in ("short", "empty", "checksum")), str(error)


@pytest.mark.parametrize("bit", [0x01, 0x80])
def test_every_flipped_byte_is_refused(bundle_path: Path, bit: int):
    data = bundle_path.read_bytes()
    for position in range(len(data)):
        flipped = bytearray(data)
        flipped[position] ^= bit
        _assert_buffer_refused(bytes(flipped))


@pytest.mark.parametrize(
    ("region", "expected"),
    [
        ("magic", "not a meshdex bundle"),
        ("version", "header checksum"),
        ("manifest", "manifest checksum"),
        ("padding", "padding"),
        ("graph_offsets", "section 'graph_offsets'"),
        ("graph_neighbors", "section 'graph_neighbors'"),
        ("codes", "section 'codes'"),
    ],
)
def test_flipped_byte_error_says_where(bundle_path: Path, region: str, expected: str):
    with open_bundle(bundle_path) as bundle:
        entries = {e.name: e for e in bundle.manifest.sections}
        manifest_end = HEADER_BYTES + len(manifest_to_bytes(bundle.manifest))
    position = {
        "magic": 2,
        "version": 8,
        "manifest": HEADER_BYTES + 5,
        "padding": manifest_end + 10,
    }.get(region) or entries[region].offset + entries[region].length // 2
    data = bytearray(bundle_path.read_bytes())
    data[position] ^= 0x01
    bundle_path.write_bytes(data)
    assert expected in str(_assert_refused(bundle_path))


def test_lazy_open_reports_a_damaged_section_on_first_access(bundle_path: Path):
    with open_bundle(bundle_path) as bundle:
        entry = bundle.manifest.section_entry("codes")
    data = bytearray(bundle_path.read_bytes())
    data[entry.offset + 3] ^= 0xFF
    bundle_path.write_bytes(data)
    with open_bundle(bundle_path, verify="lazy") as bundle:
        assert bytes(bundle.section("graph_offsets")) == small_sections()["graph_offsets"]
        with pytest.raises(BundleCorrupt, match="section 'codes'"):
            bundle.section("codes")
        with pytest.raises(BundleCorrupt, match="section 'codes'"):
            bundle.verify()
    with open_bundle(bundle_path, verify="none") as bundle:
        assert bytes(bundle.section("codes")) == bytes(data[entry.offset : entry.offset + 900])
    _assert_refused(bundle_path, verify="full")


def test_appended_bytes_are_refused(bundle_path: Path):
    with bundle_path.open("ab") as file:
        file.write(b"\x00")
    assert "sections end at" in str(_assert_refused(bundle_path, verify="none"))


@pytest.mark.parametrize(
    ("content", "expected"),
    [
        (b"", "empty"),
        (b"hello, this is a text file that is not a bundle at all", "not a meshdex bundle"),
        (MAGIC, "too short"),
    ],
)
def test_files_that_are_not_bundles_are_refused(tmp_path: Path, content: bytes, expected: str):
    path = tmp_path / "x.leann"
    path.write_bytes(content)
    assert expected in str(_assert_refused(path))


def test_missing_file_and_directory_get_clear_errors(tmp_path: Path):
    with pytest.raises(NotFound):
        open_bundle(tmp_path / "absent.leann")
    with pytest.raises(BundleError, match="cannot read"):
        open_bundle(tmp_path)


# --- versions --------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("version", "expected"),
    [
        (2, "bundle format version 2 is newer than this meshdex reads (format version 1)"),
        (0, "bundle format version 0 is older than this meshdex reads (format version 1)"),
    ],
)
def test_unreadable_format_versions_are_refused_naming_both(
    tmp_path: Path, version: int, expected: str
):
    path = tmp_path / "v.leann"
    path.write_bytes(_encoded_bytes(make_manifest(), small_sections(), format_version=version))
    with pytest.raises(BundleVersionError) as caught:
        open_bundle(path)
    assert expected in str(caught.value)


# --- crafted manifests: checksums right, content wrong -----------------------------------


def _recrafted(data: bytes, mutate) -> bytes:
    """The bundle with its manifest changed by ``mutate`` and the checksums made to match."""
    length = int.from_bytes(data[24:32], "little")
    message = bundle_pb2.BundleManifest()
    message.ParseFromString(data[HEADER_BYTES : HEADER_BYTES + length])
    mutate(message)
    manifest_bytes = message.SerializeToString(deterministic=True)
    assert HEADER_BYTES + len(manifest_bytes) <= ALIGNMENT_BYTES
    header = bundle_format._header(message.format_version, manifest_bytes)
    rest = data[HEADER_BYTES + length :]
    gap = len(manifest_bytes) - length
    rest = rest[gap:] if gap > 0 else bytes(-gap) + rest
    return header + manifest_bytes + rest


def _rename_first(message):
    message.sections[0].name = "pickled_objects"


def _swap_first_two_names(message):
    first, second = message.sections[0].name, message.sections[1].name
    message.sections[0].name, message.sections[1].name = second, first


def _overlap(message):
    message.sections[1].offset = message.sections[0].offset


def _too_long(message):
    message.sections[-1].length += 10**12


def _short_hash(message):
    message.sections[0].sha256 = b"\x00" * 16


def _duplicate(message):
    message.sections.append(message.sections[-1])


def _bad_id(message):
    message.bundle_id = "not-a-uuid"


def _bad_json(message):
    message.build_params_json = "{not json"


def _json_list(message):
    message.build_params_json = "[1, 2]"


def _config_list(message):
    message.collection_config_json = "[]"


def _no_fingerprint(message):
    message.ClearField("fingerprint")


@pytest.mark.parametrize(
    ("mutate", "expected"),
    [
        (_rename_first, "unknown section 'pickled_objects'"),
        (_swap_first_two_names, "out of order"),
        (_overlap, "expected"),
        (_too_long, "cut short inside section"),
        (_short_hash, "16-byte SHA-256"),
        (_duplicate, "listed twice"),
        (_bad_id, "not a UUID"),
        (_bad_json, "not valid JSON"),
        (_json_list, "build params are not a JSON object"),
        (_config_list, "collection config is not a JSON object"),
        (_no_fingerprint, "model id"),
    ],
)
def test_crafted_manifests_with_valid_checksums_are_refused(
    bundle_path: Path, mutate, expected: str
):
    bundle_path.write_bytes(_recrafted(bundle_path.read_bytes(), mutate))
    assert expected in str(_assert_refused(bundle_path, verify="none"))


def test_manifest_and_header_must_agree_on_the_version(bundle_path: Path):
    data = _recrafted(bundle_path.read_bytes(), lambda m: setattr(m, "format_version", 7))
    # Header back to version 1 (with its checksum), manifest left at 7.
    length = int.from_bytes(data[24:32], "little")
    manifest_bytes = data[HEADER_BYTES : HEADER_BYTES + length]
    bundle_path.write_bytes(bundle_format._header(1, manifest_bytes) + data[HEADER_BYTES:])
    assert "manifest says format version 7" in str(_assert_refused(bundle_path))


# --- writing -------------------------------------------------------------------------------


def test_unknown_section_names_are_refused_on_write(tmp_path: Path):
    with pytest.raises(InvalidArgument, match="unknown bundle section name"):
        write_bundle(tmp_path / "x.leann", make_manifest(), {"graph": b"1"})
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize(
    ("overrides", "expected"),
    [
        ({"collection": ""}, "collection name is empty"),
        ({"generation": 0}, "generation 0"),
        ({"generation": 3, "parent_generation": 3}, "parent generation 3"),
        ({"device_id": ""}, "device id is empty"),
        ({"fingerprint": replace(FINGERPRINT, metric="hamming")}, "metric 'hamming'"),
        ({"fingerprint": replace(FINGERPRINT, dim=0)}, "dimension 0"),
        ({"cache": CacheManifest(node_count=3, fingerprint_digest="")}, "cache manifest"),
        ({"signature": b"sig"}, "signature and signer device id"),
        ({"build_params": {"a": float("nan")}}, "non-finite"),
    ],
)
def test_invalid_manifests_are_refused_on_write(tmp_path: Path, overrides, expected):
    target = tmp_path / "x.leann"
    with pytest.raises(InvalidArgument, match=expected):
        write_bundle(target, make_manifest(**overrides), small_sections())
    assert not target.exists()


def test_failed_write_keeps_the_old_bundle_and_leaves_no_temp_file(tmp_path: Path):
    occupied = tmp_path / "occupied.leann"
    occupied.mkdir()
    (occupied / "keep").write_text("x")
    with pytest.raises(BundleError, match="cannot write bundle"):
        write_bundle(occupied, make_manifest(), small_sections())
    assert sorted(p.name for p in tmp_path.iterdir()) == ["occupied.leann"]
    with pytest.raises(BundleError, match="cannot write bundle"):
        write_bundle(tmp_path / "no" / "such" / "dir.leann", make_manifest(), small_sections())


def test_unknown_verify_mode_is_an_invalid_argument(bundle_path: Path):
    with pytest.raises(InvalidArgument, match="verify must be one of"):
        open_bundle(bundle_path, verify="sometimes")


# --- the engine's real sections ------------------------------------------------------------


def test_engine_index_round_trips_through_a_bundle_file(tmp_path: Path, fake_embedder):
    texts = [f"note {i} about topic{i % 11} with keyword{i % 37} and detail{i}" for i in range(400)]
    labels = (np.arange(1, 401, dtype=np.uint64) * np.uint64(2654435761)).astype(np.uint64)
    params = BuildParams(
        M=8, ef_construction=40, pruned_degree=4, pq_subvectors=8,
        cache_budget_nodes=16, entry_point_count=4,
    )
    built = Index.build(texts, labels, embedder=fake_embedder, params=params)
    built.remove(labels[:10])
    path = tmp_path / "notes.leann"
    write_bundle(
        path,
        make_manifest(
            build_params=params.to_dict(),
            fingerprint=built.fingerprint,
            rerank_bound=built.rerank_bound,
            cache=CacheManifest(
                node_count=built.cache_node_count,
                fingerprint_digest=built.cache_fingerprint_digest,
            ),
        ),
        built.to_sections(),
    )
    with open_bundle(path, verify="lazy") as bundle:
        manifest = bundle.manifest
        reopened = Index.from_sections(
            bundle.sections(),
            fingerprint=manifest.fingerprint,
            params=BuildParams.from_dict(dict(manifest.build_params)),
            rerank_bound=manifest.rerank_bound,
        )
    # The bundle is closed: the index keeps reading its mapped sections.
    by_label = dict(zip(labels.tolist(), texts, strict=True))

    def passage_texts(wanted: np.ndarray) -> list[str]:
        return [by_label[int(label)] for label in wanted]

    assert len(reopened) == len(built) == 390
    assert manifest.cache.fingerprint_digest == built.fingerprint.digest()
    for query in ("topic3 keyword5", "detail17", "note about keyword30"):
        expected = built.search(query, 5, embedder=fake_embedder, texts=passage_texts).hits
        got = reopened.search(query, 5, embedder=fake_embedder, texts=passage_texts).hits
        assert [(h.label, round(h.score, 5)) for h in got] == [
            (h.label, round(h.score, 5)) for h in expected
        ]
        assert not {h.label for h in got} & set(labels[:10].tolist())


# --- sections mapping and copies -----------------------------------------------------------


def test_lazy_sections_mapping_hashes_only_what_is_looked_up(bundle_path: Path):
    with open_bundle(bundle_path) as bundle:
        codes = bundle.manifest.section_entry("codes")
    data = bytearray(bundle_path.read_bytes())
    data[codes.offset] ^= 0x01
    bundle_path.write_bytes(data)
    with open_bundle(bundle_path, verify="lazy") as bundle:
        sections = bundle.sections()
        assert list(sections) == list(bundle.section_names)
        assert "codes" in sections and "documents" not in sections
        assert bytes(sections["graph_offsets"]) == small_sections()["graph_offsets"]
        with pytest.raises(KeyError):
            sections["documents"]
        with pytest.raises(BundleCorrupt, match="section 'codes'"):
            sections["codes"]


def test_plain_copy_is_byte_identical_and_keeps_the_signature(tmp_path: Path):
    source_path = _signed(tmp_path)
    with open_bundle(source_path, verify="lazy") as source:
        copied = copy_bundle(source, tmp_path / "copy.leann")
        assert copied == source.manifest
    assert (tmp_path / "copy.leann").read_bytes() == source_path.read_bytes()


def test_copy_with_documents_is_a_new_unsigned_bundle_of_the_same_index(tmp_path: Path):
    records = [{"id": "a", "text": "alpha"}, {"id": "b", "text": "beta"}]
    with open_bundle(_signed(tmp_path)) as source:
        original = source.manifest
        copy_bundle(
            source, tmp_path / "export.leann",
            add_sections={"documents": encode_documents(records)},
        )
    with open_bundle(tmp_path / "export.leann") as exported:
        manifest = exported.manifest
        assert list(decode_documents(exported.section("documents"))) == records
    assert manifest.bundle_id != original.bundle_id
    assert (manifest.signature, manifest.signer_device_id) == (b"", "")
    assert (manifest.collection, manifest.generation, manifest.store_state) == (
        original.collection, original.generation, original.store_state
    )


def test_copy_without_cache_drops_its_sections_and_manifest_entry(tmp_path: Path):
    source_path = tmp_path / "cached.leann"
    write_bundle(
        source_path,
        make_manifest(cache=CacheManifest(node_count=2, fingerprint_digest="f" * 64)),
        {**small_sections(), "cache_ids": b"\x01\x02", "cache_vectors": b"\x00" * 64},
    )
    with open_bundle(source_path) as source:
        copy_bundle(source, source_path, drop_cache=True)  # in place, over itself
    with open_bundle(source_path) as bundle:
        assert bundle.manifest.cache is None
        assert set(bundle.section_names) == set(small_sections())


def test_copy_of_a_damaged_bundle_leaves_the_target_untouched(bundle_path: Path, tmp_path: Path):
    target = tmp_path / "target.leann"
    write_bundle(target, make_manifest(generation=9), small_sections())
    before = target.read_bytes()
    with open_bundle(bundle_path) as bundle:
        entry = bundle.manifest.section_entry("graph_neighbors")
    data = bytearray(bundle_path.read_bytes())
    data[entry.offset + 100] ^= 0x10
    bundle_path.write_bytes(data)
    with open_bundle(bundle_path, verify="lazy") as source:
        with pytest.raises(BundleCorrupt, match="graph_neighbors"):
            copy_bundle(source, target)
    assert target.read_bytes() == before


@settings(max_examples=300, deadline=None)
@given(data=st.binary(max_size=600), position=st.integers(0, 10**6), bit=st.integers(0, 7))
def test_any_manifest_bytes_parse_or_raise_bundle_corrupt(data: bytes, position: int, bit: int):
    """Past the checksum, the parser and validator still fail only with BundleCorrupt."""
    valid = bytearray(manifest_to_bytes(make_manifest()))
    valid[position % len(valid)] ^= 1 << bit
    for candidate in (data, bytes(valid)):
        try:
            manifest = manifest_from_bytes(candidate)
        except BundleCorrupt:
            continue
        check_manifest(manifest)
