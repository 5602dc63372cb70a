"""The audit of a written cluster table, behind the ``one_survivor_per_cluster`` check (pure).

Per cluster, from its rows: how many members are kept, and how many of those carry the cluster id as
their own id. A sound cluster has exactly one kept member, and it is the one the cluster is named after.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

AUDIT = ("clusters", "no_survivor", "two_survivors", "survivor_not_cluster_id")


def cluster_row_counts(row: Mapping[str, Any]) -> tuple[str, tuple[int, int]]:
    """``(cluster_id, (kept, kept and named by the cluster id))`` of one ``clusters`` row (0 or 1 each)."""
    kept = int(bool(row["kept"]))
    return row["cluster_id"], (kept, kept * int(row["doc_id"] == row["cluster_id"]))


def cluster_flags(kept: int, named: int) -> tuple[int, int, int, int]:
    """One cluster's contribution to the audit, in :data:`AUDIT` order, from its summed row counts."""
    return 1, int(kept == 0), int(kept > 1), int(named != kept)


def audit_summary(totals: Sequence[int]) -> dict[str, int]:
    """Summed :func:`cluster_flags` as a dict keyed by :data:`AUDIT`."""
    return {name: int(n) for name, n in zip(AUDIT, totals, strict=True)}
