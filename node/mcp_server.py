"""The MCP server: meshdex's search as Model Context Protocol tools for assistants and editors.

``build_mcp_server`` registers the tools on the official SDK's ``MCPServer`` over any
``NodeAPI`` — the embedded ``Node`` or a ``MeshdexClient`` for ``--node`` — so both give the
same answers. ``McpTools`` holds the tool bodies as plain methods (testable without a
transport). Every result is bounded (``MAX_RESULT_CHARS``): a model's context is small and an
unbounded document would crowd out the conversation, so whatever is cut is said in ``note``.

Transports: stdio (``run_stdio``), which the client starts as a subprocess (or a script pipes
requests into: every request read is answered before it exits), and streamable HTTP
(``serve_http``), which needs a meshdex bearer token like the gRPC API and keeps web pages
out (``meshdex.node.mcp_http``). Every incoming message is checked against JSON-RPC 2.0
(``meshdex.node.mcp_jsonrpc``) before the SDK sees it.
"""

from __future__ import annotations

import contextlib
import functools
import io
import logging
import os
import socket
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import asdict
from typing import Annotated, Any, Protocol

import anyio
import uvicorn
from mcp.server.mcpserver import Context, MCPServer
from mcp.server.mcpserver.exceptions import ToolError, UnexpectedToolError
from mcp.server.stdio import stdio_server
from mcp.server.transport_security import TransportSecuritySettings
from mcp.shared._context_streams import create_context_streams
from mcp.shared.message import SessionMessage
from mcp_types import (
    CallToolResult,
    InputRequiredResult,
    JSONRPCError,
    JSONRPCNotification,
    JSONRPCRequest,
    JSONRPCResponse,
)
from meshdex import __version__
from meshdex.index.errors import InvalidArgument, MeshdexError, PermissionDenied
from meshdex.index.fusion import DEFAULT_SEARCH_MODE, SEARCH_MODES
from meshdex.node.auth import TokenStore
from meshdex.node.config import is_loopback_host
from meshdex.node.errors import ListenFailed
from meshdex.node.indexing import BuildReport
from meshdex.node.mcp_arguments import argument_names, argument_problems, strict_tool
from meshdex.node.mcp_http import BearerTokenGate, BrowserGate, JsonRpcBodyCheck
from meshdex.node.mcp_jsonrpc import check_message
from meshdex.node.records import (
    CollectionInfo,
    DeleteReport,
    Document,
    DocumentInput,
    NodeStatus,
    Outcome,
    SearchResults,
    UpsertReport,
    rounded_score,
)
from meshdex.node.service import DEFAULT_COLLECTION
from meshdex.node.validation import MAX_TOP_K as NODE_MAX_TOP_K
from pydantic import Field, ValidationError

logger = logging.getLogger(__name__)

SERVER_NAME = "meshdex"
HTTP_PATH = "/mcp"
# Hits per MCP search: fewer than the node's own limit (``validation.MAX_TOP_K``, for programs
# and `meshdex search`) on purpose, since every hit lands in the model's context; a larger top_k
# is lowered to this with a note that says so, not refused.
MAX_TOP_K = 50
MAX_PASSAGE_CHARS = 2_000  # one hit's passage text; longer ones are cut with a note
MAX_RESULT_CHARS = 40_000  # passage/document text in one tool result
MAX_WRITE_DOCUMENTS = 100  # documents per add_documents / ids per delete_documents call
LISTEN_BACKLOG = 64
# After stdin closes, how long requests already read may take to be answered; how often to look.
STDIO_DRAIN_S = 120.0
DRAIN_POLL_S = 0.05


class NodeAPI(Protocol):
    """What the tools need from a node; ``Node`` and ``MeshdexClient`` both provide it with the
    same records and errors."""

    def search(self, collection: str, query: str, *, top_k: int = ...,
               filter: str | None = ..., params: dict[str, Any] | None = ...,
               mode: str | None = ...) -> SearchResults:
        """Top-k passages; CollectionNotFound / IndexNotBuilt / InvalidArgument on bad input."""

    def list_collections(self) -> list[CollectionInfo]:
        """Every collection with its counts."""

    def get_document(self, collection: str, doc_id: str) -> Document:
        """The live document; DocumentNotFound if absent or deleted."""

    def status(self) -> NodeStatus:
        """Device, store and index summary."""

    def upsert_documents(self, collection: str, docs: Iterable[DocumentInput], *,
                         create_missing: bool = ...) -> UpsertReport:
        """Add or replace documents, reported per item."""

    def delete_documents(self, collection: str, ids: Iterable[str]) -> DeleteReport:
        """Tombstone documents by id."""

    def build(self, collection: str) -> BuildReport:
        """Bring the collection's index up to date (a delta when it can)."""


def _cut(text: str, limit: int) -> tuple[str, bool]:
    return (text, False) if len(text) <= limit else (text[:limit], True)


class McpTools:
    """The tool bodies: call the node, shape a bounded JSON-able answer.

    Errors stay ``MeshdexError``; the SDK turns a raised error into a tool result flagged
    ``isError`` with the error's one-line message (hint included), which a model can act on.
    """

    def __init__(self, node: NodeAPI, *, writes: bool) -> None:
        self.node = node
        self.writes = writes

    def search(self, query: str, collection: str = DEFAULT_COLLECTION, top_k: int = 5,
               filter: str | None = None,
               mode: str = DEFAULT_SEARCH_MODE.value) -> dict[str, Any]:
        if mode not in SEARCH_MODES:
            raise InvalidArgument(f"mode must be one of {', '.join(SEARCH_MODES)}, got {mode!r}")
        notes = []
        if top_k > MAX_TOP_K:
            notes.append(f"top_k lowered from {top_k} to {MAX_TOP_K}, the MCP server's maximum "
                         "(more hits would crowd the conversation out of the model's context; "
                         f"`meshdex search` takes up to {NODE_MAX_TOP_K})")
            top_k = MAX_TOP_K
        results = self.node.search(collection, query, top_k=top_k, filter=filter or None,
                                   mode=mode)
        hits: list[dict[str, Any]] = []
        budget = MAX_RESULT_CHARS
        cut_passages = 0
        for rank, hit in enumerate(results.hits, start=1):
            if budget <= 0:
                notes.append(f"{len(results.hits) - len(hits)} lower-ranked hits left out to "
                             f"keep the result under {MAX_RESULT_CHARS} characters; ask for a "
                             "smaller top_k or use get_document")
                break
            passage, cut = _cut(hit.passage, min(MAX_PASSAGE_CHARS, budget))
            cut_passages += cut
            budget -= len(passage)
            hits.append({"rank": rank, "document_id": hit.document_id, "source": hit.source,
                         "score": rounded_score(hit.score),
                         "similarity": rounded_score(hit.similarity),
                         "bm25": rounded_score(hit.bm25), "metadata": hit.metadata,
                         "passage": passage})
        if cut_passages:
            notes.append(f"{cut_passages} passage(s) cut to {MAX_PASSAGE_CHARS} characters; "
                         "get_document returns the whole text")
        cost = {name: round(value, 6) if isinstance(value, float) else value
                for name, value in asdict(results.stats).items()}
        return _with_notes({"collection": results.collection, "query": query, "hits": hits,
                            "cost": cost}, notes)

    def list_collections(self) -> dict[str, Any]:
        return {"collections": [info.to_dict() for info in self.node.list_collections()]}

    def get_document(self, document_id: str, collection: str = DEFAULT_COLLECTION,
                     offset: int = 0) -> dict[str, Any]:
        if offset < 0:
            raise InvalidArgument(f"offset must be >= 0, got {offset}")
        doc = self.node.get_document(collection, document_id)
        text, cut = _cut(doc.text[offset:], MAX_RESULT_CHARS)
        answer = {"collection": doc.collection, "id": doc.id, "source": doc.source,
                  "metadata": doc.metadata, "content_hash": doc.content_hash,
                  "text_chars": len(doc.text), "offset": offset, "text": text}
        notes = []
        if cut:
            end = offset + len(text)
            notes.append(f"text cut: characters {offset}-{end} of {len(doc.text)} shown; call "
                         f"get_document again with offset={end} for the rest")
        return _with_notes(answer, notes)

    def status(self) -> dict[str, Any]:
        status = self.node.status().to_dict()
        status.pop("data_dir")  # a path on the serving machine: no use to the model
        return status

    def add_documents(self, documents: list[dict[str, Any]],
                      collection: str = DEFAULT_COLLECTION, build: bool = True) -> dict[str, Any]:
        self._check_writes("add_documents")
        if len(documents) > MAX_WRITE_DOCUMENTS:
            raise InvalidArgument(f"at most {MAX_WRITE_DOCUMENTS} documents per call, got "
                                  f"{len(documents)}", hint="split them over several calls")
        inputs = [_document_input(position, item) for position, item in enumerate(documents)]
        report = self.node.upsert_documents(collection, inputs, create_missing=True)
        answer: dict[str, Any] = {"report": report.to_dict()}
        if build and (report.count(Outcome.ADDED) or report.count(Outcome.UPDATED)):
            answer["build"] = self.node.build(collection).to_dict()
        return answer

    def delete_documents(self, document_ids: list[str], collection: str = DEFAULT_COLLECTION,
                         build: bool = True) -> dict[str, Any]:
        self._check_writes("delete_documents")
        if len(document_ids) > MAX_WRITE_DOCUMENTS:
            raise InvalidArgument(f"at most {MAX_WRITE_DOCUMENTS} ids per call, got "
                                  f"{len(document_ids)}", hint="split them over several calls")
        report = self.node.delete_documents(collection, document_ids)
        answer: dict[str, Any] = {"report": report.to_dict()}
        if build and report.deleted:
            answer["build"] = self.node.build(collection).to_dict()
        return answer

    def _check_writes(self, tool: str) -> None:
        """Write tools are not even listed when writes are off; this guards a direct call."""
        if not self.writes:
            raise PermissionDenied(f"{tool} is disabled: this MCP server is read-only",
                                   hint="set mcp_writes = true in the node config to allow it")


def _with_notes(answer: dict[str, Any], notes: list[str]) -> dict[str, Any]:
    answer["truncated"] = bool(notes)
    if notes:
        answer["note"] = "; ".join(notes)
    return answer


def _document_input(position: int, item: Any) -> DocumentInput:
    if not isinstance(item, Mapping) or not {"id", "text"} <= set(item):
        raise InvalidArgument(f"documents[{position}] must be an object with id and text")
    unknown = set(item) - {"id", "text", "metadata", "source"}
    if unknown:
        raise InvalidArgument(f"documents[{position}] has unknown fields {sorted(unknown)}")
    return DocumentInput(id=item["id"], text=item["text"], metadata=item.get("metadata") or {},
                         source=item.get("source"))


# The descriptions are what the model reads to decide when and how to call a tool.
SEARCH_DESCRIPTION = f"""Search the user's private meshdex index (by meaning and by exact words).

Returns the top_k passages that best match `query`, best first, each with its document_id,
source (file path or URL), score (ranks the hits; in hybrid mode a fused rank, under 0.07 and
alike for every top hit), similarity (cosine to the query, at most 1, where meaning ranked it,
else null), bm25 (where exact words ranked it, else null) and metadata, plus `cost` (passages
recomputed, model calls, milliseconds). Phrase `query` as a question or a description of what
you look for. `filter` restricts by metadata during the search, e.g. "type=markdown",
"year>=2024 and lang=en", "tags~python", "kind in [a,b]". `mode`: "hybrid" (default: meaning
and exact words fused), "semantic" (meaning only) or "keyword" (BM25 on the words: names, error
codes, identifiers). top_k is at most {MAX_TOP_K} (a larger one is lowered); passages are cut
to {MAX_PASSAGE_CHARS} characters and the result to {MAX_RESULT_CHARS}, with `truncated` and a
`note` saying what was left out. Use get_document for a whole document and list_collections to
find collection names."""

DESCRIPTIONS = {
    "search": SEARCH_DESCRIPTION,
    "list_collections": "List the collections in the index with their document, passage and "
    "tombstone counts and embedding model. Call this first to learn which collection to search.",
    "get_document": "Fetch one document's full text, source and metadata by its document_id "
    f"(as returned by search). At most {MAX_RESULT_CHARS} characters are returned per call; when "
    "`truncated` is true, call again with the `offset` given in `note` to read on.",
    "status": "The index's state: device id, store size, each collection's counts, each index's "
    "generation and whether it is stale (documents changed since the last build), and recent "
    "index decisions.",
    "add_documents": "Add or replace documents in a collection (created if missing): a list of "
    "{id, text, metadata?, source?}, at most "
    f"{MAX_WRITE_DOCUMENTS} per call. Re-adding an unchanged document is a no-op. With build "
    "(default true) the index is updated so the documents are searchable when this returns. "
    "Returns the outcome per document (added, updated, unchanged, rejected with reason).",
    "delete_documents": "Delete documents from a collection by id (at most "
    f"{MAX_WRITE_DOCUMENTS} per call); ids not present are listed as not_found. With build "
    "(default true) the index drops them before this returns.",
}


class StrictToolServer(MCPServer):
    """An ``MCPServer`` whose tools refuse unknown arguments (``strict_tool``) and tell what is
    wrong with a call's arguments one line per problem, as the tool error the model reads."""

    def __init__(self, *args: Any, tools: list[Any], **kwargs: Any) -> None:
        super().__init__(*args, tools=tools, **kwargs)
        self.argument_names = {tool.name: argument_names(tool) for tool in tools}

    async def call_tool(self, name: str, arguments: dict[str, Any],
                        context: Context[Any, Any] | None = None,
                        ) -> CallToolResult | InputRequiredResult:
        try:
            return await super().call_tool(name, arguments, context)
        except ToolError as error:
            refused = error.__cause__
            if isinstance(error, UnexpectedToolError) or not isinstance(refused, ValidationError):
                raise
            raise ToolError(argument_problems(refused, tool=name,
                                              known=self.argument_names[name])) from refused


def build_mcp_server(tools: McpTools) -> MCPServer:
    """An ``MCPServer`` exposing ``tools``; the write tools only when ``tools.writes``."""
    def search(
        query: Annotated[str, Field(description="What to look for, in natural language.")],
        collection: Annotated[str, Field(description="Collection to search.")] = DEFAULT_COLLECTION,
        top_k: Annotated[int, Field(ge=1, description=f"Passages to return (max {MAX_TOP_K}).")]
        = 5,
        filter: Annotated[str | None, Field(description="Metadata filter, e.g. 'type=markdown'.")]
        = None,
        mode: Annotated[str, Field(description="hybrid, semantic or keyword.")]
        = DEFAULT_SEARCH_MODE.value,
    ) -> dict[str, Any]:
        return tools.search(query, collection, top_k, filter, mode)

    def list_collections() -> dict[str, Any]:
        return tools.list_collections()

    def get_document(
        document_id: Annotated[str, Field(description="The document_id from a search hit.")],
        collection: Annotated[str, Field(description="Its collection.")] = DEFAULT_COLLECTION,
        offset: Annotated[int, Field(ge=0, description="First character to return.")] = 0,
    ) -> dict[str, Any]:
        return tools.get_document(document_id, collection, offset)

    def status() -> dict[str, Any]:
        return tools.status()

    registered: list[Callable[..., dict[str, Any]]] = [search, list_collections, get_document,
                                                        status]
    if tools.writes:
        def add_documents(
            documents: Annotated[list[dict[str, Any]],
                                 Field(description="Objects with id, text, metadata?, source?.")],
            collection: Annotated[str, Field(description="Target collection.")]
            = DEFAULT_COLLECTION,
            build: Annotated[bool, Field(description="Update the index before returning.")]
            = True,
        ) -> dict[str, Any]:
            return tools.add_documents(documents, collection, build)

        def delete_documents(
            document_ids: Annotated[list[str], Field(description="Ids of documents to delete.")],
            collection: Annotated[str, Field(description="Their collection.")]
            = DEFAULT_COLLECTION,
            build: Annotated[bool, Field(description="Update the index before returning.")]
            = True,
        ) -> dict[str, Any]:
            return tools.delete_documents(document_ids, collection, build)

        registered += [add_documents, delete_documents]
    return StrictToolServer(
        SERVER_NAME, version=__version__, log_level="WARNING",
        instructions="meshdex is the user's private semantic index of their own documents. "
        "Use search to find passages, get_document to read one.",
        tools=[strict_tool(_one_line_errors(function), name=function.__name__,
                           description=DESCRIPTIONS[function.__name__])
               for function in registered])


def _one_line_errors(function: Callable[..., dict[str, Any]]) -> Callable[..., dict[str, Any]]:
    """Raise ``MeshdexError`` as the SDK's ``ToolError``: the client gets the one-line message
    as an error result, and the server logs it briefly instead of as an unexpected traceback."""
    @functools.wraps(function)
    def wrapper(*args: Any, **kwargs: Any) -> dict[str, Any]:
        try:
            return function(*args, **kwargs)
        except MeshdexError as error:
            raise ToolError(str(error)) from error

    return wrapper


def run_stdio(server: MCPServer, *, drain_s: float = STDIO_DRAIN_S) -> None:
    """Serve on stdin/stdout until the client closes stdin, then answer the requests already
    read (for at most ``drain_s``) before exiting.

    The SDK's own stdio loop cancels them at EOF (modelcontextprotocol/python-sdk#2678), so
    ``meshdex mcp < requests.jsonl`` printed no answer to a search. The SDK has no public way
    to run its server on other streams, hence its ``_lowlevel_server``. Lines are read here, not
    by the SDK, so that each is checked (``check_message``) before its validation forgets what
    made a line invalid; the SDK's ``stdio_server`` still writes stdout.
    """
    anyio.run(_serve_stdio_draining, server._lowlevel_server, drain_s)


async def _serve_stdio_draining(lowlevel: Any, drain_s: float) -> None:
    unanswered: set[str | int] = set()

    class AnswerCountingStream:
        """The write stream, noting each request answered."""

        def __init__(self, inner: Any) -> None:
            self.inner = inner

        async def send(self, item: SessionMessage) -> None:
            await self.inner.send(item)
            # Only once the writer holds it: stdin's end closes the session, which cancels
            # an answer still waiting for a writer busy with a client that reads slowly.
            if isinstance(item.message, JSONRPCResponse | JSONRPCError):
                unanswered.discard(item.message.id)

        async def __aenter__(self) -> AnswerCountingStream:
            await self.inner.__aenter__()
            return self

        async def __aexit__(self, *exc_info: Any) -> Any:
            return await self.inner.__aexit__(*exc_info)

        def __getattr__(self, name: str) -> Any:
            return getattr(self.inner, name)

    # The SDK's reader gets no lines (it only ends); ``forward`` reads stdin.
    with _claimed_stdin() as stdin:
        async with stdio_server(stdin=anyio.wrap_file(io.StringIO())) as (_, write_stream):
            forward_send, forward_receive = create_context_streams[SessionMessage | Exception](0)

            async def forward() -> None:
                async with forward_send:
                    async for line in stdin:
                        checked = check_message(line)
                        if checked.refusal is not None:
                            logger.warning("stdin: %s", checked.refusal.error.message)
                            await write_stream.send(SessionMessage(checked.refusal))
                        elif checked.message is not None:
                            _note_request(checked.message, unanswered)
                            await forward_send.send(SessionMessage(checked.message))
                    with anyio.move_on_after(drain_s):
                        while unanswered:
                            await anyio.sleep(DRAIN_POLL_S)
                    if unanswered:
                        logger.warning("stdin closed: %d requests left unanswered after %.0f s",
                                       len(unanswered), drain_s)

            async with anyio.create_task_group() as group:
                group.start_soon(forward)
                await lowlevel.run(forward_receive, AnswerCountingStream(write_stream),
                                   lowlevel.create_initialization_options())


@contextlib.contextmanager
def _claimed_stdin() -> Iterator[anyio.AsyncFile[str]]:
    """stdin's pipe on a private descriptor, with fd 0 on the null device meanwhile (as the
    SDK's ``stdio_server`` does with the stdin it reads): a tool body or a child process that
    reads stdin sees its end instead of taking the client's requests."""
    wire = os.dup(0)
    null = os.open(os.devnull, os.O_RDONLY)
    os.dup2(null, 0)
    os.close(null)
    try:
        # closefd=False, and ``wire`` is never closed: a worker thread may still block reading
        # it after the session ends, and must not find the descriptor reused under it.
        yield anyio.wrap_file(open(wire, encoding="utf-8", errors="replace",
                                   closefd=False))
    finally:
        os.dup2(wire, 0)


def _note_request(message: Any, unanswered: set[str | int]) -> None:
    """Track requests that expect an answer; a cancelled one expects none."""
    if isinstance(message, JSONRPCRequest):
        unanswered.add(message.id)
    elif (isinstance(message, JSONRPCNotification)
          and message.method == "notifications/cancelled"):
        unanswered.discard((message.params or {}).get("requestId"))


def serve_http(server: MCPServer, *, host: str, port: int, tokens: TokenStore, scope: str,
               tls_cert: str | None = None, tls_key: str | None = None,
               on_ready: Callable[[str], None] | None = None) -> None:
    """Serve the streamable HTTP transport at ``HTTP_PATH`` until interrupted.

    Binds and listens on the socket itself, so port 0 works, ``on_ready`` gets the real URL,
    and a client connecting right after ``on_ready`` waits in the backlog instead of failing.
    """
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind((host, port))
    except OSError as error:
        sock.close()
        raise ListenFailed(f"cannot listen on {host}:{port} (--http): {error.strerror}",
                           hint="is another program using it? give --http another address"
                           ) from None
    sock.listen(LISTEN_BACKLOG)
    # BrowserGate checks Host and Origin for every address; the SDK's own check (on only for
    # 127.0.0.1, localhost and ::1) would refuse origins it allows.
    sdk_app = server.streamable_http_app(
        streamable_http_path=HTTP_PATH, host=host,
        transport_security=TransportSecuritySettings(enable_dns_rebinding_protection=False))
    app = BrowserGate(BearerTokenGate(JsonRpcBodyCheck(sdk_app), tokens=tokens, scope=scope),
                      loopback=is_loopback_host(host))
    config = uvicorn.Config(app, log_level="warning", ssl_certfile=tls_cert,
                            ssl_keyfile=tls_key, lifespan="on")
    bound_port = sock.getsockname()[1]
    scheme = "https" if tls_cert else "http"
    shown_host = f"[{host}]" if family == socket.AF_INET6 else host
    if on_ready is not None:
        on_ready(f"{scheme}://{shown_host}:{bound_port}{HTTP_PATH}")
    try:
        anyio.run(lambda: uvicorn.Server(config).serve(sockets=[sock]))
    finally:
        sock.close()
