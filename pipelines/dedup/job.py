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

import dataclasses
import hashlib
import json
import time
from collections.abc import Iterable, Iterator, Mapping
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
INDEX = "index"  # under the version directory: the records of every chunk, kept (the sketch cache)
KINDS = ("documents", "ledger", "clusters")
TIMING = "timing"  # statistic: task-seconds per step (not deterministic, unlike every other output)
EDGES = "edges"  # under index/: this version's band edges, one file per partition (an edge segment)
CHUNKS_FILE = "chunks.json"  # under index/: the records name of every chunk, in corpus order
MAX_SEGMENTS = 8  # edge segments a delta merge may read; the next run merges in full


class FilterWork(SplitWork):
    """``(shard path, split index, example cluster ids)`` -> kept documents, ledger rows and cluster
    rows of one split; its record gets the split's count of documents in no component, the decisions
    it matched and its members of the example clusters.

    Incremental: a split whose shard and decisions are unchanged is carried; one whose removals are
    unchanged (only cluster rows differ, e.g. a survivor's kind when a later batch brings it a
    duplicate) re-uses its documents and ledger shards and re-writes only its cluster rows."""

    schemas = {"documents": schemas.DOCUMENTS, "ledger": schemas.LEDGER, "clusters": schemas.CLUSTERS}
    REUSABLE = ("documents", "ledger")  # kinds that depend only on the split's removals

    def __init__(
        self,
        plan: steps.Plan,
        inputs: Mapping[str, str] | None = None,
        previous: Mapping[str, Mapping[str, Any]] | None = None,
    ) -> None:
        self.plan = plan
        self.inputs = dict(inputs or {})  # split key -> upstream shard sha256
        self.previous = dict(
            previous or {}
        )  # split key -> the previous version's split (carry.split_entries)
        self._decided: tuple[int, dict[int, tuple[str, str, float]], str, str] | None = None
        self._clusters_only: int | None = None  # split index whose documents and ledger are re-used
        self.kept = counter("dedup.kept")
        self.exact = counter("dedup.removed.exact-duplicate")
        self.near = counter("dedup.removed.near-duplicate")

    def _decisions(self, index: int) -> tuple[dict[int, tuple[str, str, float]], str, str]:
        """The split's decisions, a digest of them and a digest of what its documents and ledger rows
        depend on: the removals (survivor, exact or near, similarity), not the kind of a kept document
        (read once per split)."""
        if self._decided is None or self._decided[0] != index:
            table = steps.split_decision_table(self.plan, index)
            decided = steps.decisions_by_row(table)
            digest = hashlib.sha256(json.dumps(sorted(decided.items())).encode()).hexdigest()[:32]
            t = table.to_pydict()
            removals = sorted(
                (row, cid, kind == "exact", sim)
                for row, doc, cid, kind, sim in zip(
                    t["row"], t["doc_id"], t["cluster_id"], t["kind"], t["similarity"], strict=True
                )
                if doc != cid or sim != 1.0
            )
            removed = hashlib.sha256(json.dumps(removals).encode()).hexdigest()[:32]
            self._decided = (index, decided, digest, removed)
        return self._decided[1], self._decided[2], self._decided[3]

    def identity(self, key: str, item: tuple[str, int, list[str]]) -> str | None:
        """Shard checksum, digest of the split's decisions, digest of its removals."""
        if key not in self.inputs:
            return None
        _, digest, removed = self._decisions(item[1])
        return f"{self.inputs[key]}:{digest}:{removed}"

    def carried(self, key: str, item: tuple[str, int, list[str]]) -> dict[str, Any] | None:
        earlier = self.previous.get(key)
        identity = self.identity(key, item)
        if earlier is None or identity is None or earlier["input"] != identity:
            return None
        return {"input": identity, "shards": earlier["shards"], "stats": earlier["stats"]}

    def reused(self, key: str, item: tuple[str, int, list[str]]) -> dict[str, list[dict[str, Any]]]:
        earlier = self.previous.get(key)
        identity = self.identity(key, item)
        self._clusters_only = None
        if earlier is None or identity is None:
            return {}
        sha, _, removed = identity.split(":")
        before = str(earlier["input"]).split(":")
        if len(before) != 3 or before[0] != sha or before[2] != removed:
            return {}
        self._clusters_only = item[1]
        return {kind: list(earlier["shards"].get(kind, [])) for kind in self.REUSABLE}

    def rows(
        self, item: tuple[str, int, list[str]], stats: dict[str, Any], **side: Any
    ) -> Iterator[tuple[str, dict]]:
        path, index, example_ids = item
        decided = self._decisions(index)[0]
        if self._clusters_only == index:
            yield from self._cluster_rows(path, decided, set(example_ids), stats)
            return
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

    def _cluster_rows(
        self,
        path: str,
        decided: Mapping[int, tuple[str, str, float]],
        wanted: set[str],
        stats: dict[str, Any],
    ) -> Iterator[tuple[str, dict]]:
        """Only the cluster rows of a split (its documents and ledger are re-used): reads the ids, and
        the text of the members of example clusters."""
        with storage.open_parquet(path) as pf:
            ids = pf.read(columns=["id"]).column("id").to_pylist()
            rows = [
                decision(i, *decided[r]) if r in decided else decision(i, i, "unique", 1.0)
                for r, i in enumerate(ids)
            ]
            chosen = [r for r, d in enumerate(rows) if d["cluster_id"] in wanted]
            extra = pf.read(columns=["text", "lang", "quality"]).take(chosen).to_pylist() if chosen else []
        for d in rows:
            yield "clusters", d
        examples = [
            {**rows[r], "text": e["text"][:EXAMPLE_CHARS], "lang": e["lang"], "quality": e["quality"]}
            for r, e in zip(chosen, extra, strict=True)
        ]
        matched = sum(1 for r in range(len(ids)) if r in decided)
        stats.update(alone=len(ids) - matched, decisions_matched=matched, examples=example_members(examples))


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
        | name >> beam.Map(_timed(completion.resumable(fn, plan.work, name), name.lower()), plan)
        | f"{name}Stats" >> beam.combiners.ToList()
        | f"Combine{name}Stats" >> beam.Map(steps.merge_stats)
    )


def _timed(fn: Any, step: str) -> Any:
    """``fn`` whose statistics also hold its run time as ``<step>_seconds`` (task-seconds once summed)."""

    def run(task: Any, plan: steps.Plan) -> dict[str, Any]:
        start = time.perf_counter()
        stats = fn(task, plan)
        return {**stats, f"{step}_seconds": time.perf_counter() - start}

    return run


def build_dedup(
    pipeline: beam.Pipeline,
    plan: steps.Plan,
    splits: list[tuple[str, str]],
    cfg: CorpusforgeConfig,
    out_dir: str,
    attempt: str,
    work: FilterWork | None = None,
) -> None:
    """The whole job (see the module docstring); statistic ``dedup`` of the steps, and per split its
    completion record (``FilterWork``)."""
    start = pipeline | "Start" >> beam.Create([{}])
    sketched = _step(start, "Sketch", lambda _: plan.chunks, steps.sketch_chunk, plan)
    merged = _step(sketched, "Merge", lambda _: range(len(plan.merge_groups())), steps.merge_group, plan)
    comps = _step(merged, "Components", lambda _: [0], _components, plan)
    decided = _step(comps, "Decide", lambda _: range(plan.member_parts), steps.decide_partition, plan)

    def split_tasks(stats: dict[str, Any]) -> list[tuple[str, tuple[str, int, list[str]]]]:
        examples = sorted(cid for _, cid in stats.get("largest_clusters", []))
        return [(key, (path, i, examples)) for i, (key, path) in enumerate(splits)]

    _ = (
        decided
        | "SplitTasks" >> beam.FlatMap(split_tasks)
        | "DistributeSplits" >> beam.Reshuffle()
        | "Filter" >> beam.ParDo(ProcessSplitsFn(out_dir, work or FilterWork(plan), cfg.output, attempt))
    )
    merged_stats = (
        (sketched, merged, comps, decided)
        | "AllStats" >> beam.Flatten()
        | "StatsList" >> beam.combiners.ToList()
        | "MergeAll" >> beam.Map(steps.merge_stats)
    )
    # run times apart from the statistics, which are identical on every runner and worker count
    _ = merged_stats | "Results" >> beam.Map(_without_seconds) | WriteStat(out_dir, "dedup")
    _ = merged_stats | "Seconds" >> beam.Map(_seconds) | WriteStat(out_dir, TIMING)


def _without_seconds(stats: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in stats.items() if not k.endswith("_seconds")}


def _seconds(stats: dict[str, Any]) -> dict[str, float]:
    """Task-seconds per step (summed over the step's tasks)."""
    return {k[: -len("_seconds")]: round(v, 2) for k, v in sorted(stats.items()) if k.endswith("_seconds")}


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
        pairs_known=job.get("pairs_known", 0),  # delta merge: old pairs read from earlier edges
        components=job.get("components", 0),
        largest_component=job.get("largest_component_max", 0),
        sketches_reused=job.get("sketches_reused", 0),
        tasks_resumed=job.get("tasks_resumed", 0),
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
    seconds = read_stat(version, TIMING, {})
    return {"stats": stats, "lsh": to_dict(params), "examples": examples, "task_seconds": seconds}


def delta_plan(plan: steps.Plan, prev: storage.StageVersion | None) -> tuple[steps.Plan, list[str]]:
    """``plan`` set up for a delta merge over ``prev``'s edges, and the versions of the edge segments
    it reads (none for a full merge), when that gives a full merge's edges:
    ``prev``'s chunks are the first chunks of ``plan`` in the same order (the corpus only gained
    shards, which sort after the old ones), the band partitioning is the same, verification is on,
    and the chain of edge segments is shorter than ``MAX_SEGMENTS`` (else a full merge starts a new
    one)."""
    cfg = plan.cfg
    if prev is None or not (cfg.near and cfg.verify):
        return plan, []
    edges = prev.manifest().get("edges") or {}
    segments = list(edges.get("segments") or [])
    if not segments or edges.get("band_parts") != plan.band_parts or len(segments) >= MAX_SEGMENTS:
        return plan, []
    listing = fs.path(f"{prev.path}/{INDEX}/{CHUNKS_FILE}")
    if not listing.exists():
        return plan, []
    old = json.loads(listing.read_bytes())
    if plan.record_names()[: len(old)] != old:
        return plan, []
    root = str(prev.root)
    dirs = tuple(f"{root}/{name}/{INDEX}/{EDGES}" for name in segments)
    return dataclasses.replace(plan, old_chunks=len(old), segments=dirs), segments


def run(job: StageJob) -> StageResult:
    """Deduplicate the job's upstream (clean) documents into a new version (one Beam job).

    Incremental (``output.incremental`` and the current version made with the same config and code):
    the records of unchanged upstream shards are re-used (the sketch cache under ``index/``, text is
    not read again), the merge verifies only buckets with a new document on top of the earlier
    versions' edges when the corpus only gained shards (:func:`delta_plan`), components and decide
    run over the whole corpus, so the decisions are exactly those of a full run, and a split whose
    shard and decisions are both unchanged is carried, not re-written."""
    from pipelines import carry
    from pipelines.beam_stage import shard_checksums
    from pipelines.config import fingerprint

    cfg = job.cfg
    section = {job.name: to_dict(cfg.dedup)}
    carry_key = fingerprint(job.name, section)
    inputs = shard_checksums(job.upstream_version(0))
    prev = carry.previous(job.data_dir, job.name, carry_key) if cfg.output.incremental else None
    homes: dict[str, str] = {}  # shard sha256 -> the version whose index holds its records
    previous: dict[str, dict[str, Any]] = {}
    if prev is not None:
        homes = {
            sha: name
            for sha, name in (prev.manifest().get("sketches") or {}).items()
            if sha in inputs.values()
        }
        previous = carry.split_entries(prev, KINDS)
    state: dict[str, Any] = {}

    def build(p: beam.Pipeline, splits: list[tuple[str, str]], v: storage.StageVersion, run: Any) -> None:
        work = scratch_dir(str(v.path))
        fs.mkdirs(fs.path(work))
        root = str(v.root)
        cache = {sha: f"{root}/{name}/{INDEX}" for sha, name in homes.items()}
        plan = steps.make_plan(
            splits, cfg.dedup, work, records_dir=f"{v.path}/{INDEX}", inputs=inputs, cache=cache
        )
        plan, segments = delta_plan(dataclasses.replace(plan, edges=f"{v.path}/{INDEX}/{EDGES}"), prev)
        storage.atomic_write_json(fs.path(f"{v.path}/{INDEX}/{CHUNKS_FILE}"), plan.record_names())
        state["edges"] = {"segments": [*segments, v.name], "band_parts": plan.band_parts}
        state["sketches"] = {sha: homes.get(sha, v.name) for sha in sorted(set(inputs.values()))}
        work_fn = FilterWork(plan, inputs, previous)
        build_dedup(p, plan, splits, cfg, str(v.path), run.attempt, work_fn)

    def finalize(
        v: storage.StageVersion, counters: Any, entries: dict, up_docs: dict, split_stats: list
    ) -> dict:
        extra = _finalize(v, entries, up_docs, split_stats, cfg)
        sketches = state.get("sketches", {})
        edges = state.get("edges", {})
        extra["sketches"] = sketches
        extra["edges"] = edges
        extra["carry_key"] = carry_key
        homes = set(sketches.values()) | set(edges.get("segments", []))
        extra["carried_from"] = sorted(homes - {v.name})
        return extra

    return run_downstream_stage(
        job,
        section=section,
        build=build,
        finalize=finalize,
        kinds=KINDS,
        carry=False,  # decided per split in the workers (FilterWork.carried): decisions are global
    )
