"""``python tests/counting_meshdex.py ARGS`` runs ``meshdex ARGS`` counting the real model's calls.

For tests that must show a separate process embedded no passages (``build --on``): every
``MiniLMEmbedder.embed_documents`` call appends ``documents N`` (N texts) and
every ``embed_query`` call ``query 1`` to the file named by ``MESHDEX_TEST_EMBED_LOG``, one
line each, flushed at once so a test can read it while the process runs. The model itself is
the real packaged one; only the counting is added.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

from meshdex.index.embedders_local import MiniLMEmbedder
from meshdex.node.cli.main import main

LOG_ENV = "MESHDEX_TEST_EMBED_LOG"


def _log(line: str) -> None:
    with Path(os.environ[LOG_ENV]).open("a", encoding="utf-8") as log:
        log.write(line + "\n")


def _counting(method_name: str, kind: str, count) -> None:
    original = getattr(MiniLMEmbedder, method_name)

    def counted(self, value):
        _log(f"{kind} {count(value)}")
        return original(self, value)

    setattr(MiniLMEmbedder, method_name, counted)


def embedded_passages(log: Path) -> int:
    """Passages the process embedded so far (queries not counted)."""
    if not log.exists():
        return 0
    return sum(int(line.split()[1]) for line in log.read_text().splitlines()
               if line.startswith("documents "))


if __name__ == "__main__":
    _counting("embed_documents", "documents", len)
    _counting("embed_query", "query", lambda _text: 1)
    sys.argv[0] = "meshdex"
    main()
