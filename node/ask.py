"""``meshdex ask``: retrieve passages, ask a local LLM about them, and say which ones it cited.

The LLM is any OpenAI-compatible chat completions server (Ollama, llama.cpp's ``llama-server``,
vLLM, LM Studio) named explicitly by ``llm_url`` and ``llm_model``. Private by default: a URL
whose host is not loopback is refused unless the caller opts in (``allow_remote``), because the
prompt carries the user's own passages. Streaming uses the API's server-sent events so the
answer appears as it is generated. Only the standard library speaks HTTP here; its failures are
mapped once, in ``ChatClient._open``, to ``LLMUnavailable`` / ``LLMTimeout``.
"""

from __future__ import annotations

import http.client
import json
import logging
import re
import time
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Callable, Iterator, Mapping
from dataclasses import asdict, dataclass
from typing import Any, Protocol

from meshdex.index.errors import InvalidArgument, NotFound
from meshdex.node.config import is_loopback_host
from meshdex.node.errors import LLMEmptyAnswer, LLMTimeout, LLMUnavailable
from meshdex.node.records import PassageHit, SearchResults, rounded_score

logger = logging.getLogger(__name__)

CHAT_PATH = "/v1/chat/completions"
ERROR_BODY_CHARS = 200
SSE_DATA_PREFIX = "data:"
SSE_DONE = "[DONE]"
SYSTEM_PROMPT = (
    "You answer questions using only the numbered passages below, which come from the user's "
    "own documents. Cite every passage you use by its number in square brackets, like [1] or "
    "[2][3]. If the passages do not contain the answer, say that they do not."
)
CITATION = re.compile(r"\[(\d+(?:\s*,\s*\d+)*)\]")

TokenCallback = Callable[[str], None]  # called with each piece of the answer as it arrives


def chat_endpoint(url: str, *, allow_remote: bool) -> str:
    """``{url}/v1/chat/completions`` (a base URL with or without ``/v1`` is accepted).

    Raises ``InvalidArgument`` for a non-HTTP URL, and for a host that is not loopback unless
    ``allow_remote``: the prompt holds the user's passages, so sending it off the machine must
    be a decision, not a typo.
    """
    parsed = urllib.parse.urlsplit(url)
    if parsed.scheme not in ("http", "https") or not parsed.hostname:
        raise InvalidArgument(f"llm_url must be an http:// or https:// URL, got {url!r}")
    if not allow_remote and not is_loopback_host(parsed.hostname):
        raise InvalidArgument(
            f"refusing to send passages to the non-local LLM at {parsed.hostname}",
            hint="the prompt contains your documents; pass --allow-remote-llm or set "
            "allow_remote_llm = true in the config if that is intended",
        )
    base = url.rstrip("/")
    if base.endswith(CHAT_PATH):
        return base
    if base.endswith("/v1"):
        return base + CHAT_PATH[len("/v1"):]
    return base + CHAT_PATH


@dataclass(frozen=True, kw_only=True)
class Source:
    """One passage given to the model, numbered as in the prompt."""

    number: int
    document_id: str
    source: str | None
    score: float
    similarity: float | None
    bm25: float | None
    cited: bool


@dataclass(frozen=True, kw_only=True)
class AskTimings:
    retrieve_s: float
    first_token_s: float | None  # from sending the request to the first piece of the answer
    llm_s: float
    total_s: float


@dataclass(frozen=True, kw_only=True)
class AskResult:
    question: str
    collection: str
    model: str
    answer: str
    sources: list[Source]
    timings: AskTimings

    @property
    def cited(self) -> list[Source]:
        return [source for source in self.sources if source.cited]

    def to_dict(self) -> dict[str, Any]:
        return {"question": self.question, "collection": self.collection, "model": self.model,
                "answer": self.answer, "sources": [asdict(s) for s in self.sources],
                "timings": asdict(self.timings)}


def build_messages(question: str, hits: list[PassageHit]) -> list[dict[str, str]]:
    """The chat messages: instructions, then the passages numbered from 1, then the question."""
    passages = "\n\n".join(
        f"[{number}] (source: {hit.source or hit.document_id})\n{hit.passage.strip()}"
        for number, hit in enumerate(hits, start=1)
    )
    return [{"role": "system", "content": SYSTEM_PROMPT},
            {"role": "user", "content": f"Passages:\n\n{passages}\n\nQuestion: {question}"}]


def cited_numbers(answer: str) -> set[int]:
    """Passage numbers the answer cites: ``[1]``, ``[2][3]`` and ``[1, 4]`` forms."""
    return {int(number) for group in CITATION.findall(answer) for number in group.split(",")}


class ChatClient:
    """Calls one chat completions endpoint; ``complete`` streams or waits for the whole reply."""

    def __init__(self, url: str, *, model: str, timeout_s: float, allow_remote: bool) -> None:
        if timeout_s <= 0:
            raise InvalidArgument(f"llm timeout must be positive, got {timeout_s}")
        self.endpoint = chat_endpoint(url, allow_remote=allow_remote)
        self.model = model
        self.timeout_s = timeout_s

    def complete(self, messages: list[dict[str, str]], *, stream: bool,
                 on_token: TokenCallback | None = None) -> tuple[str, float | None]:
        """The whole answer and the seconds until its first piece arrived (None if empty).

        With ``stream`` each piece goes to ``on_token`` as it arrives; without it, once at the
        end. Raises ``LLMUnavailable``, ``LLMTimeout`` or ``LLMEmptyAnswer``.
        """
        started = time.monotonic()
        first_token_s: float | None = None
        pieces: list[str] = []
        body = {"model": self.model, "messages": messages, "stream": stream}
        with self._open(body) as response:
            # A server that does not stream answers a streamed request with one JSON reply.
            streamed = stream and not _is_json(response)
            chunks = self._stream_pieces(response) if streamed else [self._whole(response)]
            for piece in self._guarded(chunks):
                if not piece:
                    continue
                if first_token_s is None:
                    first_token_s = time.monotonic() - started
                pieces.append(piece)
                if on_token is not None:
                    on_token(piece)
        answer = "".join(pieces)
        if not answer.strip():
            raise LLMEmptyAnswer(f"the model {self.model!r} at {self.endpoint} returned an "
                                 "empty answer", hint="check that the model is loaded and "
                                 "its context is large enough for the passages (try --top-k 3)")
        return answer, first_token_s

    def _open(self, body: Mapping[str, Any]) -> http.client.HTTPResponse:
        request = urllib.request.Request(
            self.endpoint, data=json.dumps(body).encode(), method="POST",
            headers={"Content-Type": "application/json",
                     "Accept": "text/event-stream" if body["stream"] else "application/json"},
        )
        try:
            return urllib.request.urlopen(request, timeout=self.timeout_s)
        except urllib.error.HTTPError as error:
            body = _snippet(error.read())
            raise LLMUnavailable(f"the LLM server answered HTTP {error.code}: {body}",
                                 hint=self._http_error_hint(error.code, body)) from None
        except urllib.error.URLError as error:
            if isinstance(error.reason, TimeoutError):
                raise self._timeout() from None
            raise LLMUnavailable(f"cannot reach the LLM server at {self.endpoint}: "
                                 f"{error.reason}", hint="is it running? (e.g. `ollama serve`)"
                                 ) from None
        except TimeoutError:
            raise self._timeout() from None
        except (http.client.HTTPException, OSError) as error:
            raise LLMUnavailable(f"the LLM server at {self.endpoint} failed: {error}") from None

    def _http_error_hint(self, code: int, body: str) -> str:
        """What to check for an HTTP error: the model where the server names it (Ollama's
        404 "model ... not found"), else the URL, the request or the server."""
        if code in (400, 404) and "model" in body.lower():
            return f"check llm_model: the server has no model {self.model!r} (e.g. `ollama list`)"
        if code == 404:
            return (f"check llm_url: nothing answers chat completions at {self.endpoint} "
                    "(Ollama: http://127.0.0.1:11434, llama-server: http://127.0.0.1:8080)")
        if code in (401, 403):
            return ("the server wants credentials; meshdex ask sends none, so use a local "
                    "server that needs none")
        if code == 400:
            return ("the server refused the request; a prompt beyond the model's context "
                    "is refused so: try --top-k 3")
        return "the server failed; its own log says why"

    def _guarded(self, pieces: Iterator[str] | list[str]) -> Iterator[str]:
        """Reading the body can time out or break too: the same errors as opening it."""
        try:
            yield from pieces
        except TimeoutError:
            raise self._timeout() from None
        except (http.client.HTTPException, OSError) as error:
            raise LLMUnavailable(f"the LLM server at {self.endpoint} broke off: {error}"
                                 ) from None

    def _timeout(self) -> LLMTimeout:
        return LLMTimeout(f"the LLM server at {self.endpoint} sent nothing for "
                          f"{self.timeout_s:g} s", hint="raise llm_timeout_s (or --timeout-s) "
                          "for a slow model, or check the server")

    def _whole(self, response: http.client.HTTPResponse) -> str:
        payload = _json(response.read(), self.endpoint)
        try:
            content = payload["choices"][0]["message"]["content"]
        except (KeyError, IndexError, TypeError):
            content = None
        if not isinstance(content, str):
            raise LLMUnavailable(f"the reply from {self.endpoint} is not a chat completion: "
                                 f"{_snippet(str(payload))}")
        return content

    def _stream_pieces(self, response: http.client.HTTPResponse) -> Iterator[str]:
        """The pieces of a server-sent event stream. A reply holding no event at all is not
        a stream (a web page answering 200 at a wrong llm_url): said so, with its start,
        rather than read as an empty answer. A stream that stops before its end (``[DONE]``
        or a chunk's ``finish_reason``) broke off: its answer is not whole."""
        events = 0
        finished = False
        other: list[str] = []
        for raw in response:
            line = raw.decode("utf-8", errors="replace").strip()
            if not line.startswith(SSE_DATA_PREFIX):
                if events == 0 and sum(map(len, other)) < ERROR_BODY_CHARS:
                    other.append(line)
                continue  # blank separators, comments, event names
            events += 1
            data = line[len(SSE_DATA_PREFIX):].strip()
            if data == SSE_DONE:
                return
            choice = self._chunk_choice(_json(data.encode(), self.endpoint), data)
            finished = finished or choice.get("finish_reason") is not None
            yield choice["delta"].get("content") or ""
        if events == 0 and any(other):
            raise LLMUnavailable(f"the reply from {self.endpoint} is not a chat completion "
                                 f"stream: {_snippet(' '.join(other))}",
                                 hint="check llm_url names an OpenAI-compatible server "
                                 "(Ollama: http://127.0.0.1:11434)")
        if events and not finished:
            raise LLMUnavailable(f"the LLM server at {self.endpoint} broke off before the end "
                                 "of its answer", hint="the answer is incomplete; the server's "
                                 "own log says why")

    def _chunk_choice(self, event: Any, data: str) -> dict[str, Any]:
        """The first choice of a streamed chunk, its ``delta`` an object whose content is text
        or absent (a chunk with no choice has an empty delta)."""
        choices = event.get("choices") if isinstance(event, dict) else None
        choice = (choices[0] if choices else {"delta": {}}) if isinstance(choices, list) else None
        delta = choice.get("delta", {}) if isinstance(choice, dict) else None
        if not isinstance(delta, dict) or not isinstance(delta.get("content") or "", str):
            raise LLMUnavailable(f"a streamed event from {self.endpoint} is not a chat "
                                 f"completion chunk: {_snippet(data)}")
        return {**choice, "delta": delta}


def _is_json(response: http.client.HTTPResponse) -> bool:
    return response.headers.get_content_type() == "application/json"


def _json(data: bytes, endpoint: str) -> Any:
    try:
        return json.loads(data)
    except (json.JSONDecodeError, UnicodeDecodeError):
        raise LLMUnavailable(f"the reply from {endpoint} is not JSON: {_snippet(data)}"
                             ) from None


def _snippet(data: bytes | str) -> str:
    """The start of what a server sent, on one line (an HTML error page has many)."""
    text = data.decode(errors="replace") if isinstance(data, bytes) else data
    return " ".join(text[:ERROR_BODY_CHARS].split())


class Searcher(Protocol):
    """What ``ask`` needs from a node (``Node`` or ``MeshdexClient``)."""

    def search(self, collection: str, query: str, *, top_k: int = ...,
               filter: str | None = ...) -> SearchResults:
        """Top-k passages for ``query``."""


def ask(node: Searcher, llm: ChatClient, collection: str, question: str, *, top_k: int = 5,
        filter: str | None = None, stream: bool = True,
        on_token: TokenCallback | None = None) -> AskResult:
    """Retrieve ``top_k`` passages, ask the model about them, and mark which ones it cited.

    Raises ``NotFound`` when no passage matches (the model would only guess), and what
    ``ChatClient.complete`` raises.
    """
    if not question.strip():
        raise InvalidArgument("the question is empty")
    started = time.monotonic()
    results = node.search(collection, question, top_k=top_k, filter=filter)
    retrieved = time.monotonic()
    if not results.hits:
        raise NotFound(f"no passage in {collection!r} matches the question, so there is "
                       "nothing to answer from", hint="check --collection and --filter")
    answer, first_token_s = llm.complete(build_messages(question, results.hits), stream=stream,
                                         on_token=on_token)
    done = time.monotonic()
    cited = cited_numbers(answer)
    sources = [Source(number=number, document_id=hit.document_id, source=hit.source,
                      score=rounded_score(hit.score), similarity=rounded_score(hit.similarity),
                      bm25=rounded_score(hit.bm25), cited=number in cited)
               for number, hit in enumerate(results.hits, start=1)]
    timings = AskTimings(retrieve_s=round(retrieved - started, 4),
                         first_token_s=None if first_token_s is None else round(first_token_s, 4),
                         llm_s=round(done - retrieved, 4), total_s=round(done - started, 4))
    return AskResult(question=question, collection=collection, model=llm.model, answer=answer,
                     sources=sources, timings=timings)
