"""One incoming JSON-RPC message, checked before the MCP SDK sees it (JSON-RPC 2.0, sections 4-5).

The SDK validates each stdio line or HTTP body into its message models, and what fails is told
badly or not at all: a request whose id is null, 9.5 or true matched the notification model
(pydantic drops the id it cannot place), so it got no answer; a line that matched nothing was
dropped; over HTTP a batch or a bad envelope came back as pydantic's validation dump under
-32602. ``check_message`` decides, for the raw text, one of three things (``Checked``): a
message to hand on, an error to answer, or neither — a valid JSON-RPC notification MCP cannot
take, which gets no answer because a notification never does.

Batches (a JSON array) are refused with -32600 and id null: MCP revision 2025-06-18 removed
JSON-RPC batching, and 2025-11-25 and 2026-07-28 keep it out; of the revisions the SDK
negotiates only 2025-03-26 had batches, and its clients are told to send one message at a time.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

import pydantic_core
from mcp_types import (
    INVALID_PARAMS,
    INVALID_REQUEST,
    PARSE_ERROR,
    ErrorData,
    JSONRPCError,
    JSONRPCMessage,
    jsonrpc_message_adapter,
)
from pydantic import ValidationError

SHOWN_VALUE_CHARS = 40  # of a refused field's value, quoted back in the error's message


@dataclass(frozen=True)
class Checked:
    """What to do with one incoming message: hand ``message`` on, answer ``refusal``, or (both
    ``None``) nothing."""

    message: JSONRPCMessage | None = None
    refusal: JSONRPCError | None = None


def check_message(text: str | bytes) -> Checked:
    """The verdict on one message's JSON text (a stdio line or an HTTP body)."""
    try:
        raw = pydantic_core.from_json(text)
    except ValueError:
        return _refused(PARSE_ERROR, "Parse error: the message is not JSON")
    if isinstance(raw, list):
        return _refused(INVALID_REQUEST, "Invalid Request: batches (JSON arrays) are not "
                        "supported: MCP removed JSON-RPC batching in revision 2025-06-18; send "
                        "one message at a time")
    if not isinstance(raw, dict):
        return _refused(INVALID_REQUEST, "Invalid Request: a message must be a JSON object, got "
                        f"{_shown(raw)}")
    is_call = "method" in raw
    answer_id = raw["id"] if is_call and _is_request_id(raw.get("id")) else None
    if raw.get("jsonrpc") != "2.0":
        return _refused(INVALID_REQUEST, 'Invalid Request: jsonrpc must be "2.0", got '
                        f"{_shown(raw.get('jsonrpc'))}", answer_id)
    if is_call:
        problem = _call_problem(raw)
        if problem:
            return _refused(INVALID_REQUEST, f"Invalid Request: {problem}", answer_id)
        if isinstance(raw.get("params"), list):
            if "id" not in raw:
                return Checked()
            return _refused(INVALID_PARAMS, "Invalid params: params must be an object (MCP "
                            "takes named parameters), got an array", answer_id)
    try:
        return Checked(message=jsonrpc_message_adapter.validate_python(raw, by_name=False))
    except ValidationError:
        return _refused(INVALID_REQUEST, "Invalid Request: not a JSON-RPC 2.0 request, "
                        "notification or response", answer_id)


def _call_problem(raw: dict[str, Any]) -> str | None:
    """What makes a request or notification invalid; an id is its string or integer, never
    null (MCP: "MUST NOT be null"), a fraction or a boolean."""
    if "id" in raw and not _is_request_id(raw["id"]):
        return f"id must be a string or an integer, got {_shown(raw['id'])}"
    if not isinstance(raw["method"], str):
        return f"method must be a string, got {_shown(raw['method'])}"
    if "params" in raw and not isinstance(raw["params"], dict | list):
        return f"params must be an object, got {_shown(raw['params'])}"
    return None


def _is_request_id(value: Any) -> bool:
    return isinstance(value, str) or (isinstance(value, int) and not isinstance(value, bool))


def _refused(code: int, message: str, answer_id: str | int | None = None) -> Checked:
    return Checked(refusal=JSONRPCError(jsonrpc="2.0", id=answer_id,
                                        error=ErrorData(code=code, message=message)))


def _shown(value: Any) -> str:
    text = json.dumps(value)
    return text if len(text) <= SHOWN_VALUE_CHARS else text[:SHOWN_VALUE_CHARS] + "…"
