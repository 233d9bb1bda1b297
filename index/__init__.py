"""Everything about one index: chunking, embedders, graph build and pruning, compact storage,
on-demand search, embedding caches, the ``.leann`` bundle format and compatibility decisions.

This package imports neither ``meshdex.node`` nor ``meshdex.sync``.
"""
