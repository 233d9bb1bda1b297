"""Slack workspace export (the unzipped folder): one document per channel and day.

The export holds ``users.json`` (ids to names) and one folder per channel of ``YYYY-MM-DD.json``
files, each a list of messages. A document is one channel-day: ``name: text`` per message in
time order; metadata channel, date, participants (display names), messages, first and last
(ISO 8601 UTC). A bad day file is reported and the other days still go in.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from meshdex.node.ingest import SKIPPED_TOO_LARGE, FileTask, IngestItem
from meshdex.node.readers._common import SourceTooLarge, iso_utc, os_error_reason, read_bounded
from meshdex.node.records import DocumentInput

USERS_FILE_NAME = "users.json"
_DAY_FILE = re.compile(r"\d{4}-\d{2}-\d{2}\.json")


class SlackReader:
    """Channel-days of an unzipped Slack export folder (only when named: ``--source slack``)."""

    kind = "slack"
    sub_document_separator = "/"
    keeps_dropped = False

    def claims(self, path: Path) -> bool:
        return False  # a folder source: nothing to recognise a single file by

    def read(self, task: FileTask) -> Iterator[IngestItem]:
        root, origin = task.path, str(task.path)
        if not root.is_dir():
            yield IngestItem(origin=origin, error="a Slack export is a folder (unzip the export "
                             "and give its folder)")
            return
        names, problem = _user_names(root / USERS_FILE_NAME)
        if problem is not None:
            yield problem
        days = sorted(path for path in root.glob("*/*.json") if _DAY_FILE.fullmatch(path.name))
        if not days:
            yield IngestItem(origin=origin, error="not a Slack export: no channel folders of "
                             "YYYY-MM-DD.json files")
            return
        for day in days:
            yield _day_item(day, names, task)


def _load_json(path: Path) -> tuple[Any, IngestItem | None]:
    try:
        return json.loads(read_bounded(path)), None
    except SourceTooLarge:
        return None, IngestItem(origin=str(path), skipped=SKIPPED_TOO_LARGE)
    except OSError as error:
        return None, IngestItem(origin=str(path), error=os_error_reason(error))
    except ValueError as error:
        return None, IngestItem(origin=str(path), error=f"invalid JSON: {error}")


def _user_names(path: Path) -> tuple[dict[str, str], IngestItem | None]:
    """User id -> display name; a missing users.json just leaves ids as they are."""
    if not path.is_file():
        return {}, None
    users, problem = _load_json(path)
    if problem is not None:
        return {}, problem
    names: dict[str, str] = {}
    for user in users if isinstance(users, list) else []:
        if isinstance(user, dict) and isinstance(user.get("id"), str):
            profile = user.get("profile") if isinstance(user.get("profile"), dict) else {}
            name = profile.get("real_name") or user.get("real_name") or user.get("name")
            if isinstance(name, str) and name:
                names[user["id"]] = name
    return names, None


def _day_item(path: Path, names: dict[str, str], task: FileTask) -> IngestItem:
    messages, problem = _load_json(path)
    if problem is not None:
        return problem
    origin = str(path)
    if not isinstance(messages, list):
        return IngestItem(origin=origin, error="not a Slack day file: expected a JSON list")
    lines: list[tuple[float, str, str]] = []
    for message in messages:
        if not isinstance(message, dict) or not isinstance(message.get("text"), str):
            continue
        try:
            stamp = float(message.get("ts", 0))
        except (TypeError, ValueError):
            stamp = 0.0
        speaker = message.get("user")
        profile = message.get("user_profile") if isinstance(message.get("user_profile"),
                                                            dict) else {}
        name = names.get(speaker) if isinstance(speaker, str) else None
        name = name or profile.get("real_name") or speaker or "unknown"
        if message["text"].strip():
            lines.append((stamp, str(name), message["text"].strip()))
    if not lines:
        return IngestItem(origin=origin, skipped="empty")
    lines.sort(key=lambda line: line[0])
    channel, date = path.parent.name, path.stem
    metadata: dict[str, Any] = {
        "type": "chat", "app": "slack", "channel": channel, "date": date,
        "messages": len(lines), "participants": sorted({name for _, name, _ in lines}),
    }
    stamps = [stamp for stamp, _, _ in lines if stamp > 0]
    if stamps:
        metadata["first"], metadata["last"] = iso_utc(min(stamps)), iso_utc(max(stamps))
    text = f"#{channel} {date}\n\n" + "\n".join(f"{name}: {text}" for _, name, text in lines)
    doc = DocumentInput(id=f"{task.doc_id}/{channel}/{date}", text=text, metadata=metadata,
                        source=origin)
    return IngestItem(origin=origin, doc=doc)
