"""Exact then near dedup of one corpus, as one Beam transform configured by ``DedupConfig``.

``DedupDecisions(cfg)``: PCollection of ``(doc_id, text, quality)`` -> one decision dict per document
(``{doc_id, cluster_id, kept, kind, similarity}``, see ``survivor.decision``):

1. one pass per document computes the exact-text key and the MinHash signature (batched,
   ``sketch.DocumentSketcher``);
2. exact groups (``cfg.exact``) keep one survivor each (``survivor.py`` rule); only the survivors go on;
3. near-duplicate clusters (``cfg.near``) of the survivors (``near.NearDuplicateClusters``);
4. an exact duplicate is re-pointed to its exact survivor's final cluster, so every ``cluster_id``
   names a kept document. Its similarity is the survivor's estimated Jaccard to that cluster's
   survivor (the texts are equal after normalisation, so their shingle sets are too).

Kinds: ``"exact"`` for removed exact duplicates and for exact survivors that are not near
duplicates of anything; ``"near"`` for members of a near cluster; ``"unique"`` otherwise.
Only small tuples (ids, hashes, packed signatures) are shuffled; texts stay in the first step.
"""

from __future__ import annotations

from typing import Any

import apache_beam as beam

from pipelines.config import DedupConfig
from pipelines.dedup.exact import group_key
from pipelines.dedup.lsh import optimal_bands_rows
from pipelines.dedup.near import NearDuplicateClusters
from pipelines.dedup.sketch import DocumentSketcher
from pipelines.dedup.survivor import choose_survivor, decision


class _KeyAndSignFn(beam.DoFn):
    """Batch of ``(doc_id, text, quality)`` -> ``(exact key, (doc_id, packed signature or None, quality,
    length))``; without exact dedup the key is the doc id (every group a singleton)."""

    def __init__(self, cfg: DedupConfig) -> None:
        self._cfg = cfg

    def setup(self) -> None:
        self._sketcher = DocumentSketcher(self._cfg)

    def process(self, batch: list[tuple[str, str, Any]]):
        sketches = self._sketcher.sketch([text for _, text, _ in batch])
        for (doc_id, text, quality), (key, sig) in zip(batch, sketches, strict=True):
            yield group_key(key, doc_id), (doc_id, sig, quality, len(text))


def _exact_groups(kv: tuple[bytes, Any]):
    """Main output: the survivor's near input; tagged ``removed``: ``(survivor, member)``."""
    _, rows = kv  # re-iterable grouped values: two streaming passes, never copied into a list
    survivor = choose_survivor((r[0], r[2], r[3]) for r in rows)
    for doc_id, sig, quality, length in rows:
        if doc_id == survivor:
            yield doc_id, sig, quality, length
        else:
            yield beam.pvalue.TaggedOutput("removed", (survivor, doc_id))


def _finalise(kv: tuple[str, dict[str, list]]):
    """Survivor's near decision (kind fixed up) plus its re-pointed exact duplicates."""
    survivor, grouped = kv
    removed = grouped["removed"]
    for d in grouped["near"]:
        if removed and d["kind"] == "unique":
            d = decision(d["doc_id"], d["cluster_id"], "exact", d["similarity"])
        yield d
        for member in removed:
            yield decision(member, d["cluster_id"], "exact", d["similarity"])


class DedupDecisions(beam.PTransform):
    """Exact + near dedup decisions for ``(doc_id, text, quality)`` documents (see module docstring)."""

    def __init__(self, cfg: DedupConfig | None = None, max_batch_size: int = 256) -> None:
        super().__init__()
        self._cfg = cfg or DedupConfig()
        self._max_batch = max_batch_size

    def expand(self, docs):
        c = self._cfg
        rows = (
            docs
            | "Batch" >> beam.BatchElements(min_batch_size=1, max_batch_size=self._max_batch)
            | "KeyAndSign" >> beam.ParDo(_KeyAndSignFn(c))
        )
        groups = (
            rows
            | "ExactGroups" >> beam.GroupByKey()
            | "ExactSurvivors" >> beam.FlatMap(_exact_groups).with_outputs("removed", main="survivors")
        )
        if c.near:
            b, r = optimal_bands_rows(c.threshold, c.num_perm, c.fp_weight, c.fn_weight)
            near = groups.survivors | "Near" >> NearDuplicateClusters(
                b, r, c.threshold, verify=c.verify, max_cc_rounds=c.max_cc_rounds
            )
        else:
            near = groups.survivors | "NoNear" >> beam.Map(lambda s: decision(s[0], s[0], "unique", 1.0))
        keyed = near | "KeyDecision" >> beam.Map(lambda d: (d["doc_id"], d))
        return (
            {"near": keyed, "removed": groups.removed}
            | "JoinExactRemoved" >> beam.CoGroupByKey()
            | "Finalise" >> beam.FlatMap(_finalise)
        )
