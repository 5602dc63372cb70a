"""Near duplicates in Beam: the steps of ``near.py`` as transforms (``NearDuplicateClusters``).

Signatures are shuffled packed (``minhash.pack_signature``); LSH buckets are grouped by
``(band, band key)``; star edges are verified by joining each end with its signature (two
``CoGroupByKey``s, never a broadcast) (``CandidateEdges``); components come from
``beam_components`` (``ConnectedComponents`` in one pipeline, or the round loop of the dedup job);
members are grouped by component with their signatures, so the survivor similarity needs no join
(``ComponentDecisions``).
"""

from __future__ import annotations

from collections.abc import Iterable

import apache_beam as beam

from pipelines.dedup.beam_components import NAMESPACE, ConnectedComponents
from pipelines.dedup.lsh import band_keys
from pipelines.dedup.minhash import pack_signature, signature_jaccard
from pipelines.dedup.near import NearInput, star_edges
from pipelines.dedup.survivor import choose_survivor, decision


def packed(doc: NearInput) -> NearInput:
    """A near input with its signature packed (``minhash.pack_signature``) for shuffles and files."""
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
    """A document's component member entry, or its ``unique`` decision. One entry per document even
    if its near input arrived twice (a scratch table written again by a re-executed bundle)."""
    doc_id, grouped = kv
    for quality, length, sig in grouped["doc"]:
        comps = grouped["comp"]
        if comps:
            yield comps[0], (doc_id, quality, length, sig)
        else:
            yield beam.pvalue.TaggedOutput("unique", decision(doc_id, doc_id, "unique", 1.0))
        return


def _component_decisions(kv: tuple[str, Iterable[tuple[str, float | None, int, bytes]]]):
    """Survivor of one component and every member's estimated Jaccard to it."""
    _, members = kv  # re-iterable grouped values: three streaming passes, no copy of the component
    survivor = choose_survivor(m[:3] for m in members)
    survivor_sig = next(m[3] for m in members if m[0] == survivor)
    for doc_id, _, _, sig in members:
        sim = 1.0 if doc_id == survivor else signature_jaccard(sig, survivor_sig)
        yield decision(doc_id, survivor, "near", sim)


class CandidateEdges(beam.PTransform):
    """Packed near inputs ``(doc_id, packed signature or None, quality, length)`` -> distinct edges of
    documents sharing an LSH bucket, verified (estimated Jaccard >= threshold) when ``verify``."""

    def __init__(self, bands: int, rows: int, threshold: float, verify: bool = True) -> None:
        super().__init__()
        self._bands, self._rows, self._threshold, self._verify = bands, rows, threshold, verify

    def expand(self, docs):
        star = (
            docs
            | "BandKeys" >> beam.FlatMap(_bucket_entries, self._bands, self._rows)
            | "Buckets" >> beam.GroupByKey()
            | "StarEdges" >> beam.FlatMap(lambda kv: star_edges(kv[1]))
        )
        if not self._verify:
            return star | "DistinctEdges" >> beam.Distinct()
        sigs = docs | "KeySignature" >> beam.FlatMap(lambda d: [(d[0], d[1])] if d[1] is not None else [])
        return star | "VerifiedEdges" >> VerifiedEdges(sigs, self._threshold)


class ComponentDecisions(beam.PTransform):
    """``{"docs": packed near inputs, "labels": (doc_id, component label)}`` -> one decision per doc:
    members of a component get its survivor and their Jaccard to it, the others are ``unique``."""

    def expand(self, inputs):
        info = inputs["docs"] | "KeyInfo" >> beam.Map(lambda d: (d[0], (d[2], d[3], d[1])))
        split = (
            {"doc": info, "comp": inputs["labels"]}
            | "JoinComponents" >> beam.CoGroupByKey()
            | "SplitUnique" >> beam.FlatMap(_split_by_component).with_outputs("unique", main="members")
        )
        near = (
            split.members
            | "ByComponent" >> beam.GroupByKey()
            | "Survivors" >> beam.FlatMap(_component_decisions)
        )
        return (split.unique, near) | "AllDecisions" >> beam.Flatten()


class NearDuplicateClusters(beam.PTransform):
    """PCollection of ``(doc_id, signature or None, quality, length)`` -> one decision dict per document.

    Signatures may be numpy arrays or ``pack_signature`` bytes; they are shuffled packed. With
    ``with_rounds`` the output is ``(decisions, rounds)`` (see ``ConnectedComponents``). One pipeline:
    the components are the unrolled ``ConnectedComponents``; the dedup job runs the same steps with
    the round loop of ``beam_components.iterate_components`` between two pipelines instead.
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
        with_rounds: bool = False,
    ) -> None:
        super().__init__()
        self._candidates = CandidateEdges(bands, rows, threshold, verify)
        self._with_rounds = with_rounds
        self._cc = ConnectedComponents(
            max_cc_rounds, namespace=namespace, on_unconverged=on_unconverged, with_rounds=with_rounds
        )

    def expand(self, docs):
        docs = docs | "Pack" >> beam.Map(packed)
        comps = docs | "Candidates" >> self._candidates | "Components" >> self._cc
        if self._with_rounds:
            comps, rounds = comps
        decisions = {"docs": docs, "labels": comps} | "Decide" >> ComponentDecisions()
        return (decisions, rounds) if self._with_rounds else decisions
