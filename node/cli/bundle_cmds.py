"""``meshdex bundle``: export, import, look inside and check ``.leann`` index bundles.

A thin layer over ``meshdex.index.bundle_io`` (inspect, verify) and
``meshdex.node.bundle_transfer`` (export, import): call, print. Damage and unreadable
versions surface as ``BundleError`` and become one line and exit code 10 in ``main``.
"""

from __future__ import annotations

import datetime as dt
import json
import sys
from contextlib import ExitStack
from pathlib import Path
from typing import Any

import click
from meshdex.index.bundle_io import Bundle, open_bundle
from meshdex.index.bundle_manifest import BundleManifest, HlcStamp, manifest_to_json
from meshdex.index.errors import MeshdexError
from meshdex.node.bundle_transfer import (
    ImportReport,
    describe_import,
    export_bundle,
    import_verified,
    plan_import,
)
from meshdex.node.cli.index_cmds import progress_bar
from meshdex.node.cli.main import error_to_dict
from meshdex.node.cli.remote import beside_serving_node, refuse_remote
from meshdex.node.errors import StoreLocked
from meshdex.node.hlc import DEFAULT_MAX_CLOCK_SKEW_MS
from meshdex.node.paths import resolve_data_dir
from meshdex.node.service import DEFAULT_COLLECTION, Node
from meshdex.node.store import Store
from tqdm import tqdm

bundle_path_argument = click.argument(
    "path", type=click.Path(dir_okay=False, path_type=Path), metavar="PATH"
)
json_option = click.option("--json", "as_json", is_flag=True, help="Print JSON instead of text.")


def _data_dir(ctx: click.Context) -> Path | None:
    return (ctx.find_root().obj or {}).get("data_dir")


def _print_json(value: Any) -> None:
    click.echo(json.dumps(value, indent=2, ensure_ascii=False))


def _stamp_text(stamp: HlcStamp, *, with_device: bool = True) -> str:
    if stamp.physical_ms == 0:
        return "never"
    when = dt.datetime.fromtimestamp(stamp.physical_ms / 1000, tz=dt.UTC)
    text = when.isoformat(timespec="milliseconds").replace("+00:00", "Z")
    suffix = f" +{stamp.logical}" if stamp.logical else ""
    device = f" on {stamp.device_id}" if stamp.device_id and with_device else ""
    return f"{text}{suffix}{device}"


def _describe(manifest: BundleManifest, path: Path, size_bytes: int) -> list[str]:
    fp = manifest.fingerprint
    parent = (
        f"parent {manifest.parent_generation}" if manifest.parent_generation else "built fresh"
    )
    store = manifest.store_state
    watermarks = ", ".join(f"{d}: {s}" for d, s in sorted(store.seq_watermarks.items()))
    params = " ".join(f"{k}={v}" for k, v in sorted(manifest.build_params.items()))
    if manifest.cache is None:
        cache = "none"
    else:
        matches = manifest.cache.fingerprint_digest == fp.digest()
        cache = f"{manifest.cache.node_count} nodes, " + (
            "same embedder as the graph" if matches else "from ANOTHER embedder (will be dropped)"
        )
    signature = (
        f"by {manifest.signer_device_id} ({len(manifest.signature)} bytes; checked by sync)"
        if manifest.signature
        else "none"
    )
    lines = [
        f"bundle      {path} ({size_bytes} bytes, format version {manifest.format_version})",
        f"id          {manifest.bundle_id}",
        f"collection  {manifest.collection}",
        f"generation  {manifest.generation} ({parent})",
        f"built by    {manifest.device_id} at "
        f"{_stamp_text(manifest.created_at, with_device=False)}",
        f"store state {watermarks or 'empty'} (latest change {_stamp_text(store.max_hlc)})",
        f"embedder    {fp.model_id} {fp.precision}, dim {fp.dim}, {fp.metric}, {fp.pooling} "
        f"pooling, {'normalised' if fp.normalize else 'not normalised'}, max {fp.max_seq_length} "
        f"tokens, model hash {fp.model_hash[:16]}",
        f"build       {params or 'no params'}",
        f"cache       {cache}",
        f"signature   {signature}",
        f"sections    {len(manifest.sections)}",
    ]
    width = max((len(e.name) for e in manifest.sections), default=0)
    lines += [
        f"  {e.name:<{width}}  offset {e.offset:>12}  length {e.length:>12}  "
        f"sha256 {e.sha256.hex()[:16]}"
        for e in manifest.sections
    ]
    return lines


@click.group("bundle")
def bundle() -> None:
    """Move indexes between devices as one .leann file; inspect and verify them.

    \b
    Example:
      meshdex bundle export --collection notes --with-documents notes.leann
      meshdex bundle verify notes.leann
      meshdex bundle import notes.leann      # on the other device
    """


@bundle.command("inspect")
@bundle_path_argument
@json_option
def inspect_command(path: Path, as_json: bool) -> None:
    """Show what a bundle holds: collection, generation, embedder, store state, sections.

    Checks the header, manifest and layout, not the section hashes (use verify for that).

    \b
    Example:
      meshdex bundle inspect ~/Downloads/notes.leann
      meshdex bundle inspect notes.leann --json | jq .manifest.fingerprint
    """
    with open_bundle(path, verify="none") as opened:
        if as_json:
            _print_json(
                {"path": str(path), "size_bytes": opened.size_bytes,
                 "manifest": manifest_to_json(opened.manifest)}
            )
            return
        for line in _describe(opened.manifest, path, opened.size_bytes):
            click.echo(line)


def _verified(path: Path) -> tuple[BundleManifest, int]:
    """The manifest and size of the bundle at ``path`` once every section matched its hash,
    with a progress bar on a terminal; ``BundleError`` saying what does not match."""
    with open_bundle(path, verify="none") as opened:
        total = sum(entry.length for entry in opened.manifest.sections)
        with tqdm(
            total=total, unit="B", unit_scale=True, desc="verifying",
            disable=not sys.stderr.isatty(), file=sys.stderr,
        ) as bar:
            opened.verify(progress=lambda done, _total: bar.update(done - bar.n))
        return opened.manifest, opened.size_bytes


@bundle.command("verify")
@bundle_path_argument
@json_option
def verify_command(path: Path, as_json: bool) -> None:
    """Check every byte of a bundle against the SHA-256s in its manifest.

    Exits 0 if the bundle is whole, non-zero with one line saying what is wrong otherwise;
    with --json it also prints {"ok": false, "error": ...} saying what.

    \b
    Example:
      meshdex bundle verify notes.leann && cp notes.leann /mnt/desktop/
      meshdex bundle verify notes.leann --json | jq .ok
    """
    try:
        manifest, size_bytes = _verified(path)
    except MeshdexError as error:
        if as_json:  # then main prints the one line and exits with the error's code
            _print_json({"path": str(path), **error_to_dict(error)})
        raise
    if as_json:
        _print_json(
            {"path": str(path), "ok": True, "size_bytes": size_bytes,
             "sections": len(manifest.sections), "collection": manifest.collection,
             "generation": manifest.generation}
        )
        return
    click.echo(
        f"ok: {path} is whole: collection {manifest.collection}, generation "
        f"{manifest.generation}, {len(manifest.sections)} sections, {size_bytes} bytes"
    )


@bundle.command("export")
@click.option("--collection", "-c", default=DEFAULT_COLLECTION, show_default=True,
              help="Which collection's index to export.")
@click.option("--with-documents", is_flag=True,
              help="Carry the collection's documents too (compressed), so a device that has "
              "nothing gets the whole collection from this one file.")
@bundle_path_argument
@json_option
@click.pass_context
def export_command(
    ctx: click.Context, collection: str, with_documents: bool, path: Path, as_json: bool
) -> None:
    """Write a collection's current index to one .leann file.

    \b
    Example:
      meshdex build --collection notes
      meshdex bundle export --collection notes --with-documents /media/usb/notes.leann
    """
    refuse_remote(ctx, "bundle export writes the index in this device's data directory")
    with Node.open(_data_dir(ctx), readonly=True) as node:
        report = export_bundle(node, collection, path, with_documents=with_documents)
    if as_json:
        _print_json(report.to_dict())
        return
    carried = (
        f", with {report.documents} documents" if report.documents is not None else ""
    )
    click.echo(
        f"exported collection {report.collection} generation {report.generation} to "
        f"{report.path} ({report.bundle_bytes} bytes{carried})"
    )
    if report.stale:
        click.echo(f"note: {report.stale}", err=True)


@bundle.command("import")
@bundle_path_argument
@click.option("--max-clock-skew-min", type=click.FloatRange(min=0),
              default=DEFAULT_MAX_CLOCK_SKEW_MS / 60_000, show_default=True,
              help="Refuse a bundle carrying a document stamp this many minutes or more ahead "
              "of this device's clock.")
@click.option("--dry-run", is_flag=True,
              help="Verify the bundle and say what importing it would decide and do; change "
              "nothing (no collection, store, documents, index or decision log entry).")
@json_option
@click.pass_context
def import_command(ctx: click.Context, path: Path, max_clock_skew_min: float,
                   dry_run: bool, as_json: bool) -> None:
    """Check a .leann file, decide whether it can be used here, and do it.

    Prints the decision and why: use it as is, use it without its cache, use it and add this
    device's newer documents, or rebuild from this device's documents (with a progress bar).
    With --dry-run it prints the same decision and what it would do, and changes nothing.

    \b
    Example:
      meshdex bundle import --dry-run /media/usb/notes.leann
      meshdex bundle import /media/usb/notes.leann
    """
    refuse_remote(ctx, "bundle import installs into this device's data directory")
    max_clock_skew_ms = int(max_clock_skew_min * 60_000)
    data_dir = resolve_data_dir(_data_dir(ctx))
    if dry_run:
        with open_bundle(path, verify="full") as bundle:
            report = _planned(data_dir, bundle, max_clock_skew_ms)
    else:
        report = _imported(data_dir, path, max_clock_skew_ms)
    if as_json:
        _print_json(report.to_dict())
        return
    for line in describe_import(report):
        click.echo(line)


def _imported(data_dir: Path, path: Path, max_clock_skew_ms: int) -> ImportReport:
    """``import_verified``, with a progress bar. On a new device the file is verified first,
    so a damaged one leaves no empty store behind; else the store is opened first, so a node
    holding it is said at once, before the file is hashed."""
    with ExitStack() as opened:
        fresh = not Store.exists(data_dir)
        bundle = opened.enter_context(open_bundle(path, verify="full")) if fresh else None
        try:
            node = opened.enter_context(Node.open(data_dir))
        except StoreLocked as error:
            raise beside_serving_node(error, "stop the node, import, then start it again"
                                      ) from None
        if bundle is None:
            bundle = opened.enter_context(open_bundle(path, verify="full"))
        progress = opened.enter_context(progress_bar())
        return import_verified(node, bundle, path, progress=progress,
                               max_clock_skew_ms=max_clock_skew_ms)


def _planned(data_dir: Path, bundle: Bundle, max_clock_skew_ms: int) -> ImportReport:
    """``plan_import`` against the store read-only (beside a serving node too), or, where
    there is no store yet, for a fresh device, creating none."""
    if not Store.exists(data_dir):
        return plan_import(None, bundle, max_clock_skew_ms=max_clock_skew_ms)
    with Node.open(data_dir, readonly=True) as node:
        return plan_import(node, bundle, max_clock_skew_ms=max_clock_skew_ms)


COMMANDS = [bundle]
