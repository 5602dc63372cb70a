"""Which document of a duplicate cluster is kept.

Rule, identical for exact and near duplicates: the earliest input *batch* (``raw`` ingests a grown
input directory as batches, ``pipelines.carry``: a document already published stays the survivor when
a later batch brings a duplicate of it, so incremental runs never retract what they kept), then the
highest ``quality`` (the cleaning stage's score; ``None`` or NaN counts lowest), then the longest text
in characters, then the smallest doc id (string order). It depends only on the members' values, never
on input order or worker count.
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from typing import Any


def survivor_key(
    doc_id: str, quality: float | None, length: int, batch: int = 0
) -> tuple[int, float, int, str]:
    """Sort key whose minimum is the survivor."""
    q = -math.inf if quality is None or math.isnan(quality) else float(quality)
    return (int(batch), -q, -int(length), doc_id)


def choose_survivor(members: Iterable[tuple[str, float | None, int]]) -> str:
    """The doc id kept among ``(doc_id, quality, length)`` members (at least one member)."""
    best = min(members, key=lambda m: survivor_key(m[0], m[1], m[2]), default=None)
    if best is None:
        raise ValueError("choose_survivor needs at least one member")
    return best[0]


def decision(doc_id: str, cluster_id: str, kind: str, similarity: float) -> dict[str, Any]:
    """The per-document dedup record: kept exactly when the document is its cluster's survivor."""
    return {
        "doc_id": doc_id,
        "cluster_id": cluster_id,
        "kept": doc_id == cluster_id,
        "kind": kind,
        "similarity": float(similarity),
    }
