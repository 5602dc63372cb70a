"""Exact then near dedup of one corpus: how the two decision sets combine (configured by ``DedupConfig``).

The dedup job (``steps.py``) gives one decision dict per document (``{doc_id, cluster_id, kept,
kind, similarity}``, see ``survivor.decision``):

1. one pass per document computes the exact-text key and the MinHash signature (batched,
   ``sketch.DocumentSketcher``);
2. exact groups (``cfg.exact``) keep one survivor each (``survivor.py`` rule); only the survivors go on;
3. near-duplicate clusters (``cfg.near``) of the survivors (``near.py`` rules, ``clusters.py``);
4. an exact duplicate is re-pointed to its exact survivor's final cluster, so every ``cluster_id``
   names a kept document. Its similarity is the survivor's estimated Jaccard to that cluster's
   survivor (the texts are equal after normalisation, so their shingle sets are too).

Kinds: ``"exact"`` for removed exact duplicates and for exact survivors that are not near
duplicates of anything; ``"near"`` for members of a near cluster; ``"unique"`` otherwise.
Step 4 is ``final_decisions`` (pure: no Beam, no I/O).
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Mapping
from typing import Any

from pipelines.dedup.survivor import decision


def final_decisions(near: Mapping[str, Any], removed: Iterable[str]) -> Iterator[dict[str, Any]]:
    """An exact survivor's near decision and one decision per exact duplicate ``removed`` from it.

    The duplicates join the survivor's final cluster with its similarity; a survivor that is
    ``"unique"`` after near dedup but had exact duplicates becomes kind ``"exact"``.
    """
    removed = list(removed)
    d = dict(near)
    if removed and d["kind"] == "unique":
        d = decision(d["doc_id"], d["cluster_id"], "exact", d["similarity"])
    yield d
    for member in removed:
        yield decision(member, d["cluster_id"], "exact", d["similarity"])
