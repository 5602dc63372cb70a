"""Bias / toxicity stage: ``dedup`` -> ``filtered``.

Per document of the committed ``dedup`` stage, in this order:

1. **Source balancing** (only when ``bias.max_source_fraction`` < 1). A document's source is the
   ``bias.source_key`` field of its ``meta`` JSON when present, else the first path component of its
   ``source`` column (``books/a.txt`` -> ``books``). Per-source character totals of the input are summed
   in a side branch of the same pipeline (a small Combine, read as a side input), turned into keep
   probabilities by ``balance.plan_balance`` and applied with ``balance.keep_document`` (a hash of
   seed, source and id, so the choice does not depend on order or worker count). A dropped document
   goes to the ledger as ``balance:source-cap``. The plan uses input characters, before toxicity
   removals; gender-swapped copies (step 4) come on top of the cap.
2. **Toxicity**, one scan per document (``representation.analyze``, then ``toxicity.apply_policy``
   with its result): policy ``document`` drops documents scoring above ``doc_threshold``
   (``toxicity:document``); policy ``lines`` also drops lines weighing more than ``line_threshold`` and
   drops the document as ``toxicity:all-lines`` when no non-blank line is left.
3. **Signals** of kept documents: the ``toxicity.*`` signals plus ``identity.<axis>`` (1.0 / 0.0 for
   every axis, ``representation.axis_signals``) of the stored text, so later reports need no rescan.
4. **CDA** (only when ``bias.cda_fraction`` > 0): for a seeded, id-hashed fraction of the kept English
   documents, a gender-swapped copy with id ``<id>#cda``, tags ``cda:gender-swap`` and ``added:cda``
   (``added:`` tags make the stage statistics count it as an added document) and
   ``counterfactual_of`` in its meta. A document without any swappable word gets no copy.

Every document also adds a small statistics record to its split's ``BiasStatsCombineFn``
accumulator (score histogram, flagged and removed lines, flagged terms, per-source characters), kept
in the split's completion record; the driver merges them into the manifest's ``toxicity`` (and
``balance`` with the balancing plan, the statistic ``balance_plan``: ``beam_stage.WriteStat``).
"""

from __future__ import annotations

import json
from collections import Counter
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any

import apache_beam as beam

from pipelines import schemas, storage
from pipelines.beam_stage import (
    SplitWork,
    WriteStat,
    counter,
    process_splits,
    read_stat,
    run_downstream_stage,
    stat_path,
)
from pipelines.bias.balance import keep_document, plan_balance
from pipelines.bias.cda import CDA_TAG, counterfactual_id, gender_swap, select_for_cda
from pipelines.bias.lexicon import AXES, data_version, normalize_lang
from pipelines.bias.representation import analyze, axis_signals, mentioned_axes
from pipelines.bias.toxicity import apply_policy
from pipelines.config import BiasConfig, OutputConfig, to_dict
from pipelines.reports import stage_stats
from pipelines.stage import StageJob, StageResult

REASON_BALANCE = "balance:source-cap"
ADDED_TAG = "added:cda"
PLAN = "balance_plan"  # statistic name (beam_stage.WriteStat / read_stat)
# Upper edges of the toxicity score histogram (weighted flagged terms per 1,000 units); 0 has its own bin.
SCORE_EDGES = (0.5, 1.0, 2.0, 5.0, 10.0, 20.0, 50.0)
TOP_TERMS = 50


def document_source(doc: Mapping[str, Any], source_key: str = "source") -> str:
    """The balancing source of a document: ``meta[source_key]`` if set, else the first path component."""
    meta = doc.get("meta")
    if source_key and meta and f'"{source_key}"' in meta:
        try:
            value = json.loads(meta).get(source_key)
        except (ValueError, AttributeError):  # not JSON, or not a JSON object
            value = None
        if isinstance(value, str) and value.strip():
            return value.strip()
        if isinstance(value, int | float) and not isinstance(value, bool):
            return str(value)
    path = str(doc.get("source") or "").replace("\\", "/").strip("/")
    return path.split("/", 1)[0]


def score_bin(score: float) -> str:
    """Histogram label of a toxicity score: '0', '(0, 0.5]', ..., '> 50'."""
    if score <= 0.0:
        return "0"
    low = 0.0
    for edge in SCORE_EDGES:
        if score <= edge:
            return f"({low:g}, {edge:g}]"
        low = edge
    return f"> {SCORE_EDGES[-1]:g}"


def score_bins() -> list[str]:
    """Every histogram label, in order."""
    lows = (0.0, *SCORE_EDGES[:-1])
    return ["0", *(f"({lo:g}, {hi:g}]" for lo, hi in zip(lows, SCORE_EDGES, strict=True))] + [
        f"> {SCORE_EDGES[-1]:g}"
    ]


# --------------------------------------------------------------------------------------------------
# one document


@dataclass
class FilterOutcome:
    """What the stage did to one document: kept (maybe rewritten, maybe with a copy) or removed."""

    document: dict[str, Any] | None
    reason: str | None = None
    detail: str = ""
    counterfactual: dict[str, Any] | None = None
    record: dict[str, Any] = field(default_factory=dict)  # statistics for BiasStatsCombineFn


def counterfactual_document(doc: Mapping[str, Any]) -> dict[str, Any] | None:
    """The gender-swapped copy of a kept English document, or None when nothing would change."""
    swapped = gender_swap(doc["text"])
    if swapped == doc["text"]:
        return None
    try:
        meta = json.loads(doc["meta"]) if doc.get("meta") else {}
    except ValueError:
        meta = {"meta": doc["meta"]}
    if not isinstance(meta, dict):
        meta = {"meta": meta}
    meta["counterfactual_of"] = doc["id"]
    signals = {**(doc.get("signals") or {}), **axis_signals(mentioned_axes(swapped, doc.get("lang")))}
    return {
        **doc,
        "id": counterfactual_id(doc["id"]),
        "text": swapped,
        "meta": json.dumps(meta, ensure_ascii=False, sort_keys=True),
        "signals": signals,
        "tags": [*(doc.get("tags") or []), CDA_TAG, ADDED_TAG],
    }


def filter_document(
    doc: Mapping[str, Any], cfg: BiasConfig, keep_probabilities: Mapping[str, float] | None = None
) -> FilterOutcome:
    """Apply balancing (when ``keep_probabilities`` is given), the toxicity policy and CDA to one document."""
    text, lang = doc["text"], doc.get("lang")
    record: dict[str, Any] = {"chars_in": len(text)}
    if keep_probabilities is not None:
        source = record["source"] = document_source(doc, cfg.source_key)
        if not keep_document(doc["id"], source, keep_probabilities, cfg.seed):
            record["reason"] = REASON_BALANCE
            detail = (
                f"source {source!r} kept with probability {keep_probabilities.get(source, 1.0):.4f} "
                f"to cap its share of output characters at {cfg.max_source_fraction:g}"
            )
            return FilterOutcome(None, REASON_BALANCE, detail, record=record)
    tox, counts = analyze(text, lang)
    new_text, reason, detail, tox_signals = apply_policy(text, lang, cfg, result=tox)
    record.update(
        score=tox.score,
        flagged_lines=len(tox.lines),
        removed_lines=int(tox_signals.get("toxicity.removed_lines", 0)),
    )
    if tox.terms:
        record["terms"] = tox.terms
        record["categories"] = tox.categories
    if new_text is None:
        record["reason"] = reason
        return FilterOutcome(None, reason, detail, record=record)
    if new_text == text:
        axes = [axis for axis in AXES if counts[f"docs.axis.{axis}"]]
    else:  # lines were removed: the stored text may mention fewer axes
        axes = list(mentioned_axes(new_text, lang))
    out = {
        **doc,
        "text": new_text,
        "signals": {**(doc.get("signals") or {}), **tox_signals, **axis_signals(axes)},
    }
    record["chars_out"] = len(new_text)
    copy = None
    if (
        cfg.cda_fraction > 0
        and normalize_lang(lang) == "en"
        and select_for_cda(doc["id"], cfg.cda_fraction, cfg.seed)
    ):
        copy = counterfactual_document(out)
        if copy is not None:
            record["cda_chars"] = len(copy["text"])
    return FilterOutcome(out, None, detail, copy, record)


class BiasWork(SplitWork):
    """One upstream shard -> ``documents`` (kept and CDA copies) and ``ledger`` rows; the split's
    statistics accumulator (``BiasStatsCombineFn``) goes into its completion record as ``acc``.

    The optional side input ``plan`` is the balancing plan (``balance_plan``); without it nothing is
    down-sampled.
    """

    schemas = {"documents": schemas.DOCUMENTS, "ledger": schemas.LEDGER}

    def __init__(self, cfg: BiasConfig) -> None:
        self.cfg = cfg
        self.kept = counter("bias.kept")
        self.removed = counter("bias.removed")
        self.added = counter("bias.cda_added")

    def rows(
        self, item: str, stats: dict[str, Any], plan: Mapping[str, Any] | None = None, **side: Any
    ) -> Iterator[tuple[str, dict]]:
        probabilities = plan["probabilities"] if plan is not None else None
        combine = BiasStatsCombineFn()
        acc = combine.create_accumulator()
        for doc in storage.iter_rows(item):
            outcome = filter_document(doc, self.cfg, probabilities)
            if outcome.document is not None:
                self.kept.inc()
                yield "documents", outcome.document
                if outcome.counterfactual is not None:
                    self.added.inc()
                    yield "documents", outcome.counterfactual
            else:
                self.removed.inc()
                counter(f"bias.removed.{outcome.reason}").inc()
                yield (
                    "ledger",
                    schemas.removal_from_document(doc, outcome.reason or "unknown", outcome.detail),
                )
            acc = combine.add_input(acc, outcome.record)
        stats["acc"] = [[list(key), value] for key, value in acc.items()]


def combine_split_stats(split_stats: Iterable[Mapping[str, Any]]) -> dict[str, Any]:
    """The stage's toxicity / source report from the accumulators in the splits' records."""
    combine = BiasStatsCombineFn()
    accs = [{tuple(key): value for key, value in s["acc"]} for s in split_stats]
    return combine.extract_output(combine.merge_accumulators(accs))


# --------------------------------------------------------------------------------------------------
# statistics and balancing plan (small data)


class BiasStatsCombineFn(beam.CombineFn):
    """Sums the per-document records of ``filter_document`` into the stage's toxicity / source report.

    The accumulator maps tuple keys to numbers, so merging is a key-wise sum.
    """

    def create_accumulator(self) -> dict[tuple, float]:
        return {}

    def add_input(self, acc: dict[tuple, float], record: Mapping[str, Any]) -> dict[tuple, float]:
        def bump(key: tuple, n: float = 1) -> None:
            acc[key] = acc.get(key, 0) + n

        bump(("documents",))
        reason = record.get("reason")
        if reason:
            bump(("removed", reason))
        if "score" in record:
            bump(("scanned",))
            bump(("hist", score_bin(record["score"])))
            bump(("flagged_lines",), record["flagged_lines"])
            if record["removed_lines"]:
                bump(("removed_lines",), record["removed_lines"])
                bump(("docs_lines_removed",))
        for term, n in (record.get("terms") or {}).items():
            bump(("term", term), n)
        if record.get("terms"):
            bump(("flagged_docs",))
        for category, weight in (record.get("categories") or {}).items():
            bump(("category", category), weight)
        if "cda_chars" in record:
            bump(("cda_docs",))
            bump(("cda_chars",), record["cda_chars"])
        if "source" in record:
            source = record["source"]
            bump(("source_docs_in", source))
            bump(("source_chars_in", source), record["chars_in"])
            if "chars_out" in record:
                bump(("source_docs_out", source))
                bump(("source_chars_out", source), record["chars_out"])
        return acc

    def merge_accumulators(self, accumulators: Iterable[dict[tuple, float]]) -> dict[tuple, float]:
        out: dict[tuple, float] = {}
        for acc in accumulators:
            for key, n in acc.items():
                out[key] = out.get(key, 0) + n
        return out

    def extract_output(self, acc: dict[tuple, float]) -> dict[str, Any]:
        def get(*key: str) -> int:
            return int(acc.get(key, 0))

        def prefixed(name: str) -> dict[str, float]:
            return {k[1]: v for k, v in acc.items() if len(k) == 2 and k[0] == name}

        terms = sorted(prefixed("term").items(), key=lambda kv: (-kv[1], kv[0]))
        sources = {}
        for source in sorted(prefixed("source_docs_in")):
            sources[source] = {
                name: int(acc.get((f"source_{name}", source), 0))
                for name in ("docs_in", "chars_in", "docs_out", "chars_out")
            }
        return {
            "documents_in": get("documents"),
            "documents_scanned": get("scanned"),
            "documents_with_flagged_terms": get("flagged_docs"),
            "score_histogram": [{"score": label, "documents": get("hist", label)} for label in score_bins()],
            "flagged_lines": get("flagged_lines"),
            "lines_removed": get("removed_lines"),
            "documents_with_lines_removed": get("docs_lines_removed"),
            "removed": {k: int(v) for k, v in sorted(prefixed("removed").items())},
            "flagged_terms": {k: int(v) for k, v in terms[:TOP_TERMS]},
            "distinct_flagged_terms": len(terms),
            "categories": {k: round(v, 4) for k, v in sorted(prefixed("category").items())},
            "cda": {"documents": get("cda_docs"), "chars": get("cda_chars")},
            "sources": sources,
        }


def source_chars(element: tuple[str, str], source_key: str) -> Iterator[tuple[str, int]]:
    """FlatMap body: per-source character totals of one upstream shard."""
    _, path = element
    totals: Counter[str] = Counter()
    for row in storage.iter_rows(path, columns=["text", "source", "meta"]):
        totals[document_source(row, source_key)] += len(row["text"])
    yield from totals.items()


def balance_plan(char_totals: Mapping[str, int], max_fraction: float) -> dict[str, Any]:
    """``plan_balance`` as JSON-able data (the side input of ``BiasWork`` and the manifest's plan)."""
    plan = plan_balance(char_totals, max_fraction)
    return {
        "max_source_fraction": max_fraction,
        "char_totals": {s: int(c) for s, c in sorted(char_totals.items())},
        "probabilities": dict(sorted(plan.probabilities.items())),
        "expected_fractions": dict(sorted(plan.expected_fractions.items())),
        "cap_chars": plan.cap_chars,
        "feasible": plan.feasible,
    }


def balance_summary(plan: Mapping[str, Any], sources: Mapping[str, Mapping[str, int]]) -> dict[str, Any]:
    """The plan plus what it did: realised output shares (original documents, without CDA copies)."""
    total_out = sum(s["chars_out"] for s in sources.values())
    realised = {name: (s["chars_out"] / total_out if total_out else 0.0) for name, s in sources.items()}
    return {
        **plan,
        "sources": dict(sources),
        "realised_fractions": realised,
        "max_realised_fraction": max(realised.values(), default=0.0),
    }


# --------------------------------------------------------------------------------------------------
# pipeline and stage


def build_pipeline(
    pipeline: beam.Pipeline,
    splits: list[tuple[str, str]],
    cfg: BiasConfig,
    out_dir: str,
    output: OutputConfig,
    run: Any,
) -> Any:
    """``shards -> BiasWork -> documents + ledger shards`` and, when balancing, the per-source totals
    side branch (statistic ``balance_plan``, also the side input of every split)."""
    side: dict[str, Any] = {}
    if cfg.max_source_fraction < 1.0:
        plan = (
            pipeline
            | "SourceShards" >> beam.Create(splits)
            | "SourceChars" >> beam.FlatMap(source_chars, cfg.source_key)
            | "SumPerSource" >> beam.CombinePerKey(sum)
            | "Totals" >> beam.combiners.ToDict()
            | "Plan" >> beam.Map(balance_plan, cfg.max_source_fraction)
        )
        _ = plan | WriteStat(out_dir, PLAN)
        side["plan"] = beam.pvalue.AsSingleton(plan)
    return process_splits(pipeline, splits, out_dir, BiasWork(cfg), output, run=run, label="Filter", **side)


def _required_stat(version: storage.StageVersion, name: str) -> dict[str, Any]:
    value = read_stat(version, name)
    if value is None:
        raise RuntimeError(f"{stat_path(version.path, name)} was not written by the pipeline")
    return value


def run(job: StageJob) -> StageResult:
    """Filter the job's upstream (deduplicated) documents into a new version."""
    cfg = job.cfg
    lexicons = data_version()
    balancing = cfg.filtered.max_source_fraction < 1.0

    def finalize(
        version: storage.StageVersion, counters: dict, entries: dict, up_docs: dict, split_stats: list
    ) -> dict[str, Any]:
        toxicity = combine_split_stats(split_stats)
        sources = toxicity.pop("sources")
        extra: dict[str, Any] = {"stats": stage_stats(entries, up_docs), "toxicity": toxicity}
        extra["lexicon_version"] = lexicons
        if balancing:
            extra["balance"] = balance_summary(_required_stat(version, PLAN), sources)
        return extra

    return run_downstream_stage(
        job,
        section={job.name: to_dict(cfg.filtered)},
        build=lambda p, splits, v, run: build_pipeline(p, splits, cfg.filtered, str(v.path), cfg.output, run),
        finalize=finalize,
        fingerprint_extra=(lexicons,),
        config_extra={"lexicon_version": lexicons},
        carry=not balancing,  # the balancing plan depends on every split's source totals
    )
