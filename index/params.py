"""Build and search parameters of the index engine: the one place their defaults live.

Names follow the papers: ``M`` and ``ef_construction`` as in HNSW, ``hub_fraction`` (a) and
``pruned_degree`` (m) as in LEANN's high-degree-preserving pruning (Algorithm 3), ``ef`` as the
candidate pool size at search time.

Defaults were picked on the Python 3.11 documentation (11,657 passages, 12.2 MB of text, 60 of
the 175 FAQ questions, all-MiniLM-L6-v2 fp32, 2-core CPU); the full table, with every row
measured, is ``bench/results/search.md`` (``python -m bench.bench_search``). What decided them:

- Codes are the bottleneck for recall, not the graph: with the same ``ef``/recompute, a flat
  scan of the codes finds what the graph walk finds. Share of the exact top-3 found among the
  best ``R`` candidates by code similarity, all 175 FAQ / 126 glossary queries, R = 8 / 16 /
  32 / 64 (issue 12 measurements, cached fp32 vectors):

  ====================================  =========================  =========================
  layout (bytes a passage)              FAQ                        glossary
  ====================================  =========================  =========================
  PQ 64×4-bit (32 B), no rotation       0.82 / 0.90 / 0.95 / 0.99  0.83 / 0.93 / 0.97 / 0.99
  PQ 32×8-bit (32 B + 196 KB codebook)  0.84 / 0.93 / 0.98 / 1.00  0.81 / 0.93 / 0.98 / 0.99
  PQ 24×8-bit (24 B)                    0.75 / 0.86 / 0.93 / 0.97  0.78 / 0.90 / 0.96 / 0.98
  PQ 48×4-bit (24 B)                    0.72 / 0.86 / 0.92 / 0.96  0.76 / 0.86 / 0.94 / 0.96
  PQ 16×8-bit (16 B)                    0.60 / 0.74 / 0.85 / 0.93  0.59 / 0.74 / 0.85 / 0.93
  OPQ 64×4-bit (32 B + 149 KB rotation) 0.89 / 0.97 / 0.99 / 0.99  0.86 / 0.95 / 0.98 / 0.99
  OPQ 32×8-bit (32 B + 345 KB)          0.89 / 0.96 / 0.99 / 1.00  0.88 / 0.96 / 0.98 / 0.99
  OPQ 48×4-bit (24 B + 149 KB)          0.85 / 0.92 / 0.97 / 0.99  0.83 / 0.92 / 0.97 / 0.98
  OPQ 32×4-bit (16 B + 149 KB)          0.70 / 0.83 / 0.91 / 0.96  0.68 / 0.82 / 0.92 / 0.96
  ====================================  =========================  =========================

  Hence OPQ (``pq_rotation_iterations=10``) over 64 × 4-bit codes, trained on 8,192 sampled
  vectors (4,096 gave the same FAQ figures and 0.01-0.02 less on the glossary; 20 rounds on
  4,096 overfit). The rotation is fixed cost: 1.2% of the docs corpus text, which puts the
  index at 5.1% of the text, over the 3% issue 12 asks for (no layout here reaches recall@3
  0.97 at 16 recomputes in 3%: that would leave ~14 B a passage for codes and rotation).
- Re-ranking with those codes (all FAQ / glossary queries, k=10, batches of 8, cached
  vectors): ``recall_target`` 0.5 → recall@3 0.970 / 0.968, median 16 / 16 recomputed
  (p90 24 / 24); **0.55 → 0.973 / 0.974, median 16 / 16 (p90 32 / 24)**; 0.6 → 0.973 /
  0.974, median 24 / 16; 0.8 → 0.989 / 0.981, median 24 / 24 (p90 56 / 40). Batches of 4 / 5
  / 6 at 0.6 did no better (0.973-0.979 FAQ at a median of 18-20). Sixteen is the floor with
  batches of 8 and k=10 (the rule is checked once k exact scores are in). Without the
  rotation, 0.8 was needed for 0.970 / 0.979 at a median of 40 / 24, and 0.5 gave 0.930 /
  0.947.
- Before OPQ, ``recall_target=0.8`` with the whole pool as ceiling (``recompute_fraction=1.0``)
  reached recall@3 0.970 / 0.979 with a median of 40 / 24 passages recomputed; batches of
  4 / 8 / 16 passages (FAQ, ceiling 40) gave recall@3 0.956 / 0.958 / 0.960 at 9.0 / 4.6 /
  2.7 model calls a query: 8 checks the stopping rule often at a modest call count.
- Before adaptive re-ranking: ``ef=80`` with ``recompute_fraction=0.5`` recomputed 40
  passages per query: recall@3 0.967
  (flat scan, FAQ and glossary alike), 0.956 (graph walk, FAQ). Re-ranking the whole pool
  (no two-level ranking) doubles the recomputes (80) for recall@3 0.967; ``ef=40`` with
  20 recomputes drops to 0.861. Measured p50 latency with the real model was 1.75 s for 40
  recomputes when the machine was quiet (2.9-5.5 s while other jobs shared the 2 cores).
- ``pruned_degree=6``: the graph walk matches the flat scan's recall@3 (0.956); at 4 it drops
  to 0.883; 8 and 12 cost more bytes for no recall. Graph bytes ≈ 1.5 B per edge after
  renumbering.
- Size without a graph (codes + rotation + codebook + ids): 5.13% of the passage text on the
  docs corpus (3.91% before the rotation); a graph adds ~1.5%. We chose recall.
- The hot cache rarely holds a top candidate on this corpus (hubs are not what FAQ questions
  ask for): 16 nodes saved nothing measurable, 128 nodes 1 recompute per query (+0.7% size),
  512 nodes 4 (+3.2%). Its budget stays small.
- Build: ~14 s after embedding for 11,657 passages, nearly all of it the rotation (10 rounds
  of 64 k-means on 8,192 vectors, one thread; without a graph: HNSW 1.6 s and pruning 0.6 s
  only above ``graph_min_nodes``), i.e. build / pure embedding = 1.04 (was 1.00).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field, fields
from typing import Any, Self

from meshdex.index.errors import InvalidArgument
from meshdex.index.json_limits import quoted

STORAGE_MODES = ("compact", "full")
STRATEGIES = ("auto", "graph", "flat")


def _from_dict(cls: type, data: dict[str, Any]) -> Any:
    """Build a params dataclass from a dict, refusing keys it does not know."""
    if not isinstance(data, dict):
        raise InvalidArgument(f"{cls.__name__} must be a mapping, got {type(data).__name__}")
    known = {f.name for f in fields(cls)}
    unknown = sorted(set(data) - known)
    if unknown:
        raise InvalidArgument(
            f"unknown {cls.__name__} keys: {', '.join(unknown)}",
            hint=f"known keys: {', '.join(sorted(known))}",
        )
    for item in fields(cls):
        value = data.get(item.name)
        if item.name in data and not (value is None and item.default is None):
            # A field that defaults to None names its type in its metadata.
            expected = item.metadata.get("type", type(item.default))
            _check_type(cls.__name__, item.name, value, expected)
    return cls(**data)


def _check_type(owner: str, name: str, value: Any, expected: type) -> None:
    """Refuse values of the wrong type (bool is not an int here; an int is a fine float)."""
    ok = isinstance(value, expected) and not (expected is not bool and isinstance(value, bool))
    if expected is float and isinstance(value, int) and not isinstance(value, bool):
        ok = True
    if not ok:
        raise InvalidArgument(
            f"{owner}.{name} must be {expected.__name__}, "
            f"got {type(value).__name__} {quoted(value)}"
        )


def _require(condition: bool, message: str) -> None:
    if not condition:
        raise InvalidArgument(message)


@dataclass(frozen=True, kw_only=True)
class BuildParams:
    """How an index is built; stored with the index so a reader knows what it holds.

    - ``M``: the most base-layer neighbours any node keeps (hubs keep up to ``M``). hnswlib's
      own ``M`` parameter is ``M // 2`` because its base layer holds ``2 × M`` links.
    - ``ef_construction``: hnswlib's build-time candidate list size.
    - ``hub_fraction`` (a): share of nodes, by degree, that keep up to ``M`` edges.
    - ``pruned_degree`` (m): out-edges every other node selects; back edges may still lift a
      node up to ``M``.
    - ``pq_subvectors`` / ``pq_bits``: product-quantisation code layout; a code is
      ``pq_subvectors × pq_bits / 8`` bytes. 4-bit codes keep the codebook tiny (16 centroids
      per subspace), which matters when the whole index must stay a few percent of the text.
    - ``pq_rotation_iterations``: rounds of OPQ rotation learning before the final codebook
      (``codes.ProductQuantizer.train``); 0 trains plain PQ without a rotation. The rotation is
      stored in the codebook section (int8, ``dim² + 4·dim`` bytes: 149 KB for 384 dimensions),
      so it is not learnt below ``codes.rotation_min_vectors`` passages (4,608 with 384
      dimensions and 32-byte codes), where it would outweigh the codes: such a collection uses
      the rotation shipped for its model when there is one (``model_rotations``; 32 bytes in
      the codebook), plain PQ otherwise. The codebook section
      says whether an index has one: a bundle from before the rotation reads as plain PQ
      whatever this default says.
    - ``pq_train_sample``: vectors sampled to train the codebook (training cost is bounded).
    - ``cache_budget_nodes``: exact fp16 embeddings kept for this many hubs.
    - ``entry_point_count``: hubs stored as search entry points.
    - ``storage_mode``: "compact" discards embeddings after the build; "full" keeps them all
      and re-ranks with zero model calls.
    - ``seed``: every random choice (hnswlib levels, k-means) derives from it.
    - ``graph_min_nodes``: below this many passages no graph is built or stored: a flat scan
      of the codes is fast enough and finds more there (see ``SearchParams.strategy`` for the
      measured scan times), so the graph would be bytes that never earn their place — 1.5 of
      the 5.5 percent of the text on the docs corpus. 0 always builds the graph.
    """

    M: int = 24
    ef_construction: int = 100
    hub_fraction: float = 0.02
    pruned_degree: int = 6
    pq_subvectors: int = 64
    pq_bits: int = 4
    pq_rotation_iterations: int = 10
    pq_train_sample: int = 8192
    cache_budget_nodes: int = 16
    entry_point_count: int = 32
    storage_mode: str = "compact"
    seed: int = 0
    graph_min_nodes: int = 1_000_000

    def __post_init__(self) -> None:
        _require(self.M >= 2 and self.M % 2 == 0, f"M must be an even integer >= 2, got {self.M}")
        _require(self.ef_construction >= self.M // 2, "ef_construction must be >= M // 2")
        _require(0.0 <= self.hub_fraction <= 1.0, "hub_fraction must be within [0, 1]")
        _require(
            1 <= self.pruned_degree <= self.M,
            f"pruned_degree must be within [1, M={self.M}], got {self.pruned_degree}",
        )
        _require(self.pq_bits in (4, 8), f"pq_bits must be 4 or 8, got {self.pq_bits}")
        _require(self.pq_subvectors >= 1, "pq_subvectors must be >= 1")
        _require(
            self.pq_bits == 8 or self.pq_subvectors % 2 == 0,
            "pq_subvectors must be even with 4-bit codes (two codes share a byte)",
        )
        _require(self.pq_rotation_iterations >= 0, "pq_rotation_iterations must be >= 0")
        _require(self.pq_train_sample >= 16, "pq_train_sample must be >= 16")
        _require(self.cache_budget_nodes >= 0, "cache_budget_nodes must be >= 0")
        _require(self.entry_point_count >= 1, "entry_point_count must be >= 1")
        _require(self.graph_min_nodes >= 0, "graph_min_nodes must be >= 0")
        _require(
            self.storage_mode in STORAGE_MODES,
            f"storage_mode must be one of {STORAGE_MODES}, got {quoted(self.storage_mode)}",
        )

    @property
    def code_bytes(self) -> int:
        """Bytes of one product-quantisation code."""
        return self.pq_subvectors * self.pq_bits // 8

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Self:
        """Inverse of ``to_dict``; unknown keys raise ``InvalidArgument``."""
        return _from_dict(cls, data)


# The default ``recall_target`` by the kind of codes (``ProductQuantizer.default_recall_target``):
# the lowest measured target at which recall@3 reaches 0.97 against exact fp32 search on FAQ
# and glossary questions. A learnt rotation: the docs corpus (above, 11,657 passages). The
# model's shipped rotation (collections below ``rotation_min_vectors``) and no rotation (a model
# without one): the first 1,000 / 3,000 / 4,600 docs passages (bench/bench_small_collections.py,
# ``bench/results/small_collections.md``): at 0.55 the shipped rotation gave 0.944-0.977, at 0.8
# 0.974-0.983 for a median of 24-32 passages recomputed; plain PQ gave 0.897-0.950 at 0.55,
# 0.944-0.975 at 0.8 and 0.966-0.979 at 0.9 (median 40-80).
RECALL_TARGETS = {"learnt rotation": 0.55, "model rotation": 0.8, "no rotation": 0.9}


@dataclass(frozen=True, kw_only=True)
class SearchParams:
    """How one search runs.

    - ``ef``: candidate pool size collected by code (ADC) distance, never below ``k``.
    - ``recall_target``: re-ranking scores candidates exactly in code-score order and stops
      when the rest cannot plausibly enter the top k: when the next code score plus the
      error margin calibrated at build time for this target (``rerank_bound.RerankBound``)
      stays below the k-th best exact score. The margin is exceeded by at most
      ``1 - recall_target`` of the true top passages; ``1.0`` never stops early. None (the
      default): the index's own, by the kind of its codes (``RECALL_TARGETS``).
    - ``recompute_fraction``: the ceiling: at most this share of the pool, best by code
      distance first, is scored exactly (cached embeddings are used where present and never
      recomputed). ``1.0`` lets re-ranking reach the whole pool.
    - ``batch_size``: passages per model call when recomputing: the stopping rule is checked
      between batches, so small batches stop sooner.
    - ``strategy``: "graph" walks the pruned graph, "flat" scans every code, "auto" picks flat
      up to ``flat_max_nodes`` live nodes and the graph above. An index built without a graph
      (``BuildParams.graph_min_nodes``) always scans flat, and its stats say so.
      Measured (bench/results/search.md):
      on the docs corpus the flat scan finds more (recall@3 0.967 vs 0.956 FAQ, 0.967 vs 0.856
      glossary, before OPQ) than the 1.6 ms graph walk. The byte-pair scan
      (``codes.scan_scores``) of 32-byte codes and the top ``ef`` cost 2.3 ms at 10k nodes,
      6.1 ms at 100k, 18 ms at 300k and 40 ms at 1M on two cores (49 ms on one, 46 ms with a
      filter; ``bench/results/scan.md``; the row-major gather it replaced: 2.3 / 18 / 230 ms
      at 11,657 / 100k / 1M), under the 50 ms issue 12 allows at 1M and a quarter of a
      16-recompute search (~0.13 s in bf16); so the flat scan serves up to 1M nodes and the
      graph (``graph_min_nodes``) starts there.
    - ``entry_points``: how many stored hubs seed the graph walk.
    """

    ef: int = 80
    recall_target: float | None = field(default=None, metadata={"type": float})
    recompute_fraction: float = 1.0
    batch_size: int = 8
    strategy: str = "auto"
    flat_max_nodes: int = 1_000_000
    entry_points: int = 8

    def __post_init__(self) -> None:
        _require(self.ef >= 1, f"ef must be >= 1, got {self.ef}")
        _require(
            0.0 < self.recompute_fraction <= 1.0,
            f"recompute_fraction must be within (0, 1], got {self.recompute_fraction}",
        )
        _require(
            self.recall_target is None or 0.0 < self.recall_target <= 1.0,
            f"recall_target must be within (0, 1], got {self.recall_target}",
        )
        _require(self.batch_size >= 1, "batch_size must be >= 1")
        _require(
            self.strategy in STRATEGIES,
            f"strategy must be one of {STRATEGIES}, got {quoted(self.strategy)}",
        )
        _require(self.flat_max_nodes >= 0, "flat_max_nodes must be >= 0")
        _require(self.entry_points >= 1, "entry_points must be >= 1")

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Self:
        """Inverse of ``to_dict``; unknown keys raise ``InvalidArgument``."""
        return _from_dict(cls, data)
