"""A small corpus of short notes on a few distinct topics, for tests that need searches with
clear right answers (cache and memo tests): 30 notes a topic, each ten of its words."""

from __future__ import annotations

from collections.abc import Mapping

from meshdex.node.records import DocumentInput

TOPICS = {
    "fruit": "apples pears plums cherries orchard harvest sweet juice",
    "space": "rocket orbit planet comet telescope astronaut gravity launch",
    "cooking": "oven bake flour butter recipe knead dough simmer",
    "music": "guitar chord melody rhythm drum concert tempo harmony",
}
NOTES_PER_TOPIC = 30


def topic_documents(topics: Mapping[str, str] = TOPICS) -> list[DocumentInput]:
    """``NOTES_PER_TOPIC`` notes for each topic, ids ``TOPIC-N``, metadata ``topic``."""
    docs = []
    for topic, words in topics.items():
        vocabulary = words.split()
        for i in range(NOTES_PER_TOPIC):
            text = " ".join(vocabulary[(i + j) % len(vocabulary)] for j in range(10))
            docs.append(DocumentInput(id=f"{topic}-{i}", text=f"{text} note {topic} {i}",
                                      metadata={"topic": topic}, source=None))
    return docs
