"""Near duplicates: MinHash signatures -> LSH buckets -> verified edges -> components -> survivors.

The single-process reference of the dedup job's near-duplicate rules (``steps.py`` runs them over
files; tests check both give the same decisions), used by the quality benchmark:

1. every document with a non-empty signature is put in one bucket per band, keyed
   ``(band index, band key)`` (``lsh.band_keys``);
2. a bucket of k documents gives k - 1 *star* edges from its smallest doc id (the hub) to each
   other member; edges are de-duplicated;
3. with ``verify``, an edge is kept only if the estimated Jaccard of its two signatures is
   ``>= threshold`` (the job fetches both signatures by row from its record files);
4. connected components of the kept edges (transitive: A~B and B~C put A, B, C in one component);
5. per component, survivor-centred clusters (``clusters.py``): a member is removed only as a
   duplicate of a survivor it is similar to, so chains are cut.

Records are ``decision`` dicts: kind ``"near"`` for members of a cluster of two or more (survivor
included, similarity 1.0), ``"unique"`` otherwise (similarity 1.0). Documents whose shingle set is empty
(signature ``None``) are always unique: exact dedup handles them. Pure: no Beam, no I/O.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Sequence
from typing import Any

import numpy as np

from pipelines.dedup.clusters import survivor_clusters, survivor_order
from pipelines.dedup.components import union_find_components
from pipelines.dedup.lsh import band_keys
from pipelines.dedup.minhash import signature_jaccard, signature_values
from pipelines.dedup.survivor import decision

REHUB_ROUNDS = 4  # bucket members that fail against the hub are compared again among themselves

# (doc_id, signature (array or packed bytes) or None, quality, length in characters)
NearInput = tuple[str, "np.ndarray | bytes | None", "float | None", int]


def star_edges(members: Iterable[str]) -> Iterator[tuple[str, str]]:
    """Edges from the smallest id of a bucket to each other member (k members -> k - 1 edges).

    ``members`` is iterated twice (Beam's grouped values are re-iterable) and never copied, so a
    bucket of millions of ids costs no memory beyond the runner's own paging.
    """
    hub = min(members)
    return ((hub, other) for other in members if other != hub)


def buckets_local(docs: Sequence[NearInput], bands: int, rows: int) -> list[list[str]]:
    """The LSH buckets of two or more documents, members in input (corpus) order."""
    buckets: dict[tuple[int, bytes], list[str]] = {}
    for doc_id, sig, _, _ in docs:
        if sig is None:
            continue
        for key in band_keys(sig, bands, rows):
            buckets.setdefault(key, []).append(doc_id)
    return [m for m in buckets.values() if len(m) > 1]


def candidate_edges_local(docs: Sequence[NearInput], bands: int, rows: int) -> set[tuple[str, str]]:
    """Distinct star edges of all LSH buckets (step 1-2) in one process."""
    return {e for members in buckets_local(docs, bands, rows) for e in star_edges(members)}


def verified_edges_local(
    members: Sequence[str], sigs: dict, threshold: float, rounds: int = REHUB_ROUNDS
) -> Iterator[tuple[str, str]]:
    """Verified edges of one bucket (``steps.verified_bucket_edges``'s rule): each member is linked
    to the round's hub (the first remaining member) when similar; the rest form the next round."""
    left = list(members)
    for _ in range(rounds):
        if len(left) < 2:
            return
        hub, failed = left[0], []
        for other in left[1:]:
            if signature_jaccard(sigs[hub], sigs[other]) >= threshold:
                yield hub, other
            else:
                failed.append(other)
        left = failed


def near_duplicate_clusters_local(
    docs: Sequence[NearInput], bands: int, rows: int, threshold: float, verify: bool = True
) -> list[dict[str, Any]]:
    """Near-duplicate decisions of ``docs`` in one process (the job's rules); sorted by doc id."""
    sigs = {d[0]: d[1] for d in docs}
    if verify:
        edges = {
            e for m in buckets_local(docs, bands, rows) for e in verified_edges_local(m, sigs, threshold)
        }
    else:
        edges = candidate_edges_local(docs, bands, rows)
    labels = union_find_components(edges)
    comps: dict[str, list[tuple[str, float | None, int]]] = {}
    out = []
    for doc_id, _, quality, length in docs:
        if doc_id in labels:
            comps.setdefault(labels[doc_id], []).append((doc_id, quality, length))
        else:
            out.append(decision(doc_id, doc_id, "unique", 1.0))
    for members in comps.values():
        out.extend(component_decisions(members, [sigs[m[0]] for m in members], threshold))  # type: ignore[misc]
    return sorted(out, key=lambda d: d["doc_id"])


def component_decisions(
    members: Sequence[tuple[str, float | None, int]],
    signatures: Sequence[np.ndarray | bytes],
    threshold: float,
    max_passes: int = 256,
) -> list[dict[str, Any]]:
    """Decisions for the ``(doc_id, quality, length)`` members of one component (``clusters.py`` rule):
    kind ``"near"`` in a cluster of two or more, ``"unique"`` for a member left alone."""
    ids = [m[0] for m in members]
    sig = np.stack([signature_values(s) for s in signatures])
    order = survivor_order(ids, [m[1] for m in members], [m[2] for m in members])
    res = survivor_clusters(order, sig, threshold, max_passes)
    size = np.bincount(res.survivor, minlength=len(ids))
    return [
        decision(ids[i], ids[s], "near" if size[s] > 1 else "unique", float(res.similarity[i]))
        for i, s in enumerate(res.survivor.tolist())
    ]
