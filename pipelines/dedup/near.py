"""Near duplicates: MinHash signatures -> LSH buckets -> verified edges -> components -> survivors.

Steps (identical in the Beam transform ``NearDuplicateClusters`` and the single-process
``near_duplicate_clusters_local`` used by the quality benchmark and tests):

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
(signature ``None``) are always unique: exact dedup handles them.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Sequence
from typing import Any

import apache_beam as beam
import numpy as np

from pipelines.dedup.components import NAMESPACE, ConnectedComponents, union_find_components
from pipelines.dedup.lsh import band_keys
from pipelines.dedup.minhash import MinHasher, pack_signature, signature_jaccard
from pipelines.dedup.shingles import segments, shingle_layout
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


# -- single process -----------------------------------------------------------------------------


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
    """Single-process equivalent of ``NearDuplicateClusters``; decisions sorted by doc id."""
    sigs = {d[0]: d[1] for d in docs}
    edges = candidate_edges_local(docs, bands, rows)
    if verify:
        edges = {(a, b) for a, b in edges if signature_jaccard(sigs[a], sigs[b]) >= threshold}
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
            sim = 1.0 if doc_id == survivor else signature_jaccard(sigs[doc_id], sigs[survivor])
            out.append(decision(doc_id, survivor, "near", sim))
    return sorted(out, key=lambda d: d["doc_id"])


# -- Beam ----------------------------------------------------------------------------------------


class _SignatureFn(beam.DoFn):
    def __init__(
        self, num_perm: int, seed: int, scheme: str, ngram: int, cjk_ngram: int, input_hash: str
    ) -> None:
        self._args = (num_perm, seed, scheme, input_hash)
        self._ngram = ngram
        self._cjk_ngram = cjk_ngram

    def setup(self) -> None:
        self._hasher = MinHasher(*self._args)

    def process(self, batch: list[tuple[str, str]]):
        layouts = [shingle_layout(*segments(text), self._ngram, self._cjk_ngram) for _, text in batch]
        sigs = self._hasher.signatures_of_layouts(layouts)
        for (doc_id, _), lay, sig in zip(batch, layouts, sigs, strict=True):
            yield doc_id, (sig if lay.starts.size else None)


class MinHashSignatures(beam.PTransform):
    """PCollection of ``(doc_id, text)`` -> ``(doc_id, signature or None when no shingles)``, batched."""

    def __init__(
        self,
        num_perm: int = 128,
        seed: int = 1,
        scheme: str = "affine32",
        ngram: int = 5,
        cjk_ngram: int = 5,
        max_batch_size: int = 256,
        input_hash: str = "sha1",
    ) -> None:
        super().__init__()
        self._fn = _SignatureFn(num_perm, seed, scheme, ngram, cjk_ngram, input_hash)
        self._max_batch = max_batch_size

    def expand(self, docs):
        return (
            docs
            | "Batch" >> beam.BatchElements(min_batch_size=1, max_batch_size=self._max_batch)
            | "Signatures" >> beam.ParDo(self._fn)
        )


def _packed(doc: NearInput) -> NearInput:
    doc_id, sig, quality, length = doc
    return doc_id, (None if sig is None else pack_signature(sig)), quality, length


def _bucket_entries(doc: NearInput, bands: int, rows: int):
    doc_id, sig = doc[0], doc[1]
    if sig is not None:
        for key in band_keys(sig, bands, rows):
            yield key, doc_id


def _send_hub_signature(kv: tuple[str, dict[str, list]]):
    """First join, keyed by hub: ``other -> (hub, sig_hub)`` once per distinct star edge."""
    hub, grouped = kv
    others = sorted(set(grouped["other"]))
    for sig in grouped["sig"]:
        for other in others:
            yield other, (hub, sig)


def _verified_edges(kv: tuple[str, dict[str, list]], threshold: float):
    """Second join, keyed by the other end: ``(hub, other)`` when the estimated Jaccard >= threshold."""
    other, grouped = kv
    for sig in grouped["sig"]:
        for hub, hub_sig in grouped["hub"]:
            if signature_jaccard(hub_sig, sig) >= threshold:
                yield hub, other


class VerifiedEdges(beam.PTransform):
    """Star edges ``(hub, other)`` (repeats allowed) -> distinct edges with estimated Jaccard >= threshold.

    Signatures are joined by key (hub's, then the other end's), never broadcast.
    """

    def __init__(self, signatures: beam.PCollection, threshold: float) -> None:
        super().__init__()
        self._sigs = signatures
        self._threshold = threshold

    def expand(self, edges):
        halves = (
            {"sig": self._sigs, "other": edges}
            | "JoinHub" >> beam.CoGroupByKey()
            | "SendHubSignature" >> beam.FlatMap(_send_hub_signature)
        )
        return (
            {"sig": self._sigs, "hub": halves}
            | "JoinOther" >> beam.CoGroupByKey()
            | "Verify" >> beam.FlatMap(_verified_edges, self._threshold)
        )


def _split_by_component(kv: tuple[str, dict[str, list]]):
    doc_id, grouped = kv
    for quality, length, sig in grouped["doc"]:
        comps = grouped["comp"]
        if comps:
            yield comps[0], (doc_id, quality, length, sig)
        else:
            yield beam.pvalue.TaggedOutput("unique", decision(doc_id, doc_id, "unique", 1.0))


def _component_decisions(kv: tuple[str, Iterable[tuple[str, float | None, int, bytes]]]):
    """Survivor of one component and every member's estimated Jaccard to it."""
    _, members = kv  # re-iterable grouped values: three streaming passes, no copy of the component
    survivor = choose_survivor(m[:3] for m in members)
    survivor_sig = next(m[3] for m in members if m[0] == survivor)
    for doc_id, _, _, sig in members:
        sim = 1.0 if doc_id == survivor else signature_jaccard(sig, survivor_sig)
        yield decision(doc_id, survivor, "near", sim)


class NearDuplicateClusters(beam.PTransform):
    """PCollection of ``(doc_id, signature or None, quality, length)`` -> one decision dict per document.

    Signatures may be numpy arrays or ``pack_signature`` bytes; they are shuffled packed.
    """

    def __init__(
        self,
        bands: int,
        rows: int,
        threshold: float,
        verify: bool = True,
        max_cc_rounds: int = 30,
        namespace: str = NAMESPACE,
        on_unconverged: str = "raise",
    ) -> None:
        super().__init__()
        self._bands, self._rows, self._threshold, self._verify = bands, rows, threshold, verify
        self._cc = ConnectedComponents(max_cc_rounds, namespace=namespace, on_unconverged=on_unconverged)

    def expand(self, docs):
        bands, rows = self._bands, self._rows
        docs = docs | "Pack" >> beam.Map(_packed)
        star = (
            docs
            | "BandKeys" >> beam.FlatMap(_bucket_entries, bands, rows)
            | "Buckets" >> beam.GroupByKey()
            | "StarEdges" >> beam.FlatMap(lambda kv: star_edges(kv[1]))
        )
        if self._verify:
            sigs = docs | "KeySignature" >> beam.FlatMap(lambda d: [(d[0], d[1])] if d[1] is not None else [])
            edges = star | "VerifiedEdges" >> VerifiedEdges(sigs, self._threshold)
        else:
            edges = star | "DistinctEdges" >> beam.Distinct()
        comps = edges | "Components" >> self._cc
        info = docs | "KeyInfo" >> beam.Map(lambda d: (d[0], (d[2], d[3], d[1])))
        split = (
            {"doc": info, "comp": comps}
            | "JoinComponents" >> beam.CoGroupByKey()
            | "SplitUnique" >> beam.FlatMap(_split_by_component).with_outputs("unique", main="members")
        )
        near = (
            split.members
            | "ByComponent" >> beam.GroupByKey()
            | "Survivors" >> beam.FlatMap(_component_decisions)
        )
        return (split.unique, near) | "AllDecisions" >> beam.Flatten()
