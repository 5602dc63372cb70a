"""Connected components of an edge list in one process (the reference the tests and the quality
benchmark use; the dedup job's union-find over files is ``steps.components``). Pure."""

from __future__ import annotations

from collections.abc import Hashable, Iterable
from typing import Any


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
