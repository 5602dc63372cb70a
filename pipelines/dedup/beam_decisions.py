"""Exact then near dedup in Beam: ``DedupDecisions``, one decision per document (see ``decisions.py``)."""

from __future__ import annotations

from typing import Any

import apache_beam as beam

from pipelines.config import DedupConfig
from pipelines.dedup.beam_near import NearDuplicateClusters
from pipelines.dedup.decisions import final_decisions
from pipelines.dedup.exact import group_key
from pipelines.dedup.lsh import optimal_bands_rows
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
    """Survivor's near decision (kind fixed up) plus its re-pointed exact duplicates; idempotent if an
    input arrived twice (scratch tables written again by a re-executed bundle)."""
    _, grouped = kv
    for d in grouped["near"]:
        yield from final_decisions(d, sorted(set(grouped["removed"])))
        return


class ExactGroups(beam.PTransform):
    """``(doc_id, text, quality)`` -> tagged ``survivors`` (near inputs ``(doc_id, packed signature or
    None, quality, length)`` of every exact group's survivor) and ``removed`` (``(survivor, member)``)."""

    def __init__(self, cfg: DedupConfig, max_batch_size: int = 256) -> None:
        super().__init__()
        self._cfg = cfg
        self._max_batch = max_batch_size

    def expand(self, docs):
        return (
            docs
            | "Batch" >> beam.BatchElements(min_batch_size=1, max_batch_size=self._max_batch)
            | "KeyAndSign" >> beam.ParDo(_KeyAndSignFn(self._cfg))
            | "ExactGroups" >> beam.GroupByKey()
            | "ExactSurvivors" >> beam.FlatMap(_exact_groups).with_outputs("removed", main="survivors")
        )


def unique_decision(doc: tuple) -> dict:
    """The decision of an exact survivor when near dedup is off."""
    return decision(doc[0], doc[0], "unique", 1.0)


class FinalDecisions(beam.PTransform):
    """``{"near": near decisions of exact survivors, "removed": (survivor, member)}`` -> one decision
    per document (exact duplicates re-pointed to their survivor's cluster, see ``decisions.py``)."""

    def expand(self, inputs):
        keyed = inputs["near"] | "KeyDecision" >> beam.Map(lambda d: (d["doc_id"], d))
        return (
            {"near": keyed, "removed": inputs["removed"]}
            | "JoinExactRemoved" >> beam.CoGroupByKey()
            | "Finalise" >> beam.FlatMap(_finalise)
        )


class DedupDecisions(beam.PTransform):
    """Exact + near dedup decisions for ``(doc_id, text, quality)`` documents (see ``decisions.py``).

    With ``with_rounds`` the output is ``(decisions, rounds)``: ``rounds`` is one element, the
    changed-edge count of every connected-components round (an empty list when ``near`` is off).
    One pipeline (components unrolled, ``beam_components.ConnectedComponents``); the dedup job runs
    ``ExactGroups``, the near steps and ``FinalDecisions`` around its round loop instead.
    """

    def __init__(
        self, cfg: DedupConfig | None = None, max_batch_size: int = 256, with_rounds: bool = False
    ) -> None:
        super().__init__()
        self._cfg = cfg or DedupConfig()
        self._max_batch = max_batch_size
        self._with_rounds = with_rounds

    def expand(self, docs):
        c = self._cfg
        groups = docs | "Exact" >> ExactGroups(c, self._max_batch)
        if c.near:
            b, r = optimal_bands_rows(c.threshold, c.num_perm, c.fp_weight, c.fn_weight)
            near = groups.survivors | "Near" >> NearDuplicateClusters(
                b,
                r,
                c.threshold,
                verify=c.verify,
                max_cc_rounds=c.max_cc_rounds,
                with_rounds=self._with_rounds,
            )
            near, rounds = near if self._with_rounds else (near, None)
        else:
            near = groups.survivors | "NoNear" >> beam.Map(unique_decision)
            rounds = docs.pipeline | "NoRounds" >> beam.Create([[]]) if self._with_rounds else None
        decisions = {"near": near, "removed": groups.removed} | "Final" >> FinalDecisions()
        return (decisions, rounds) if self._with_rounds else decisions
