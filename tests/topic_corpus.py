"""A small corpus of short notes on a few distinct topics, for tests that need searches with
clear right answers (index, cache and memo tests)."""

from __future__ import annotations

from collections.abc import Mapping

from meshdex.node.records import DocumentInput

TOPICS = {
    "fruit": "apples pears plums cherries orchard harvest sweet juice",
    "space": "rocket orbit planet comet telescope astronaut gravity launch",
    "cooking": "oven bake flour butter recipe knead dough simmer",
    "music": "guitar chord melody rhythm drum concert tempo harmony",
}


def topic_documents(topics: Mapping[str, str] = TOPICS, *, per_topic: int = 30,
                    words: int = 10) -> list[DocumentInput]:
    """``per_topic`` notes of ``words`` of each topic's words, ids ``TOPIC-N``, metadata
    ``topic`` and ``n``."""
    docs = []
    for topic, vocabulary_text in topics.items():
        vocabulary = vocabulary_text.split()
        for i in range(per_topic):
            text = " ".join(vocabulary[(i + j) % len(vocabulary)] for j in range(words))
            docs.append(DocumentInput(id=f"{topic}-{i}", text=f"{text} note {topic} {i}",
                                      metadata={"topic": topic, "n": i}, source=None))
    return docs
