"""``python tests/counting_meshdex.py ARGS``: the meshdex CLI, with every passage the packaged
model embeds counted, so a test can tell whether a separate ``meshdex serve`` process embedded
passages (a build) or installed a peer's index without. Each ``embed_documents`` call appends
its number of texts as one line to ``$MESHDEX_TEST_EMBED_LOG``; queries are not counted (but
a search's re-ranking embeds candidate passages, so count around searches, not across them).
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

from meshdex.index.embedders_local import SentenceTransformerEmbedder
from meshdex.node.cli.main import main

LOG_VARIABLE = "MESHDEX_TEST_EMBED_LOG"


def passages_embedded(log: Path) -> int:
    """How many passages the processes writing ``log`` embedded so far."""
    try:
        return sum(int(line) for line in log.read_text().split())
    except FileNotFoundError:
        return 0


def _counting(embed):
    def embed_documents(self, texts):
        with open(os.environ[LOG_VARIABLE], "a") as log:  # one short append per call
            log.write(f"{len(texts)}\n")
        return embed(self, texts)
    return embed_documents


if __name__ == "__main__":
    SentenceTransformerEmbedder.embed_documents = _counting(
        SentenceTransformerEmbedder.embed_documents)
    sys.argv[0] = "meshdex"
    main()
