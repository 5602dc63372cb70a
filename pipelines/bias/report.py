"""Bias report job (stage ``bias_report``): representation statistics and the filter disparity table.

One Beam pipeline that reads committed shards (never the driver) and writes the report document
(``report_doc.assemble_report``) as the statistic ``report`` (``_stats/report.json``, see
``beam_stage.WriteStat``) of a new ``bias_report`` version (same CURRENT / ``_SUCCESS`` protocol as every
stage, no shards). One task per document shard of every version read (:class:`ShardTask`) returns
a small partial result:

* **Representation** of the bias stage's input (``dedup``) and output (``filtered``): pronoun and
  gendered-noun counts, documents per identity axis, and co-occurrence of identity terms with flagged
  terms in one line (summed count dicts).
* **Filter disparity** (Dodge et al. 2021) of the cleaning, dedup and bias stages: for stage S with
  upstream U, every document of a U shard (identity axes from its ``identity.*`` signals when
  present, else from its text) is joined by document id with the ledger rows S wrote for that shard's
  split (S's split keys are U's shard names, so the join stays inside one split: no shuffle), reason
  None when S kept it (``disparity`` accumulators).

Partials are written under ``<version>/partials/<key>.json``, the key covering the checksums read,
the code and the lexicons; an incremental run re-uses the partials of shards an earlier report read
(shards carried from version to version keep their checksums), so a new batch costs what it adds.

Versions follow the lineage of the newest stage: the current ``filtered`` version, the ``dedup``
version it was computed from, the ``clean`` version that one names, and so on; when ``filtered`` is
missing the walk starts at the current ``dedup`` (then ``clean``). A stage or upstream version that is
missing (never materialized, pruned) is skipped with a note in the report, never an error.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import apache_beam as beam

from pipelines import fs, storage
from pipelines.beam_stage import STATS_DIR, WriteStat, for_input_size, read_stat, run_stage, shard_key
from pipelines.bias.disparity import (
    accumulator_from_json,
    accumulator_to_json,
    add_document,
    disparity_rows,
    merge_accumulators,
    new_accumulator,
)
from pipelines.bias.lexicon import AXES, data_version, has_cjk
from pipelines.bias.report_doc import assemble_report
from pipelines.bias.representation import (
    axes_from_signals,
    count_representation,
    mentioned_axes,
    merge_counts,
)
from pipelines.config import fingerprint
from pipelines.stage import StageJob, StageResult

REPORT_STAT = "report"
PARTIALS = "partials"  # per-shard partial results under the version directory (the next run's cache)
REPORT_FILE = f"{STATS_DIR}/{REPORT_STAT}.json"  # relative to the version directory
# A lineage is the curation chain newest first: (stage, its upstream stage or None, whether its
# filter disparity is measured); the report job gets it, and the representation stages, as params.
Lineage = tuple[tuple[str, str | None, bool], ...]
DOC_COLUMNS = ["id", "text", "lang", "signals"]


@dataclass
class ReportPlan:
    """Which committed versions the report reads, and notes on what it skips."""

    versions: dict[str, storage.StageVersion] = field(default_factory=dict)  # stage -> version
    disparity: dict[str, str] = field(default_factory=dict)  # measured stage -> its upstream stage
    representation: dict[str, str] = field(default_factory=dict)  # label -> stage
    notes: list[str] = field(default_factory=list)

    @property
    def inputs(self) -> dict[str, str]:
        return {stage: v.name for stage, v in sorted(self.versions.items())}


def _complete(data_dir: str, stage: str, name: str) -> storage.StageVersion | None:
    version = storage.StageVersion(storage.stage_root(data_dir, stage), name)
    return version if (version.path / storage.SUCCESS).is_file() else None


def plan_report(data_dir: str, lineage: Lineage, representation: tuple[tuple[str, str], ...]) -> ReportPlan:
    """Walk ``lineage`` from the newest committed curation stage (see the module docstring);
    ``representation`` is ``(label, stage)`` pairs, e.g. the bias stage's input and output."""
    plan = ReportPlan()
    child: tuple[str, storage.StageVersion] | None = None  # newest stage found so far and its version
    for stage, upstream, measured in lineage:
        version: storage.StageVersion | None = None
        if child is None:
            try:
                version = storage.current_version(data_dir, stage)
            except storage.StageNotFoundError:
                plan.notes.append(f"{stage}: not materialized; skipped")
        else:
            child_stage, child_version = child
            name = child_version.manifest().get("upstream", {}).get(stage)
            version = _complete(data_dir, stage, name) if name else None
            if version is None:
                why = f"version {name} is missing (pruned?)" if name else "no version recorded"
                plan.notes.append(
                    f"{stage}: {why} as the upstream of {child_stage} {child_version.name}; skipped"
                )
                child = None
                try:  # measure the rest of the chain from the current version
                    version = storage.current_version(data_dir, stage)
                    plan.notes.append(f"{stage}: using the current version {version.name} instead")
                except storage.StageNotFoundError:
                    version = None
        if version is None:
            continue
        plan.versions[stage] = version
        if measured and upstream is not None:
            plan.disparity[stage] = upstream  # confirmed below once the upstream is resolved
        child = (stage, version)
    for stage, upstream in list(plan.disparity.items()):
        up_name = plan.versions[stage].manifest().get("upstream", {}).get(upstream)
        up = plan.versions.get(upstream)
        if up is None or up.name != up_name:
            del plan.disparity[stage]
            plan.notes.append(
                f"disparity of {stage}: its {upstream} input {up_name or '(none)'} is not available"
            )
    for label, stage in representation:
        if stage in plan.versions:
            plan.representation[label] = stage
        else:
            plan.notes.append(f"representation {label} ({stage}): not available")
    return plan


# --------------------------------------------------------------------------------------------------
# per-shard tasks: each reads one upstream shard (and, for a disparity, the measured stage's ledger
# shards of the same split) and returns small partial results, cached by the checksums it read


def scan_document(
    doc: Mapping[str, Any], counts: bool, axes: bool
) -> tuple[dict[str, int] | None, tuple[str, ...] | None]:
    """Representation counts and identity axes of one document, each only when asked for."""
    text, lang = doc["text"], doc.get("lang")
    if lang in (None, "", "und") and has_cjk(text):  # raw documents carry no language yet
        lang = "zh"
    found = count_representation(text, lang) if counts else None
    if not axes:
        return found, None
    signals = doc.get("signals") or {}
    if any(key.startswith("identity.") for key in signals):
        mentioned = axes_from_signals(signals)
    elif found is not None:
        mentioned = frozenset(a for a in AXES if found[f"docs.axis.{a}"])
    else:
        mentioned = mentioned_axes(text, lang)
    return found, tuple(sorted(mentioned))


@dataclass(frozen=True)
class ShardTask:
    """One shard of a version the report reads: its representation counts (``label``) and/or its
    documents joined with the ledger rows that ``measured`` wrote for the same split."""

    stage: str
    path: str
    sha256: str
    label: str | None = None  # representation label
    measured: str | None = None  # the stage whose filter disparity this shard's documents feed
    ledgers: tuple[tuple[str, str], ...] = ()  # (path, sha256) of the measured stage's ledger shards
    bytes: int = 0  # text bytes of the shard (not part of the identity)

    @property
    def key(self) -> str:
        """Identity of the partial result: what was read, what was asked, and the code and lexicons."""
        return fingerprint(
            "bias_report_shard",
            self.stage,
            self.sha256,
            self.label,
            self.measured,
            [s for _, s in self.ledgers],
            data_version(),
        )


def run_shard_task(task: ShardTask, cached: Mapping[str, str], out_dir: str) -> dict[str, Any]:
    """The partial of ``task``: read from an earlier version when ``cached`` has it (a shard that did
    not change), else computed and written to ``<out_dir>/partials/<key>.json``."""
    key = task.key
    if key in cached:
        return json.loads(fs.path(f"{cached[key]}/{key}.json").read_bytes())
    reasons: dict[str, list[str]] = {}
    for path, _ in task.ledgers:
        for row in storage.iter_rows(path, columns=["doc_id", "reason"]):
            if row.get("doc_id") is not None:
                reasons.setdefault(row["doc_id"], []).append(row["reason"])
    counts: dict[str, int] = {}
    acc = new_accumulator()
    matched = 0
    for doc in storage.iter_rows(task.path, columns=DOC_COLUMNS):
        found, axes = scan_document(doc, task.label is not None, task.measured is not None)
        for k, v in (found or {}).items():
            counts[k] = counts.get(k, 0) + v
        if task.measured is not None:
            rs = sorted(reasons.pop(doc["id"], []))
            matched += len(rs)
            add_document(acc, task.measured, axes or (), rs[0] if rs else None)
    partial = {
        "key": key,
        "label": task.label,
        "measured": task.measured,
        "counts": counts,
        "disparity": accumulator_to_json(acc),
        "matched": matched,  # ledger rows joined to a document of this shard
    }
    storage.atomic_write_json(f"{out_dir}/{PARTIALS}/{key}.json", partial)
    return partial


def _split_of(shard: Mapping[str, Any]) -> str:
    """The split a shard was written for (its ``split``, else from its name ``part-<split>-<k>``)."""
    if shard.get("split"):
        return str(shard["split"])
    return str(shard["path"]).removeprefix("part-").removesuffix(".parquet").rsplit("-", 1)[0]


def report_tasks(plan: ReportPlan) -> list[ShardTask]:
    """One task per document shard of every version the report reads (in a stable order)."""
    rep_labels = {stage: label for label, stage in plan.representation.items()}
    measured_by = {upstream: stage for stage, upstream in plan.disparity.items()}
    tasks = []
    for stage, version in sorted(plan.versions.items()):
        label, measured = rep_labels.get(stage), measured_by.get(stage)
        if label is None and measured is None:
            continue
        shards = (version.manifest().get("documents") or {}).get("shards", [])
        ledgers: dict[str, list[tuple[str, str]]] = {}
        if measured is not None:
            child = plan.versions[measured]
            for shard in (child.manifest().get("ledger") or {}).get("shards", []):
                path = str(child.shard_path("ledger", shard))
                ledgers.setdefault(_split_of(shard), []).append((path, shard["sha256"]))
        everything: tuple[tuple[str, str], ...] | None = None
        if set(ledgers) - {shard_key(s) for s in shards}:  # not split like its upstream: join globally
            everything = tuple(x for paths in ledgers.values() for x in paths)
        for shard in shards:
            key = shard_key(shard)
            tasks.append(
                ShardTask(
                    stage,
                    str(version.shard_path("documents", shard)),
                    shard["sha256"],
                    label,
                    measured,
                    everything if everything is not None else tuple(ledgers.get(key, ())),
                    int(shard.get("bytes") or 0),
                )
            )
    return tasks


def fold_partials(partials: list[dict[str, Any]], plan: ReportPlan) -> dict[str, Any]:
    """The report's keyed parts (``assemble_report``) from the tasks' partial results."""
    parts: dict[str, Any] = {"notes": plan.notes}
    for label in plan.representation:
        merged: dict[str, int] = {}
        for p in partials:
            if p["label"] == label:
                merged = merge_counts(merged, p["counts"])
        parts[f"representation.{label}"] = dict(sorted(merged.items()))
    if plan.disparity:
        accs = [accumulator_from_json(p["disparity"]) for p in partials if p["measured"]]
        parts["disparity"] = disparity_rows(merge_accumulators(*accs))
        unmatched: dict[str, int] = {}
        for stage in sorted(plan.disparity):
            rows = int((plan.versions[stage].manifest().get("ledger") or {}).get("rows", 0))
            left = rows - sum(p["matched"] for p in partials if p["measured"] == stage)
            if left:
                unmatched[stage] = left
        parts["unmatched"] = unmatched
    return parts


def build_report(
    pipeline: beam.Pipeline,
    plan: ReportPlan,
    out_dir: str,
    cached: Mapping[str, str] | None = None,
    tasks: list[ShardTask] | None = None,
) -> None:
    """The report pipeline: one task per shard read (``tasks``, default ``report_tasks(plan)``;
    ``cached``: partial key -> the directory of an earlier version holding it), the folded parts, and
    the ``report`` statistic of ``out_dir``."""
    static = {
        "lexicon_version": data_version(),
        "inputs": plan.inputs,
        "notes": plan.notes,
        "representation_stages": dict(plan.representation),
        "disparity_stages": {
            stage: {
                "upstream": up,
                "version": plan.versions[stage].name,
                "upstream_version": plan.versions[up].name,
            }
            for stage, up in sorted(plan.disparity.items())
        },
    }
    known = dict(cached or {})
    _ = (
        pipeline
        | "Tasks" >> beam.Create([tasks if tasks is not None else report_tasks(plan)])
        | "Spread" >> beam.FlatMap(lambda tasks: tasks)
        | "Distribute" >> beam.Reshuffle()
        | "Shard" >> beam.Map(run_shard_task, known, out_dir)
        | "Partials" >> beam.combiners.ToList()
        | "Fold" >> beam.Map(fold_partials, plan)
        | "Assemble" >> beam.Map(assemble_report, static)
        | WriteStat(out_dir, REPORT_STAT)
    )


def run(job: StageJob) -> StageResult:
    """Measure the committed curation stages into a new version (``report.json``).

    ``job.params``: ``lineage`` (see :data:`Lineage`) and ``representation`` (label, stage) pairs.
    """
    data_dir = job.data_dir
    from pipelines import carry

    plan = plan_report(data_dir, job.params["lineage"], job.params["representation"])
    lexicons = data_version()
    fp = fingerprint(job.name, plan.inputs, lexicons)
    # Incremental: partials of shards an earlier report read are re-used (shards carried from version
    # to version keep their checksums), so a new batch costs the shards it added.
    carry_key = fingerprint(job.name, lexicons)
    prev = carry.previous(data_dir, job.name, carry_key) if job.cfg.output.incremental else None
    homes: dict[str, str] = dict((prev.manifest().get("partials") or {}) if prev is not None else {})
    tasks = report_tasks(plan)
    keys = [t.key for t in tasks]
    root = storage.stage_root(data_dir, job.name)
    cached = {k: f"{root}/{homes[k]}/{PARTIALS}" for k in keys if k in homes}

    def finalize(
        version: storage.StageVersion, counters: dict, entries: dict, split_stats: list
    ) -> dict[str, Any]:
        report = load_report(version)
        partials = {k: homes.get(k, version.name) if k in cached else version.name for k in keys}
        return {
            "partials": partials,
            "carry_key": carry_key,
            "carried_from": sorted({n for n in partials.values() if n != version.name}),
            "partials_reused": len(cached),
            "report_file": REPORT_FILE,
            "notes": report["notes"],
            "disparity_stages": sorted(report["disparity"]["stages"]),
            "disparity_rows": len(report["disparity"]["rows"]),
        }

    return run_stage(
        stage=job.name,
        data_dir=data_dir,
        fp=fp,
        config={"lexicon_version": lexicons},
        upstream=plan.inputs,
        output=job.cfg.output,
        build=lambda p, v, run: build_report(p, plan, str(v.path), cached, tasks),
        options=for_input_size(
            job.options, job.cfg.runner, sum(t.bytes for t in tasks if t.key not in cached)
        ),
        kinds=(),
        finalize=finalize,
        reuse=job.reuse,
    )


def load_report(version: storage.StageVersion) -> dict[str, Any]:
    """The report document of a ``bias_report`` version (its ``report`` statistic)."""
    report = read_stat(version, REPORT_STAT)
    if report is None:
        raise storage.StageNotFoundError(
            f"{version.path / REPORT_FILE} is missing: the bias report version is incomplete"
        )
    return report
