"""ChatGPT data export: ``conversations.json``, one document per conversation.

The export stores each conversation as a tree of messages (``mapping``: id -> node with parent
and message); the text is the branch the user last saw (from ``current_node`` up to the root),
oldest first, each turn as ``role: text``. Metadata: title, conversation_id, participants (the
roles that spoke), created and updated (ISO 8601 UTC), messages (turn count).
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from meshdex.node.ingest import SKIPPED_TOO_LARGE, FileTask, IngestItem
from meshdex.node.readers._common import SourceTooLarge, iso_utc, os_error_reason, read_bounded
from meshdex.node.records import DocumentInput

CONVERSATIONS_FILE_NAME = "conversations.json"
SPEAKING_ROLES = ("user", "assistant")


class ChatGPTReader:
    """Conversations of a ChatGPT ``conversations.json`` export."""

    kind = "chatgpt"
    sub_document_separator = "#"
    keeps_dropped = False

    def claims(self, path: Path) -> bool:
        return path.name == CONVERSATIONS_FILE_NAME

    def read(self, task: FileTask) -> Iterator[IngestItem]:
        origin = str(task.path)
        try:
            conversations = json.loads(read_bounded(task.path))
        except SourceTooLarge:
            yield IngestItem(origin=origin, skipped=SKIPPED_TOO_LARGE)
            return
        except OSError as error:
            yield IngestItem(origin=origin, error=os_error_reason(error))
            return
        except ValueError as error:  # JSONDecodeError and bad UTF-8 alike
            yield IngestItem(origin=origin, error=f"invalid JSON: {error}")
            return
        if not isinstance(conversations, list):
            yield IngestItem(origin=origin, error="not a ChatGPT export: expected a JSON list "
                             "of conversations")
            return
        for number, conversation in enumerate(conversations, start=1):
            where = f"{origin}:conversation {number}"
            try:
                yield _conversation_item(where, conversation, task)
            except _Malformed as error:
                yield IngestItem(origin=where, error=str(error))


class _Malformed(Exception):
    pass


def _conversation_item(origin: str, conversation: Any, task: FileTask) -> IngestItem:
    if not isinstance(conversation, dict) or not isinstance(conversation.get("mapping"), dict):
        raise _Malformed("not a conversation: expected an object with a 'mapping'")
    conversation_id = conversation.get("conversation_id") or conversation.get("id")
    if not isinstance(conversation_id, str) or not conversation_id:
        raise _Malformed("conversation without an id")
    turns = [turn for turn in _branch(conversation) if turn[1].strip()]
    if not turns:
        return IngestItem(origin=origin, skipped="empty")
    title = conversation.get("title") if isinstance(conversation.get("title"), str) else None
    metadata: dict[str, Any] = {
        "path": task.relative, "type": "chat", "app": "chatgpt",
        "conversation_id": conversation_id, "messages": len(turns),
        "participants": sorted({role for role, _ in turns}),
    }
    if title:
        metadata["title"] = title
    for field, key in (("created", "create_time"), ("updated", "update_time")):
        stamp = conversation.get(key)
        if isinstance(stamp, int | float) and stamp > 0:
            metadata[field] = iso_utc(stamp)
    body = "\n\n".join(f"{role}: {text.strip()}" for role, text in turns)
    text = f"{title}\n\n{body}" if title else body
    doc = DocumentInput(id=f"{task.doc_id}#{conversation_id}", text=text, metadata=metadata,
                        source=origin)
    return IngestItem(origin=origin, doc=doc)


def _branch(conversation: dict[str, Any]) -> list[tuple[str, str]]:
    """``(role, text)`` of the shown branch, root first; cycles and dangling parents end it."""
    mapping: dict[str, Any] = conversation["mapping"]
    node_id = conversation.get("current_node")
    if node_id not in mapping:  # no pointer to the shown branch: the latest leaf
        leaves = [key for key, node in mapping.items()
                  if isinstance(node, dict) and not node.get("children")]
        node_id = leaves[-1] if leaves else None
    turns: list[tuple[str, str]] = []
    visited: set[str] = set()
    while isinstance(node_id, str) and node_id in mapping and node_id not in visited:
        visited.add(node_id)
        node = mapping[node_id]
        if not isinstance(node, dict):
            raise _Malformed(f"message node {node_id!r} is not an object")
        turn = _turn(node.get("message"))
        if turn is not None:
            turns.append(turn)
        node_id = node.get("parent")
    turns.reverse()
    return turns


def _turn(message: Any) -> tuple[str, str] | None:
    if not isinstance(message, dict):
        return None
    author = message.get("author")
    role = author.get("role") if isinstance(author, dict) else None
    if role not in SPEAKING_ROLES:
        return None  # system prompts and tool calls are not the conversation
    content = message.get("content")
    parts = content.get("parts") if isinstance(content, dict) else None
    if not isinstance(parts, list):
        return None
    return role, "\n".join(part for part in parts if isinstance(part, str))
