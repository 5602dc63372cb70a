"""Deduplication stage: exact + MinHash LSH near duplicates of the ``clean`` stage.

Pipelines (every shuffle carries ids, hashes or signatures; texts are read twice instead of moved):

1. *candidates* (:func:`build_candidates`): read each clean shard's ``(doc_id, text, quality)``;
   exact groups (``beam_decisions.ExactGroups``); the exact survivors' near inputs and the
   ``(survivor, member)`` pairs go to scratch tables; LSH candidates and verification
   (``beam_near.CandidateEdges``) give the edges, written as the input of connected components,
   and round 0 of the components runs here (``beam_components.StartComponents``);
2. *rounds*: one small pipeline per further connected-components round, until one changes nothing
   (``beam_components.iterate_components``; scratch files between rounds);
3. *decide and write* (:func:`build_dedup`): component labels + near inputs -> survivors
   (``beam_near.ComponentDecisions``), exact duplicates re-pointed (``beam_decisions.FinalDecisions``);
   decisions grouped by the split their document came from (ids only), joined with the shard path;
   each shard is read again and written out: survivors to ``documents``, the rest to the ledger with
   reason ``exact-duplicate`` / ``near-duplicate``, every decision to the ``clusters`` table.

Outputs per split depend only on the split's documents and the global decisions, so shards are
identical for any number of workers and any runner. The cluster-size histogram, example clusters, the
audit of the written cluster table, the changed edges per connected-components round and the
undecided documents are statistics (``beam_stage.WriteStat``, one combined element each) that
``_finalize`` copies into the manifest; no statistic is read from Beam counters. The scratch tables
(``<version>/_scratch``) are removed before the version is committed.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import apache_beam as beam
import pyarrow as pa

from pipelines import beam_scratch, schemas, storage
from pipelines.beam_scratch import ReadScratch, WriteScratch
from pipelines.beam_stage import (
    WriteShardsFn,
    WriteStat,
    counter,
    read_shard,
    read_stat,
    run_downstream_stage,
    run_pipeline,
)
from pipelines.config import CorpusforgeConfig, to_dict
from pipelines.dedup.audit import AUDIT, audit_summary, cluster_flags, cluster_row_counts
from pipelines.dedup.beam_components import ComponentLabels, StartComponents, iterate_components
from pipelines.dedup.beam_decisions import ExactGroups, FinalDecisions, unique_decision
from pipelines.dedup.beam_near import CandidateEdges, ComponentDecisions, packed
from pipelines.dedup.components import rounds_needed
from pipelines.dedup.lsh import lsh_params, optimal_bands_rows
from pipelines.runners import for_small_pipelines
from pipelines.stage import StageJob, StageResult

EXAMPLE_CLUSTERS = 3
EXAMPLE_MEMBERS = 4  # the survivor and the first removed members by id, per example cluster
EXAMPLE_CHARS = 400

SCRATCH = "_scratch"  # under the version directory; removed before the commit
NEAR_INPUTS = pa.schema(
    [
        pa.field("doc_id", pa.string(), nullable=False),
        pa.field("sig", pa.binary()),
        pa.field("quality", pa.float64()),
        pa.field("length", pa.int64(), nullable=False),
    ]
)
EXACT_REMOVED = pa.schema(
    [pa.field("survivor", pa.string(), nullable=False), pa.field("doc_id", pa.string(), nullable=False)]
)


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


def scratch_dir(version_dir: str) -> str:
    return f"{version_dir}/{SCRATCH}"


def _near_row(doc: tuple) -> dict[str, Any]:
    doc_id, sig, quality, length = doc
    return {"doc_id": doc_id, "sig": sig, "quality": quality, "length": length}


def _near_input(row: dict[str, Any]) -> tuple:
    return row["doc_id"], row["sig"], row["quality"], row["length"]


def build_candidates(
    pipeline: beam.Pipeline, splits: list[tuple[str, str]], cfg: CorpusforgeConfig, version_dir: str
) -> None:
    """Pipeline 1: exact groups and candidate edges into the scratch tables ``near`` (exact
    survivors' near inputs), ``removed`` (``(survivor, member)``) and the components' ``edges-00`` /
    ``edges-01`` with the statistic ``cc_round_00`` (round 0 runs here)."""
    work = scratch_dir(version_dir)
    docs = (
        pipeline
        | "Shards" >> beam.Create(splits)
        | "Distribute" >> beam.Reshuffle()
        | "Read" >> beam.FlatMap(read_shard, columns=["id", "text", "quality"])
        | "AsInput" >> beam.Map(_as_input)
    )
    groups = docs | "Exact" >> ExactGroups(cfg.dedup)
    survivors = groups.survivors | "Pack" >> beam.Map(packed)
    _ = (
        survivors
        | "NearRows" >> beam.Map(_near_row)
        | "WriteNear" >> WriteScratch(f"{work}/near", NEAR_INPUTS)
    )
    _ = (
        groups.removed
        | "RemovedRows" >> beam.MapTuple(lambda survivor, doc_id: {"survivor": survivor, "doc_id": doc_id})
        | "WriteRemoved" >> WriteScratch(f"{work}/removed", EXACT_REMOVED)
    )
    d = cfg.dedup
    if d.near:
        bands, rows = optimal_bands_rows(d.threshold, d.num_perm, d.fp_weight, d.fn_weight)
        _ = (
            survivors
            | "Candidates" >> CandidateEdges(bands, rows, d.threshold, d.verify)
            | "StartComponents" >> StartComponents(work, version_dir)
        )


def decide_components(
    splits: list[tuple[str, str]], cfg: CorpusforgeConfig, version: storage.StageVersion, options: Any
) -> list[int]:
    """Pipelines 1 and 2: candidates, then connected-components rounds until one changes nothing;
    returns the changed-edge count of every round (``[]`` when near dedup is off)."""
    version_dir = str(version.path)
    beam_scratch.create(scratch_dir(version_dir))
    run_pipeline(lambda p: build_candidates(p, splits, cfg, version_dir), options)
    if not cfg.dedup.near:
        return []
    rounds = for_small_pipelines(options)  # ids only: in-process on the local runner
    return iterate_components(
        lambda build: run_pipeline(build, rounds),
        version,
        scratch_dir(version_dir),
        cfg.dedup.max_cc_rounds,
    )


def build_dedup(
    pipeline: beam.Pipeline,
    splits: list[tuple[str, str]],
    cfg: CorpusforgeConfig,
    out_dir: str,
    cc_rounds: list[int],
) -> None:
    """Pipeline 3, after :func:`decide_components`: decisions from the scratch tables; shards, ledger
    and clusters under ``out_dir``, and the statistics ``cluster_sizes``, ``examples``, ``audit`` and
    ``undecided`` (``WriteStat``)."""
    work = scratch_dir(out_dir)
    shards = pipeline | "Shards" >> beam.Create(splits)
    near_docs = pipeline | "ReadNear" >> ReadScratch(f"{work}/near") | "NearInputs" >> beam.Map(_near_input)
    removed = (
        pipeline
        | "ReadRemoved" >> ReadScratch(f"{work}/removed")
        | "RemovedPairs" >> beam.Map(lambda r: (r["survivor"], r["doc_id"]))
    )
    if cfg.dedup.near:
        labels = pipeline | "Components" >> ComponentLabels(work, len(cc_rounds))
        near = {"docs": near_docs, "labels": labels} | "Near" >> ComponentDecisions()
    else:
        near = near_docs | "NoNear" >> beam.Map(unique_decision)
    decisions = {"near": near, "removed": removed} | "Final" >> FinalDecisions()
    doc_split = (
        shards
        | "Distribute" >> beam.Reshuffle()
        | "ReadIds" >> beam.FlatMap(read_shard, columns=["id"])
        | "DocSplit" >> beam.Map(lambda kv: (kv[1]["id"], kv[0]))
    )
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
    entries: dict,
    up_docs: dict,
    cfg: CorpusforgeConfig,
    cc_rounds: list[int] | None,
) -> dict:
    """Manifest entries from the shards and the job's statistics (Beam counters are not used); the
    scratch tables are removed here, before the commit."""
    from pipelines.reports import stage_stats

    beam_scratch.remove(scratch_dir(str(version.path)))
    stats = stage_stats(entries, up_docs)
    histogram = {int(k): v for k, v in read_stat(version, "cluster_sizes", {}).items()}
    rounds, converged = rounds_needed(cc_rounds) if cc_rounds is not None else (None, None)
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
    """Deduplicate the job's upstream (clean) documents into a new version.

    The candidate and connected-components pipelines run first (inside ``build``, through
    ``beam_stage.run_pipeline`` with the job's options), then the pipeline that writes the shards.
    """
    cfg = job.cfg
    cc: dict[str, list[int]] = {}

    def build(p: beam.Pipeline, splits: list[tuple[str, str]], v: storage.StageVersion) -> None:
        cc["rounds"] = decide_components(splits, cfg, v, job.options)
        build_dedup(p, splits, cfg, str(v.path), cc["rounds"])

    return run_downstream_stage(
        job,
        section={job.name: to_dict(cfg.dedup)},
        build=build,
        finalize=lambda v, counters, entries, up_docs: _finalize(v, entries, up_docs, cfg, cc.get("rounds")),
        kinds=("documents", "ledger", "clusters"),
    )
