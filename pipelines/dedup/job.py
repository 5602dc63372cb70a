"""Deduplication stage: exact + MinHash LSH near duplicates of the ``clean`` stage.

Pipeline (every shuffle carries ids, hashes or signatures; texts are read twice instead of moved):

1. read each clean shard: ``(doc_id, text, quality)`` and ``(doc_id, split)``;
2. ``DedupDecisions``: exact groups, then LSH candidates, verification, distributed connected
   components and the deterministic survivor rule -> one decision per document;
3. decisions are grouped by the split their document came from (ids only), joined with the shard path;
4. each shard is read again and written out: survivors to ``documents``, the rest to the ledger with
   reason ``exact-duplicate`` / ``near-duplicate``, every decision to the ``clusters`` table.

Outputs per split depend only on the split's documents and the global decisions, so shards are
identical for any number of workers. Cluster-size histogram and example clusters go to the manifest.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import apache_beam as beam

from pipelines import schemas, storage
from pipelines.beam_stage import WriteShardsFn, counter, read_shard, run_downstream_stage
from pipelines.config import CorpusforgeConfig, to_dict
from pipelines.dedup.components import NAMESPACE as CC_NAMESPACE
from pipelines.dedup.decisions import DedupDecisions
from pipelines.dedup.lsh import lsh_params

STAGE = "dedup"
UPSTREAM = "clean"
EXAMPLE_CLUSTERS = 3
EXAMPLE_MEMBERS = 4  # the survivor and the first removed members by id, per example cluster
EXAMPLE_CHARS = 400


def _as_input(element: tuple[str, dict]) -> tuple[str, str, Any]:
    _, row = element
    return row["id"], row["text"], row.get("quality")


class FilterShardFn(beam.DoFn):
    """``(split, {shard: [path], decisions: [...]})`` -> kept documents, ledger rows, cluster rows.

    A document with no decision (cannot happen unless the pipeline is broken) is kept and counted
    under ``dedup.undecided`` so the conservation check still balances and the problem is visible.
    """

    def __init__(self, examples: bool = True) -> None:
        self.examples = examples
        self.kept = counter("dedup.kept")
        self.exact = counter("dedup.removed.exact-duplicate")
        self.near = counter("dedup.removed.near-duplicate")
        self.undecided = counter("dedup.undecided")

    def process(self, element: tuple[str, dict[str, list]], example_ids: list[str]) -> Iterator[Any]:
        split, grouped = element
        decisions = {d["doc_id"]: d for d in grouped["decisions"]}
        wanted = set(example_ids)
        for path in grouped["shard"]:
            for _, doc in read_shard((split, path)):
                d = decisions.get(doc["id"])
                if d is None:
                    self.undecided.inc()
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
                row = schemas.removal_from_document(doc, STAGE, reason, detail)
                yield beam.pvalue.TaggedOutput("ledger", (split, row))


AUDIT = ("clusters", "no_survivor", "two_survivors", "survivor_not_cluster_id")


class AuditClustersFn(beam.DoFn):
    """``(cluster_id, (kept rows, kept rows whose doc_id is the cluster_id))`` -> audit counters.

    Runs on the cluster rows as written, so the asset check reads an audit of the output, computed
    per cluster across workers (no process holds the cluster table).
    """

    def __init__(self) -> None:
        self.counters = {name: counter(f"dedup.audit.{name}") for name in AUDIT}

    def process(self, element: tuple[str, tuple[int, int]]) -> None:
        _, (kept, named) = element
        self.counters["clusters"].inc()
        if kept == 0:
            self.counters["no_survivor"].inc()
        elif kept > 1:
            self.counters["two_survivors"].inc()
        if named != kept:
            self.counters["survivor_not_cluster_id"].inc()


class AuditClusters(beam.PTransform):
    """``(split, cluster row)`` -> the ``dedup.audit.*`` counters (see :class:`AuditClustersFn`)."""

    def expand(self, rows: beam.PCollection) -> beam.PCollection:
        def key(kv: tuple[str, dict]) -> tuple[str, tuple[int, int]]:
            row = kv[1]
            kept = int(bool(row["kept"]))
            return row["cluster_id"], (kept, kept * int(row["doc_id"] == row["cluster_id"]))

        return (
            rows
            | "ByCluster" >> beam.Map(key)
            | "Count" >> beam.CombinePerKey(beam.combiners.TupleCombineFn(sum, sum))
            | "Check" >> beam.ParDo(AuditClustersFn())
        )


def audit_stats(counters: dict[str, int]) -> dict[str, int]:
    """The cluster audit from a run's counters (zeros for checks that never fired)."""
    return {name: int(counters.get(f"dedup.audit.{name}", 0)) for name in AUDIT}


def _write_json(obj: Any, path: str) -> None:
    storage.atomic_write_json(path, obj)


def build_dedup(
    pipeline: beam.Pipeline, splits: list[tuple[str, str]], cfg: CorpusforgeConfig, out_dir: str
) -> None:
    shards = pipeline | "Shards" >> beam.Create(splits)
    docs = (
        shards
        | "Distribute" >> beam.Reshuffle()
        | "Read" >> beam.FlatMap(read_shard, columns=["id", "text", "quality"])
    )
    decisions = docs | "AsInput" >> beam.Map(_as_input) | "Decide" >> DedupDecisions(cfg.dedup)
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
    histogram = (
        sizes
        | "SizeOnes" >> beam.Map(lambda kv: (kv[1], 1))
        | "Histogram" >> beam.CombinePerKey(sum)
        | "HistogramDict" >> beam.combiners.ToDict()
    )
    _ = histogram | "WriteHistogram" >> beam.Map(
        lambda h: _write_json({str(k): v for k, v in sorted(h.items())}, f"{out_dir}/cluster_sizes.json")
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
            "documents", "ledger", "clusters", "examples"
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
    _ = outputs.clusters | "AuditClusters" >> AuditClusters()
    _ = (
        outputs.examples
        | "ExampleCluster" >> beam.Map(lambda d: (d["cluster_id"], d))
        # bounded however large the cluster: survivor first, then the smallest removed ids
        | "ExampleMembers"
        >> beam.combiners.Top.PerKey(
            EXAMPLE_MEMBERS, key=lambda d: (not d["kept"], d["doc_id"]), reverse=True
        )
        | "Examples" >> beam.combiners.ToList()
        | "WriteExamples"
        >> beam.Map(
            lambda groups: _write_json(
                [d for _, members in sorted(groups, key=lambda g: g[0]) for d in members],
                f"{out_dir}/examples.json",
            )
        )
    )


def cc_rounds(counters: dict[str, int], max_rounds: int) -> tuple[int, bool]:
    """(rounds that changed edges, converged) from the connected-components counters."""
    for i in range(max_rounds):
        if counters.get(f"{CC_NAMESPACE}:round_{i:02d}_changed", 0) == 0:
            return i, True
    return max_rounds, False


def _finalize(
    version: storage.StageVersion,
    counters: dict[str, int],
    entries: dict,
    up_docs: dict,
    cfg: CorpusforgeConfig,
) -> dict:
    from pipelines.reports import stage_stats

    def read(name: str, default: Any) -> Any:
        p = version.path / name
        return json.loads(p.read_text()) if p.exists() else default

    stats = stage_stats(entries, up_docs)
    histogram = {int(k): v for k, v in read("cluster_sizes.json", {}).items()}
    rounds, converged = cc_rounds(counters, cfg.dedup.max_cc_rounds)
    params = lsh_params(cfg.dedup.threshold, cfg.dedup.num_perm, cfg.dedup.fp_weight, cfg.dedup.fn_weight)
    stats.update(
        clusters=sum(histogram.values()),
        duplicate_clusters=sum(v for k, v in histogram.items() if k > 1),
        cluster_size_histogram=histogram,
        removed_fraction=(stats["removed"] / stats["documents_in"]) if stats["documents_in"] else 0.0,
        cc_rounds=rounds,
        cc_converged=converged,
        undecided=counters.get("dedup.undecided", 0),
        audit=audit_stats(counters),
    )
    return {"stats": stats, "lsh": to_dict(params), "examples": read("examples.json", [])}


def run(cfg: CorpusforgeConfig, options: Any, *, reuse: bool = False) -> Any:
    """Deduplicate the committed ``clean`` stage into a new ``dedup`` version."""
    return run_downstream_stage(
        cfg,
        stage=STAGE,
        upstream_stage=UPSTREAM,
        asset_hint="clean_documents",
        section={"dedup": to_dict(cfg.dedup)},
        build=lambda p, splits, v: build_dedup(p, splits, cfg, str(v.path)),
        finalize=lambda v, counters, entries, up_docs: _finalize(v, counters, entries, up_docs, cfg),
        options=options,
        reuse=reuse,
        kinds=("documents", "ledger", "clusters"),
    )
