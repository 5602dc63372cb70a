"""Cleaning stage: the Beam job around the cleaning engine (``pipelines.cleaning``).

The rules and their order come from ``clean.rules`` (default: normalize, langid, gopher_repetition,
gopher_quality, c4, fineweb, pii), plus user plug-ins declared in ``clean.plugins``; the first
failing rule removes a document, with its reason in the ledger. Every rule's measurements go into
``signals`` (annotate, then filter). With ``annotate_only`` all rules run on every document, nothing
is removed, and would-be removals become ``flag:<reason>`` tags. See docs/stages.md.
"""

from __future__ import annotations

import hashlib
import inspect
from collections.abc import Iterator
from typing import Any

from pipelines import schemas, storage
from pipelines.beam_stage import SplitWork, counter, process_splits, run_downstream_stage
from pipelines.cleaning.engine import CleaningEngine, CleanOutcome, clean_document
from pipelines.cleaning.plugins import load_object, plugin_spec
from pipelines.config import CleanConfig, to_dict
from pipelines.stage import StageJob, StageResult

__all__ = ["CleanWork", "CleanOutcome", "clean_document", "plugin_code_version", "run"]


class CleanWork(SplitWork):
    """One upstream shard -> cleaned ``documents`` and ``ledger`` (removal) rows.

    The rules (language model, plug-ins) are built once per worker, in ``setup``.
    """

    schemas = {"documents": schemas.DOCUMENTS, "ledger": schemas.LEDGER}

    def __init__(self, cfg: CleanConfig) -> None:
        self.cfg = cfg
        self.engine: CleaningEngine | None = None
        self.kept = counter("clean.kept")
        self.removed = counter("clean.removed")

    def setup(self) -> None:
        if self.engine is None:
            self.engine = CleaningEngine(self.cfg)

    def rows(self, item: str, stats: dict[str, Any], **side: Any) -> Iterator[tuple[str, dict]]:
        self.setup()
        assert self.engine is not None
        for doc in storage.iter_rows(item):
            outcome = self.engine.clean(doc)
            if outcome.document is not None:
                self.kept.inc()
                yield "documents", outcome.document
            else:
                self.removed.inc()
                counter(f"clean.removed.{outcome.reason}").inc()
                yield (
                    "ledger",
                    schemas.removal_from_document(doc, outcome.reason or "unknown", outcome.detail),
                )


def plugin_code_version(cfg: CleanConfig) -> str:
    """Hash of the source files of the plug-ins that ``cfg.rules`` runs ('' when none).

    ``pipelines/`` is covered by the code version; a plug-in lives elsewhere, so its source joins the
    stage fingerprint (a model file it loads is covered only through its settings, e.g. a path).
    """
    h = hashlib.sha256()
    names = [n for n in cfg.rules if n in cfg.plugins]
    for name in names:
        ref, _ = plugin_spec(cfg.plugins[name])
        module = inspect.getmodule(load_object(ref))
        path = inspect.getsourcefile(module) if module is not None else None
        h.update(f"{name}={ref}\0".encode())
        if path:
            with open(path, "rb") as fh:
                h.update(fh.read())
    return h.hexdigest()[:16] if names else ""


# work per byte relative to a light stage (ingestion, bias filter, tokens), for choosing in-process runs:
# measured ~1.1 core-seconds per MB of text against ~0.07 (docs/benchmarks.md)
COST = 16.0


def run(job: StageJob) -> StageResult:
    """Clean the job's upstream (raw) documents into a new version."""
    from pipelines.reports import stage_stats

    cfg = job.cfg
    plugins = plugin_code_version(cfg.clean)
    return run_downstream_stage(
        job,
        section={job.name: to_dict(cfg.clean)},
        build=lambda p, splits, v, run: process_splits(
            p, splits, str(v.path), CleanWork(cfg.clean), cfg.output, run=run, label="Clean"
        ),
        finalize=lambda v, counters, entries, up_docs, split_stats: {
            "stats": stage_stats(entries, up_docs, redacts_pii=True)
        },
        fingerprint_extra=(plugins,) if plugins else (),
        cost=COST,
    )
