"""Bias report job (stage ``bias_report``): representation statistics and the filter disparity table.

One Beam pipeline that reads committed shards (never the driver) and writes the report document
(``report_doc.assemble_report``) as the statistic ``report`` (``_stats/report.json``, see
``beam_stage.WriteStat``) of a new ``bias_report`` version (same CURRENT / ``_SUCCESS`` protocol as every
stage, no shards):

* **Representation** (``RepresentationCombineFn``) of the bias stage's input (``dedup``) and output
  (``filtered``): pronoun and gendered-noun counts, documents per identity axis, and co-occurrence of
  identity terms with flagged terms in one line.
* **Filter disparity** (``DisparityCombineFn``, Dodge et al. 2021) of the cleaning, dedup and bias
  stages: for stage S with upstream U, every document of U (identity axes from its ``identity.*``
  signals when present, else from its text) is joined by document id (``CoGroupByKey``; values are
  small) with S's ledger reason, None when S kept it.

Versions follow the lineage of the newest stage: the current ``filtered`` version, the ``dedup``
version it was computed from, the ``clean`` version that one names, and so on; when ``filtered`` is
missing the walk starts at the current ``dedup`` (then ``clean``). A stage or upstream version that is
missing (never materialized, pruned) is skipped with a note in the report, never an error.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any

import apache_beam as beam

from pipelines import storage
from pipelines.beam_stage import STATS_DIR, WriteStat, read_shard, read_stat, run_stage, shard_splits
from pipelines.bias.beam_combiners import DisparityCombineFn, RepresentationCombineFn
from pipelines.bias.lexicon import AXES, data_version, has_cjk
from pipelines.bias.report_doc import assemble_report
from pipelines.bias.representation import axes_from_signals, count_representation, mentioned_axes
from pipelines.config import fingerprint
from pipelines.stage import StageJob, StageResult

REPORT_STAT = "report"
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
# per-document transforms


class ScanDocumentsFn(beam.DoFn):
    """``(split, document)`` -> tagged ``counts`` (representation counts) and ``axes``
    (``(doc_id, sorted axes)``), each only when asked for."""

    def __init__(self, counts: bool, axes: bool) -> None:
        self.counts = counts
        self.axes = axes

    def process(self, element: tuple[str, Mapping[str, Any]]) -> Iterator[Any]:
        _, doc = element
        text, lang = doc["text"], doc.get("lang")
        if lang in (None, "", "und") and has_cjk(text):  # raw documents carry no language yet
            lang = "zh"
        counts = count_representation(text, lang) if self.counts else None
        if counts is not None:
            yield beam.pvalue.TaggedOutput("counts", counts)
        if self.axes:
            signals = doc.get("signals") or {}
            if any(key.startswith("identity.") for key in signals):
                axes = axes_from_signals(signals)
            elif counts is not None:
                axes = frozenset(a for a in AXES if counts[f"docs.axis.{a}"])
            else:
                axes = mentioned_axes(text, lang)
            yield beam.pvalue.TaggedOutput("axes", (doc["id"], tuple(sorted(axes))))


def ledger_reasons(element: tuple[str, Mapping[str, Any]]) -> Iterator[tuple[str, str]]:
    """``(doc_id, reason)`` of one ledger row (rows without a document id are skipped)."""
    _, row = element
    if row.get("doc_id") is not None:
        yield row["doc_id"], row["reason"]


def join_records(element: tuple[str, Mapping[str, Any]], stage: str) -> Iterator[Any]:
    """CoGroupByKey result -> ``(stage, axes, reason or None)`` per upstream document; ledger rows
    without an upstream document go to the ``unmatched`` output."""
    _, groups = element
    axes_list = list(groups["axes"])
    reasons = sorted(groups["reason"])
    if not axes_list:
        for _ in reasons:
            yield beam.pvalue.TaggedOutput("unmatched", stage)
        return
    for axes in axes_list:
        yield stage, axes, (reasons[0] if reasons else None)


def build_report(pipeline: beam.Pipeline, plan: ReportPlan, out_dir: str) -> None:
    """The report pipeline: one read per needed version, combiners, and the ``report`` statistic of
    the version directory ``out_dir``."""
    # every result is a small (key, value) pair; the plan's notes make sure Flatten has an input
    parts = [pipeline | "Static" >> beam.Create([("notes", plan.notes)])]
    axes_by_stage: dict[str, Any] = {}
    needs_axes = {upstream: stage for stage, upstream in plan.disparity.items()}
    rep_labels = {stage: label for label, stage in plan.representation.items()}
    for stage, version in sorted(plan.versions.items()):
        want_counts, want_axes = stage in rep_labels, stage in needs_axes
        if not (want_counts or want_axes):
            continue
        scanned = (
            pipeline
            | f"Shards[{stage}]" >> beam.Create(shard_splits(version))
            | f"Read[{stage}]" >> beam.FlatMap(read_shard, columns=DOC_COLUMNS)
            | f"Scan[{stage}]"
            >> beam.ParDo(ScanDocumentsFn(want_counts, want_axes)).with_outputs("counts", "axes")
        )
        if want_counts:
            label = rep_labels[stage]
            parts.append(
                scanned.counts
                | f"Represent[{stage}]" >> beam.CombineGlobally(RepresentationCombineFn())
                | f"Key[{stage}]" >> beam.Map(lambda counts, key: (key, counts), f"representation.{label}")
            )
        if want_axes:
            axes_by_stage[needs_axes[stage]] = scanned.axes
    records = []
    unmatched = []
    for stage in sorted(plan.disparity):
        reasons = (
            pipeline
            | f"LedgerShards[{stage}]" >> beam.Create(shard_splits(plan.versions[stage], "ledger"))
            | f"ReadLedger[{stage}]" >> beam.FlatMap(read_shard, columns=["doc_id", "reason"])
            | f"Reasons[{stage}]" >> beam.FlatMap(ledger_reasons)
        )
        joined = (
            {"axes": axes_by_stage[stage], "reason": reasons}
            | f"Join[{stage}]" >> beam.CoGroupByKey()
            | f"Records[{stage}]"
            >> beam.FlatMap(join_records, stage).with_outputs("unmatched", main="records")
        )
        records.append(joined.records)
        unmatched.append(joined.unmatched)
    if records:
        parts.append(
            tuple(records)
            | "AllRecords" >> beam.Flatten()
            | "Disparity" >> beam.CombineGlobally(DisparityCombineFn())
            | "KeyDisparity" >> beam.Map(lambda rows: ("disparity", rows))
        )
        parts.append(
            tuple(unmatched)
            | "AllUnmatched" >> beam.Flatten()
            | "CountUnmatched" >> beam.combiners.Count.PerElement()
            | "UnmatchedDict" >> beam.combiners.ToDict()
            | "KeyUnmatched" >> beam.Map(lambda counts: ("unmatched", counts))
        )
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
    _ = (
        tuple(parts)
        | "AllParts" >> beam.Flatten()
        | "Parts" >> beam.combiners.ToDict()
        | "Assemble" >> beam.Map(assemble_report, static)
        | WriteStat(out_dir, REPORT_STAT)
    )


def run(job: StageJob) -> StageResult:
    """Measure the committed curation stages into a new version (``report.json``).

    ``job.params``: ``lineage`` (see :data:`Lineage`) and ``representation`` (label, stage) pairs.
    """
    data_dir = job.data_dir
    plan = plan_report(data_dir, job.params["lineage"], job.params["representation"])
    lexicons = data_version()
    fp = fingerprint(job.name, plan.inputs, lexicons)

    def finalize(
        version: storage.StageVersion, counters: dict, entries: dict, split_stats: list
    ) -> dict[str, Any]:
        report = load_report(version)
        return {
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
        build=lambda p, v, run: build_report(p, plan, str(v.path)),
        options=job.options,
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
