"""Writing a ``.leann`` bundle atomically and opening one as mmap-backed section views.

``write_bundle`` never leaves a half-written bundle at the target path: it writes a temp file
in the same directory, fsyncs it, renames it over the target and fsyncs the directory, so a
crash at any point leaves the old bundle or the new one. Readers that have the old one open
keep their mapping (the renamed-over inode lives until they close), so swapping generations
never disturbs a running search.

``open_bundle`` maps the file read-only and checks its structure (``bundle_format``); section
hashes are checked at open (``verify="full"``), on a section's first access (``"lazy"``) or
never (``"none"``, for inspection tools).
"""

from __future__ import annotations

import logging
import mmap
import os
import tempfile
import threading
import uuid
from collections.abc import Callable, Iterator, Mapping
from dataclasses import replace
from pathlib import Path
from typing import Any

from meshdex.index.bundle_format import (
    CACHE_SECTION_NAMES,
    SECTION_NAMES,
    Signer,
    check_section_digest,
    encode_bundle,
    read_layout,
)
from meshdex.index.bundle_manifest import BundleManifest
from meshdex.index.errors import BundleCorrupt, BundleError, InvalidArgument, NotFound
from meshdex.index.fsync import fsync_path

__all__ = [
    "VERIFY_MODES",
    "Bundle",
    "Signer",
    "copy_bundle",
    "open_bundle",
    "remove_stale_temp_files",
    "write_bundle",
]

logger = logging.getLogger(__name__)

VERIFY_MODES = ("full", "lazy", "none")
TEMP_SUFFIX = ".tmp"


def _temp_prefix(path: Path) -> str:
    return f".{path.name}."


def remove_stale_temp_files(path: Path) -> list[Path]:
    """Delete temp files that writers of ``path`` left behind when killed; return them.

    Call only while holding the writer lock for ``path``: a running writer's temp file looks
    the same as a dead one's.
    """
    path = Path(path)
    prefix = _temp_prefix(path)
    stale = [
        candidate
        for candidate in path.parent.iterdir()
        if candidate.name.startswith(prefix) and candidate.name.endswith(TEMP_SUFFIX)
    ]
    for candidate in stale:
        candidate.unlink(missing_ok=True)
    if stale:
        logger.info("removed %d stale temp file(s) of bundle %s", len(stale), path)
    return stale


def write_bundle(
    path: Path,
    manifest: BundleManifest,
    sections: Mapping[str, bytes | memoryview],
    *,
    signer: Signer | None = None,
) -> BundleManifest:
    """Write a bundle atomically and return the manifest as written (with its section table).

    The manifest's ``sections`` and ``format_version`` are computed here. With a ``signer``,
    the manifest is signed by that device. Raises ``InvalidArgument`` for unknown section
    names or an invalid manifest, ``BundleError`` when the file system refuses the write; in
    either case the file at ``path`` is untouched and no temp file is left behind.
    """
    path = Path(path)
    try:
        encoded = encode_bundle(manifest, sections, signer=signer)
    except BundleCorrupt as error:
        raise InvalidArgument(error.message, op="write bundle", path=path) from error
    temp_path: Path | None = None
    try:
        fd, temp_name = tempfile.mkstemp(
            prefix=_temp_prefix(path), suffix=TEMP_SUFFIX, dir=path.parent
        )
        temp_path = Path(temp_name)
        with os.fdopen(fd, "wb") as file:
            for chunk in encoded.chunks:
                file.write(chunk)
            file.flush()
            os.fsync(file.fileno())
        os.replace(temp_path, path)
        temp_path = None
        fsync_path(path.parent)
    except OSError as error:
        raise BundleError(
            f"cannot write bundle: {error.strerror or error}",
            op="write bundle",
            path=path,
            hint="check that the directory exists, is writable and has free space",
        ) from error
    finally:
        if temp_path is not None:
            temp_path.unlink(missing_ok=True)
    logger.info(
        "wrote bundle %s: collection %s generation %d, %d bytes",
        path,
        encoded.manifest.collection,
        encoded.manifest.generation,
        encoded.size_bytes,
    )
    return encoded.manifest


class Bundle:
    """An open bundle: its manifest and read-only, mmap-backed views of its sections.

    Thread-safe. Views stay valid after ``close()`` for as long as a caller holds them: the
    mapping is released when the last view is gone. Do not truncate or rewrite a bundle file
    in place while it is open (``write_bundle`` never does; it renames a new file over it).
    """

    def __init__(
        self, *, path: Path, mapping: mmap.mmap, manifest: BundleManifest, verify: str
    ) -> None:
        self.path = path
        self.manifest = manifest
        self.size_bytes = len(mapping)
        self._mapping = mapping
        self._view = memoryview(mapping)
        self._verify = verify
        self._verified: set[str] = set()
        self._lock = threading.Lock()
        self._closed = False

    def __enter__(self) -> Bundle:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    @property
    def section_names(self) -> tuple[str, ...]:
        return self.manifest.section_names

    def has_section(self, name: str) -> bool:
        return self.manifest.section_entry(name) is not None

    def section(self, name: str) -> memoryview:
        """A read-only view of the section's bytes, hash-checked first unless opened with
        ``verify="none"``. Raises ``BundleError`` if the bundle has no such section,
        ``BundleCorrupt`` if its bytes do not match the manifest."""
        entry = self.manifest.section_entry(name)
        if entry is None:
            known = "a known section name" if name in SECTION_NAMES else "an unknown name"
            raise BundleError(
                f"bundle has no section {name!r} ({known}); it has: "
                f"{', '.join(self.section_names) or 'none'}",
                op="read section",
                path=self.path,
            )
        with self._lock:
            if self._closed:
                raise BundleError("bundle is closed", op="read section", path=self.path)
            if self._verify != "none" and name not in self._verified:
                self._check_section(name)
            return self._view[entry.offset : entry.offset + entry.length]

    def sections(self) -> Mapping[str, memoryview]:
        """Every section by name (the mapping ``Index.from_sections`` takes).

        Looking a section up is what reads (and, unless opened with ``verify="none"``,
        hash-checks) it, so with ``verify="lazy"`` a section the caller never touches is never
        hashed.
        """
        return _SectionMap(self)

    def verify(self, progress: Callable[[int, int], None] | None = None) -> None:
        """Check every section's SHA-256 now; raises ``BundleCorrupt`` naming the first bad one.

        ``progress(done_bytes, total_bytes)`` is called after each section.
        """
        total = sum(entry.length for entry in self.manifest.sections)
        done = 0
        with self._lock:
            if self._closed:
                raise BundleError("bundle is closed", op="verify bundle", path=self.path)
            for entry in self.manifest.sections:
                self._check_section(entry.name)
                done += entry.length
                if progress is not None:
                    progress(done, total)

    def _check_section(self, name: str) -> None:
        entry = self.manifest.section_entry(name)
        assert entry is not None
        check_section_digest(self._view, entry, path=self.path)
        self._verified.add(name)

    def close(self) -> None:
        """Stop handing out views; unmap now, or when the last outstanding view is released."""
        with self._lock:
            if self._closed:
                return
            self._closed = True
            _unmap(self._view, self._mapping)


class _SectionMap(Mapping[str, memoryview]):
    """A bundle's sections as a read-only mapping that reads each one on lookup."""

    def __init__(self, bundle: Bundle) -> None:
        self._bundle = bundle

    def __getitem__(self, name: str) -> memoryview:
        if not self._bundle.has_section(name):
            raise KeyError(name)
        return self._bundle.section(name)

    def __contains__(self, name: object) -> bool:
        return isinstance(name, str) and self._bundle.has_section(name)

    def __iter__(self) -> Iterator[str]:
        return iter(self._bundle.section_names)

    def __len__(self) -> int:
        return len(self._bundle.section_names)


def _unmap(view: memoryview, mapping: mmap.mmap) -> None:
    """Release our view and unmap, unless callers still hold views (then GC unmaps later)."""
    view.release()
    try:
        mapping.close()
    except BufferError:
        logger.debug("bundle views still held; the mapping goes when they are released")


def open_bundle(path: Path, *, verify: str = "full") -> Bundle:
    """Open and check a bundle; ``verify`` is ``"full"``, ``"lazy"`` or ``"none"``.

    Raises ``NotFound`` if there is no file, ``BundleCorrupt`` for any damage (the message
    says what and where), ``BundleVersionError`` for a format this build cannot read,
    ``BundleError`` if the file cannot be read at all.
    """
    if verify not in VERIFY_MODES:
        raise InvalidArgument(
            f"verify must be one of {', '.join(VERIFY_MODES)}, not {verify!r}", op="open bundle"
        )
    path = Path(path)
    try:
        with open(path, "rb") as file:
            size = os.fstat(file.fileno()).st_size
            if size == 0:
                raise BundleCorrupt(
                    "file is empty, not a bundle", op="open bundle", path=path,
                    hint="copy the bundle again, or rebuild the index",
                )
            mapping = mmap.mmap(file.fileno(), 0, access=mmap.ACCESS_READ)
    except FileNotFoundError as error:
        raise NotFound("no bundle file there", op="open bundle", path=path) from error
    except OSError as error:
        raise BundleError(
            f"cannot read bundle: {error.strerror or error}", op="open bundle", path=path
        ) from error
    view = memoryview(mapping)
    try:
        manifest = read_layout(view, path=path)
    except BaseException:
        _unmap(view, mapping)
        raise
    view.release()
    bundle = Bundle(path=path, mapping=mapping, manifest=manifest, verify=verify)
    if verify == "full":
        try:
            bundle.verify()
        except BaseException:
            bundle.close()
            raise
    return bundle


def copy_bundle(
    source: Bundle,
    target: Path,
    *,
    add_sections: Mapping[str, bytes | memoryview] | None = None,
    drop_cache: bool = False,
    manifest_changes: Mapping[str, Any] | None = None,
    signer: Signer | None = None,
) -> BundleManifest:
    """Write ``source`` to ``target`` atomically, optionally with more sections or no cache.

    ``manifest_changes`` replaces manifest fields (e.g. ``collection_config``); a change that
    leaves a field equal is no change.

    Serves export (``add_sections={"documents": ...}``), and installing a received bundle
    whose hot cache came from another embedder (``drop_cache=True``). Every section is
    hash-checked as it is read (unless ``source`` was opened with ``verify="none"``), so a
    damaged source raises ``BundleCorrupt`` and ``target`` is left as it was. A plain copy keeps
    the manifest, signature included, and is byte-identical; a changed one keeps what the index
    is (collection, generation, store state, fingerprint) but gets a new bundle id, and loses
    its signature, which no longer covers the bytes (with a ``signer``, that device signs it
    instead: an install vouches for the bundle it verified).
    """
    sections: dict[str, bytes | memoryview] = dict(source.sections())
    manifest = source.manifest
    changed = False
    if drop_cache:
        for name in CACHE_SECTION_NAMES:
            changed |= sections.pop(name, None) is not None
        changed |= manifest.cache is not None
        manifest = replace(manifest, cache=None)
    if add_sections:
        sections.update(add_sections)
        changed = True
    if manifest_changes:
        updated = replace(manifest, **manifest_changes)
        changed |= updated != manifest
        manifest = updated
    if changed:
        manifest = replace(
            manifest, bundle_id=str(uuid.uuid4()), signer_device_id="", signature=b""
        )
    return write_bundle(target, manifest, sections, signer=signer if changed else None)
