"""``meshdex pin``: keep exact embeddings of chosen documents so searches never recompute them."""

from __future__ import annotations

import json
from dataclasses import asdict

import click
from meshdex.node.cli.docs_cmds import collection_option, json_option
from meshdex.node.cli.index_cmds import progress_bar
from meshdex.node.cli.remote import open_node
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
    Pins follow the index's model: after a model change they are dropped; pin again.

    \b
    Example:
      meshdex pin --collection notes --filter "source~handbook"
    """
    with open_node(ctx, existing_store=True) as node, progress_bar() as progress:
        report = node.pin(collection, filter_spec,
                          progress=lambda done, total: progress("embedding", done, total))
    if as_json:
        click.echo(json.dumps(asdict(report), indent=2))
        return
    click.echo(f"{report.collection}: {report.documents} documents match, {report.passages} "
               f"passages, {report.newly_pinned} newly pinned; {report.pinned_total} pinned in "
               f"all ({report.pinned_bytes:,} of {report.budget_bytes:,} bytes)")


pin_command.help = pin_command.help.replace("%(budget)s", str(PIN_BUDGET_BYTES // (1 << 20)))
COMMANDS = [pin_command]
