"""``meshdex pin`` and ``unpin``: keep exact embeddings of chosen documents so searches never
recompute them, and let them go."""

from __future__ import annotations

import json
from dataclasses import asdict

import click
from meshdex.index.errors import InvalidArgument
from meshdex.node.cli.docs_cmds import collection_option, counted, json_option
from meshdex.node.cli.index_cmds import progress_bar
from meshdex.node.cli.remote import open_node
from meshdex.node.indexing import PinReport
from meshdex.node.search_caches import PIN_BUDGET_BYTES


@click.command("pin")
@collection_option
@click.option("--filter", "filter_spec", required=True,
              help='Documents to pin, as a filter on their metadata, id or source: '
              '"source~faq", "type=pdf".')
@json_option
@click.pass_context
def pin_command(ctx: click.Context, collection: str, filter_spec: str, as_json: bool) -> None:
    """Pin the passages of documents matching --filter: their exact embeddings are kept
    beside the index and searches score them without recomputing.

    Pinned embeddings have their own budget (%(budget)s MiB per collection), apart from the
    cache that learns from searches; a pin that would exceed it is refused and pins nothing.
    Pins follow the index's model: after a model change they are dropped; pin again. Pins of
    passages no document holds any more (edited or deleted) are released; `meshdex unpin`
    lets go of the others.

    \b
    Example:
      meshdex pin --collection notes --filter "source~handbook"
    """
    with open_node(ctx, existing_store=True) as node, progress_bar() as progress:
        report = node.pin(collection, filter_spec,
                          progress=lambda done, total: progress("embedding", done, total))
    _print(report, as_json, f"{counted(report.documents, 'document')} matched, "
           f"{counted(report.passages, 'passage')}, {report.newly_pinned} newly pinned")


@click.command("unpin")
@collection_option
@click.option("--filter", "filter_spec",
              help="Documents whose passages to unpin, as for `meshdex pin`.")
@click.option("--all", "everything", is_flag=True, help="Unpin every passage of the collection.")
@json_option
@click.pass_context
def unpin_command(ctx: click.Context, collection: str, filter_spec: str | None,
                  everything: bool, as_json: bool) -> None:
    """Stop pinning the passages of documents matching --filter, or every pin with --all:
    searches recompute them again unless the learned cache keeps them. Frees pin budget.

    \b
    Example:
      meshdex unpin --collection notes --filter "source~handbook"
      meshdex unpin --collection notes --all
    """
    if everything == (filter_spec is not None):
        raise InvalidArgument("give --filter or --all (one of them)",
                              hint='e.g. meshdex unpin --filter "source~handbook"')
    with open_node(ctx, existing_store=True) as node:
        report = node.unpin(collection, None if everything else filter_spec)
    matched = "" if everything else f"{counted(report.documents, 'document')} matched, "
    _print(report, as_json, f"{matched}{counted(report.unpinned, 'passage')} unpinned")


def _print(report: PinReport, as_json: bool, what: str) -> None:
    if as_json:
        click.echo(json.dumps(asdict(report), indent=2))
        return
    released = (f"; released {counted(report.released, 'pin')} of passages no document holds"
                if report.released else "")
    click.echo(f"{report.collection}: {what}{released}; {report.pinned_total} pinned in all "
               f"({report.pinned_bytes:,} of {report.budget_bytes:,} bytes)")


pin_command.help = pin_command.help.replace("%(budget)s", str(PIN_BUDGET_BYTES // (1 << 20)))
COMMANDS = [pin_command, unpin_command]
