"""Near duplicates: MinHash signatures -> LSH buckets -> verified edges -> components -> survivors.

Steps (identical in the Beam transform ``beam_near.NearDuplicateClusters`` and the single-process
``near_duplicate_clusters_local`` here, used by the quality benchmark and tests):

1. every document with a non-empty signature is put in one bucket per band, keyed
   ``(band index, band key)`` (``lsh.band_keys``);
2. a bucket of k documents gives k - 1 *star* edges from its smallest doc id (the hub) to each
   other member; edges are de-duplicated;
3. with ``verify``, an edge is kept only if the estimated Jaccard of its two signatures is
   ``>= threshold``. In Beam the star edges are grouped by hub together with the hub's signature
   (which also de-duplicates them), then by the other end with its signature: two joins, signatures
   never broadcast, shuffled as packed bytes (``minhash.pack_signature``);
4. connected components of the kept edges (transitive: A~B and B~C put A, B, C in one cluster);
5. per component the survivor (``survivor.py``) is kept, and every member gets its estimated
   Jaccard to the survivor; the members' signatures travel with the component grouping, so no
   further join is needed.

Records are ``decision`` dicts: kind ``"near"`` for members of a component (survivor included,
similarity 1.0), ``"unique"`` otherwise (similarity 1.0). Documents whose shingle set is empty
(signature ``None``) are always unique: exact dedup handles them. Pure: no Beam, no I/O.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Sequence
from typing import Any

import numpy as np

from pipelines.dedup.components import union_find_components
from pipelines.dedup.lsh import band_keys
from pipelines.dedup.minhash import signature_jaccard
from pipelines.dedup.survivor import choose_survivor, decision

# (doc_id, signature (array or packed bytes) or None, quality, length in characters)
NearInput = tuple[str, "np.ndarray | bytes | None", "float | None", int]


def star_edges(members: Iterable[str]) -> Iterator[tuple[str, str]]:
    """Edges from the smallest id of a bucket to each other member (k members -> k - 1 edges).

    ``members`` is iterated twice (Beam's grouped values are re-iterable) and never copied, so a
    bucket of millions of ids costs no memory beyond the runner's own paging.
    """
    hub = min(members)
    return ((hub, other) for other in members if other != hub)


def candidate_edges_local(docs: Sequence[NearInput], bands: int, rows: int) -> set[tuple[str, str]]:
    """Distinct star edges of all LSH buckets (step 1-2) in one process."""
    buckets: dict[tuple[int, bytes], list[str]] = {}
    for doc_id, sig, _, _ in docs:
        if sig is None:
            continue
        for key in band_keys(sig, bands, rows):
            buckets.setdefault(key, []).append(doc_id)
    return {e for members in buckets.values() if len(members) > 1 for e in star_edges(members)}


def near_duplicate_clusters_local(
    docs: Sequence[NearInput], bands: int, rows: int, threshold: float, verify: bool = True
) -> list[dict[str, Any]]:
    """Single-process equivalent of ``beam_near.NearDuplicateClusters``; decisions sorted by doc id."""
    sigs = {d[0]: d[1] for d in docs}
    edges = candidate_edges_local(docs, bands, rows)
    if verify:
        edges = {(a, b) for a, b in edges if signature_jaccard(sigs[a], sigs[b]) >= threshold}  # type: ignore[arg-type]
    labels = union_find_components(edges)
    comps: dict[str, list[tuple[str, float | None, int]]] = {}
    out = []
    for doc_id, _, quality, length in docs:
        if doc_id in labels:
            comps.setdefault(labels[doc_id], []).append((doc_id, quality, length))
        else:
            out.append(decision(doc_id, doc_id, "unique", 1.0))
    for members in comps.values():
        survivor = choose_survivor(members)
        for doc_id, _, _ in members:
            sim = 1.0 if doc_id == survivor else signature_jaccard(sigs[doc_id], sigs[survivor])  # type: ignore[arg-type]
            out.append(decision(doc_id, survivor, "near", sim))
    return sorted(out, key=lambda d: d["doc_id"])
