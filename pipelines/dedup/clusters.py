"""Clusters of a connected component, without chaining (pure: numpy, no Beam, no I/O).

LSH edges are transitive once connected: A~B and B~C put A and C in one component even when A and C
are not similar. The rule here: **a document is removed only as a duplicate of a survivor it is
similar to** (estimated Jaccard >= threshold).

``survivor_clusters`` walks a component's members in survivor order (``survivor.survivor_key``):
the best unassigned member becomes a survivor, every unassigned member whose estimated Jaccard to it
clears the threshold joins its cluster, and the walk repeats on the rest. Every cluster therefore has
its survivor at its centre: any two members are within ``2 * (1 - threshold)`` Jaccard distance.
A component whose members are all similar to its best member (the common case) gives exactly the
one cluster transitive components gave.

Cost: one vectorised comparison of the unassigned members per survivor, so ``O(k * c)`` for ``k``
members forming ``c`` clusters; 10k copies of one page are one pass. At most ``max_passes``
survivors are drawn per component; members still unassigned after that are left alone (kept,
never removed without a similar survivor) and counted as ``unresolved``.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import NamedTuple

import numpy as np

from pipelines.dedup.survivor import survivor_key


class ComponentClusters(NamedTuple):
    """Per member (input order): index of its survivor, and its estimated Jaccard to it."""

    survivor: np.ndarray  # int64, survivor's member index (itself for a survivor or unresolved)
    similarity: np.ndarray  # float64, 1.0 for survivors and unresolved members
    passes: int  # survivors drawn
    unresolved: int  # members left alone after max_passes
    comparisons: int  # signature comparisons made (the work: k per pass at most)


def survivor_order(
    ids: Sequence[str],
    quality: Sequence[float | None],
    length: Sequence[int],
    batch: Sequence[int] | None = None,
) -> np.ndarray:
    """Member indices sorted by the survivor rule (best first)."""
    batches = batch if batch is not None else [0] * len(ids)
    keys = [survivor_key(i, q, n, b) for i, q, n, b in zip(ids, quality, length, batches, strict=True)]
    return np.array(sorted(range(len(keys)), key=keys.__getitem__), dtype=np.int64)


def survivor_clusters(
    order: np.ndarray, signatures: np.ndarray, threshold: float, max_passes: int = 256
) -> ComponentClusters:
    """Greedy survivor-centred clusters of one component.

    ``order``: member indices best first (``survivor_order``); ``signatures``: ``(k, num_perm)``
    MinHash values, one row per member (input order). See the module docstring for the rule.
    """
    k = len(order)
    survivor = np.arange(k, dtype=np.int64)
    similarity = np.ones(k, dtype=np.float64)
    left = np.asarray(order, dtype=np.int64)  # unassigned members, best first
    passes = comparisons = 0
    while left.size > 1 and passes < max_passes:
        head, rest = left[0], left[1:]
        comparisons += rest.size
        sims = (signatures[rest] == signatures[head]).mean(axis=1)
        joined = sims >= threshold
        survivor[rest[joined]] = head
        similarity[rest[joined]] = sims[joined]
        left = rest[~joined]
        passes += 1
    if left.size == 1:
        passes += 1
    unresolved = int(left.size) if left.size > 1 else 0
    return ComponentClusters(survivor, similarity, passes, unresolved, comparisons)
