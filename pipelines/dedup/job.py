"""Deduplication stage: exact + MinHash LSH near duplicates of the ``clean`` stage.

Pipeline (every shuffle carries ids, hashes or signatures; texts are read twice instead of moved):

1. read each clean shard: ``(doc_id, text, quality)`` and ``(doc_id, split)``;
2. ``DedupDecisions``: exact groups, then LSH candidates, verification, distributed connected
   components and the deterministic survivor rule -> one decision per document;
3. decisions are grouped by the split their document came from (ids only), joined with the shard path;
4. each shard is read again and written out: survivors to ``documents``, the rest to the ledger with
   reason ``exact-duplicate`` / ``near-duplicate``, every decision to the ``clusters`` table.

Outputs per split depend only on the split's documents and the global decisions, so shards are
identical for any number of workers. The cluster-size histogram, example clusters, the audit of the
written cluster table, the changed edges per connected-components round and the undecided documents
are statistics (``beam_stage.WriteStat``, one combined element each) that ``_finalize`` copies into the
manifest; no statistic is read from Beam counters.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import apache_beam as beam

from pipelines import schemas, storage
from pipelines.beam_stage import (
    WriteShardsFn,
    WriteStat,
    counter,
    read_shard,
    read_stat,
    run_downstream_stage,
)
from pipelines.config import CorpusforgeConfig, to_dict
from pipelines.dedup.audit import AUDIT, audit_summary, cluster_flags, cluster_row_counts
from pipelines.dedup.beam_decisions import DedupDecisions
from pipelines.dedup.components import rounds_needed
from pipelines.dedup.lsh import lsh_params
from pipelines.stage import StageJob, StageResult

EXAMPLE_CLUSTERS = 3
EXAMPLE_MEMBERS = 4  # the survivor and the first removed members by id, per example cluster
EXAMPLE_CHARS = 400


def _as_input(element: tuple[str, dict]) -> tuple[str, str, Any]:
    _, row = element
    return row["id"], row["text"], row.get("quality")


class FilterShardFn(beam.DoFn):
    """``(split, {shard: [path], decisions: [...]})`` -> kept documents, ledger rows, cluster rows.

    A document with no decision (cannot happen unless the pipeline is broken) is kept, and its id
    goes to the ``undecided`` output (the ``undecided`` statistic), so the conservation check still
    balances and the problem is visible.
    """

    def __init__(self, examples: bool = True) -> None:
        self.examples = examples
        self.kept = counter("dedup.kept")
        self.exact = counter("dedup.removed.exact-duplicate")
        self.near = counter("dedup.removed.near-duplicate")

    def process(self, element: tuple[str, dict[str, list]], example_ids: list[str]) -> Iterator[Any]:
        split, grouped = element
        decisions = {d["doc_id"]: d for d in grouped["decisions"]}
        wanted = set(example_ids)
        for path in grouped["shard"]:
            for _, doc in read_shard((split, path)):
                d = decisions.get(doc["id"])
                if d is None:
                    yield beam.pvalue.TaggedOutput("undecided", doc["id"])
                    yield beam.pvalue.TaggedOutput("documents", (split, doc))
                    continue
                yield beam.pvalue.TaggedOutput("clusters", (split, d))
                if d["cluster_id"] in wanted:
                    yield beam.pvalue.TaggedOutput(
                        "examples",
                        {
                            **d,
                            "text": doc["text"][:EXAMPLE_CHARS],
                            "lang": doc.get("lang"),
                            "quality": doc.get("quality"),
                        },
                    )
                if d["kept"]:
                    self.kept.inc()
                    signals = dict(doc.get("signals") or {})
                    signals["dedup.cluster_similarity"] = float(d["similarity"])
                    yield beam.pvalue.TaggedOutput("documents", (split, {**doc, "signals": signals}))
                    continue
                reason = "exact-duplicate" if d["kind"] == "exact" else "near-duplicate"
                (self.exact if reason == "exact-duplicate" else self.near).inc()
                detail = f"duplicate of {d['cluster_id']} (estimated Jaccard {d['similarity']:.3f})"
                row = schemas.removal_from_document(doc, reason, detail)
                yield beam.pvalue.TaggedOutput("ledger", (split, row))


class AuditClusters(beam.PTransform):
    """``(split, cluster row)`` -> one element: the cluster audit (``audit.AUDIT`` counts).

    Runs on the cluster rows as written, so the asset check reads an audit of the output, computed
    per cluster across workers (no process holds the cluster table).
    """

    def expand(self, rows: beam.PCollection) -> beam.PCollection:
        return (
            rows
            | "ByCluster" >> beam.Map(lambda kv: cluster_row_counts(kv[1]))
            | "Count" >> beam.CombinePerKey(beam.combiners.TupleCombineFn(sum, sum))
            | "Check" >> beam.MapTuple(lambda _, counts: cluster_flags(*counts))
            | "Total" >> beam.CombineGlobally(beam.combiners.TupleCombineFn(*[sum] * len(AUDIT)))
            | "Summary" >> beam.Map(audit_summary)
        )


def _ordered_examples(groups: list[tuple[str, list[dict]]]) -> list[dict]:
    return [d for _, members in sorted(groups, key=lambda g: g[0]) for d in members]


def build_dedup(
    pipeline: beam.Pipeline, splits: list[tuple[str, str]], cfg: CorpusforgeConfig, out_dir: str
) -> None:
    """The dedup pipeline: shards, ledger and clusters under ``out_dir``, and the statistics
    ``cluster_sizes``, ``examples``, ``audit``, ``cc_rounds`` and ``undecided`` (``WriteStat``)."""
    shards = pipeline | "Shards" >> beam.Create(splits)
    docs = (
        shards
        | "Distribute" >> beam.Reshuffle()
        | "Read" >> beam.FlatMap(read_shard, columns=["id", "text", "quality"])
    )
    decisions, rounds = (
        docs | "AsInput" >> beam.Map(_as_input) | "Decide" >> DedupDecisions(cfg.dedup, with_rounds=True)
    )
    _ = rounds | WriteStat(out_dir, "cc_rounds")
    doc_split = docs | "DocSplit" >> beam.Map(lambda kv: (kv[1]["id"], kv[0]))
    by_split = (
        {"decision": decisions | "KeyById" >> beam.Map(lambda d: (d["doc_id"], d)), "split": doc_split}
        | "JoinSplit" >> beam.CoGroupByKey()
        | "ToSplit" >> beam.FlatMap(lambda kv: [(s, d) for s in kv[1]["split"] for d in kv[1]["decision"]])
    )
    sizes = (
        decisions
        | "ClusterOf" >> beam.Map(lambda d: (d["cluster_id"], 1))
        | "ClusterSizes" >> beam.CombinePerKey(sum)
    )
    _ = (
        sizes
        | "SizeOnes" >> beam.Map(lambda kv: (kv[1], 1))
        | "Histogram" >> beam.CombinePerKey(sum)
        | "HistogramDict" >> beam.combiners.ToDict()
        | "SizeKeys" >> beam.Map(lambda h: {str(k): v for k, v in sorted(h.items())})
        | WriteStat(out_dir, "cluster_sizes")
    )
    top = (
        sizes
        | "Multi" >> beam.Filter(lambda kv: kv[1] > 1)
        | "Largest" >> beam.combiners.Top.Of(EXAMPLE_CLUSTERS, key=lambda kv: (kv[1], kv[0]))
        | "TopIds" >> beam.Map(lambda top: sorted(cid for cid, _ in top))
    )
    outputs = (
        {"shard": shards, "decisions": by_split}
        | "JoinShards" >> beam.CoGroupByKey()
        | "Filter"
        >> beam.ParDo(FilterShardFn(), beam.pvalue.AsSingleton(top, default_value=[])).with_outputs(
            "documents", "ledger", "clusters", "examples", "undecided"
        )
    )
    outputs.documents | "WriteDocuments" >> beam.ParDo(
        WriteShardsFn(f"{out_dir}/documents", schemas.DOCUMENTS, cfg.output)
    )
    outputs.ledger | "WriteLedger" >> beam.ParDo(
        WriteShardsFn(f"{out_dir}/ledger", schemas.LEDGER, cfg.output)
    )
    outputs.clusters | "WriteClusters" >> beam.ParDo(
        WriteShardsFn(f"{out_dir}/clusters", schemas.CLUSTERS, cfg.output)
    )
    _ = outputs.clusters | "AuditClusters" >> AuditClusters() | WriteStat(out_dir, "audit")
    _ = (
        outputs.undecided
        | "CountUndecided" >> beam.combiners.Count.Globally()
        | WriteStat(out_dir, "undecided")
    )
    _ = (
        outputs.examples
        | "ExampleCluster" >> beam.Map(lambda d: (d["cluster_id"], d))
        # bounded however large the cluster: survivor first, then the smallest removed ids
        | "ExampleMembers"
        >> beam.combiners.Top.PerKey(
            EXAMPLE_MEMBERS, key=lambda d: (not d["kept"], d["doc_id"]), reverse=True
        )
        | "Examples" >> beam.combiners.ToList()
        | "OrderExamples" >> beam.Map(_ordered_examples)
        | WriteStat(out_dir, "examples")
    )


def _finalize(
    version: storage.StageVersion,
    counters: dict[str, int],
    entries: dict,
    up_docs: dict,
    cfg: CorpusforgeConfig,
) -> dict:
    """Manifest entries from the shards and the job's statistics (``counters`` are not used)."""
    from pipelines.reports import stage_stats

    stats = stage_stats(entries, up_docs)
    histogram = {int(k): v for k, v in read_stat(version, "cluster_sizes", {}).items()}
    changed = read_stat(version, "cc_rounds")
    rounds, converged = rounds_needed(changed) if changed is not None else (None, None)
    params = lsh_params(cfg.dedup.threshold, cfg.dedup.num_perm, cfg.dedup.fp_weight, cfg.dedup.fn_weight)
    stats.update(
        clusters=sum(histogram.values()),
        duplicate_clusters=sum(v for k, v in histogram.items() if k > 1),
        cluster_size_histogram=histogram,
        removed_fraction=(stats["removed"] / stats["documents_in"]) if stats["documents_in"] else 0.0,
        cc_rounds=rounds,
        cc_converged=converged,
        undecided=read_stat(version, "undecided"),
        audit=read_stat(version, "audit"),
    )
    return {"stats": stats, "lsh": to_dict(params), "examples": read_stat(version, "examples", [])}


def run(job: StageJob) -> StageResult:
    """Deduplicate the job's upstream (clean) documents into a new version."""
    cfg = job.cfg
    return run_downstream_stage(
        job,
        section={job.name: to_dict(cfg.dedup)},
        build=lambda p, splits, v: build_dedup(p, splits, cfg, str(v.path)),
        finalize=lambda v, counters, entries, up_docs: _finalize(v, counters, entries, up_docs, cfg),
        kinds=("documents", "ledger", "clusters"),
    )
