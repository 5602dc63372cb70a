"""Deduplication stage: exact + MinHash LSH near duplicates of the ``clean`` stage, in one Beam job.

The steps of ``steps.py`` run as Beam steps over *task descriptors* (chunks, partition numbers,
splits); every step after the first starts from the combined statistics of the one before, so it
begins only when that one has finished. The data between steps travels in scratch files under
``<version>/_scratch`` (``spill.py``), never through the runner: no shuffle, grouped value or runner
buffer grows with the corpus, and the job runs unchanged on any runner whose workers can read the
version directory. The scratch files are removed before the version is committed. Every task and
split leaves a completion record, so a re-run after a failure resumes where the job stopped.

Outputs per split depend only on the split's documents and the global decisions, so shards are
identical for any number of workers, chunk size, partition count and runner. Statistics of the steps
(cluster size histogram, chain cuts, the cluster audit) come back as one combined element
(``beam_stage.WriteStat``), those of the splits (documents in no component, examples) in their
completion records; none is read from Beam counters.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from typing import Any

import apache_beam as beam

from pipelines import completion, fs, schemas, storage
from pipelines.beam_stage import (
    ProcessSplitsFn,
    SplitWork,
    WriteStat,
    counter,
    read_stat,
    run_downstream_stage,
)
from pipelines.config import CorpusforgeConfig, to_dict
from pipelines.dedup import steps
from pipelines.dedup.lsh import lsh_params
from pipelines.dedup.survivor import decision
from pipelines.stage import StageJob, StageResult

EXAMPLE_MEMBERS = 4  # the survivor and the first removed members by id, per example cluster
EXAMPLE_CHARS = 400
SCRATCH = "_scratch"  # under the version directory; removed before the commit


class FilterWork(SplitWork):
    """``(shard path, split index, example cluster ids)`` -> kept documents, ledger rows and cluster
    rows of one split; its record gets the split's count of documents in no component, the decisions
    it matched and its members of the example clusters."""

    schemas = {"documents": schemas.DOCUMENTS, "ledger": schemas.LEDGER, "clusters": schemas.CLUSTERS}

    def __init__(self, plan: steps.Plan) -> None:
        self.plan = plan
        self.kept = counter("dedup.kept")
        self.exact = counter("dedup.removed.exact-duplicate")
        self.near = counter("dedup.removed.near-duplicate")

    def rows(
        self, item: tuple[str, int, list[str]], stats: dict[str, Any], **side: Any
    ) -> Iterator[tuple[str, dict]]:
        path, index, example_ids = item
        decided = steps.split_decisions(self.plan, index)
        wanted = set(example_ids)
        examples: list[dict] = []
        alone = matched = 0
        for row, doc in enumerate(storage.iter_rows(path)):
            found = decided.get(row)
            matched += found is not None
            if found is None:
                alone += 1
                d = decision(doc["id"], doc["id"], "unique", 1.0)
            else:
                d = decision(doc["id"], *found)
            yield "clusters", d
            if d["cluster_id"] in wanted:
                example = {**d, "text": doc["text"][:EXAMPLE_CHARS], "lang": doc.get("lang")}
                examples.append({**example, "quality": doc.get("quality")})
            if d["kept"]:
                self.kept.inc()
                signals = dict(doc.get("signals") or {})
                signals["dedup.cluster_similarity"] = float(d["similarity"])
                yield "documents", {**doc, "signals": signals}
                continue
            reason = "exact-duplicate" if d["kind"] == "exact" else "near-duplicate"
            (self.exact if reason == "exact-duplicate" else self.near).inc()
            detail = f"duplicate of {d['cluster_id']} (estimated Jaccard {d['similarity']:.3f})"
            yield "ledger", schemas.removal_from_document(doc, reason, detail)
        stats.update(alone=alone, decisions_matched=matched, examples=example_members(examples))


def example_members(members: Iterable[dict]) -> list[dict]:
    """Per example cluster (in id order), the survivor and the smallest removed ids: at most
    ``EXAMPLE_MEMBERS`` each, however large the cluster or however many splits it spans."""
    clusters: dict[str, list[dict]] = {}
    for d in members:
        clusters.setdefault(d["cluster_id"], []).append(d)
    out = []
    for cid in sorted(clusters):
        out += sorted(clusters[cid], key=lambda d: (not d["kept"], d["doc_id"]))[:EXAMPLE_MEMBERS]
    return out


def scratch_dir(version_dir: str) -> str:
    return f"{version_dir}/{SCRATCH}"


def _step(pcoll: beam.PCollection, name: str, tasks: Any, fn: Any, plan: steps.Plan) -> beam.PCollection:
    """Run ``fn(task, plan)`` for every task of ``tasks(stats of the previous step)``, spread over the
    workers; returns the step's statistics, combined into one dict. A task that finished in an earlier,
    failed run of the same version is not run again (its completion record holds its statistics)."""
    return (
        pcoll
        | f"{name}Tasks" >> beam.FlatMap(lambda previous: tasks(previous))
        | f"Distribute{name}" >> beam.Reshuffle()
        | name >> beam.Map(completion.resumable(fn, plan.work, name), plan)
        | f"{name}Stats" >> beam.combiners.ToList()
        | f"Combine{name}Stats" >> beam.Map(steps.merge_stats)
    )


def build_dedup(
    pipeline: beam.Pipeline,
    plan: steps.Plan,
    splits: list[tuple[str, str]],
    cfg: CorpusforgeConfig,
    out_dir: str,
    attempt: str,
) -> None:
    """The whole job (see the module docstring); statistic ``dedup`` of the steps, and per split its
    completion record (``FilterWork``)."""
    start = pipeline | "Start" >> beam.Create([{}])
    sketched = _step(start, "Sketch", lambda _: plan.chunks, steps.sketch_chunk, plan)
    merged = _step(sketched, "Merge", lambda _: plan.merge_tasks(), steps.merge_partition, plan)
    comps = _step(merged, "Components", lambda _: [0], _components, plan)
    decided = _step(comps, "Decide", lambda _: range(plan.member_parts), steps.decide_partition, plan)

    def split_tasks(stats: dict[str, Any]) -> list[tuple[str, tuple[str, int, list[str]]]]:
        examples = sorted(cid for _, cid in stats.get("largest_clusters", []))
        return [(key, (path, i, examples)) for i, (key, path) in enumerate(splits)]

    _ = (
        decided
        | "SplitTasks" >> beam.FlatMap(split_tasks)
        | "DistributeSplits" >> beam.Reshuffle()
        | "Filter" >> beam.ParDo(ProcessSplitsFn(out_dir, FilterWork(plan), cfg.output, attempt))
    )
    _ = (
        (sketched, merged, comps, decided)
        | "AllStats" >> beam.Flatten()
        | "StatsList" >> beam.combiners.ToList()
        | "MergeAll" >> beam.Map(steps.merge_stats)
        | WriteStat(out_dir, "dedup")
    )


def _components(_: int, plan: steps.Plan) -> dict[str, int]:
    return steps.components(plan)


def _finalize(
    version: storage.StageVersion, entries: dict, up_docs: dict, split_stats: list, cfg: CorpusforgeConfig
) -> dict:
    """Manifest entries from the shards and the job's statistics (Beam counters are not used); the
    scratch tables are removed here, before the commit."""
    from pipelines.reports import stage_stats

    fs.rmtree(fs.path(scratch_dir(str(version.path))))
    stats = stage_stats(entries, up_docs)
    job = steps.merge_stats(
        [read_stat(version, "dedup", {})]
        + [{k: s[k] for k in ("alone", "decisions_matched")} for s in split_stats]
    )
    histogram = {int(k): v for k, v in job.get("cluster_size_histogram", {}).items()}
    alone = int(job.get("alone", 0))
    histogram[1] = histogram.get(1, 0) + alone
    histogram = dict(sorted((k, v) for k, v in histogram.items() if v))
    params = lsh_params(cfg.dedup.threshold, cfg.dedup.num_perm, cfg.dedup.fp_weight, cfg.dedup.fn_weight)
    stats.update(
        clusters=sum(histogram.values()),
        duplicate_clusters=sum(v for k, v in histogram.items() if k > 1),
        cluster_size_histogram=histogram,
        removed_fraction=(stats["removed"] / stats["documents_in"]) if stats["documents_in"] else 0.0,
        candidate_pairs=job.get("candidate_pairs", 0),
        verified_pairs=job.get("verified_pairs", 0),
        components=job.get("components", 0),
        largest_component=job.get("largest_component_max", 0),
        chains={
            "split_components": job.get("split_components", 0),
            "cut_members": job.get("cut_members", 0),
            "unresolved": job.get("unresolved", 0),
            "survivor_comparisons": job.get("survivor_comparisons", 0),
        },
        audit={
            "clusters": int(job.get("audit_clusters", 0)) + alone,
            "no_survivor": int(job.get("audit_no_survivor", 0)),
            "two_survivors": int(job.get("audit_two_survivors", 0)),
            # decisions written for component members but not found by their split's row
            "unmatched_decisions": int(job.get("component_documents", 0))
            - int(job.get("decisions_matched", 0)),
        },
    )
    examples = example_members(d for s in split_stats for d in s["examples"])
    return {"stats": stats, "lsh": to_dict(params), "examples": examples}


def run(job: StageJob) -> StageResult:
    """Deduplicate the job's upstream (clean) documents into a new version (one Beam job)."""
    cfg = job.cfg

    def build(p: beam.Pipeline, splits: list[tuple[str, str]], v: storage.StageVersion, run: Any) -> None:
        work = scratch_dir(str(v.path))
        fs.mkdirs(fs.path(work))
        plan = steps.make_plan(splits, cfg.dedup, work)
        build_dedup(p, plan, splits, cfg, str(v.path), run.attempt)

    return run_downstream_stage(
        job,
        section={job.name: to_dict(cfg.dedup)},
        build=build,
        finalize=lambda v, counters, entries, up_docs, split_stats: _finalize(
            v, entries, up_docs, split_stats, cfg
        ),
        kinds=("documents", "ledger", "clusters"),
        carry=False,  # a split's decisions depend on every other split
    )
