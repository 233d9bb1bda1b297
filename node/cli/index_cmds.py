"""Commands that build and query indexes: ``build``, ``search``, ``stats`` and ``demo``.

``build`` and ``search`` work embedded or against ``--node``; ``stats`` reads this device's index
files and ``demo`` always runs embedded on the sample corpus shipped inside the package, so a
fresh install can show what meshdex does; both refuse ``--node``.
"""

from __future__ import annotations

import itertools
import json
import sys
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import asdict
from pathlib import Path
from typing import TYPE_CHECKING, Any, TextIO

import click
from meshdex.index.errors import InvalidArgument
from meshdex.index.fusion import DEFAULT_SEARCH_MODE, SEARCH_MODES
from meshdex.index.params import RECALL_TARGETS, BuildParams
from meshdex.node.cli.docs_cmds import collection_option, counted, json_option, top_k_option
from meshdex.node.cli.remote import beside_serving_node, open_node, refuse_remote
from meshdex.node.cli.sync_cmds import open_admin
from meshdex.node.errors import StoreLocked
from meshdex.node.ingest import collect_files, ingest, read_file
from meshdex.node.records import SearchResults, scores_text
from meshdex.node.service import Node
from tqdm import tqdm

if TYPE_CHECKING:
    from meshdex.index.engine import SearchStats

SAMPLE_DIR = Path(__file__).resolve().parents[1] / "sample"
SAMPLE_COLLECTION = "sample"
SNIPPET_CHARS = 240


def _parse_assignments(pairs: tuple[str, ...], what: str) -> dict[str, Any]:
    """``("ef=64", "strategy=graph")`` → ``{"ef": 64, "strategy": "graph"}`` (JSON values)."""
    parsed: dict[str, Any] = {}
    for pair in pairs:
        name, sep, raw = pair.partition("=")
        if not sep or not name.strip():
            raise InvalidArgument(f"{what} must look like NAME=VALUE, got {pair!r}")
        try:
            parsed[name.strip()] = json.loads(raw)
        except json.JSONDecodeError:
            parsed[name.strip()] = raw
    return parsed


@contextmanager
def progress_bar() -> Iterator[Callable[[str, int, int], None]]:
    """A ``progress(stage, done, total)`` callback drawing a bar when stderr is a terminal."""
    bars: dict[str, tqdm] = {}
    enabled = sys.stderr.isatty()

    def progress(stage: str, done: int, total: int) -> None:
        if not enabled:
            return
        bar = bars.get(stage)
        if bar is None:
            bar = bars[stage] = tqdm(total=total, desc=stage, unit="passage", file=sys.stderr)
        bar.total = total
        bar.update(done - bar.n)

    try:
        yield progress
    finally:
        for bar in bars.values():
            bar.close()


def _report_dict(report: Any) -> dict[str, Any]:
    return report.to_dict() if hasattr(report, "to_dict") else dict(report)


def _print_build(report: dict[str, Any], as_json: bool) -> None:
    if as_json:
        click.echo(json.dumps(report, indent=2))
        return
    why = f"full build: {report['reason']}" if report["action"] == "built" else report["reason"]
    click.echo(
        f"{report['collection']}: {report['action']} generation {report['generation']} "
        f"({report['passages']} passages, +{report['added']} -{report['removed']}) "
        f"in {report['seconds']:.1f} s — {why}"
    )


@click.command("build")
@collection_option
@click.option("--rebuild", is_flag=True, help="Rebuild from scratch instead of applying changes.")
@click.option(
    "--param", "params", multiple=True, metavar="NAME=VALUE",
    help="Override a build parameter (M, ef_construction, hub_fraction, pruned_degree, "
    "pq_subvectors, pq_bits, cache_budget_nodes, storage_mode=compact|full, ...). Repeatable; "
    "a changed parameter forces a rebuild.",
)
@click.option(
    "--on", "on_peer", default=None, metavar="PEER",
    help="Let this paired read-write device (id or name) build: sync the documents with it, "
    "stream its build progress, then fetch and install its signed bundle. Nothing is "
    "embedded here.",
)
@json_option
@click.pass_context
def build_command(
    ctx: click.Context, collection: str, rebuild: bool, params: tuple[str, ...],
    on_peer: str | None, as_json: bool,
) -> None:
    """Embed new passages and bring the collection's index up to date.

    After document changes the existing index is updated in place (new passages inserted,
    deleted ones tombstoned) unless the change is large, the model changed, or --rebuild is
    given; the output says which it did and why. With --on PEER a stronger paired device
    does the embedding and this one only downloads the blocks of the bundle it lacks.

    \b
    Example:
      meshdex build --collection notes
      meshdex build --param storage_mode=full --rebuild
      meshdex build --on desktop -c notes
    """
    build_params = BuildParams.from_dict(_parse_assignments(params, "--param")) if params else None
    if on_peer is not None:
        _build_on(ctx, on_peer, collection, build_params, rebuild, as_json)
        return
    with open_node(ctx, existing_store=True) as node, progress_bar() as progress:
        report = node.build(collection, params=build_params, rebuild=rebuild, progress=progress)
    _print_build(_report_dict(report), as_json)


def _build_on(ctx: click.Context, peer: str, collection: str, params: BuildParams | None,
              rebuild: bool, as_json: bool) -> None:
    with open_admin(ctx) as admin, progress_bar() as progress:
        report = admin.build_on(peer, collection, params=params, rebuild=rebuild,
                                progress=progress)
    if as_json:
        click.echo(json.dumps(report.to_dict(), indent=2))
        return
    click.echo(
        f"{report.collection}: {report.action} generation {report.generation} on "
        f"{report.peer_name} ({report.passages} passages) in {report.build_seconds:.1f} s — "
        f"{report.build_reason}\n"
        f"  synced first: sent {report.sent}, received {report.received} documents\n"
        f"  bundle: {report.decision} ({report.reason}); fetched "
        f"{report.bundle_bytes_fetched} of {report.bundle_bytes_total} bytes, "
        f"{report.blocks_fetched} blocks, {report.blocks_reused} reused; "
        f"{report.seconds:.1f} s in all"
    )


def _results_dict(query: str, results: SearchResults) -> dict[str, Any]:
    return {
        "query": query,
        "collection": results.collection,
        "hits": [asdict(hit) for hit in results.hits],
        "stats": {name: round(value, 6) if isinstance(value, float) else value
                  for name, value in asdict(results.stats).items()},
        "index_behind": results.index_behind,
    }


def _print_results(query: str, results: SearchResults, out: TextIO | None = None) -> None:
    click.echo(f"query: {query}", file=out)
    if not results.hits:
        click.echo("  no results", file=out)
    for rank, hit in enumerate(results.hits, start=1):
        snippet = " ".join(hit.passage.split())
        if len(snippet) > SNIPPET_CHARS:
            snippet = snippet[: SNIPPET_CHARS - 1] + "…"
        scores = scores_text(score=hit.score, similarity=hit.similarity, bm25=hit.bm25)
        click.echo(f"{rank:>3}. {hit.document_id}  ({scores})", file=out)
        click.echo(f"     {snippet}", file=out)
    click.echo(f"  ({search_stats_text(results.stats)})", file=out)


def search_stats_text(stats: SearchStats) -> str:
    """What a search cost, in one line; a keyword search (no re-ranking, no model) says so."""
    elapsed = f"{stats.total_seconds * 1000:.0f} ms"
    if not stats.rerank_stop:
        return f"{stats.strategy}, {elapsed}"
    return (f"{stats.passages_recomputed} passages recomputed in {stats.model_calls} model "
            f"calls, {stats.cache_hits} cache hits, {stats.memo_hits} memo hits, "
            f"{stats.nodes_visited} nodes visited, re-ranking stopped after {stats.reranked} "
            f"({stats.rerank_stop}), {elapsed}")


def _read_queries(path: Path) -> list[tuple[int, str]]:
    """(line number, query) for each line of a JSONL file: ``{"query": ...}`` or a string.

    Any other key is refused rather than passed over: ``top_k``, ``filter`` or ``mode`` on a
    line looked as if it applied and did not (they are the command's options, for every line).
    """
    queries = []
    with path.open("rb") as lines:
        for number, raw in enumerate(lines, start=1):
            try:
                line = raw.decode("utf-8")
            except UnicodeDecodeError as error:
                raise InvalidArgument(f"{path}:{number}: not UTF-8 (byte {raw[error.start]:#04x} "
                                      f"at column {error.start + 1})",
                                      hint="save the file as UTF-8") from None
            if not line.strip():
                continue
            try:
                item = json.loads(line)
            except json.JSONDecodeError as error:
                raise InvalidArgument(f"{path}:{number}: invalid JSON ({error.msg})") from None
            unknown = sorted(set(item) - {"query"}) if isinstance(item, dict) else []
            if unknown:
                raise InvalidArgument(
                    f'{path}:{number}: unknown key(s) {", ".join(unknown)}: a line holds only '
                    '"query"',
                    hint="--top-k, --filter, --mode and --param apply to every query of the file")
            query = item.get("query") if isinstance(item, dict) else item
            if not isinstance(query, str) or not query.strip():
                raise InvalidArgument(f'{path}:{number}: expected {{"query": "..."}} or a string')
            queries.append((number, query))
    return queries


@click.command("search")
@click.argument("query", required=False)
@collection_option
@top_k_option(default=5, help="Results to return.")
@click.option(
    "--filter", "filter_spec",
    help='Metadata filter applied during the search: "lang=en and year>=2020", '
    '"tags~python" (contains), "kind in [a,b]", or a JSON filter object: '
    '\'{"field": "lang", "op": "eq", "value": "en"}\', several in {"and": [...]} or '
    '{"or": [...]}. and / or / in '
    'are read in any case (AND); < <= > >= take a number or an ISO date ("date>=2024-05-01"); '
    'quote a value holding and, or or an operator (title="rock and roll"). A filter it cannot '
    'read is refused (exit 2), never a search that quietly matches nothing.',
)
@click.option(
    "--param", "params", multiple=True, metavar="NAME=VALUE",
    help="Search knob: ef, recall_target, recompute_fraction, batch_size, "
    "strategy=auto|graph|flat, entry_points. Repeatable.",
)
@click.option(
    "--recall-target", type=click.FloatRange(0.0, 1.0, min_open=True),
    help="Share of the true top passages to keep (0-1]: re-ranking stops once the rest cannot "
    "plausibly enter the top k. Lower is faster; 1 re-ranks up to the ceiling. Default: the "
    f"index's own for its codes ({RECALL_TARGETS['learnt rotation']} with a rotation learnt "
    f"on the collection, {RECALL_TARGETS['model rotation']} with the model's shipped one, "
    f"for collections too small to learn their own; {RECALL_TARGETS['no rotation']} without "
    "one).",
)
@click.option(
    "--queries", type=click.Path(dir_okay=False, exists=True, path_type=Path),
    help="Answer every query of a JSONL file ({\"query\": ...} per line), loading the model "
    "once; prints one JSON line per query.",
)
@click.option(
    "--mode", type=click.Choice(SEARCH_MODES), default=DEFAULT_SEARCH_MODE.value,
    show_default=True,
    help="semantic: by meaning (embeddings); keyword: BM25 over the words, for exact names, "
    "error codes and identifiers; hybrid: both rankings fused.",
)
@json_option
@click.pass_context
def search_command(
    ctx: click.Context, query: str | None, collection: str, top_k: int,
    filter_spec: str | None, params: tuple[str, ...], recall_target: float | None,
    queries: Path | None, mode: str, as_json: bool,
) -> None:
    """Find the passages that best answer QUERY.

    \b
    Example:
      meshdex search "how do I read a file line by line" --top-k 3
      meshdex search "pickling" --filter "source~library" --json
      meshdex search "EADDRINUSE" --mode keyword
      meshdex search "context managers" --recall-target 0.99
      meshdex search --queries questions.jsonl --json > answers.jsonl
    """
    if (query is None) == (queries is None):
        raise InvalidArgument("give either a QUERY or --queries FILE")
    knobs = _parse_assignments(params, "--param")
    if recall_target is not None:
        if "recall_target" in knobs:
            raise InvalidArgument("give recall_target once: --recall-target or --param")
        knobs["recall_target"] = recall_target
    batch = _read_queries(queries) if queries else [(0, query or "")]
    behind = False
    with open_node(ctx, readonly=True) as node:
        for _, text in batch:
            results = node.search(collection, text, top_k=top_k, filter=filter_spec,
                                  params=knobs or None, mode=mode)
            behind = behind or results.index_behind
            if queries is not None:
                click.echo(json.dumps(_results_dict(text, results), ensure_ascii=False))
            elif as_json:
                click.echo(json.dumps(_results_dict(text, results), indent=2, ensure_ascii=False))
            else:
                _print_results(text, results)
    if behind:
        click.echo(f"note: {collection!r} changed since its index was built, and what changed "
                   f"is not searched yet: run `meshdex build -c {collection}`", err=True)


@click.command("stats")
@collection_option
@json_option
@click.pass_context
def stats_command(ctx: click.Context, collection: str, as_json: bool) -> None:
    """Index size by section against the raw passage text, the keyword index, learned cache
    and pins beside it, build params and fingerprint.

    \b
    Example:
      meshdex stats --collection notes --json
    """
    refuse_remote(ctx, "stats reads the index files in this device's data directory; the "
                  "node's API does not serve them",
                  hint="run it on the node's machine, without --node; `meshdex --node ... "
                  "status` shows each index's generation, passages and size")
    with Node.open((ctx.find_root().obj or {}).get("data_dir"), readonly=True) as node:
        stats = node.index_stats(collection).to_dict()
    if as_json:
        click.echo(json.dumps(stats, indent=2))
        return
    click.echo(f"{stats['collection']}: generation {stats['generation']}, "
               f"{stats['passages']} passages")
    click.echo(f"  raw passage text  {stats['raw_passage_bytes']:>12,} bytes")
    ratio = stats["index_to_raw_ratio"]
    share = "no text indexed" if ratio is None else f"{ratio:.2%} of the text"
    click.echo(f"  index             {stats['index_bytes']:>12,} bytes ({share})")
    for name, size in sorted(stats["section_bytes"].items()):
        click.echo(f"    {name:<16}{size:>12,} bytes")
    beside = stats["beside_index"]
    click.echo(f"  keyword index     {beside['keyword_index_bytes']:>12,} bytes")
    click.echo(f"  learned cache     {beside['learned_bytes']:>12,} bytes "
               f"({counted(beside['learned_passages'], 'passage')}, budget "
               f"{beside['learned_budget_bytes']:,})")
    click.echo(f"  pinned            {beside['pinned_bytes']:>12,} bytes "
               f"({counted(beside['pinned_passages'], 'passage')}, budget "
               f"{beside['pin_budget_bytes']:,}; `meshdex unpin` lets them go)")
    fingerprint = stats["fingerprint"]
    click.echo(f"  model {fingerprint['model_id']} ({fingerprint['precision']}, "
               f"sha256 {fingerprint['model_hash'][:12]}…), dim {fingerprint['dim']}")


@click.command("demo")
@click.option("--query", default=None, help="Ask this instead of the sample questions.")
@top_k_option(default=3)
@click.pass_context
def demo_command(ctx: click.Context, query: str | None, top_k: int) -> None:
    """Index the bundled sample (part of the Python tutorial) and answer sample questions.

    Runs embedded in the data directory's "sample" collection; a second run reuses the index.

    \b
    Example:
      meshdex demo
      meshdex demo --query "how do I handle exceptions?"
    """
    refuse_remote(ctx, "demo indexes the bundled sample in a local data directory and runs "
                  "embedded", hint="run it without --node")
    questions = [query] if query else [
        line.strip() for line in (SAMPLE_DIR / "queries.txt").read_text().splitlines()
        if line.strip() and not line.startswith("#")
    ][:2]
    started = time.monotonic()
    try:
        node = Node.open((ctx.find_root().obj or {}).get("data_dir"))
    except StoreLocked as error:
        raise beside_serving_node(error, "run it in a data directory of its own: `meshdex "
                                  "--data-dir /tmp/meshdex-demo demo`") from None
    with node:
        click.echo(f"meshdex demo: data directory {node.data_dir}", err=True)
        tasks, decided = collect_files([SAMPLE_DIR / "python-tutorial"])
        items = itertools.chain(decided, (read_file(task) for task in tasks))
        summary = ingest(node, SAMPLE_COLLECTION, items)
        counts = summary.counts
        click.echo(f"ingested the sample: {counts['added']} added, {counts['unchanged']} "
                   f"unchanged, {counts['updated']} updated", err=True)
        with progress_bar() as progress:
            report = node.build(SAMPLE_COLLECTION, progress=progress)
        _print_build(report.to_dict(), as_json=False)
        for question in questions:
            _print_results(question, node.search(SAMPLE_COLLECTION, question, top_k=top_k))
    click.echo(f"done in {time.monotonic() - started:.1f} s", err=True)


COMMANDS = [build_command, search_command, stats_command, demo_command]
