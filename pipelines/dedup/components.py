"""Connected components of the near-duplicate graph: the star operations and single-node references.

The distributed version (``beam_components.ConnectedComponents``) alternates the *large-star* and
*small-star* operations of Kiveris et al., "Connected Components in MapReduce and Beyond" (SoCC 2014),
over edges kept as ``(hi, lo)`` with ``hi > lo`` (string order):

* large-star: group each node ``u`` with all its neighbours; ``m`` = min of ``u`` and its
  neighbours; every neighbour ``v > u`` is re-attached to ``m``. Changed edges: ``v > u`` when ``m < u``.
* small-star: group each node ``u`` with its smaller neighbours ``N``; ``m = min(N)``; ``u`` and every
  ``v`` in ``N`` are attached to ``m``. Changed edges: ``|N| - 1``.

When a round changes nothing, every component is a star around its minimum node, so each node's
label is the smallest node id of its component. ``star_components`` runs the same rounds in one
process; ``union_find_components`` is the independent reference; ``rounds_needed`` reads convergence
from the changed-edge counts of the rounds. Pure: no Beam, no I/O.
"""

from __future__ import annotations

from collections.abc import Hashable, Iterable, Sequence
from typing import Any


class ComponentsNotConverged(RuntimeError):
    """The last unrolled connected-components round still changed edges."""


def union_find_components(edges: Iterable[tuple[Hashable, Hashable]]) -> dict[Any, Any]:
    """``node -> smallest node of its component`` for every endpoint of ``edges`` (single node)."""
    parent: dict[Any, Any] = {}

    def find(x: Any) -> Any:
        root = x
        while parent[root] != root:
            root = parent[root]
        while parent[x] != root:  # path compression
            parent[x], x = root, parent[x]
        return root

    for u, v in edges:
        parent.setdefault(u, u)
        parent.setdefault(v, v)
        ru, rv = find(u), find(v)
        if ru != rv:
            # The smaller id becomes the root, so a root is always its component's minimum.
            if rv < ru:
                ru, rv = rv, ru
            parent[rv] = ru
    return {x: find(x) for x in parent}


def large_star(node: Any, neighbours: Iterable[Any]) -> tuple[list[tuple[Any, Any]], int]:
    """One node's large-star step: ``(new (hi, lo) edges, number of changed edges)``."""
    nbrs = set(neighbours)
    nbrs.discard(node)
    m = min(nbrs | {node})
    larger = [v for v in nbrs if v > node]
    return [(v, m) for v in larger], (len(larger) if m != node else 0)


def small_star(node: Any, smaller: Iterable[Any]) -> tuple[list[tuple[Any, Any]], int]:
    """One node's small-star step (``smaller`` are its neighbours below it): ``(edges, changed)``."""
    nbrs = set(smaller)
    nbrs.discard(node)
    if not nbrs:
        return [], 0
    m = min(nbrs)
    return [(v, m) for v in nbrs | {node} if v != m], len(nbrs) - 1


def star_components(
    edges: Iterable[tuple[Hashable, Hashable]], max_rounds: int = 100
) -> tuple[dict[Any, Any], list[int]]:
    """Single-process run of the rounds of ``beam_components.ConnectedComponents``:
    ``(labels, changed edges per round)``."""
    nodes: set[Any] = set()
    current: set[tuple[Any, Any]] = set()
    for u, v in edges:
        nodes.update((u, v))
        if u != v:
            current.add((max(u, v), min(u, v)))  # type: ignore[call-overload]  # node ids are comparable
    history: list[int] = []
    for _ in range(max_rounds):
        adj: dict[Any, set[Any]] = {}
        for hi, lo in current:
            adj.setdefault(hi, set()).add(lo)
            adj.setdefault(lo, set()).add(hi)
        changed = 0
        after_large: set[tuple[Any, Any]] = set()
        for u, nb in adj.items():
            out, n = large_star(u, nb)
            after_large.update(out)
            changed += n
        smaller: dict[Any, set[Any]] = {}
        for hi, lo in after_large:
            smaller.setdefault(hi, set()).add(lo)
        current = set()
        for u, nb in smaller.items():
            out, n = small_star(u, nb)
            current.update(out)
            changed += n
        history.append(changed)
        if changed == 0:
            break
    labels = {n: n for n in nodes}
    for hi, lo in current:
        labels[hi] = min(labels[hi], lo)
    return labels, history


def rounds_needed(changed: Sequence[int]) -> tuple[int, bool]:
    """``(rounds that changed edges, converged)`` from the changed-edge count of every unrolled round.

    Rounds needed = the rounds before the first one without changes; ``converged`` is False when every
    round changed something. No rounds at all (no graph was built) is ``(0, True)``.
    """
    if not changed:
        return 0, True
    for i, n in enumerate(changed):
        if n == 0:
            return i, True
    return len(changed), False
