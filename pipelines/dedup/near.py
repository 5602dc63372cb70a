"""Near duplicates: MinHash signatures -> LSH buckets -> verified edges -> components -> survivors.

Steps (identical in the Beam transform ``NearDuplicateClusters`` and the single-process
``near_duplicate_clusters_local`` used by the quality benchmark and tests):

1. every document with a non-empty signature is put in one bucket per band, keyed
   ``(band index, band hash)``;
2. a bucket of k documents gives k - 1 *star* edges from its smallest doc id to each other member;
   edges are de-duplicated;
3. with ``verify``, an edge is kept only if the estimated Jaccard of its two signatures is
   ``>= threshold`` (signatures are joined onto edges with ``CoGroupByKey``, never broadcast);
4. connected components of the kept edges (transitive: A~B and B~C put A, B, C in one cluster);
5. per component the survivor (``survivor.py``) is kept, and every member gets its estimated
   Jaccard to the survivor.

Records are ``decision`` dicts: kind ``"near"`` for members of a component (survivor included,
similarity 1.0), ``"unique"`` otherwise (similarity 1.0). Documents whose shingle set is empty
(signature ``None``) are always unique: exact dedup handles them.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import Any

import apache_beam as beam
import numpy as np

from pipelines.dedup.components import NAMESPACE, ConnectedComponents, union_find_components
from pipelines.dedup.lsh import band_keys
from pipelines.dedup.minhash import MinHasher
from pipelines.dedup.shingles import shingles
from pipelines.dedup.survivor import choose_survivor, decision

# (doc_id, signature or None, quality, length in characters)
NearInput = tuple[str, "np.ndarray | None", "float | None", int]


def star_edges(members: Iterable[str]) -> list[tuple[str, str]]:
    """Edges from the smallest id of a bucket to each other member (k members -> k - 1 edges)."""
    ids = sorted(set(members))
    return [(ids[0], other) for other in ids[1:]]


def _signature_or_none(hasher: MinHasher, shingle_set: set[str]) -> np.ndarray | None:
    return hasher.signature(shingle_set) if shingle_set else None


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
        edges = {(a, b) for a, b in edges if MinHasher.jaccard(sigs[a], sigs[b]) >= threshold}
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
            sim = 1.0 if doc_id == survivor else MinHasher.jaccard(sigs[doc_id], sigs[survivor])
            out.append(decision(doc_id, survivor, "near", sim))
    return sorted(out, key=lambda d: d["doc_id"])


# -- Beam ----------------------------------------------------------------------------------------


class _SignatureFn(beam.DoFn):
    def __init__(self, num_perm: int, seed: int, scheme: str, ngram: int, cjk_ngram: int) -> None:
        self._args = (num_perm, seed, scheme)
        self._ngram = ngram
        self._cjk_ngram = cjk_ngram

    def setup(self) -> None:
        self._hasher = MinHasher(*self._args)

    def process(self, batch: list[tuple[str, str]]):
        sets = [shingles(text, self._ngram, self._cjk_ngram) for _, text in batch]
        sigs = self._hasher.signatures(sets)
        for (doc_id, _), s, sig in zip(batch, sets, sigs, strict=True):
            yield doc_id, (sig if s else None)


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
    ) -> None:
        super().__init__()
        self._fn = _SignatureFn(num_perm, seed, scheme, ngram, cjk_ngram)
        self._max_batch = max_batch_size

    def expand(self, docs):
        return (
            docs
            | "Batch" >> beam.BatchElements(min_batch_size=1, max_batch_size=self._max_batch)
            | "Signatures" >> beam.ParDo(self._fn)
        )


def _edge_similarity(kv: tuple[str, dict[str, list]]):
    """Second join: ``b -> ((a, b), jaccard(sig_a, sig_b))`` for every half-edge ending at ``b``."""
    b, grouped = kv
    for sig_b in grouped["sig"]:
        for a, sig_a in grouped["half"]:
            yield (a, b), MinHasher.jaccard(sig_a, sig_b)


def _attach_first_signature(kv: tuple[str, dict[str, list]]):
    """First join: ``a -> (b, (a, sig_a))`` for every edge ``(a, b)``."""
    a, grouped = kv
    for sig_a in grouped["sig"]:
        for b in grouped["edge"]:
            yield b, (a, sig_a)


class EdgeSimilarity(beam.PTransform):
    """Edges ``(a, b)`` -> ``((a, b), estimated Jaccard)``, joining ``(doc_id, signature)`` twice by key."""

    def __init__(self, signatures: beam.PCollection) -> None:
        super().__init__()
        self._sigs = signatures

    def expand(self, edges):
        half = (
            {"sig": self._sigs, "edge": edges}
            | "JoinFirst" >> beam.CoGroupByKey()
            | "AttachFirst" >> beam.FlatMap(_attach_first_signature)
        )
        return (
            {"sig": self._sigs, "half": half}
            | "JoinSecond" >> beam.CoGroupByKey()
            | "Similarity" >> beam.FlatMap(_edge_similarity)
        )


def _bucket_entries(doc: NearInput, bands: int, rows: int):
    doc_id, sig = doc[0], doc[1]
    if sig is not None:
        for key in band_keys(sig, bands, rows):
            yield key, doc_id


def _split_by_component(kv: tuple[str, dict[str, list]]):
    doc_id, grouped = kv
    for quality, length in grouped["doc"]:
        comps = grouped["comp"]
        if comps:
            yield comps[0], (doc_id, quality, length)
        else:
            yield beam.pvalue.TaggedOutput("unique", decision(doc_id, doc_id, "unique", 1.0))


def _survivor_pairs(kv: tuple[str, Iterable[tuple[str, float | None, int]]]):
    """``(survivor, member)`` for every member of one component (the survivor paired with itself)."""
    _, members = kv
    members = list(members)
    survivor = choose_survivor(members)
    for doc_id, _, _ in members:
        yield survivor, doc_id


class NearDuplicateClusters(beam.PTransform):
    """PCollection of ``(doc_id, signature or None, quality, length)`` -> one decision dict per document."""

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
        bands, rows, threshold = self._bands, self._rows, self._threshold
        sigs = docs | "KeySignature" >> beam.FlatMap(lambda d: [(d[0], d[1])] if d[1] is not None else [])
        edges = (
            docs
            | "BandKeys" >> beam.FlatMap(_bucket_entries, bands, rows)
            | "Buckets" >> beam.GroupByKey()
            | "StarEdges" >> beam.FlatMap(lambda kv: star_edges(kv[1]))
            | "DistinctEdges" >> beam.Distinct()
        )
        if self._verify:
            edges = (
                edges
                | "VerifySimilarity" >> EdgeSimilarity(sigs)
                | "AboveThreshold" >> beam.Filter(lambda es: es[1] >= threshold)
                | "DropSimilarity" >> beam.Map(lambda es: es[0])
            )
        comps = edges | "Components" >> self._cc
        info = docs | "KeyInfo" >> beam.Map(lambda d: (d[0], (d[2], d[3])))
        split = (
            {"doc": info, "comp": comps}
            | "JoinComponents" >> beam.CoGroupByKey()
            | "SplitUnique" >> beam.FlatMap(_split_by_component).with_outputs("unique", main="members")
        )
        pairs = (
            split.members | "ByComponent" >> beam.GroupByKey() | "Survivors" >> beam.FlatMap(_survivor_pairs)
        )
        kept = (
            pairs
            | "SurvivorsOnly" >> beam.Filter(lambda p: p[0] == p[1])
            | "KeptDecision" >> beam.Map(lambda p: decision(p[1], p[0], "near", 1.0))
        )
        removed = (
            pairs
            | "MembersOnly" >> beam.Filter(lambda p: p[0] != p[1])
            | "SimilarityToSurvivor" >> EdgeSimilarity(sigs)
            | "RemovedDecision" >> beam.Map(lambda es: decision(es[0][1], es[0][0], "near", es[1]))
        )
        return (split.unique, kept, removed) | "AllDecisions" >> beam.Flatten()
